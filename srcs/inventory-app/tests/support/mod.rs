//! Shared by the integration tests: a database of its own per test on the
//! real PostgreSQL named by TEST_INVENTORY_PG_PORT, and an app bound to port 0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use actix_web::http::header::{HeaderMap, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use diesel::pg::PgConnection;
use diesel::{Connection, RunQueryDsl};
use inventory_app::config::{Config, Limits};
use inventory_app::startup::Application;
use secrecy::SecretString;
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const PG_PORT_VAR: &str = "TEST_INVENTORY_PG_PORT";

pub fn pg_port() -> u16 {
    let raw = std::env::var(PG_PORT_VAR).unwrap_or_else(|_| {
        panic!(
            "{PG_PORT_VAR} is not set: these tests need a real PostgreSQL on 127.0.0.1 \
             (user postgres, no password); run scripts/test.sh, or `scripts/local.sh infra` \
             and export {PG_PORT_VAR}=55432"
        )
    });
    raw.parse()
        .unwrap_or_else(|_| panic!("{PG_PORT_VAR}={raw:?} is not a port number"))
}

pub fn connect(dbname: &str) -> PgConnection {
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname={dbname} connect_timeout=5",
        pg_port()
    );
    PgConnection::establish(&url).unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// The ids of a JSON array of movies, in order.
pub fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

/// A fresh, unique database name (valid unquoted identifier).
pub fn unique_db_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "inventory_test_{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn create_database(name: &str) {
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut connect("postgres"))
        .unwrap();
}

pub fn drop_database(name: &str) {
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut connect("postgres"))
        .unwrap();
}

/// The database as the app's config sees it: user postgres, empty password
/// (trust authentication), as on the test servers.
pub fn config(db_port: u16, db_name: &str) -> Config {
    Config {
        host: "127.0.0.1".to_owned(),
        port: 0,
        db_host: "127.0.0.1".to_owned(),
        db_port,
        db_name: db_name.to_owned(),
        db_user: "postgres".to_owned(),
        db_password: SecretString::from(""),
        db_pool_size: 4,
        workers: Some(1),
    }
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

pub struct TestApp {
    pub address: String,
    /// Dropped (with its connections) when the TestApp is.
    pub db_name: Option<String>,
    client: awc::Client,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(name) = &self.db_name {
            drop_database(name);
        }
    }
}

/// An app on a new, migrated database of its own.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_, _| {}).await
}

/// Same, with `adjust` applied to its config and limits first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config, &mut Limits)) -> TestApp {
    let name = unique_db_name();
    create_database(&name);
    let mut config = config(pg_port(), &name);
    let mut limits = Limits::default();
    adjust(&mut config, &mut limits);
    let app = spawn_built(Application::build_with(&config, &limits), Some(name));
    app.wait_until_ready(Duration::from_secs(30)).await;
    app
}

/// An app on `config`, serving at once, whatever the database's state.
pub fn spawn_with(config: Config, owned_db: Option<String>) -> TestApp {
    spawn_built(Application::build(&config), owned_db)
}

fn spawn_built(
    app: Result<Application, inventory_app::startup::StartupError>,
    owned_db: Option<String>,
) -> TestApp {
    let app = app.expect("build the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run());
    TestApp {
        address,
        db_name: owned_db,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish(),
    }
}

/// A response whose body has been read and checked to be JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// `error.code`, after checking the body is in the project's error format.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {}", self.body))
    }

    pub fn error_field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts status, error code and (optionally) the field named.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str, field: Option<&str>) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.error_code(), code, "{self:?}");
        assert_eq!(self.error_field(), field, "{self:?}");
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{self:?}"
        );
    }
}

impl TestApp {
    pub fn port(&self) -> u16 {
        self.address.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// A connection to the app's own database.
    pub fn db(&self) -> PgConnection {
        connect(self.db_name.as_deref().expect("the app owns a database"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Sends a request with an optional body and its Content-Type.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
        request_id: Option<&str>,
    ) -> Reply {
        let mut req = self.client.request(method.clone(), self.url(path));
        if let Some(ct) = content_type {
            req = req.insert_header((CONTENT_TYPE, ct));
        }
        if let Some(rid) = request_id {
            req = req.insert_header((common::REQUEST_ID_HEADER, rid));
        }
        let sent = match body {
            Some(bytes) => req.send_body(bytes).await,
            None => req.send().await,
        };
        let mut resp = sent.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let bytes = resp.body().limit(16 << 20).await.unwrap();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{method} {path} answered {} with {:?}",
            resp.status(),
            String::from_utf8_lossy(&bytes)
        );
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            body,
        }
    }

    /// A HEAD request: its status, headers and (what should be an empty) body.
    pub async fn head(&self, path: &str) -> (StatusCode, HeaderMap, Bytes) {
        let mut resp = self
            .client
            .head(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("HEAD {path}: {e}"));
        let body = resp.body().await.unwrap();
        (resp.status(), resp.headers().clone(), body)
    }

    /// A GET whose body is kept as bytes (up to 256 MiB), to compare them exactly.
    pub async fn get_bytes(&self, path: &str) -> (StatusCode, HeaderMap, Bytes) {
        let mut resp = awc::Client::builder()
            .timeout(Duration::from_secs(120))
            .finish()
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let body = resp.body().limit(256 << 20).await.unwrap();
        (resp.status(), resp.headers().clone(), body)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, None, None).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None, None, None).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.json(Method::POST, path, body).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Reply {
        self.json(Method::PUT, path, body).await
    }

    async fn json(&self, method: Method, path: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).unwrap();
        self.send(method, path, Some("application/json"), Some(bytes), None)
            .await
    }

    /// Creates a movie and returns it as the API answered.
    pub async fn create(&self, title: &str, description: &str) -> Value {
        let reply = self
            .post_json(
                "/api/movies",
                &serde_json::json!({"title": title, "description": description}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        reply.body
    }

    /// Polls `/ready` until 200; panics after `limit` (a bound, not a timing
    /// assertion: it only keeps a broken app from hanging the test).
    pub async fn wait_until_ready(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            let reply = self.get("/ready").await;
            if reply.status == StatusCode::OK {
                return;
            }
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
            assert!(
                start.elapsed() < limit,
                "not ready after {limit:?}: {reply:?}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Captures log lines so a test can look for one.
pub struct Capture(pub Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.target(), record.args());
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

/// The process's logger, installed on first use.
pub fn captured_logs() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(capture).unwrap();
        log::set_max_level(log::LevelFilter::Info);
        capture
    })
}

impl Capture {
    /// Waits (bounded) for a line containing all of `needles`; panics with
    /// all lines if none comes.
    pub async fn wait_for(&self, needles: &[&str], limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let found = self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                start.elapsed() < limit,
                "no log line with {needles:?} after {limit:?}: {:#?}",
                self.0.lock().unwrap()
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
