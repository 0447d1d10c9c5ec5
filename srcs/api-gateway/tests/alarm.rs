//! A RabbitMQ resource alarm (here a disk alarm: `set_disk_free_limit` above
//! the free space) seen through the gateway: `/ready` and the very first
//! order answer 503 at once, and both recover by themselves once the alarm
//! clears.
//!
//! The alarm is broker-wide, so this is a test binary of its own with one
//! test: cargo runs test binaries one after another, so no other test sees
//! the alarm. It needs `TEST_RABBITMQCTL`, the command that runs rabbitmqctl
//! on the test broker (scripts/test.sh sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use actix_web::http::{Method, StatusCode};
use api_gateway::billing::order_id_for_key;
use serde_json::{json, Value};
use support::orders::{amount, Worker};
use support::rabbit::{self, Vhost};
use support::upstream::spawn_upstream;
use support::{config, send, spawn_gateway, wait_for, Gateway, Reply};

fn rabbitmqctl(args: &[&str]) {
    let command = std::env::var("TEST_RABBITMQCTL").unwrap_or_else(|_| {
        panic!(
            "TEST_RABBITMQCTL is not set: the command running rabbitmqctl on the test broker, \
             e.g. \"scripts/local.sh rabbitmqctl\" with the environment of scripts/test.sh"
        )
    });
    let mut parts = command.split_whitespace();
    let program = parts.next().expect("TEST_RABBITMQCTL is empty");
    let out = Command::new(program)
        .args(parts)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {command}: {e}"));
    assert!(
        out.status.success(),
        "{command} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn node() -> Value {
    let (status, nodes) = rabbit::mgmt(Method::GET, "/nodes", None).await;
    assert_eq!(status, StatusCode::OK, "{nodes}");
    nodes[0].clone()
}

/// Raises the disk alarm; restores the broker's limit when dropped, also
/// when the test fails, so a failure here cannot block later test runs.
struct DiskAlarm {
    limit: String,
    raised: bool,
}

impl DiskAlarm {
    async fn raise() -> Self {
        let limit = node().await["disk_free_limit"]
            .as_u64()
            .unwrap()
            .to_string();
        rabbitmqctl(&["set_disk_free_limit", "1000GB"]);
        Self {
            limit,
            raised: true,
        }
    }

    fn clear(&mut self) {
        if self.raised {
            rabbitmqctl(&["set_disk_free_limit", &self.limit]);
            self.raised = false;
        }
    }
}

impl Drop for DiskAlarm {
    fn drop(&mut self) {
        self.clear();
    }
}

async fn post_with_key(gateway: &Gateway, key: &str, body: &Value) -> Reply {
    let req = gateway
        .request(Method::POST, "/api/billing")
        .insert_header(("content-type", "application/json"))
        .insert_header(("idempotency-key", key));
    send(req, Some(serde_json::to_vec(body).unwrap())).await
}

#[actix_web::test]
async fn a_disk_alarm_makes_ready_and_the_first_order_503_then_both_recover() {
    let vhost = Vhost::new().await;
    let worker = Worker::start(&vhost.name).await;
    let inventory = spawn_upstream();
    let mut settings = config(&inventory.url, rabbit::amqp_port(), &vhost.name);
    // Long, so that an order held by the broker would show as a 504 after
    // 30 s rather than pass as a quick 503.
    settings.publish_timeout_ms = 30_000;
    let gateway = spawn_gateway(settings).await;
    gateway.wait_ready().await;
    let before = json!({"user_id": "u-alarm", "number_of_items": 1, "total_amount": "1.00"});
    assert_eq!(post_with_key(&gateway, "before", &before).await.status, 200);

    let mut alarm = DiskAlarm::raise().await;
    wait_for("RabbitMQ to report the disk alarm", || async {
        (node().await["disk_free_alarm"] == true).then_some(())
    })
    .await;

    // The first order after the alarm.
    let body = json!({"user_id": "u-alarm", "number_of_items": 2, "total_amount": "2.00"});
    let reply = post_with_key(&gateway, "during", &body).await;
    reply.assert_error(503, "broker_unavailable", None);
    assert_eq!(reply.header("retry-after"), Some("5"));
    let ready = gateway.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{ready:?}");
    let ready = ready.json();
    assert_eq!(ready["rabbitmq"], "blocked", "{ready}");
    assert_eq!(ready["inventory"], "up", "{ready}");
    assert_eq!(ready["error"]["code"], "not_ready", "{ready}");
    assert!(
        ready["error"]["message"]
            .as_str()
            .unwrap()
            .contains("blocked"),
        "{ready}"
    );

    alarm.clear();
    gateway.wait_ready().await;
    // The client's retry of the refused order goes through, once.
    let id = order_id_for_key("u-alarm", "during");
    let retried = post_with_key(&gateway, "during", &body).await;
    assert_eq!(retried.status, StatusCode::OK, "{retried:?}");
    assert_eq!(retried.json()["order_id"], id.to_string());

    worker.wait_settled(2).await;
    let rows = worker.rows();
    assert_eq!(
        rows,
        vec![
            (
                order_id_for_key("u-alarm", "before"),
                "u-alarm".to_owned(),
                1,
                amount("1.00")
            ),
            (id, "u-alarm".to_owned(), 2, amount("2.00")),
        ]
    );
    worker.stop().await;
}
