//! The real RabbitMQ: a vhost per test (so `billing_queue` of one test never
//! sees another's orders), reading the queue back, and the management API.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::{Method, StatusCode};
use common::amqp::AmqpTarget;
use common::order::{parse_order, OrderMessage};
use common::topology::BILLING_QUEUE;
use lapin::message::Delivery;
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use lapin::{Channel, Connection};
use secrecy::SecretString;
use serde_json::Value;

use super::{env_port, send, wait_for};

pub fn amqp_port() -> u16 {
    env_port("TEST_RABBITMQ_PORT", 55672)
}

pub fn mgmt_port() -> u16 {
    env_port("TEST_RABBITMQ_MGMT_PORT", 55673)
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

/// A vhost of its own, with full rights for guest; deleted on drop.
pub struct Vhost {
    pub name: String,
}

impl Vhost {
    pub async fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "gateway-test-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let (status, body) = mgmt(Method::PUT, &format!("/vhosts/{name}"), None).await;
        assert!(
            status.is_success(),
            "creating vhost {name}: {status} {body}"
        );
        let (status, body) = mgmt(
            Method::PUT,
            &format!("/permissions/{name}/guest"),
            Some(serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"})),
        )
        .await;
        assert!(
            status.is_success(),
            "permissions on {name}: {status} {body}"
        );
        Self { name }
    }
}

impl Drop for Vhost {
    /// Blocking and best effort: drop cannot await, and a leftover vhost
    /// harms nobody.
    fn drop(&mut self) {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", mgmt_port())) else {
            return;
        };
        let request = format!(
            "DELETE /api/vhosts/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.name
        );
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
        if stream.write_all(request.as_bytes()).is_ok() {
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink);
        }
    }
}

/// A connection of the test's own to `vhost`, as guest.
pub async fn channel(vhost: &str) -> (Connection, Channel) {
    let password = SecretString::from("guest");
    let target = AmqpTarget {
        host: "127.0.0.1",
        port: amqp_port(),
        user: "guest",
        password: &password,
        vhost,
    };
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

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
