//! Collecting deliveries into batches, and reading each delivery into an
//! order (or into the reason it can never be one).
//!
//! A batch is whatever is available right now, up to the batch size: the
//! first delivery is awaited, the rest are taken only if already buffered.
//! Under light traffic a lone order is stored at once; under a backlog the
//! prefetch window keeps the buffer full and batches come out full size.

use crate::error::Error;
use crate::shutdown::Shutdown;
use crate::store::NewOrder;
use common::order::{parse_order, FieldError};
use common::trace::{TraceContext, TRACEPARENT};
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::types::{AMQPValue, DeliveryTag};
use lapin::Acker;
use lapin::Consumer;
use uuid::Uuid;

pub enum Next {
    Batch(Vec<Delivery>),
    /// No delivery for the `idle` period.
    Idle,
    Stop,
}

/// Waits for the next delivery (or a stop request, or `idle` without any),
/// then takes what else is already buffered, up to `max` deliveries in all.
///
/// A consumer error or the end of the stream is returned as an error, and
/// deliveries collected so far are dropped unacknowledged: their channel is
/// dead, so they cannot be acked anyway and the broker will redeliver them.
pub async fn collect(
    consumer: &mut Consumer,
    max: usize,
    shutdown: &Shutdown,
    idle: std::time::Duration,
) -> Result<Next, Error> {
    let first = tokio::select! {
        biased;
        () = shutdown.requested() => return Ok(Next::Stop),
        next = consumer.next() => next,
        () = tokio::time::sleep(idle) => return Ok(Next::Idle),
    };
    let mut batch = Vec::with_capacity(max.min(1024));
    batch.push(delivery(first)?);
    while batch.len() < max {
        match consumer.next().now_or_never() {
            Some(next) => batch.push(delivery(next)?),
            None => break,
        }
    }
    Ok(Next::Batch(batch))
}

fn delivery(next: Option<lapin::Result<Delivery>>) -> Result<Delivery, Error> {
    match next {
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => Err(e.into()),
        None => Err(Error::ConsumerEnded),
    }
}

/// Where an order's id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource {
    /// The body's `order_id` (what the gateway sends).
    Body,
    /// The AMQP `message_id`, when the body has no `order_id`.
    MessageId,
    /// Neither: a fresh UUID. Such a message is stored at least once, not
    /// exactly once, since nothing identifies a redelivery of it.
    Generated,
}

pub enum Content {
    Order {
        order: NewOrder,
        id_source: IdSource,
    },
    Invalid(FieldError),
}

/// One delivery, read.
pub struct Received {
    pub delivery_tag: DeliveryTag,
    pub acker: Acker,
    pub message_id: Option<String>,
    pub request_id: Option<String>,
    /// The order's trace, continued from the gateway's `traceparent` header
    /// (a new one for a message that came without).
    pub trace: TraceContext,
    pub redelivered: bool,
    /// When the publisher sent it (AMQP `timestamp`, seconds since the epoch).
    pub timestamp: Option<u64>,
    pub content: Content,
}

impl Received {
    pub fn order_id(&self) -> Option<Uuid> {
        match &self.content {
            Content::Order { order, .. } => Some(order.order_id),
            Content::Invalid(_) => None,
        }
    }

    /// The closing tokens of every log line about the message, as on the
    /// gateway's lines about its request: `trace_id=T request_id=ID`
    /// (`request_id=-` when the publisher sent none).
    pub fn request(&self) -> impl std::fmt::Display + '_ {
        LogIds(self)
    }

    /// What identifies the message in a log line (its request id, which
    /// ends every log line about a request, is [`request`](Self::request)).
    pub fn describe(&self) -> String {
        format!(
            "delivery tag {}, message id {}",
            self.delivery_tag,
            self.message_id.as_deref().map_or("-".into(), printable)
        )
    }
}

struct LogIds<'a>(&'a Received);

impl std::fmt::Display for LogIds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.0;
        write!(
            f,
            "{} request_id={}",
            r.trace,
            r.request_id.as_deref().unwrap_or("-")
        )
    }
}

/// A publisher-chosen text made safe for one log line: control characters
/// (a newline could forge a log entry) replaced, length bounded.
fn printable(text: &str) -> String {
    text.chars()
        .take(100)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Reads a delivery. Never fails: a body that is not a valid order becomes
/// [`Content::Invalid`] carrying the reason (and the field at fault).
pub fn decode(delivery: Delivery) -> Received {
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str().to_owned());
    let header = |name: &str| {
        delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(name))
            .and_then(header_text)
    };
    let request_id = header(common::REQUEST_ID_HEADER);
    let trace = TraceContext::continue_from(header(TRACEPARENT).as_deref().map(str::as_bytes));
    let content = match parse_order(&delivery.data) {
        Ok(input) => {
            let from_message_id = message_id
                .as_deref()
                .and_then(|id| Uuid::parse_str(id.trim()).ok());
            let (order_id, id_source) = match (input.order_id, from_message_id) {
                (Some(id), _) => (id, IdSource::Body),
                (None, Some(id)) => (id, IdSource::MessageId),
                (None, None) => (Uuid::new_v4(), IdSource::Generated),
            };
            Content::Order {
                order: NewOrder {
                    order_id,
                    user_id: input.user_id,
                    number_of_items: input.number_of_items,
                    total_amount: input.total_amount,
                },
                id_source,
            }
        }
        Err(e) => Content::Invalid(e),
    };
    Received {
        delivery_tag: delivery.delivery_tag,
        acker: delivery.acker,
        message_id,
        request_id,
        trace,
        redelivered: delivery.redelivered,
        timestamp: *delivery.properties.timestamp(),
        content,
    }
}

/// A header value as text, if it is a string (publishers differ in the AMQP
/// string type they use). Long or non-printable values are not worth a log.
fn header_text(value: &AMQPValue) -> Option<String> {
    let text = match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        _ => return None,
    };
    let text = text.trim();
    (!text.is_empty() && text.len() <= 200 && !text.chars().any(char::is_control))
        .then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldTable, LongString, ShortString};
    use lapin::BasicProperties;

    fn delivery(body: &str, props: BasicProperties) -> Delivery {
        let mut d = Delivery::mock(
            7,
            "".into(),
            "billing_queue".into(),
            false,
            body.as_bytes().to_vec(),
        );
        d.properties = props;
        d
    }

    fn order_of(r: &Received) -> (&NewOrder, IdSource) {
        match &r.content {
            Content::Order { order, id_source } => (order, *id_source),
            Content::Invalid(e) => panic!("unexpected invalid: {e}"),
        }
    }

    #[test]
    fn body_order_id_wins_over_message_id() {
        let body_id = Uuid::new_v4();
        let props = BasicProperties::default()
            .with_message_id(ShortString::from(Uuid::new_v4().to_string()));
        let r = decode(delivery(
            &format!(
                r#"{{"order_id":"{body_id}","user_id":"u","number_of_items":1,"total_amount":"2.50"}}"#
            ),
            props,
        ));
        let (order, source) = order_of(&r);
        assert_eq!(order.order_id, body_id);
        assert_eq!(source, IdSource::Body);
        assert_eq!(order.total_amount.to_string(), "2.50");
    }

    #[test]
    fn message_id_is_used_when_the_body_has_none() {
        let id = Uuid::new_v4();
        let props = BasicProperties::default().with_message_id(ShortString::from(id.to_string()));
        let r = decode(delivery(
            r#"{"user_id":"u","number_of_items":"3","total_amount":"10"}"#,
            props,
        ));
        let (order, source) = order_of(&r);
        assert_eq!(order.order_id, id);
        assert_eq!(source, IdSource::MessageId);
    }

    #[test]
    fn a_message_without_any_id_gets_a_fresh_one() {
        let props = BasicProperties::default().with_message_id(ShortString::from("not-a-uuid"));
        let r = decode(delivery(
            r#"{"user_id":"u","number_of_items":"3","total_amount":"10"}"#,
            props,
        ));
        let (_, source) = order_of(&r);
        assert_eq!(source, IdSource::Generated);
        assert_eq!(r.message_id.as_deref(), Some("not-a-uuid"));
    }

    #[test]
    fn the_gateways_trace_is_continued_in_the_log_ids() {
        let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = TraceContext::continue_from(Some(client.as_bytes()));
        let props = common::topology::order_properties(Uuid::new_v4(), "req-9", Some(&trace), "t");
        let r = decode(delivery(
            r#"{"user_id":"u","number_of_items":1,"total_amount":1}"#,
            props,
        ));
        assert_eq!(
            r.request().to_string(),
            "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 request_id=req-9"
        );
        // Without the headers: a trace of its own, and no request id.
        let r = decode(delivery(
            r#"{"user_id":"u","number_of_items":1,"total_amount":1}"#,
            BasicProperties::default(),
        ));
        let ids = r.request().to_string();
        assert!(
            ids.starts_with("trace_id=") && ids.ends_with(" request_id=-"),
            "{ids}"
        );
        assert!(!ids.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn request_id_header_is_read_whatever_its_string_type() {
        for value in [
            AMQPValue::LongString(LongString::from("req-1")),
            AMQPValue::ShortString(ShortString::from("req-1")),
        ] {
            let mut headers = FieldTable::default();
            headers.insert(ShortString::from(common::REQUEST_ID_HEADER), value);
            let props = BasicProperties::default().with_headers(headers);
            let r = decode(delivery(
                r#"{"user_id":"u","number_of_items":1,"total_amount":1}"#,
                props,
            ));
            assert_eq!(r.request_id.as_deref(), Some("req-1"));
        }
    }

    #[test]
    fn a_message_id_cannot_forge_log_lines() {
        let props =
            BasicProperties::default().with_message_id(ShortString::from("x\nERROR forged"));
        let r = decode(delivery("nope", props));
        assert!(!r.describe().contains('\n'), "{}", r.describe());
    }

    #[test]
    fn invalid_bodies_name_the_field() {
        let r = decode(delivery(
            r#"{"user_id":"u","number_of_items":0,"total_amount":1}"#,
            BasicProperties::default(),
        ));
        match r.content {
            Content::Invalid(e) => assert_eq!(e.field, Some("number_of_items")),
            Content::Order { .. } => panic!("accepted an invalid order"),
        }
        let r = decode(delivery("not json", BasicProperties::default()));
        assert!(matches!(
            r.content,
            Content::Invalid(FieldError { field: None, .. })
        ));
    }
}
