//! Dependencies failing: the database missing or going away, the broker
//! connection cut, and a stop in the middle of work. Nothing acked is lost,
//! nothing unstored is acked, and the worker recovers by itself.

use crate::support::{
    assert_stored_and_drained, config, eventually, order, run_a_worker_until_stored, spawn_app,
    system, system_with, test_db_named, test_vhost, OrdersDb, Publisher, TestDb,
};
use billing_worker::consumer::CONNECTION_NAME;
use diesel::connection::SimpleConnection;
use std::collections::HashSet;
use uuid::Uuid;

/// Holds the orders table locked, publishes `n` orders and waits until the
/// worker's first batch is stuck inside its insert. Committing (or dropping)
/// the returned connection lets it go on.
async fn stuck_in_an_insert(
    db: &TestDb,
    publisher: &Publisher,
    n: usize,
) -> (diesel::PgConnection, Vec<Uuid>) {
    let mut locker = db.conn();
    locker
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let ids = publisher.publish_orders(n).await;
    eventually("the worker's insert to wait for the lock", || async {
        db.sessions_waiting_for_a_lock() >= 1
    })
    .await;
    (locker, ids)
}

fn ids_in(bodies: &[Vec<u8>]) -> HashSet<Uuid> {
    bodies
        .iter()
        .map(|b| {
            common::order::parse_order(b)
                .unwrap()
                .order_id
                .expect("published with an id")
        })
        .collect()
}

#[actix_web::test]
async fn with_the_database_missing_at_start_nothing_is_taken_until_it_exists() {
    let db = test_db_named();
    let vhost = test_vhost();
    let publisher = Publisher::connect(&vhost).await;
    let worker = spawn_app(config(&db, &vhost, 1000, 500));
    let ids = publisher.publish_orders(20).await;

    eventually("the worker to have retried the database", || async {
        worker.counter("database_retries").await >= 2
    })
    .await;
    let (status, body) = worker.ready().await;
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["postgres"], "down");
    assert_eq!(
        publisher.queued().await,
        20,
        "nothing taken while the database is missing"
    );

    db.create_now();
    eventually("the orders to be stored", || async { db.count() == 20 }).await;
    worker.stop().await;
    assert_stored_and_drained(&db, &publisher, ids).await;
}

#[actix_web::test]
async fn a_database_outage_while_consuming_holds_the_orders_and_stores_them_when_it_ends() {
    let (db, _vhost, publisher, worker) = system().await;

    db.block();
    let ids = publisher.publish_orders(50).await;
    eventually("the worker to be retrying the store", || async {
        worker.counter("database_retries").await >= 3
    })
    .await;
    assert_eq!(worker.ready().await.1["checks"]["postgres"], "down");
    assert_eq!(worker.counter("stored").await, 0);

    db.unblock();
    eventually("the held orders to be stored", || async {
        db.count() == 50
    })
    .await;
    worker.stop().await;

    assert_stored_and_drained(&db, &publisher, ids).await;
}

#[actix_web::test]
async fn stopping_during_a_database_outage_acks_nothing_and_loses_nothing() {
    let (db, vhost, publisher, worker) = system().await;

    db.block();
    let ids = publisher.publish_orders(30).await;
    eventually("the worker to be retrying the store", || async {
        worker.counter("database_retries").await >= 1
    })
    .await;
    worker.stop().await;
    // Every message is back in the queue: none was acked.
    assert_eq!(publisher.queued().await, 30);

    db.unblock();
    run_a_worker_until_stored(&db, &vhost, "the orders to be stored", 30).await;
    assert_stored_and_drained(&db, &publisher, ids).await;
}

#[actix_web::test]
async fn a_graceful_stop_acks_the_batch_in_flight_and_leaves_the_rest_queued() {
    let (db, _vhost, publisher, worker) = system_with(5, 5).await;

    let (mut locker, ids) = stuck_in_an_insert(&db, &publisher, 20).await;

    // Stop while that batch is in flight, then let it commit.
    let stopping = actix_web::rt::spawn(worker.stop());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    locker.batch_execute("COMMIT").unwrap();
    stopping.await.unwrap();

    // The batch in flight (1 to 5 orders, depending on what had arrived when
    // it was taken) is stored and acked; everything else, prefetched or not,
    // is back in the queue.
    let stored: HashSet<Uuid> = db.rows().into_iter().map(|r| r.0).collect();
    assert!((1..=5).contains(&stored.len()), "{} stored", stored.len());
    let queued = ids_in(&publisher.drain().await);
    assert_eq!(
        stored.len() + queued.len(),
        20,
        "nothing lost, nothing twice"
    );
    assert!(stored.is_disjoint(&queued), "what is stored was acked");
    let all: HashSet<Uuid> = stored.union(&queued).copied().collect();
    assert_eq!(all, ids.into_iter().collect::<HashSet<_>>());
}

#[actix_web::test]
async fn a_store_stuck_past_the_grace_period_is_abandoned_and_its_messages_stay_queued() {
    let (db, vhost, publisher, worker) = system_with(5, 5).await;

    let (mut locker, ids) = stuck_in_an_insert(&db, &publisher, 20).await;

    // The lock outlives the grace period: the stop must not wait for it.
    worker.stop().await;
    assert_eq!(publisher.queued().await, 20, "nothing was acked");

    locker.batch_execute("COMMIT").unwrap();
    run_a_worker_until_stored(&db, &vhost, "every order to be stored", 20).await;
    assert_stored_and_drained(&db, &publisher, ids).await;
}

#[actix_web::test]
async fn a_connection_closed_by_the_broker_is_reopened_and_consuming_resumes() {
    let (db, vhost, publisher, worker) = system().await;
    let first = publisher.publish_orders(10).await;
    eventually("the first orders to be stored", || async {
        db.count() == 10
    })
    .await;

    // The management API lists connections a few seconds after they open.
    let name = std::cell::RefCell::new(None);
    eventually("the worker's connection to be listed", || async {
        let found = vhost
            .connections()
            .into_iter()
            .find(|(_, client)| client == CONNECTION_NAME)
            .map(|(name, _)| name);
        let listed = found.is_some();
        *name.borrow_mut() = found;
        listed
    })
    .await;
    let name = name.into_inner().unwrap();
    vhost.close_connection(&name);
    eventually("the worker to reconnect", || async {
        worker.counter("rabbitmq_reconnects").await >= 1 && worker.ready().await.0 == 200
    })
    .await;

    let second = publisher.publish_orders(10).await;
    eventually("the later orders to be stored", || async {
        db.count() == 20
    })
    .await;
    worker.stop().await;
    let stored: HashSet<Uuid> = db.rows().into_iter().map(|r| r.0).collect();
    assert_eq!(
        stored,
        first.into_iter().chain(second).collect::<HashSet<_>>()
    );
    assert_eq!(publisher.queued().await, 0);
}

#[actix_web::test]
async fn orders_published_while_the_worker_is_stopped_appear_once_when_it_starts() {
    // The user's demo: orders published meanwhile wait in the queue, then
    // appear exactly once.
    let (db, vhost, publisher, worker) = system().await;
    let before = publisher.publish_orders(5).await;
    eventually("the first orders to be stored", || async {
        db.count() == 5
    })
    .await;
    worker.stop().await;

    let o = order("while-stopped", 2, "7.00");
    publisher.publish_order(&o, "req-stopped").await;
    assert_eq!(db.count(), 5);
    assert_eq!(publisher.queued().await, 1);

    run_a_worker_until_stored(&db, &vhost, "the waiting order to be stored", 6).await;
    let stored: HashSet<Uuid> = db.rows().into_iter().map(|r| r.0).collect();
    assert_eq!(
        stored,
        before
            .into_iter()
            .chain([o.order_id])
            .collect::<HashSet<_>>()
    );
    assert_eq!(publisher.queued().await, 0);
}

/// (connection name, channel number) of every consumer on billing_queue.
fn billing_consumers(vhost: &crate::support::TestVhost) -> Vec<(String, u64)> {
    let (status, list) = vhost.mgmt("GET", "/consumers/{vhost}", None);
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .filter(|c| c["queue"]["name"] == "billing_queue")
        .map(|c| {
            let channel = &c["channel_details"];
            (
                channel["connection_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                channel["number"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// An idle worker swaps its channel for a fresh one on the same connection
/// (`IDLE_RENEW`: a quorum queue's consumer left holding deliveries it
/// never receives gets them back to the queue that way), and goes on
/// consuming on it.
#[actix_web::test]
async fn an_idle_worker_renews_its_channel_and_goes_on_consuming() {
    let (db, vhost, publisher, worker) = system().await;
    let first = publisher.publish_orders(3).await;
    eventually("the first orders to be stored", || async {
        db.count() == 3
    })
    .await;
    let before = std::cell::RefCell::new(Vec::new());
    eventually("the worker's consumer to be listed", || async {
        *before.borrow_mut() = billing_consumers(&vhost);
        before.borrow().len() == 1
    })
    .await;
    let (connection, channel) = before.into_inner().remove(0);

    tokio::time::sleep(billing_worker::consumer::IDLE_RENEW + std::time::Duration::from_secs(3))
        .await;
    eventually("the consumer on a fresh channel", || async {
        let now = billing_consumers(&vhost);
        // Shown if the wait fails: what the broker lists instead.
        eprintln!("billing_queue's consumers: {now:?}; before: {connection:?} channel {channel}");
        now.len() == 1 && now[0].0 == connection && now[0].1 != channel
    })
    .await;
    assert_eq!(
        worker.counter("rabbitmq_reconnects").await,
        0,
        "the same connection"
    );

    let second = publisher.publish_orders(3).await;
    eventually("the later orders to be stored", || async {
        db.count() == 6
    })
    .await;
    worker.stop().await;
    let stored: HashSet<Uuid> = db.rows().into_iter().map(|r| r.0).collect();
    assert_eq!(
        stored,
        first.into_iter().chain(second).collect::<HashSet<_>>()
    );
    assert_eq!(publisher.queued().await, 0);
}
