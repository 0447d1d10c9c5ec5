//! What the integration tests of the three services share, so that each
//! harness holds only what is its own service's: ports of the real test
//! servers, a database and a RabbitMQ vhost per test, the one `wait_until`,
//! log capture and error assertions. Tests run against the real PostgreSQL
//! and RabbitMQ that `scripts/test.sh` starts, never against mocks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod logs;
pub mod metrics;
pub mod orders;
pub mod pg;
pub mod rabbit;

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Bounds every wait on something that happens in the background; a bound
/// keeps a broken service from hanging a test, it is not a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(45);

/// The HTTP client every harness talks to its service with. Idle connections
/// are dropped well before the servers' 5 s keep-alive closes them, so a test
/// that pauses (a table seeded, an alarm raised, a broker stalled) never sends
/// on a connection the server has just closed, which awc reports as
/// "connector has been disconnected".
pub fn http_client(timeout: Duration) -> awc::Client {
    awc::Client::builder()
        .timeout(timeout)
        .connector(awc::Connector::new().conn_keep_alive(Duration::from_secs(2)))
        .finish()
}

/// A port from the environment (`TEST_*_PORT`, set by `scripts/test.sh`). A
/// missing variable fails the test with what to do; it never skips it.
pub fn env_port(var: &str) -> u16 {
    let raw = std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: these tests need the real servers (PostgreSQL, RabbitMQ with \
             management) on 127.0.0.1; run scripts/test.sh, or `scripts/local.sh infra` and \
             export TEST_INVENTORY_PG_PORT, TEST_BILLING_PG_PORT, TEST_RABBITMQ_PORT and \
             TEST_RABBITMQ_MGMT_PORT"
        )
    });
    raw.parse()
        .unwrap_or_else(|_| panic!("{var}={raw:?} is not a port number"))
}

/// A port nothing listens on, and nothing will while the test process runs:
/// its socket stays bound without listening, so a connection is refused at
/// once and no later bind gets the port. A port that was bound and released
/// went, now and then, to the server under test itself, which then proxied to
/// itself until its upstream timeout.
pub fn closed_port() -> u16 {
    static HELD: std::sync::Mutex<Vec<socket2::Socket>> = std::sync::Mutex::new(Vec::new());
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    HELD.lock().unwrap().push(socket);
    port
}

/// A name no other test (or test process) uses, valid as an unquoted SQL
/// identifier and as a vhost name.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A secret file of the calling test's own (under the temp dir, named by
/// `test` and the process), as Docker mounts one under /run/secrets: its path.
pub fn secret_file(test: &str, content: &str) -> String {
    let path = std::env::temp_dir().join(format!("mp-{test}-{}", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Polls `probe` every 50 ms until it returns `Some`; panics naming `what`
/// after `limit`.
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `body` is the project's JSON error with this `code` and
/// `field` (absent when `None`) and a non-empty message, and that the
/// status is `status`.
#[track_caller]
pub fn assert_error(
    status: u16,
    body: &Value,
    expected_status: u16,
    code: &str,
    field: Option<&str>,
) {
    let shown = || format!("{status} {body}");
    assert_eq!(status, expected_status, "{}", shown());
    assert_eq!(body["error"]["code"].as_str(), Some(code), "{}", shown());
    assert_eq!(body["error"]["field"].as_str(), field, "{}", shown());
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        shown()
    );
}
