//! The real billing-worker, in-process, on a PostgreSQL database of its own
//! and the test's vhost: what makes "one row per order" checkable end to end.

use std::collections::HashMap;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use billing_worker::config::Config;
use billing_worker::startup::Application;
use diesel::pg::PgConnection;
use diesel::RunQueryDsl;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{env_port, rabbit, wait_for};

pub fn pg_port() -> u16 {
    env_port("TEST_BILLING_PG_PORT")
}

fn connect(db: &str) -> PgConnection {
    test_support::pg::connect(pg_port(), db)
}

/// A billing-worker consuming `vhost`, storing into a database of its own
/// (dropped with it).
pub struct Worker {
    pub db: String,
    pub health_port: u16,
    client: awc::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<actix_web::rt::task::JoinHandle<Result<(), billing_worker::error::Error>>>,
}

impl Worker {
    pub async fn start(vhost: &str) -> Self {
        let db = format!("gateway_orders_{}", Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE {db}"))
            .execute(&mut connect("postgres"))
            .unwrap();
        let config = Config {
            health_host: "127.0.0.1".into(),
            health_port: 0,
            db: test_support::pg::settings(pg_port(), &db, 2),
            rabbitmq: rabbit::settings(vhost),
            prefetch: 100,
            batch_size: 50,
            migrate_at_start: true,
        };
        let app = Application::build(config).unwrap();
        let health_port = app.port();
        let (tx, rx) = oneshot::channel::<()>();
        let task = actix_web::rt::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let worker = Self {
            db,
            health_port,
            client: super::client(),
            stop: Some(tx),
            task: Some(task),
        };
        worker.wait_ready().await;
        worker
    }

    async fn ready(&self) -> (u16, serde_json::Value) {
        let reply = super::send(
            self.client
                .get(format!("http://127.0.0.1:{}/ready", self.health_port)),
            None,
        )
        .await;
        (reply.status.as_u16(), reply.json())
    }

    pub async fn wait_ready(&self) {
        wait_for("the worker to be ready", || async {
            (self.ready().await.0 == 200).then_some(())
        })
        .await;
    }

    /// Messages the worker has settled: stored, skipped as duplicates, or
    /// dead-lettered.
    pub async fn settled(&self) -> u64 {
        let orders = self.ready().await.1["orders"].clone();
        ["stored", "duplicates_skipped", "dead_lettered"]
            .iter()
            .map(|k| orders[*k].as_u64().unwrap_or(0))
            .sum()
    }

    pub async fn counter(&self, name: &str) -> u64 {
        self.ready().await.1["orders"][name].as_u64().unwrap_or(0)
    }

    /// Waits until `n` messages are settled in all.
    pub async fn wait_settled(&self, n: u64) {
        wait_for(&format!("the worker to settle {n} message(s)"), || async {
            let got = self.settled().await;
            assert!(got <= n, "the worker settled {got} messages, more than {n}");
            (got == n).then_some(())
        })
        .await;
    }

    /// Every stored row: (order_id, user_id, number_of_items, total_amount).
    pub fn rows(&self) -> Vec<test_support::pg::OrderRow> {
        test_support::pg::order_rows(&mut connect(&self.db))
    }

    /// How many rows each order_id has.
    pub fn row_counts(&self) -> HashMap<Uuid, usize> {
        let mut counts = HashMap::new();
        for row in self.rows() {
            *counts.entry(row.0).or_insert(0) += 1;
        }
        counts
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db))
            .execute(&mut connect("postgres"));
    }
}

pub fn amount(text: &str) -> BigDecimal {
    BigDecimal::from_str(text).unwrap()
}
