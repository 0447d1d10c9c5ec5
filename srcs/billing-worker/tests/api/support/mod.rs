//! Test fixtures on the real servers: a database and a RabbitMQ vhost of
//! each test's own, a publisher that sends orders the way the gateway does,
//! and the worker itself, started and stopped inside the test.

use bigdecimal::BigDecimal;
use billing_worker::config::Config;
use billing_worker::schema::orders;
use billing_worker::startup::Application;
use common::amqp::AmqpSettings;
use common::order::OrderMessage;
use common::topology::{self, BILLING_QUEUE, DEAD_LETTER_QUEUE};
use common::trace::TraceContext;
use diesel::prelude::*;
use diesel::PgConnection;
use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation};
use secrecy::SecretString;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;

pub fn pg_port() -> u16 {
    test_support::env_port("TEST_BILLING_PG_PORT")
}
pub fn amqp_port() -> u16 {
    test_support::env_port("TEST_RABBITMQ_PORT")
}
pub fn mgmt_port() -> u16 {
    test_support::env_port("TEST_RABBITMQ_MGMT_PORT")
}

pub use test_support::closed_port;

// ------------------------------------------------------------ PostgreSQL --

fn connect(dbname: &str) -> PgConnection {
    test_support::pg::connect(pg_port(), dbname)
}

pub use test_support::pg::TestDb;
pub use test_support::rabbit::TestVhost;

/// A database of the test's own, dropped when the value goes out of scope.
pub fn test_db() -> TestDb {
    TestDb::create(pg_port(), "billing_test")
}

/// Only a name: the database does not exist until `create_now`.
pub fn test_db_named() -> TestDb {
    TestDb::named(pg_port(), "billing_test")
}

/// A RabbitMQ vhost of the test's own, with `guest` allowed everything.
pub fn test_vhost() -> TestVhost {
    TestVhost::create(mgmt_port(), "billing-test")
}

/// What the worker's tests read back from a test database.
/// The verdict of a test that published `ids`: the stored ids are exactly
/// those (none lost, none invented), and nothing is left in the queue.
pub async fn assert_stored_and_drained(db: &impl OrdersDb, publisher: &Publisher, ids: Vec<Uuid>) {
    assert_eq!(
        db.stored_ids(),
        ids.into_iter().collect::<std::collections::HashSet<_>>()
    );
    assert_eq!(publisher.queued().await, 0);
}

pub trait OrdersDb {
    fn sessions_waiting_for_a_lock(&self) -> i64;
    fn count(&self) -> i64;
    fn rows(&self) -> Vec<(Uuid, String, i32, BigDecimal)>;

    /// The order ids of every row.
    fn stored_ids(&self) -> std::collections::HashSet<Uuid> {
        self.rows().into_iter().map(|r| r.0).collect()
    }
}

impl OrdersDb for TestDb {
    /// Sessions of this database waiting for a lock (seen from outside).
    fn sessions_waiting_for_a_lock(&self) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let rows: Vec<Count> = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = '{}' AND wait_event_type = 'Lock'",
            self.name
        ))
        .load(&mut connect("postgres"))
        .unwrap();
        rows.first().map_or(0, |c| c.n)
    }

    /// Rows in `orders`; 0 while the worker has not created the table yet.
    fn count(&self) -> i64 {
        match orders::table.count().get_result(&mut self.conn()) {
            Ok(n) => n,
            Err(e) if e.to_string().contains("does not exist") => 0,
            Err(e) => panic!("counting orders: {e}"),
        }
    }

    /// (order_id, user_id, number_of_items, total_amount) of every row.
    fn rows(&self) -> Vec<(Uuid, String, i32, BigDecimal)> {
        test_support::pg::order_rows(&mut self.conn())
    }
}

/// Publishes like the gateway: declared topology, persistent messages,
/// publisher confirms awaited.
pub struct Publisher {
    _connection: lapin::Connection,
    channel: lapin::Channel,
}

impl Publisher {
    pub async fn connect(vhost: &TestVhost) -> Self {
        let uri = format!(
            "amqp://guest:guest@127.0.0.1:{}/{}",
            amqp_port(),
            test_support::rabbit::encode(&vhost.name)
        );
        let connection = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        topology::declare(&channel, &topology::Topology::default())
            .await
            .unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Self {
            _connection: connection,
            channel,
        }
    }

    pub async fn publish_raw(&self, body: &[u8], properties: BasicProperties) {
        let confirm = topology::publish_order(&self.channel, body, properties)
            .await
            .unwrap();
        assert!(
            matches!(confirm, Confirmation::Ack(None)),
            "not confirmed: {confirm:?}"
        );
    }

    /// What the gateway publishes for an accepted order.
    pub async fn publish_order(&self, order: &OrderMessage, request_id: &str) {
        let properties = topology::order_properties(
            order.order_id,
            request_id,
            Some(&TraceContext::start()),
            "billing-worker-tests",
        );
        self.publish_raw(&serde_json::to_vec(order).unwrap(), properties)
            .await;
    }

    /// Publishes `n` new orders; returns their ids.
    pub async fn publish_orders(&self, n: usize) -> Vec<Uuid> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let order = order(&format!("user-{i}"), 1 + (i % 5) as i32, "12.34");
            self.publish_order(&order, &format!("req-{i}")).await;
            ids.push(order.order_id);
        }
        ids
    }

    /// Messages ready in a queue (not counting those a consumer holds).
    pub async fn ready(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count()
    }

    pub async fn queued(&self) -> u32 {
        self.ready(BILLING_QUEUE).await
    }

    pub async fn dead_lettered(&self) -> u32 {
        self.ready(DEAD_LETTER_QUEUE).await
    }

    /// Takes every ready message off `billing_queue` (acking them) and
    /// returns their bodies.
    pub async fn drain(&self) -> Vec<Vec<u8>> {
        self.drain_queue(BILLING_QUEUE).await
    }

    /// Takes every ready message off `queue` and returns their bodies.
    pub async fn drain_queue(&self, queue: &str) -> Vec<Vec<u8>> {
        let mut bodies = Vec::new();
        while let Some(m) = self
            .channel
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            bodies.push(m.delivery.data);
        }
        bodies
    }
}

pub fn order(user_id: &str, items: i32, amount: &str) -> OrderMessage {
    OrderMessage {
        order_id: Uuid::new_v4(),
        user_id: user_id.to_owned(),
        number_of_items: items,
        total_amount: amount.to_owned(),
    }
}

// ---------------------------------------------------------------- worker --

pub fn config(db: &TestDb, vhost: &TestVhost, prefetch: u16, batch_size: usize) -> Config {
    Config {
        health_host: "127.0.0.1".into(),
        health_port: 0,
        db: db.settings(3),
        rabbitmq: AmqpSettings {
            host: "127.0.0.1".into(),
            port: amqp_port(),
            user: "guest".into(),
            password: SecretString::from("guest"),
            vhost: vhost.name.clone(),
            ..AmqpSettings::default()
        },
        prefetch,
        batch_size,
        migrate_at_start: true,
    }
}

/// The usual set-up: a database, a vhost, a publisher on it and a ready
/// worker consuming it (prefetch 1000, batch 500).
pub async fn system() -> (TestDb, TestVhost, Publisher, TestApp) {
    system_with(1000, 500).await
}

/// A database and a vhost of the test's own and a publisher on the vhost,
/// with no worker yet (the test starts it when it needs it).
pub async fn no_worker_yet() -> (TestDb, TestVhost, Publisher) {
    let db = test_db();
    let vhost = test_vhost();
    let publisher = Publisher::connect(&vhost).await;
    (db, vhost, publisher)
}

/// Runs a worker (the default window and batch) until the database holds
/// `rows` orders (`what` names the wait), then stops it.
pub async fn run_a_worker_until_stored(db: &TestDb, vhost: &TestVhost, what: &str, rows: i64) {
    let worker = spawn_app(config(db, vhost, 1000, 500));
    eventually(what, || async { db.count() == rows }).await;
    worker.stop().await;
}

/// [`system`] with another prefetch window and batch size.
pub async fn system_with(
    prefetch: u16,
    batch_size: usize,
) -> (TestDb, TestVhost, Publisher, TestApp) {
    let (db, vhost, publisher) = no_worker_yet().await;
    let worker = spawn_app(config(&db, &vhost, prefetch, batch_size));
    worker.wait_ready().await;
    (db, vhost, publisher, worker)
}

/// A worker running inside the test, stoppable like SIGTERM would.
pub struct TestApp {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: actix_web::rt::task::JoinHandle<Result<(), billing_worker::error::Error>>,
}

/// Builds the worker on `config` and runs it in the background of the
/// test's runtime until [`TestApp::stop`].
pub fn spawn_app(config: Config) -> TestApp {
    // RUST_LOG=info cargo test ... shows the worker's log lines.
    let _ = env_logger::builder().is_test(true).try_init();
    let app = Application::build(config).unwrap();
    let port = app.port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = actix_web::rt::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        port,
        stop: Some(tx),
        task,
    }
}

impl TestApp {
    /// Requests a stop and waits until the worker has finished.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("the worker did not stop within 30 s");
        result.unwrap().unwrap();
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        get_json(self.port, path).await
    }

    pub async fn ready(&self) -> (u16, Value) {
        self.get("/ready").await
    }

    /// Waits until `/ready` answers 200 (consuming, database up).
    pub async fn wait_ready(&self) {
        eventually("the worker to be ready", || async {
            self.ready().await.0 == 200
        })
        .await;
    }

    pub async fn counter(&self, name: &str) -> u64 {
        self.ready().await.1["orders"][name].as_u64().unwrap_or(0)
    }
}

pub async fn get_json(port: u16, path: &str) -> (u16, Value) {
    let mut resp = awc::Client::default()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.body().await.unwrap();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path} answered non-JSON ({e}): {body:?}"));
    (status, json)
}

/// Polls `check` until it holds; fails the test after a generous deadline
/// (this waits for work to happen, it does not measure speed).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let limit = Duration::from_secs(60);
    test_support::wait_until(what, limit, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await;
}
