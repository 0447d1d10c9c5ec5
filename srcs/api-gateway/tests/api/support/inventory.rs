//! The real inventory-app, in-process, on a PostgreSQL database of its own.

use actix_web::http::StatusCode;
use diesel::RunQueryDsl;
use inventory_app::startup::Bound as _;
use test_support::pg::TestDb;

use super::{env_port, wait_for};

pub fn pg_port() -> u16 {
    env_port("TEST_INVENTORY_PG_PORT")
}

/// A running inventory-app; its database is dropped with it.
pub struct Inventory {
    pub url: String,
    /// inventory-app's own metrics page.
    pub metrics_url: String,
    db: TestDb,
}

impl Inventory {
    /// Runs `sql` in this inventory's database (e.g. to seed it in bulk).
    pub fn execute(&self, sql: &str) -> usize {
        diesel::sql_query(sql).execute(&mut self.db.conn()).unwrap()
    }
}

/// Starts inventory-app on a new database and waits until it is ready.
pub async fn spawn_inventory() -> Inventory {
    let db = TestDb::create(pg_port(), "gateway_test");
    let config = inventory_app::config::Config {
        host: "127.0.0.1".to_owned(),
        port: 0,
        // The test servers trust the postgres role from 127.0.0.1.
        db: db.settings(4),
        workers: Some(1),
        metrics_host: "127.0.0.1".to_owned(),
        metrics_port: 0,
        limits: Default::default(),
        migrate_at_start: true,
        drain_ms: 0,
    };
    let app = inventory_app::startup::Application::build(config).expect("build inventory-app");
    let url = format!("http://127.0.0.1:{}", app.port());
    let metrics_url = format!("http://127.0.0.1:{}/metrics", app.metrics_port());
    actix_web::rt::spawn(app.run());
    let inventory = Inventory {
        url,
        metrics_url,
        db,
    };

    let client = super::client();
    let ready = format!("{}/ready", inventory.url);
    wait_for("inventory-app to be ready", || async {
        let reply = super::send(client.get(&ready), None).await;
        (reply.status == StatusCode::OK).then_some(())
    })
    .await;
    inventory
}
