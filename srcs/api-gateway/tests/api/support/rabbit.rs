//! The real RabbitMQ: a vhost per test (so `billing_queue` of one test never
//! sees another's orders), reading the queue back, and the management API.

use actix_web::http::{Method, StatusCode};
use common::amqp::AmqpSettings;
use common::order::{parse_order, OrderMessage};
use common::topology::BILLING_QUEUE;
use lapin::message::Delivery;
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use lapin::{Channel, Connection};
use secrecy::SecretString;
use serde_json::Value;
use std::process::Command;

use super::{env_port, send, wait_for};

/// guest on the test broker, in `vhost`.
pub fn settings(vhost: &str) -> AmqpSettings {
    AmqpSettings {
        host: "127.0.0.1".into(),
        port: amqp_port(),
        user: "guest".into(),
        password: SecretString::from("guest"),
        vhost: vhost.to_owned(),
        ..AmqpSettings::default()
    }
}

pub fn amqp_port() -> u16 {
    env_port("TEST_RABBITMQ_PORT")
}

pub fn mgmt_port() -> u16 {
    env_port("TEST_RABBITMQ_MGMT_PORT")
}

/// guest:guest, base64.
const AUTH: &str = "Basic Z3Vlc3Q6Z3Vlc3Q=";

/// Calls the management API; returns the status and the JSON body (Null when
/// there is none).
pub async fn mgmt(method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let url = format!("http://127.0.0.1:{}/api{path}", mgmt_port());
    let req = super::client()
        .request(method, url)
        .insert_header(("authorization", AUTH))
        .insert_header(("content-type", "application/json"));
    let reply = send(req, body.map(|b| serde_json::to_vec(&b).unwrap())).await;
    let json = if reply.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null)
    };
    (reply.status, json)
}

pub use test_support::rabbit::TestVhost as Vhost;

/// A vhost of its own, with full rights for guest; deleted on drop.
pub fn vhost() -> Vhost {
    Vhost::create(mgmt_port(), "gateway-test")
}

/// A connection of the test's own to `vhost`, as guest.
pub async fn channel(vhost: &str) -> (Connection, Channel) {
    let target = settings(vhost);
    let connection = target.connect("api-gateway-tests").await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// Takes every message out of `billing_queue` of `vhost` (which must exist).
pub async fn drain(vhost: &str) -> Vec<Delivery> {
    let (connection, channel) = channel(vhost).await;
    let mut out = Vec::new();
    while let Some(message) = channel
        .basic_get(BILLING_QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap_or_else(|e| panic!("basic_get on {BILLING_QUEUE} in {vhost}: {e}"))
    {
        out.push(message.delivery);
    }
    let _ = connection.close(200, "done".into()).await;
    out
}

/// The order a message holds, read as the worker reads it (the one parser).
pub fn order_of(delivery: &Delivery) -> OrderMessage {
    let input = parse_order(&delivery.data).unwrap_or_else(|e| {
        panic!(
            "message is not a valid order ({e}): {}",
            String::from_utf8_lossy(&delivery.data)
        )
    });
    let order_id = input.order_id.unwrap_or_else(|| {
        panic!(
            "message has no order_id: {}",
            String::from_utf8_lossy(&delivery.data)
        )
    });
    OrderMessage::new(order_id, &input)
}

pub fn header_of(delivery: &Delivery, name: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        other => panic!("header {name} is not a long string: {other:?}"),
    }
}

/// Names of the client connections RabbitMQ lists in `vhost`.
pub async fn connections(vhost: &str) -> Vec<String> {
    let (status, body) = mgmt(Method::GET, &format!("/vhosts/{vhost}/connections"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until RabbitMQ lists exactly one connection in `vhost` (the
/// management API lags a few seconds behind) and returns its name.
pub async fn only_connection(vhost: &str) -> String {
    wait_for("RabbitMQ to list the gateway's connection", || async {
        let names = connections(vhost).await;
        (names.len() == 1).then(|| names[0].clone())
    })
    .await
}

/// Closes a client connection from the broker side, as an operator would.
pub async fn close_connection(name: &str) {
    let (status, body) = mgmt(
        Method::DELETE,
        &format!("/connections/{}", percent_encode(name)),
        None,
    )
    .await;
    assert!(status.is_success(), "closing {name}: {status} {body}");
}

pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs rabbitmqctl on the test broker (`TEST_RABBITMQCTL`, which
/// scripts/test.sh sets); returns its standard output.
pub fn rabbitmqctl(args: &[&str]) -> String {
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
    String::from_utf8_lossy(&out.stdout).into_owned()
}
