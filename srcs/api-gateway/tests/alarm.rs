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

#[path = "api/support/mod.rs"]
mod support;

use actix_web::http::StatusCode;
use api_gateway::billing::order_id_for_key;
use serde_json::{json, Value};
use support::orders::{amount, Worker};
use support::rabbit::{self, rabbitmqctl};
use support::upstream::spawn_upstream;
use support::{config, spawn_app, wait_for, Reply, TestApp};

/// The node's live status (the management API's figures lag by seconds,
/// which would read back a limit a previous run had just restored).
fn node_status() -> Value {
    let text = rabbitmqctl(&["status", "--formatter", "json"]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("rabbitmqctl status ({e}): {text}"))
}

/// Raises the disk alarm; restores the broker's limit when dropped, also
/// when the test fails, so a failure here cannot block later test runs.
struct DiskAlarm {
    limit: String,
    raised: bool,
}

impl DiskAlarm {
    fn raise() -> Self {
        let limit = node_status()["disk_free_limit"].as_u64().unwrap();
        assert!(
            limit < 1_000_000_000_000,
            "the test broker's disk limit is {limit} bytes already: a previous run left it raised"
        );
        let limit = limit.to_string();
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

async fn post_with_key(gateway: &TestApp, key: &str, body: &Value) -> Reply {
    gateway.order_with_key(key, body).await
}

#[actix_web::test]
async fn a_disk_alarm_makes_ready_and_the_first_order_503_then_both_recover() {
    let vhost = rabbit::vhost();
    let worker = Worker::start(&vhost.name).await;
    let inventory = spawn_upstream();
    let mut settings = config(&inventory.url, rabbit::amqp_port(), &vhost.name);
    // Long, so that an order held by the broker would show as a 504 after
    // 30 s rather than pass as a quick 503.
    settings.publish_timeout_ms = 30_000;
    let gateway = spawn_app(settings).await;
    gateway.wait_ready().await;
    let before = json!({"user_id": "u-alarm", "number_of_items": 1, "total_amount": "1.00"});
    assert_eq!(post_with_key(&gateway, "before", &before).await.status, 200);

    let mut alarm = DiskAlarm::raise();
    wait_for("RabbitMQ to raise the disk alarm", || async {
        let alarms = node_status()["alarms"].clone();
        (alarms.as_array().is_some_and(|a| !a.is_empty())).then_some(())
    })
    .await;

    // /ready notices without any order being sent (GETs publish nothing):
    // the gateway's probe is what RabbitMQ blocks. Measured, not asserted:
    // the gap is the probe period plus a round trip, longer on a busy host.
    let raised = std::time::Instant::now();
    let ready = wait_for("/ready to report RabbitMQ blocked", || async {
        let reply = gateway.get("/ready").await;
        (reply.status == StatusCode::SERVICE_UNAVAILABLE).then_some(reply)
    })
    .await;
    println!(
        "/ready reported the alarm {:?} after rabbitmqctl listed it",
        raised.elapsed()
    );
    let ready = ready.json();
    assert_eq!(ready["checks"]["rabbitmq"], "blocked", "{ready}");
    assert_eq!(ready["checks"]["inventory"], "ok", "{ready}");
    assert_eq!(ready["error"]["code"], "not_ready", "{ready}");
    assert!(
        ready["error"]["message"]
            .as_str()
            .unwrap()
            .contains("blocked"),
        "{ready}"
    );

    // The first order after the alarm: refused at once, not held by the
    // broker until the 30 s publish timeout.
    let body = json!({"user_id": "u-alarm", "number_of_items": 2, "total_amount": "2.00"});
    let reply = post_with_key(&gateway, "during", &body).await;
    reply.assert_error(503, "broker_unavailable", None);
    assert_eq!(reply.header("retry-after"), Some("5"));

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
