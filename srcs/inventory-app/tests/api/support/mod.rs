//! Shared by the integration tests: a database of its own per test on the
//! real PostgreSQL named by TEST_INVENTORY_PG_PORT, and an app bound to port 0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use actix_web::http::header::{HeaderMap, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use diesel::pg::PgConnection;
use diesel::RunQueryDsl;
use inventory_app::config::{Config, Limits};
use inventory_app::startup::{Application, Bound as _};
use serde_json::Value;
use std::time::Duration;

pub const PG_PORT_VAR: &str = "TEST_INVENTORY_PG_PORT";

pub fn pg_port() -> u16 {
    test_support::env_port(PG_PORT_VAR)
}

pub fn connect(dbname: &str) -> PgConnection {
    test_support::pg::connect(pg_port(), dbname)
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
    test_support::unique_name("inventory_test")
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
        db: test_support::pg::settings(db_port, db_name, 4),
        workers: Some(1),
        metrics_host: "127.0.0.1".to_owned(),
        metrics_port: 0,
        limits: Limits::default(),
        migrate_at_start: true,
        drain_ms: 0,
    }
}

pub use test_support::closed_port;

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
    config.limits = limits;
    let app = spawn_built(Application::build(config), Some(name));
    app.wait_until_ready(Duration::from_secs(30)).await;
    app
}

/// An app on `config`, serving at once, whatever the database's state.
pub fn spawn_with(config: Config, owned_db: Option<String>) -> TestApp {
    spawn_built(Application::build(config), owned_db)
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
        client: test_support::http_client(Duration::from_secs(10)),
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
        test_support::assert_error(self.status.as_u16(), &self.body, status, code, field);
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
        let mut resp = test_support::http_client(Duration::from_secs(120))
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
        test_support::wait_until("the app to be ready", limit, || async {
            let reply = self.get("/ready").await;
            if reply.status == StatusCode::OK {
                return Some(());
            }
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
            None
        })
        .await;
    }
}
