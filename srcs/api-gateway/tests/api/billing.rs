//! `POST /api/billing` against the real RabbitMQ, each test on a vhost of its
//! own; the queue is read back with basic_get.

use std::collections::HashSet;

use crate::support::rabbit;
use crate::support::relay::Relay;
use crate::support::{
    closed_port, gateway_behind_relay, gateway_on, ready_gateway, send, valid_order, wait_for,
    Reply, TestApp,
};
use actix_web::http::{Method, StatusCode};
use common::order::OrderMessage;
use serde_json::{json, Value};
use test_support::orders::body_with;
use uuid::Uuid;

#[track_caller]
fn accepted_id(reply: &Reply) -> Uuid {
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.content_type(), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["message"], "Order queued for processing", "{body}");
    assert_eq!(body["status"], "queued", "{body}");
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    let id = Uuid::parse_str(body["order_id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 4);
    id
}

/// One valid order now is accepted, and is then the only message in the
/// queue (nothing before it was published).
async fn assert_only_message_is_one_good_order(gateway: &TestApp, vhost: &str) {
    let order_id = accepted_id(&gateway.order(&valid_order()).await);
    assert_eq!(ids(&rabbit::drain(vhost).await), vec![order_id]);
}

fn ids(messages: &[lapin::message::Delivery]) -> Vec<Uuid> {
    messages
        .iter()
        .map(|m| rabbit::order_of(m).order_id)
        .collect()
}

#[actix_web::test]
async fn confirmed_order_is_queued_persistent_with_its_properties() {
    let vhost = rabbit::vhost();
    let gateway = ready_gateway(&vhost).await;
    let client_id = Uuid::new_v4();
    let req = gateway
        .request(Method::POST, "/api/billing")
        .insert_header(("content-type", "application/json"))
        .insert_header(("x-request-id", "order-request-1"));
    let body = json!({
        "order_id": client_id.to_string(),
        "user_id": "20",
        "number_of_items": "99",
        "total_amount": "250",
        "ignored": true
    });
    let reply = send(req, Some(serde_json::to_vec(&body).unwrap())).await;
    let order_id = accepted_id(&reply);
    assert_ne!(order_id, client_id, "a client-sent order_id was used");
    assert_eq!(reply.header("x-request-id"), Some("order-request-1"));

    let messages = rabbit::drain(&vhost.name).await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(
        rabbit::order_of(message),
        OrderMessage {
            order_id,
            user_id: "20".to_owned(),
            number_of_items: 99,
            total_amount: "250.00".to_owned(),
        }
    );
    let props = &message.properties;
    assert_eq!(*props.delivery_mode(), Some(2), "not persistent");
    assert_eq!(
        props.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    let order_text = order_id.to_string();
    assert_eq!(
        props.message_id().as_ref().map(|s| s.as_str()),
        Some(order_text.as_str())
    );
    assert_eq!(
        props.app_id().as_ref().map(|s| s.as_str()),
        Some("api-gateway")
    );
    assert!(props.timestamp().is_some_and(|t| t > 1_600_000_000));
    assert_eq!(
        rabbit::header_of(message, "x-request-id").as_deref(),
        Some("order-request-1")
    );
}

#[actix_web::test]
async fn numbers_are_accepted_money_stays_exact_and_trailing_slash_works() {
    let vhost = rabbit::vhost();
    let gateway = ready_gateway(&vhost).await;
    let reply = gateway
        .post_json(
            "/api/billing/",
            &json!({"user_id": 7, "number_of_items": 3, "total_amount": 0.1}),
        )
        .await;
    let order_id = accepted_id(&reply);
    let messages = rabbit::drain(&vhost.name).await;
    assert_eq!(messages.len(), 1);
    let order = rabbit::order_of(&messages[0]);
    assert_eq!(order.order_id, order_id);
    assert_eq!(order.user_id, "7");
    assert_eq!(order.total_amount, "0.10");
    // The generated request id travels with the message.
    assert_eq!(
        rabbit::header_of(&messages[0], "x-request-id").as_deref(),
        reply.header("x-request-id")
    );
}

#[actix_web::test]
async fn invalid_orders_name_the_field_and_queue_nothing() {
    let vhost = rabbit::vhost();
    let gateway = ready_gateway(&vhost).await;
    // A valid order with one field changed (or left out when None): 400
    // naming that field.
    let invalid: [(&str, Option<&str>); 15] = [
        ("user_id", None),
        ("user_id", Some(r#""""#)),
        ("user_id", Some("true")),
        // Invisible or bidirectional-override characters (category Cf), as
        // JSON escapes and as raw UTF-8, and an id that shows nothing.
        ("user_id", Some(r#""\u200b""#)),
        ("user_id", Some("\"alice\u{202E}gnp.exe\"")),
        ("user_id", Some("\"\u{2066}bob\u{2069}\"")),
        ("user_id", Some(r#""\u3164""#)),
        ("number_of_items", None),
        ("number_of_items", Some("0")),
        ("number_of_items", Some(r#""2.5""#)),
        ("total_amount", None),
        ("total_amount", Some("-1")),
        ("total_amount", Some(r#""1.234""#)),
        ("total_amount", Some(r#""1e3""#)),
        ("order_id", Some(r#""nope""#)),
    ];
    let mut cases: Vec<(String, &str, Option<&str>)> = invalid
        .into_iter()
        .map(|(field, value)| (body_with(field, value), "validation_failed", Some(field)))
        .collect();
    for body in ["", "not json", "[1,2]", r#"{"user_id":"#] {
        cases.push((body.to_owned(), "invalid_json", None));
    }
    for (body, code, field) in cases {
        let req = gateway
            .request(Method::POST, "/api/billing")
            .insert_header(("content-type", "application/json"));
        let reply = send(req, Some(body.as_bytes().to_vec())).await;
        reply.assert_error(400, code, field);
    }
    // One good order afterwards: it must be the only message.
    assert_only_message_is_one_good_order(&gateway, &vhost.name).await;
}

#[actix_web::test]
async fn wrong_content_type_is_415_and_oversized_body_is_413() {
    let vhost = rabbit::vhost();
    let gateway = ready_gateway(&vhost).await;
    let body = serde_json::to_vec(&valid_order()).unwrap();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = gateway.request(Method::POST, "/api/billing");
        if let Some(ct) = content_type {
            req = req.insert_header(("content-type", ct));
        }
        send(req, Some(body.clone()))
            .await
            .assert_error(415, "unsupported_media_type", None);
    }
    // `application/json` with parameters is still JSON.
    let req = gateway
        .request(Method::POST, "/api/billing")
        .insert_header(("content-type", "application/json; charset=utf-8"));
    let good = accepted_id(&send(req, Some(body)).await);

    let mut huge = valid_order();
    huge["padding"] = Value::String("x".repeat(api_gateway::billing::MAX_ORDER_BODY));
    gateway
        .order(&huge)
        .await
        .assert_error(413, "payload_too_large", None);
    assert_eq!(ids(&rabbit::drain(&vhost.name).await), vec![good]);
}

#[actix_web::test]
async fn wrong_method_on_billing_is_405() {
    let vhost = rabbit::vhost();
    let gateway = gateway_on(&vhost, closed_port()).await;
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        send(gateway.request(method, "/api/billing"), None)
            .await
            .assert_error(405, "method_not_allowed", None);
    }
}

#[actix_web::test]
async fn order_sent_before_any_worker_ran_is_kept_in_a_durable_queue() {
    let vhost = rabbit::vhost();
    let queue_path = format!("/queues/{}/billing_queue", vhost.name);
    let (status, _) = rabbit::mgmt(Method::GET, &queue_path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the queue exists already");

    let gateway = ready_gateway(&vhost).await;
    let (status, queue) = rabbit::mgmt(Method::GET, &queue_path, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the gateway did not declare the queue"
    );
    assert_eq!(queue["durable"], true, "{queue}");
    assert_eq!(
        queue["arguments"]["x-dead-letter-exchange"],
        "billing_queue.dlx"
    );
    assert_eq!(queue["consumer_details"], json!([]), "{queue}");

    assert_only_message_is_one_good_order(&gateway, &vhost.name).await;
}

#[actix_web::test]
async fn two_hundred_concurrent_orders_are_all_confirmed_and_queued_once() {
    let vhost = rabbit::vhost();
    let gateway = ready_gateway(&vhost).await;
    let replies = futures_util::future::join_all((0..200).map(|i| {
        let gateway = &gateway;
        async move {
            gateway
                .order(&json!({"user_id": i, "number_of_items": 1, "total_amount": "1.00"}))
                .await
        }
    }))
    .await;
    let accepted: HashSet<Uuid> = replies.iter().map(accepted_id).collect();
    assert_eq!(accepted.len(), 200);

    let queued = ids(&rabbit::drain(&vhost.name).await);
    assert_eq!(queued.len(), 200, "duplicates or losses");
    assert_eq!(queued.into_iter().collect::<HashSet<_>>(), accepted);
}

#[actix_web::test]
async fn unreachable_broker_is_503_at_once_and_the_gateway_still_serves() {
    let vhost = rabbit::vhost();
    let gateway = gateway_on(&vhost, closed_port()).await;
    let health = gateway.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);

    let reply = gateway.order(&valid_order()).await;
    reply.assert_error(503, "broker_unavailable", None);
    assert!(reply.header("retry-after").is_some());
    // Validation still comes first.
    gateway.order(&json!({"user_id": 1})).await.assert_error(
        400,
        "validation_failed",
        Some("number_of_items"),
    );

    let ready = gateway.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["checks"]["rabbitmq"], "down");
}

/// Posts orders until one is accepted; each reply must be 200 or 503.
async fn order_until_accepted(gateway: &TestApp) -> Uuid {
    wait_for("an order to be accepted again", || async {
        let reply = gateway.order(&valid_order()).await;
        match reply.status.as_u16() {
            200 => Some(accepted_id(&reply)),
            503 => {
                reply.assert_error(503, "broker_unavailable", None);
                None
            }
            _ => panic!("unexpected answer while the broker comes back: {reply:?}"),
        }
    })
    .await
}

#[actix_web::test]
async fn gateway_started_without_broker_connects_when_it_comes() {
    let vhost = rabbit::vhost();
    let relay = Relay::start(rabbit::amqp_port(), false).await;
    let gateway = gateway_on(&vhost, relay.port).await;
    gateway
        .order(&valid_order())
        .await
        .assert_error(503, "broker_unavailable", None);

    relay.set_forward(true);
    let order_id = order_until_accepted(&gateway).await;
    gateway.wait_ready().await;
    assert_eq!(ids(&rabbit::drain(&vhost.name).await), vec![order_id]);
}

#[actix_web::test]
async fn cut_connection_is_replaced_without_restart() {
    let vhost = rabbit::vhost();
    let relay = Relay::start(rabbit::amqp_port(), true).await;
    let gateway = gateway_on(&vhost, relay.port).await;
    gateway.wait_ready().await;
    let first = accepted_id(&gateway.order(&valid_order()).await);

    relay.cut();
    let second = order_until_accepted(&gateway).await;
    let third = accepted_id(&gateway.order(&valid_order()).await);
    assert_eq!(
        ids(&rabbit::drain(&vhost.name).await),
        vec![first, second, third]
    );
}

#[actix_web::test]
async fn the_broker_link_takes_frames_of_8_kib_at_most() {
    // lapin's two buffers are 32 frames each: at the broker's 128 KiB
    // default, 8 MiB of an idle gateway's memory (common::amqp::FRAME_MAX).
    let vhost = rabbit::vhost();
    let gateway = ready_gateway(&vhost).await;
    accepted_id(&gateway.order(&valid_order()).await);
    let name = rabbit::only_connection(&vhost.name).await;
    let (status, body) = rabbit::mgmt(
        Method::GET,
        &format!("/connections/{}", rabbit::percent_encode(&name)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["frame_max"], json!(common::amqp::FRAME_MAX), "{body}");
    assert_eq!(common::amqp::FRAME_MAX, 8192);
}

#[actix_web::test]
async fn connection_closed_by_the_broker_is_replaced_without_restart() {
    let vhost = rabbit::vhost();
    let gateway = ready_gateway(&vhost).await;
    let first = accepted_id(&gateway.order(&valid_order()).await);
    let old = rabbit::only_connection(&vhost.name).await;

    rabbit::close_connection(&old).await;
    // A new connection, not the old one surviving.
    wait_for("the gateway to reconnect", || async {
        let names = rabbit::connections(&vhost.name).await;
        (names.len() == 1 && names[0] != old).then_some(())
    })
    .await;
    let second = order_until_accepted(&gateway).await;
    assert_eq!(ids(&rabbit::drain(&vhost.name).await), vec![first, second]);
}

#[actix_web::test]
async fn unconfirmed_order_times_out_with_504_and_is_not_reported_accepted() {
    let vhost = rabbit::vhost();
    let (relay, gateway) = gateway_behind_relay(&vhost, 500).await;
    accepted_id(&gateway.order(&valid_order()).await);

    // The broker's answers (the confirm among them) are held back.
    relay.set_paused(true);
    let reply = gateway.order(&valid_order()).await;
    reply.assert_error(504, "broker_timeout", None);
    relay.set_paused(false);

    // Once the broker answers again, orders are accepted again.
    order_until_accepted(&gateway).await;
}

/// One order sent while everything from the broker is held for `hold_ms`
/// (the relay paused, then resumed), and its answer.
async fn order_with_broker_held(gateway: &TestApp, relay: &Relay, hold_ms: u64) -> Reply {
    relay.set_paused(true);
    let order = valid_order();
    let (reply, ()) = tokio::join!(gateway.order(&order), async {
        tokio::time::sleep(std::time::Duration::from_millis(hold_ms)).await;
        relay.set_paused(false);
    });
    reply
}

/// A fresh channel that does not come within its budget (3 s: a busy node)
/// leaves the connection up: the order goes again on the current channel,
/// and is accepted once the broker answers, with no reconnect (which in the
/// HA VMs failed the gateway's /ready and moved the shared address).
#[actix_web::test]
async fn a_late_fresh_channel_keeps_the_connection_and_the_order_is_accepted() {
    let vhost = rabbit::vhost();
    // 12 s to confirm: after 4.8 s of patience the gateway asks for a fresh
    // channel, gives up on it at ~7.9 s and publishes again on the current
    // one; the broker's answers, all held until 9.5 s, then confirm that.
    let (relay, gateway) = gateway_behind_relay(&vhost, 12_000).await;
    let first = accepted_id(&gateway.order(&valid_order()).await);
    assert_eq!(relay.relayed(), 1);

    let second = accepted_id(&order_with_broker_held(&gateway, &relay, 9_500).await);
    let third = accepted_id(&gateway.order(&valid_order()).await);
    assert_eq!(relay.relayed(), 1, "the gateway kept its one connection");
    // `second` twice: its first publish, confirmed too late, and the one
    // that was confirmed (the worker stores it once: ON CONFLICT (order_id)).
    assert_eq!(
        ids(&rabbit::drain(&vhost.name).await),
        vec![first, second, second, third]
    );
}

/// Suspends a RabbitMQ channel process (it takes no more frames: no confirm
/// comes, while its connection and other channels live on, as a quorum
/// queue's publisher stuck after its leader's machine died); resumes it when
/// dropped, also when the test fails.
struct StuckChannel(String);

impl StuckChannel {
    /// The gateway's confirm-mode channel in `vhost` (the alarm probe's is
    /// not in confirm mode).
    fn of_gateway(vhost: &str) -> Self {
        // Found and suspended inside the node (the CLI shows pids in a form
        // the node cannot read back); the pid comes back as "<0.N.M>".
        let out = rabbit::rabbitmqctl(&[
            "eval",
            &format!(
                "Ps = [P || P <- rabbit_channel:list_local(), \
                 [{{vhost, V}}, {{confirm, true}}] <- [rabbit_channel:info(P, [vhost, confirm])], \
                 V =:= <<\"{vhost}\">>], \
                 [sys:suspend(P) || P <- Ps], [pid_to_list(P) || P <- Ps]."
            ),
        ]);
        let pids: Vec<&str> = out
            .split('"')
            .filter(|p| p.starts_with('<') && p.ends_with('>'))
            .collect();
        let stuck = pids.iter().map(|p| Self((*p).to_owned())).next();
        assert_eq!(pids.len(), 1, "confirm channels in {vhost}: {out}");
        stuck.unwrap()
    }

    fn sys(&self, call: &str) {
        let pid = &self.0;
        rabbit::rabbitmqctl(&["eval", &format!("sys:{call}(list_to_pid(\"{pid}\")).")]);
    }
}

impl Drop for StuckChannel {
    fn drop(&mut self) {
        self.sys("resume");
    }
}

/// The order ids in `vhost`'s billing_queue, drained until there are `n`
/// (a resumed channel delivers what it held a moment later), or 10 s.
async fn drain_at_least(vhost: &str, n: usize) -> Vec<Uuid> {
    let mut queued = Vec::new();
    for _ in 0..100 {
        queued.extend(ids(&rabbit::drain(vhost).await));
        if queued.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    queued
}

#[actix_web::test]
async fn a_channel_that_stops_confirming_is_replaced_and_the_order_accepted() {
    let vhost = rabbit::vhost();
    let gateway = ready_gateway(&vhost).await;
    let first = accepted_id(&gateway.order(&valid_order()).await);

    let stuck = StuckChannel::of_gateway(&vhost.name);
    // No confirm within the patience (2 s of the 5 s publish timeout): the
    // order goes again on a fresh channel, and is accepted in time.
    let second = accepted_id(&gateway.order(&valid_order()).await);
    let third = accepted_id(&gateway.order(&valid_order()).await);
    // Resumed, the old channel delivers the first publish of `second` it
    // held: the broker has that order twice, as after a failover, and the
    // worker stores it once (ON CONFLICT (order_id)).
    drop(stuck);
    let mut queued = drain_at_least(&vhost.name, 4).await;
    queued.sort();
    let mut want = vec![first, second, second, third];
    want.sort();
    assert_eq!(queued, want);
}

/// The same from a connection's very first order: a gateway that has taken
/// no order yet (one just handed the shared address, in the HA VM test) gets
/// the same patience, not its whole publish timeout on the stuck channel
/// (which answered 504 for 5 s after a leader's loss there).
#[actix_web::test]
async fn a_channel_stuck_before_its_connections_first_confirm_is_replaced_too() {
    let vhost = rabbit::vhost();
    let gateway = ready_gateway(&vhost).await;

    let stuck = StuckChannel::of_gateway(&vhost.name);
    // Accepted on a fresh channel after the 2 s patience; waiting on the
    // stuck one would end in 504 at the 5 s timeout.
    let first = accepted_id(&gateway.order(&valid_order()).await);
    drop(stuck);
    let queued = drain_at_least(&vhost.name, 2).await;
    assert_eq!(queued, vec![first, first], "published on both channels");
}

#[actix_web::test]
async fn unroutable_order_is_503_and_the_queue_is_declared_again() {
    let vhost = rabbit::vhost();
    let gateway = ready_gateway(&vhost).await;
    // An operator deletes the queue under the running gateway: the mandatory
    // publish comes back unroutable, which must not be reported accepted.
    let (status, body) = rabbit::mgmt(
        Method::DELETE,
        &format!("/queues/{}/billing_queue", vhost.name),
        None,
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    gateway
        .order(&valid_order())
        .await
        .assert_error(503, "order_not_queued", None);

    let order_id = wait_for("the queue to be declared again", || async {
        let reply = gateway.order(&valid_order()).await;
        (reply.status == StatusCode::OK).then(|| accepted_id(&reply))
    })
    .await;
    assert_eq!(ids(&rabbit::drain(&vhost.name).await), vec![order_id]);
}
