//! `Idempotency-Key` end to end: the gateway, the real RabbitMQ (a vhost per
//! test) and the real billing-worker on a PostgreSQL database of its own, so
//! "one order" is counted in rows, not in messages.

use std::collections::HashSet;

use crate::support::orders::{amount, Worker};
use crate::support::rabbit::{self, Vhost};
use crate::support::{gateway_behind_relay, ready_gateway, send, Reply, TestApp};
use actix_web::http::{Method, StatusCode};
use api_gateway::billing::order_id_for_key;
use serde_json::{json, Value};
use uuid::Uuid;

/// A vhost, a worker consuming it and a ready gateway publishing to it.
async fn system() -> (Vhost, Worker, TestApp) {
    let vhost = rabbit::vhost();
    let worker = Worker::start(&vhost.name).await;
    let gateway = ready_gateway(&vhost).await;
    (vhost, worker, gateway)
}

async fn post_with_key(gateway: &TestApp, key: &str, body: &Value) -> Reply {
    gateway.order_with_key(key, body).await
}

#[track_caller]
fn accepted(reply: &Reply) -> Uuid {
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["status"], "queued", "{body}");
    Uuid::parse_str(body["order_id"].as_str().unwrap()).unwrap()
}

fn key() -> String {
    format!("key-{}", Uuid::new_v4())
}

#[actix_web::test]
async fn fifty_concurrent_tries_of_one_key_give_one_order_id_and_one_row() {
    let (_vhost, worker, gateway) = system().await;

    let key = key();
    let body = json!({"user_id": "u-50", "number_of_items": 3, "total_amount": "12.50"});
    let replies =
        futures_util::future::join_all((0..50).map(|_| post_with_key(&gateway, &key, &body))).await;
    let ids: HashSet<Uuid> = replies.iter().map(accepted).collect();
    assert_eq!(ids.len(), 1, "one key gave several order ids: {ids:?}");
    let id = *ids.iter().next().unwrap();
    assert_eq!(id, order_id_for_key("u-50", &key));
    assert_eq!(id.get_version_num(), 5);

    worker.wait_settled(50).await;
    assert_eq!(worker.counter("stored").await, 1);
    assert_eq!(worker.counter("duplicates_skipped").await, 49);
    assert_eq!(
        worker.rows(),
        vec![(id, "u-50".to_owned(), 3, amount("12.50"))]
    );
    // The same body in another notation is the same order too.
    let again = post_with_key(
        &gateway,
        &key,
        &json!({"user_id": " u-50 ", "number_of_items": "3", "total_amount": 12.5}),
    )
    .await;
    assert_eq!(accepted(&again), id);
    worker.wait_settled(51).await;
    assert_eq!(worker.rows().len(), 1);
    worker.stop().await;
}

#[actix_web::test]
async fn a_key_whose_first_try_timed_out_is_stored_once_when_retried() {
    let vhost = rabbit::vhost();
    let worker = Worker::start(&vhost.name).await;
    let (relay, gateway) = gateway_behind_relay(&vhost, 500).await;

    let key = key();
    let body = json!({"user_id": "u-504", "number_of_items": 1, "total_amount": "9.99"});
    let id = order_id_for_key("u-504", &key);
    // The broker's answers (the confirm among them) are held back: 504, and
    // the message may or may not have reached the queue (here it has).
    relay.set_paused(true);
    let first = post_with_key(&gateway, &key, &body).await;
    first.assert_error(504, "broker_timeout", None);
    assert!(
        first.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&id.to_string()),
        "{first:?}"
    );
    relay.set_paused(false);

    // The client retries, as clients do after a timeout, until it gets 200.
    let retried = crate::support::wait_for("the retry to be accepted", || async {
        let reply = post_with_key(&gateway, &key, &body).await;
        (reply.status == StatusCode::OK).then(|| accepted(&reply))
    })
    .await;
    assert_eq!(retried, id);
    worker.wait_settled(2).await;
    assert_eq!(worker.counter("stored").await, 1);
    assert_eq!(
        worker.rows(),
        vec![(id, "u-504".to_owned(), 1, amount("9.99"))]
    );
    worker.stop().await;
}

#[actix_web::test]
async fn a_key_reused_with_another_body_keeps_the_first_order_and_dead_letters_the_second() {
    let (vhost, worker, gateway) = system().await;

    let key = key();
    let first = json!({"user_id": "u-reuse", "number_of_items": 1, "total_amount": "10.00"});
    let second = json!({"user_id": "u-reuse", "number_of_items": 2, "total_amount": "20.00"});
    let id = accepted(&post_with_key(&gateway, &key, &first).await);
    worker.wait_settled(1).await;
    // The stateless gateway cannot tell: it answers 200 with the same id,
    // which is how the client can see that the key named an existing order.
    assert_eq!(accepted(&post_with_key(&gateway, &key, &second).await), id);
    worker.wait_settled(2).await;

    assert_eq!(worker.counter("dead_lettered").await, 1);
    assert_eq!(
        worker.rows(),
        vec![(id, "u-reuse".to_owned(), 1, amount("10.00"))]
    );
    // The second order is not lost: it waits in the dead-letter queue.
    let (status, dlq) = rabbit::mgmt(
        Method::POST,
        &format!("/queues/{}/billing_queue.dlq/get", vhost.name),
        Some(json!({"count": 10, "ackmode": "ack_requeue_true", "encoding": "auto"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{dlq}");
    let messages = dlq.as_array().unwrap();
    assert_eq!(messages.len(), 1, "{dlq}");
    let dead: Value = serde_json::from_str(messages[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(dead["order_id"], id.to_string());
    assert_eq!(dead["number_of_items"], 2);
    assert_eq!(dead["total_amount"], "20.00");
    worker.stop().await;
}

#[actix_web::test]
async fn keys_are_scoped_per_user_and_without_a_key_every_order_is_new() {
    let (_vhost, worker, gateway) = system().await;

    let key = key();
    let body = |user: &str| json!({"user_id": user, "number_of_items": 1, "total_amount": 1});
    let a = accepted(&post_with_key(&gateway, &key, &body("alice")).await);
    let b = accepted(&post_with_key(&gateway, &key, &body("bob")).await);
    assert_ne!(a, b);
    let plain: Vec<Uuid> = [
        gateway.order(&body("carol")).await,
        gateway.order(&body("carol")).await,
    ]
    .iter()
    .map(accepted)
    .collect();
    assert_ne!(plain[0], plain[1]);
    assert!(plain.iter().all(|id| id.get_version_num() == 4));

    worker.wait_settled(4).await;
    let counts = worker.row_counts();
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    worker.stop().await;
}

#[actix_web::test]
async fn a_bad_idempotency_key_is_400_naming_the_header_and_queues_nothing() {
    let vhost = rabbit::vhost();
    let gateway = ready_gateway(&vhost).await;
    let body = serde_json::to_vec(&crate::support::valid_order()).unwrap();
    let too_long = "k".repeat(256);
    let bad: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        too_long.into_bytes(),
        b"with space".to_vec(),
        b"tab\there".to_vec(),
        "caf\u{e9}".as_bytes().to_vec(),
    ];
    for value in bad {
        let header = actix_web::http::header::HeaderValue::from_bytes(&value).unwrap();
        let req = gateway
            .request(Method::POST, "/api/billing")
            .insert_header(("content-type", "application/json"))
            .insert_header(("idempotency-key", header));
        send(req, Some(body.clone())).await.assert_error(
            400,
            "validation_failed",
            Some("Idempotency-Key"),
        );
    }
    // Two keys on one request: which one would be meant?
    let req = gateway
        .request(Method::POST, "/api/billing")
        .insert_header(("content-type", "application/json"))
        .append_header(("idempotency-key", "a"))
        .append_header(("idempotency-key", "b"));
    send(req, Some(body.clone())).await.assert_error(
        400,
        "validation_failed",
        Some("Idempotency-Key"),
    );
    // The longest key, and every visible ASCII character, are fine.
    let longest = "k".repeat(255);
    accepted(&post_with_key(&gateway, &longest, &crate::support::valid_order()).await);
    let visible: String = (0x21u8..=0x7e).map(char::from).collect();
    accepted(&post_with_key(&gateway, &visible, &crate::support::valid_order()).await);
    assert_eq!(rabbit::drain(&vhost.name).await.len(), 2);
}
