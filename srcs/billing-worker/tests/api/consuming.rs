//! The normal path: what is published gets stored once and acked; what can
//! never be an order goes to the dead-letter queue.

use crate::support::{
    assert_stored_and_drained, config, eventually, no_worker_yet, order, run_a_worker_until_stored,
    spawn_app, system, OrdersDb,
};
use bigdecimal::BigDecimal;
use diesel::prelude::*;
use lapin::types::ShortString;
use lapin::BasicProperties;
use serde_json::Value;
use std::collections::HashSet;
use std::str::FromStr;
use uuid::Uuid;

#[actix_web::test]
async fn an_order_published_like_the_gateway_does_is_stored_once_and_acked() {
    let (db, _vhost, publisher, worker) = system().await;

    let o = order("user-20", 99, "250.00");
    publisher.publish_order(&o, "req-abc").await;
    eventually("the order to be stored", || async { db.count() == 1 }).await;

    worker.stop().await;
    assert_eq!(
        db.rows(),
        vec![(
            o.order_id,
            "user-20".to_owned(),
            99,
            BigDecimal::from_str("250.00").unwrap()
        )]
    );
    // With the worker gone, an unacked message would be back in the queue.
    assert_eq!(publisher.queued().await, 0);
    assert_eq!(publisher.dead_lettered().await, 0);
}

#[actix_web::test]
async fn the_same_order_id_published_twice_makes_one_row() {
    let (db, _vhost, publisher, worker) = system().await;

    // The gateway's message, twice (a publisher retry or a redelivery).
    let o = order("u1", 1, "10");
    publisher.publish_order(&o, "req-1").await;
    publisher.publish_order(&o, "req-1").await;
    // A hand-made message whose only id is the AMQP message id, twice.
    let by_message_id = Uuid::new_v4();
    let props =
        || BasicProperties::default().with_message_id(ShortString::from(by_message_id.to_string()));
    let body = br#"{"user_id":"u2","number_of_items":2,"total_amount":"3.5"}"#;
    publisher.publish_raw(body, props()).await;
    publisher.publish_raw(body, props()).await;

    eventually("all four messages to be handled", || async {
        worker.counter("stored").await + worker.counter("duplicates_skipped").await == 4
    })
    .await;
    worker.stop().await;

    let rows = db.rows();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().any(|r| r.0 == o.order_id));
    assert!(rows
        .iter()
        .any(|r| r.0 == by_message_id && r.3 == BigDecimal::from_str("3.50").unwrap()));
    assert_eq!(publisher.queued().await, 0);
}

#[actix_web::test]
async fn a_hand_published_message_without_any_id_and_string_values_is_stored() {
    let (db, _vhost, publisher, worker) = system().await;

    // As RabbitMQ's UI sends it: no properties at all, values as strings.
    publisher
        .publish_raw(
            br#"{"user_id":"42","number_of_items":"3","total_amount":"19.9"}"#,
            BasicProperties::default(),
        )
        .await;
    eventually("the order to be stored", || async { db.count() == 1 }).await;
    worker.stop().await;

    let rows = db.rows();
    let (id, user, items, amount) = &rows[0];
    assert_eq!(id.get_version_num(), 4, "a fresh v4 id is generated");
    assert_eq!(user, "42");
    assert_eq!(*items, 3);
    assert_eq!(amount.to_string(), "19.90");
    assert_eq!(publisher.queued().await, 0);
}

#[actix_web::test]
async fn malformed_messages_are_dead_lettered_and_good_ones_stored() {
    let (db, _vhost, publisher, worker) = system().await;

    let good = [order("a", 1, "1"), order("b", 2, "2"), order("c", 3, "3")];
    let bad: [&[u8]; 6] = [
        b"not json at all",
        br#"[1,2,3]"#,
        br#"{"user_id":"","number_of_items":1,"total_amount":1}"#,
        br#"{"user_id":"x","number_of_items":0,"total_amount":1}"#,
        br#"{"user_id":"x","number_of_items":1,"total_amount":"-5"}"#,
        br#"{"order_id":"nope","user_id":"x","number_of_items":1,"total_amount":1}"#,
    ];
    publisher.publish_order(&good[0], "r0").await;
    for body in &bad[..3] {
        publisher
            .publish_raw(body, BasicProperties::default())
            .await;
    }
    publisher.publish_order(&good[1], "r1").await;
    for body in &bad[3..] {
        publisher
            .publish_raw(body, BasicProperties::default())
            .await;
    }
    publisher.publish_order(&good[2], "r2").await;

    eventually("bad messages in the dead-letter queue", || async {
        publisher.dead_lettered().await == 6
    })
    .await;
    eventually("good orders stored", || async { db.count() == 3 }).await;

    // The worker is still consuming: a later order goes through too.
    assert_eq!(worker.ready().await.0, 200);
    let later = order("d", 4, "4");
    publisher.publish_order(&later, "r3").await;
    eventually("the later order to be stored", || async { db.count() == 4 }).await;
    assert_eq!(worker.counter("dead_lettered").await, 6);
    worker.stop().await;

    let stored: HashSet<Uuid> = db.rows().into_iter().map(|r| r.0).collect();
    let expected: HashSet<Uuid> = good.iter().chain([&later]).map(|o| o.order_id).collect();
    assert_eq!(stored, expected);
    assert_eq!(publisher.queued().await, 0);
}

#[actix_web::test]
async fn a_row_the_database_refuses_is_dead_lettered_without_blocking_the_others() {
    let (db, vhost, publisher) = no_worker_yet().await;
    // Small batches, so the refused order shares a batch with good ones.
    let worker = spawn_app(config(&db, &vhost, 10, 10));
    worker.wait_ready().await;
    // A rule the shared validation knows nothing about.
    diesel::sql_query("ALTER TABLE orders ADD CONSTRAINT no_evil CHECK (user_id <> 'evil')")
        .execute(&mut db.conn())
        .unwrap();

    let orders = [
        order("good-1", 1, "1"),
        order("evil", 1, "1"),
        order("good-2", 1, "1"),
    ];
    for o in &orders {
        publisher.publish_order(o, "r").await;
    }
    eventually("the refused order to be dead-lettered", || async {
        publisher.dead_lettered().await == 1
    })
    .await;
    eventually("the good orders to be stored", || async { db.count() == 2 }).await;
    worker.stop().await;

    let users: HashSet<String> = db.rows().into_iter().map(|r| r.1).collect();
    assert_eq!(
        users,
        HashSet::from(["good-1".to_owned(), "good-2".to_owned()])
    );
    assert_eq!(publisher.queued().await, 0);
}

#[actix_web::test]
async fn a_backlog_published_before_the_worker_starts_is_drained() {
    let (db, vhost, publisher) = no_worker_yet().await;
    let ids = publisher.publish_orders(3_000).await;
    assert_eq!(publisher.queued().await, 3_000);

    run_a_worker_until_stored(&db, &vhost, "the backlog to be stored", 3_000).await;

    assert_stored_and_drained(&db, &publisher, ids).await;
}

/// An order id stored already with other content (what an Idempotency-Key
/// reused with another body gives): the first order stays, the other goes to
/// the dead-letter queue, in one batch or across batches.
#[actix_web::test]
async fn an_order_id_reused_with_other_content_is_dead_lettered_not_dropped() {
    let (db, vhost, publisher) = no_worker_yet().await;

    let first = order("u1", 1, "10.00");
    let mut other = first.clone();
    other.number_of_items = 2;
    let mut other_amount = first.clone();
    other_amount.total_amount = "10.01".to_owned();
    // Published before the worker starts, so all of them form one batch.
    publisher.publish_order(&first, "req-1").await;
    publisher.publish_order(&other, "req-2").await;
    publisher.publish_order(&first, "req-3").await;
    let worker = spawn_app(config(&db, &vhost, 1000, 500));
    worker.wait_ready().await;
    eventually("the first batch to be settled", || async {
        publisher.dead_lettered().await == 1
    })
    .await;
    // And in a later batch of its own.
    publisher.publish_order(&other_amount, "req-4").await;
    eventually(
        "the later conflicting order to be dead-lettered",
        || async { publisher.dead_lettered().await == 2 },
    )
    .await;
    eventually("the counters", || async {
        worker.counter("dead_lettered").await == 2
            && worker.counter("stored").await == 1
            && worker.counter("duplicates_skipped").await == 1
    })
    .await;
    worker.stop().await;

    let rows = db.rows();
    assert_eq!(
        rows,
        vec![(
            first.order_id,
            "u1".to_owned(),
            1,
            BigDecimal::from_str("10.00").unwrap()
        )]
    );
    assert_eq!(publisher.queued().await, 0);
    let dead: Vec<Value> = publisher
        .drain_queue(common::topology::DEAD_LETTER_QUEUE)
        .await
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0]["number_of_items"], 2);
    assert_eq!(dead[1]["total_amount"], "10.01");
}
