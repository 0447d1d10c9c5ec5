//! The worker's metrics page (on its loopback health listener): promtool
//! accepts it, and after a run with duplicates, a poison message and a
//! restart its counters equal what the database and the dead-letter queue
//! hold.

use crate::support::*;
use lapin::BasicProperties;
use test_support::metrics::{must, promtool_check};

async fn page(worker: &TestApp) -> String {
    let mut resp = awc::Client::default()
        .get(format!("http://127.0.0.1:{}/metrics", worker.port))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.body().limit(1 << 20).await.unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

#[actix_web::test]
async fn counters_equal_the_rows_after_duplicates_a_poison_message_and_a_restart() {
    let (db, vhost, publisher) = no_worker_yet().await;

    // Queued before the worker runs, so they come in batches of up to 50.
    let first: Vec<_> = (0..120)
        .map(|i| order(&format!("u{i}"), 1, "9.99"))
        .collect();
    for (i, o) in first.iter().enumerate() {
        publisher.publish_order(o, &format!("req-{i}")).await;
    }
    // Ten of them again (a publisher's retry), and a poison message.
    for o in &first[..10] {
        publisher.publish_order(o, "again").await;
    }
    publisher
        .publish_raw(b"{\"user_id\": ", BasicProperties::default())
        .await;

    let worker = spawn_app(config(&db, &vhost, 100, 50));
    eventually("every message to be handled", || async {
        let p = page(&worker).await;
        must(&p, "billing_orders_stored_total") + must(&p, "billing_duplicates_skipped_total")
            == 130.0
            && must(&p, "billing_dead_lettered_total") == 1.0
    })
    .await;
    let p = page(&worker).await;
    promtool_check(&p);
    assert_eq!(must(&p, "billing_orders_stored_total"), db.count() as f64);
    assert_eq!(must(&p, "billing_orders_stored_total"), 120.0);
    assert_eq!(must(&p, "billing_duplicates_skipped_total"), 10.0);
    assert_eq!(must(&p, "billing_dead_lettered_total"), 1.0);
    assert_eq!(publisher.dead_lettered().await, 1);
    assert_eq!(must(&p, "billing_consuming"), 1.0);
    assert_eq!(must(&p, "billing_order_age_seconds_count"), 120.0);
    // 131 deliveries, at most 50 per batch.
    assert_eq!(must(&p, "billing_batch_size_sum"), 131.0);
    assert!(must(&p, "billing_batch_size_count") >= 3.0, "{p}");
    assert!(
        must(&p, "billing_batch_commit_duration_seconds_count") >= 3.0,
        "{p}"
    );
    assert_eq!(must(&p, "db_pool_max_connections"), 3.0);
    assert!(
        p.contains(r#"build_info{service="billing-worker",version=""#),
        "{p}"
    );
    worker.stop().await;

    // A new process starts from zero and counts only its own work.
    let worker = spawn_app(config(&db, &vhost, 100, 50));
    worker.wait_ready().await;
    let more: Vec<_> = (0..7).map(|i| order(&format!("v{i}"), 2, "1")).collect();
    for o in &more {
        publisher.publish_order(o, "later").await;
    }
    publisher.publish_order(&first[0], "late duplicate").await;
    eventually("the new messages to be handled", || async {
        let p = page(&worker).await;
        must(&p, "billing_orders_stored_total") + must(&p, "billing_duplicates_skipped_total")
            == 8.0
    })
    .await;
    let p = page(&worker).await;
    assert_eq!(must(&p, "billing_orders_stored_total"), 7.0);
    assert_eq!(must(&p, "billing_duplicates_skipped_total"), 1.0);
    assert_eq!(db.count(), 127);
    worker.stop().await;
}
