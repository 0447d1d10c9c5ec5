//! Shared by the integration tests: the gateway bound to port 0, test
//! upstreams, the real inventory-app on a database of its own, a RabbitMQ
//! vhost of its own per test, and a TCP relay to cut or stall the broker.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod inventory;
pub mod orders;
pub mod rabbit;
pub mod relay;
pub mod upstream;

use std::future::Future;
use std::time::Duration;

use actix_web::http::header::{HeaderMap, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use api_gateway::startup::Bound as _;
use api_gateway::{Application, Config};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// Not every test binary uses each of these.
#[allow(unused_imports)]
pub use test_support::logs as capture;
#[allow(unused_imports)]
pub use test_support::{closed_port, env_port, PATIENCE};

/// Gateway settings for a test: inventory at `inventory_url`, RabbitMQ on
/// 127.0.0.1:`amqp_port`, vhost `vhost`, user guest.
pub fn config(inventory_url: &str, amqp_port: u16, vhost: &str) -> Config {
    Config {
        host: "127.0.0.1".to_owned(),
        port: 0,
        inventory_url: inventory_url.to_owned(),
        inventory_timeout_ms: 5_000,
        rabbitmq: common::amqp::AmqpSettings {
            port: amqp_port,
            ..rabbit::settings(vhost)
        },
        publish_timeout_ms: 5_000,
        workers: Some(1),
        inventory_idle_timeout_ms: 5_000,
        body_timeout_ms: 10_000,
        max_connections: 1024,
        backlog: 1024,
        keep_alive_ms: 5_000,
        request_head_timeout_ms: 5_000,
        access_log_file: None,
        metrics_host: "127.0.0.1".to_owned(),
        metrics_port: 0,
        // The names the tests' raw requests send in `Host` (any other is
        // refused: tests/api/hosts.rs).
        allowed_hosts: "g,gateway".to_owned(),
        drain_ms: 0,
    }
}

pub struct TestApp {
    pub url: String,
    pub port: u16,
    /// `http://127.0.0.1:PORT/metrics`, the metrics listener's page.
    pub metrics_url: String,
    pub client: awc::Client,
}

/// Builds and serves the gateway in the background of the test's runtime.
pub async fn spawn_app(config: Config) -> TestApp {
    let app = Application::build(config).expect("build the gateway");
    let port = app.port();
    let metrics_url = format!("http://127.0.0.1:{}/metrics", app.metrics_port());
    actix_web::rt::spawn(app.run());
    TestApp {
        url: format!("http://127.0.0.1:{port}"),
        port,
        metrics_url,
        client: client(),
    }
}

/// A gateway publishing to `vhost` through 127.0.0.1:`amqp_port` (a relay's
/// port or the broker's), its inventory a test upstream.
pub async fn gateway_on(vhost: &rabbit::Vhost, amqp_port: u16) -> TestApp {
    gateway_with(vhost, amqp_port, |_| {}).await
}

async fn gateway_with(
    vhost: &rabbit::Vhost,
    amqp_port: u16,
    edit: impl FnOnce(&mut Config),
) -> TestApp {
    let inventory = upstream::spawn_upstream();
    let mut settings = config(&inventory.url, amqp_port, &vhost.name);
    edit(&mut settings);
    spawn_app(settings).await
}

/// A gateway connected to the real broker, ready.
pub async fn ready_gateway(vhost: &rabbit::Vhost) -> TestApp {
    let gateway = gateway_on(vhost, rabbit::amqp_port()).await;
    gateway.wait_ready().await;
    gateway
}

/// A ready gateway whose broker traffic goes through a forwarding relay,
/// with that publish timeout: pausing the relay holds back the confirm.
pub async fn gateway_behind_relay(
    vhost: &rabbit::Vhost,
    publish_timeout_ms: u64,
) -> (relay::Relay, TestApp) {
    let relay = relay::Relay::start(rabbit::amqp_port(), true).await;
    let gateway = gateway_with(vhost, relay.port, |c| {
        c.publish_timeout_ms = publish_timeout_ms
    })
    .await;
    gateway.wait_ready().await;
    (relay, gateway)
}

pub fn client() -> awc::Client {
    test_support::http_client(Duration::from_secs(30))
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header(CONTENT_TYPE.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// Asserts a JSON error in the project's format with this status, code
    /// and field, carrying a request id.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str, field: Option<&str>) {
        assert_eq!(self.content_type(), Some("application/json"), "{self:?}");
        test_support::assert_error(self.status.as_u16(), &self.json(), status, code, field);
        assert!(self.header("x-request-id").is_some(), "{self:?}");
    }
}

/// Sends `req` (with `body`, if any) and reads the whole answer.
pub async fn send(req: awc::ClientRequest, body: Option<Vec<u8>>) -> Reply {
    let what = format!("{} {}", req.get_method(), req.get_uri());
    let sent = match body {
        Some(bytes) => req.send_body(bytes).await,
        None => req.send().await,
    };
    let mut resp = sent.unwrap_or_else(|e| panic!("{what}: {e}"));
    let body = resp
        .body()
        .limit(64 << 20)
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
    Reply {
        status: resp.status(),
        headers: resp.headers().clone(),
        body,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn request(&self, method: Method, path: &str) -> awc::ClientRequest {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Reply {
        send(self.request(Method::GET, path), None).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        let req = self
            .request(Method::POST, path)
            .insert_header((CONTENT_TYPE, "application/json"));
        send(req, Some(serde_json::to_vec(body).unwrap())).await
    }

    pub async fn order(&self, body: &Value) -> Reply {
        self.post_json("/api/billing", body).await
    }

    /// An order sent with `Idempotency-Key: key`.
    pub async fn order_with_key(&self, key: &str, body: &Value) -> Reply {
        let req = self
            .request(Method::POST, "/api/billing")
            .insert_header((CONTENT_TYPE, "application/json"))
            .insert_header(("idempotency-key", key));
        send(req, Some(serde_json::to_vec(body).unwrap())).await
    }

    /// Polls `/ready` until it answers 200.
    pub async fn wait_ready(&self) {
        let reply = wait_for("the gateway to be ready", || async {
            let reply = self.get("/ready").await;
            (reply.status == StatusCode::OK).then_some(reply)
        })
        .await;
        assert_eq!(reply.json()["status"], "ready");
    }
}

/// A valid order body.
pub fn valid_order() -> Value {
    serde_json::json!({"user_id": "20", "number_of_items": "99", "total_amount": "250"})
}

/// Polls `probe` every 100 ms until it yields a value, for at most
/// [`PATIENCE`].
pub async fn wait_for<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    test_support::wait_until(what, PATIENCE, probe).await
}

/// Writes `request` as is to 127.0.0.1:`port` and reads until the server
/// closes (the request should say `Connection: close`). For headers awc
/// would not send, such as `Connection` with extra tokens.
pub async fn raw_exchange(port: u16, request: &[u8]) -> String {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("raw HTTP exchange hung")
}

/// This process's resident memory, in KiB (`VmRSS` of /proc/self/status).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// The header lines of a raw HTTP response, lower-cased names.
pub fn raw_headers(response: &str) -> Vec<(String, String)> {
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}
