//! The real inventory-app, in-process, on a PostgreSQL database of its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use diesel::pg::PgConnection;
use diesel::{Connection, RunQueryDsl};
use secrecy::SecretString;

use super::{env_port, wait_for};

pub fn pg_port() -> u16 {
    env_port("TEST_INVENTORY_PG_PORT", 55432)
}

fn admin() -> PgConnection {
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
        pg_port()
    );
    PgConnection::establish(&url).unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// A running inventory-app; its database is dropped with it.
pub struct Inventory {
    pub url: String,
    db: String,
}

impl Inventory {
    /// Runs `sql` in this inventory's database (e.g. to seed it in bulk).
    pub fn execute(&self, sql: &str) -> usize {
        let url = format!(
            "host=127.0.0.1 port={} user=postgres dbname={} connect_timeout=5",
            pg_port(),
            self.db
        );
        let mut conn = PgConnection::establish(&url)
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        diesel::sql_query(sql).execute(&mut conn).unwrap()
    }
}

impl Drop for Inventory {
    fn drop(&mut self) {
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db))
            .execute(&mut admin());
    }
}

/// Starts inventory-app on a new database and waits until it is ready.
pub async fn spawn_inventory() -> Inventory {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let db = format!(
        "gateway_test_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    diesel::sql_query(format!("CREATE DATABASE {db}"))
        .execute(&mut admin())
        .unwrap();

    let config = inventory_app::config::Config {
        host: "127.0.0.1".to_owned(),
        port: 0,
        db_host: "127.0.0.1".to_owned(),
        db_port: pg_port(),
        db_name: db.clone(),
        // The test servers trust the postgres role from 127.0.0.1.
        db_user: "postgres".to_owned(),
        db_password: SecretString::from(""),
        db_pool_size: 4,
        workers: Some(1),
    };
    let app = inventory_app::startup::Application::build(&config).expect("build inventory-app");
    let url = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run());
    let inventory = Inventory { url, db };

    let client = super::client();
    let ready = format!("{}/ready", inventory.url);
    wait_for("inventory-app to be ready", || async {
        let reply = super::send(client.get(&ready), None).await;
        (reply.status == StatusCode::OK).then_some(())
    })
    .await;
    inventory
}
