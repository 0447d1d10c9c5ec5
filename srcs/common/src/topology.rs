//! The RabbitMQ topology both the gateway (publisher) and the billing worker
//! (consumer) declare. RabbitMQ closes the channel (406 PRECONDITION_FAILED) if
//! two declarations of one queue differ, so there is exactly one definition.
//!
//! `billing_queue` is durable and dead-letters into `billing_queue.dlq`
//! through the fanout exchange `billing_queue.dlx`. The worker rejects
//! (without requeue) a message that can never succeed, which sends it there.
//!
//! Its type is a setting ([`QueueType`], `*_RABBITMQ_QUEUE_TYPE`):
//! - `classic` (the default topology, one broker): a quorum queue's
//!   replication buys nothing on one node, and its delivery limit would also
//!   dead-letter *good* orders redelivered many times because a worker was
//!   killed repeatedly; the worker decides what is poison.
//! - `quorum` (the high-availability topology, a 3-node cluster): a publisher
//!   confirm then means a majority of the nodes has the order on disk.
//!   Dead-lettering is `at-least-once` (the dead-lettered message stays in
//!   `billing_queue` until the dead-letter queue confirmed it), which
//!   RabbitMQ 3.10 allows only with `x-overflow=reject-publish`. The delivery
//!   limit is explicit (3.10 has no default): see [`Topology::delivery_limit`].
//!
//! Both services must use the same type: a queue cannot change type in place
//! (406 on the redeclaration; scripts/ha-migrate-queue.sh moves a deployment).

use std::time::{SystemTime, UNIX_EPOCH};

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
use uuid::Uuid;

use crate::trace::{TraceContext, TRACEPARENT};

pub const BILLING_QUEUE: &str = "billing_queue";
pub const DEAD_LETTER_EXCHANGE: &str = "billing_queue.dlx";
pub const DEAD_LETTER_QUEUE: &str = "billing_queue.dlq";

/// The type of `billing_queue` and its dead-letter queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

impl QueueType {
    fn name(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}

/// What every declarer of the queues must agree on (RabbitMQ closes the
/// channel with 406 when two declarations differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    pub queue_type: QueueType,
    /// Quorum only: deliveries of one message (first one included) after
    /// which RabbitMQ dead-letters it instead of delivering it again. It also
    /// counts deliveries returned because a worker died holding them, so it
    /// must stay well above the worker crashes one order may live through.
    pub delivery_limit: u32,
}

/// The delivery limit when the setting is absent.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 20;

impl Default for Topology {
    fn default() -> Self {
        Self {
            queue_type: QueueType::Classic,
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
        }
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

impl Topology {
    /// Arguments of `billing_queue`, identical for every declarer.
    pub fn billing_queue_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert(
            ShortString::from("x-queue-type"),
            long_string(self.queue_type.name()),
        );
        args.insert(
            ShortString::from("x-dead-letter-exchange"),
            long_string(DEAD_LETTER_EXCHANGE),
        );
        if self.queue_type == QueueType::Quorum {
            args.insert(
                ShortString::from("x-dead-letter-strategy"),
                long_string("at-least-once"),
            );
            args.insert(
                ShortString::from("x-overflow"),
                long_string("reject-publish"),
            );
            args.insert(
                ShortString::from("x-delivery-limit"),
                AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
            );
        }
        args
    }

    fn dead_letter_queue_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert(
            ShortString::from("x-queue-type"),
            long_string(self.queue_type.name()),
        );
        args
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares the dead-letter exchange and queue, then `billing_queue`.
/// Idempotent: safe to call on every (re)connect from every service.
pub async fn declare(channel: &Channel, topology: &Topology) -> lapin::Result<()> {
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
            topology.dead_letter_queue_arguments(),
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
            topology.billing_queue_arguments(),
        )
        .await?;
    Ok(())
}

/// The properties of an order message, the same from every publisher (the
/// gateway, the benchmarks, the worker's tests): persistent, JSON, the order
/// id as message id, the request id in the `x-request-id` header.
pub fn order_properties(
    order_id: Uuid,
    request_id: &str,
    trace: Option<&TraceContext>,
    app_id: &str,
) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from(crate::REQUEST_ID_HEADER),
        AMQPValue::LongString(LongString::from(request_id)),
    );
    // The worker continues the request's trace from here (W3C Trace Context
    // in a message header, as its AMQP binding draft does it); without one
    // it starts a trace of its own.
    if let Some(trace) = trace {
        headers.insert(
            ShortString::from(TRACEPARENT),
            AMQPValue::LongString(LongString::from(trace.header_value())),
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(args: &FieldTable, key: &str) -> Option<AMQPValue> {
        args.inner().get(key).cloned()
    }

    #[test]
    fn classic_is_the_default_and_has_no_quorum_arguments() {
        let args = Topology::default().billing_queue_arguments();
        assert_eq!(arg(&args, "x-queue-type"), Some(long_string("classic")));
        assert_eq!(args.inner().len(), 2, "{args:?}");
    }

    #[test]
    fn quorum_dead_letters_at_least_once_with_an_explicit_limit() {
        let t = Topology {
            queue_type: QueueType::Quorum,
            delivery_limit: 7,
        };
        let args = t.billing_queue_arguments();
        assert_eq!(arg(&args, "x-queue-type"), Some(long_string("quorum")));
        assert_eq!(
            arg(&args, "x-dead-letter-strategy"),
            Some(long_string("at-least-once"))
        );
        assert_eq!(
            arg(&args, "x-overflow"),
            Some(long_string("reject-publish"))
        );
        assert_eq!(
            arg(&args, "x-delivery-limit"),
            Some(AMQPValue::LongLongInt(7))
        );
        assert_eq!(
            arg(&t.dead_letter_queue_arguments(), "x-queue-type"),
            Some(long_string("quorum"))
        );
    }
}
