//! The RabbitMQ topology both the gateway (publisher) and the billing worker
//! (consumer) declare. RabbitMQ closes the channel (406 PRECONDITION_FAILED) if
//! two declarations of one queue differ, so there is exactly one definition.
//!
//! `billing_queue` is a durable *classic* queue that dead-letters into
//! `billing_queue.dlq` through the fanout exchange `billing_queue.dlx`. The
//! worker rejects (without requeue) a message that can never succeed, which
//! sends it there. Why classic and not quorum: on a single broker a quorum
//! queue's replication buys nothing, and RabbitMQ 3.10's quorum delivery limit
//! would also dead-letter *good* orders that were redelivered many times
//! because a worker was killed repeatedly; the worker decides what is poison.

use std::time::{SystemTime, UNIX_EPOCH};

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
use uuid::Uuid;

pub const BILLING_QUEUE: &str = "billing_queue";
pub const DEAD_LETTER_EXCHANGE: &str = "billing_queue.dlx";
pub const DEAD_LETTER_QUEUE: &str = "billing_queue.dlq";

/// Arguments of `billing_queue`, identical for every declarer.
pub fn billing_queue_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("classic")),
    );
    args.insert(
        ShortString::from("x-dead-letter-exchange"),
        AMQPValue::LongString(LongString::from(DEAD_LETTER_EXCHANGE)),
    );
    args
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares the dead-letter exchange and queue, then `billing_queue`.
/// Idempotent: safe to call on every (re)connect from every service.
pub async fn declare(channel: &Channel) -> lapin::Result<()> {
    channel
        .exchange_declare(
            DEAD_LETTER_EXCHANGE.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            DEAD_LETTER_QUEUE.into(),
            durable_queue(),
            dead_letter_queue_arguments(),
        )
        .await?;
    channel
        .queue_bind(
            DEAD_LETTER_QUEUE.into(),
            DEAD_LETTER_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            BILLING_QUEUE.into(),
            durable_queue(),
            billing_queue_arguments(),
        )
        .await?;
    Ok(())
}

fn dead_letter_queue_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("classic")),
    );
    args
}

/// The properties of an order message, the same from every publisher (the
/// gateway, the benchmarks, the worker's tests): persistent, JSON, the order
/// id as message id, the request id in the `x-request-id` header.
pub fn order_properties(order_id: Uuid, request_id: &str, app_id: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from(crate::REQUEST_ID_HEADER),
        AMQPValue::LongString(LongString::from(request_id)),
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    BasicProperties::default()
        // 2 = persistent: written to disk before the broker confirms.
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(order_id.to_string().into())
        .with_timestamp(now)
        .with_app_id(app_id.into())
        .with_headers(headers)
}

/// Publishes one message to `billing_queue` and waits for the broker's
/// confirm (the channel must be in confirm mode). `mandatory`: without it, an
/// order for a missing queue would be dropped silently and still be acked.
pub async fn publish_order(
    channel: &Channel,
    payload: &[u8],
    properties: BasicProperties,
) -> lapin::Result<Confirmation> {
    channel
        .basic_publish(
            "".into(),
            BILLING_QUEUE.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            payload,
            properties,
        )
        .await?
        .await
}
