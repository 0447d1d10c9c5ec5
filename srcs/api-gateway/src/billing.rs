//! `POST /api/billing`: validate an order, give it an id, and answer 200 only
//! once RabbitMQ has confirmed the persistent message.
//!
//! With an `Idempotency-Key` header the id is not random but derived from the
//! key and the `user_id` (a UUID v5), so every retry of one order carries the
//! same `order_id` and the worker's `ON CONFLICT (order_id)` stores it once.
//! The gateway keeps no state: any gateway, before or after a restart, derives
//! the same id. What it cannot see is a key reused with another body; the
//! worker, which holds the stored order, keeps the first and dead-letters the
//! other (README, "Retrying safely: Idempotency-Key").

use actix_web::http::header::{HeaderName, CONTENT_TYPE};
use actix_web::{mime, web, HttpRequest, HttpResponse};
use common::order::{parse_order, FieldError, OrderMessage};
use serde::Serialize;
use uuid::Uuid;

use crate::body;
use crate::broker::Broker;
use crate::error::Error;
use common::request_id::RequestId;

/// An order is four short fields; anything bigger is not an order.
pub const MAX_ORDER_BODY: usize = 16 * 1024;

/// The header (IETF httpapi draft "The Idempotency-Key HTTP Header Field").
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// As the header is named in error responses.
const IDEMPOTENCY_KEY_FIELD: &str = "Idempotency-Key";
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Namespace of the order ids derived from an idempotency key. Fixed forever:
/// changing it would give a retry sent across the change a new id.
pub const ORDER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2b7e_9a43_4d0e_8f55_21c3_b0a9_7e14);

/// The `order_id` of the order `user_id` sends under `key`. Keys are scoped
/// per `user_id`: two users sending the same key place two orders. `user_id`
/// holds no control character (validation refuses them), so the newline
/// separates the two parts unambiguously.
pub fn order_id_for_key(user_id: &str, key: &str) -> Uuid {
    Uuid::new_v5(&ORDER_ID_NAMESPACE, format!("{user_id}\n{key}").as_bytes())
}

#[derive(Debug, Serialize)]
pub struct Queued {
    pub message: &'static str,
    pub status: &'static str,
    pub order_id: Uuid,
}

pub async fn create_order(
    req: HttpRequest,
    payload: web::Payload,
    broker: web::Data<Broker>,
) -> Result<HttpResponse, Error> {
    require_json(&req)?;
    let key = idempotency_key(&req)?;
    let body = body::read_limited(payload, req.headers(), MAX_ORDER_BODY).await?;
    let input = parse_order(&body)?;
    // The id is always ours: a client-chosen one could collide with (and,
    // through the worker's idempotency, silently replace) another order.
    // A key only ever names an order of its own user.
    let order_id = match &key {
        Some(key) => order_id_for_key(&input.user_id, key),
        None => Uuid::new_v4(),
    };
    let message = OrderMessage::new(order_id, &input);
    let request_id = RequestId::of(&req);
    broker.publish(&message, &request_id).await?;
    if key.is_some() {
        log::info!(
            "order {order_id} queued (idempotency key) event=order_queued order_id={order_id} {request_id}"
        );
    } else {
        log::info!("order {order_id} queued event=order_queued order_id={order_id} {request_id}");
    }
    Ok(HttpResponse::Ok().json(Queued {
        message: "Order queued for processing",
        status: "queued",
        order_id,
    }))
}

/// `application/json` (any parameters) or a `+json` type; else 415.
fn require_json(req: &HttpRequest) -> Result<(), Error> {
    let mime: Option<mime::Mime> = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    match mime {
        Some(m)
            if m.type_() == mime::APPLICATION
                && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON)) =>
        {
            Ok(())
        }
        _ => Err(Error::UnsupportedMediaType),
    }
}

/// The `Idempotency-Key` header, if sent: one header of 1 to 255 visible
/// ASCII characters, taken verbatim. Anything else is refused (400 naming the
/// header) rather than ignored, since ignoring it would turn a retry into a
/// second order.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, Error> {
    let mut values = req.headers().get_all(IDEMPOTENCY_KEY);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |message: String| {
        Error::InvalidOrder(FieldError {
            field: Some(IDEMPOTENCY_KEY_FIELD),
            message,
        })
    };
    if values.next().is_some() {
        return Err(invalid(format!(
            "send at most one {IDEMPOTENCY_KEY_FIELD} header"
        )));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_IDEMPOTENCY_KEY
        || !bytes.iter().all(u8::is_ascii_graphic)
    {
        return Err(invalid(format!(
            "{IDEMPOTENCY_KEY_FIELD} must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_and_the_user_make_the_id() {
        let a = order_id_for_key("20", "k-1");
        assert_eq!(a, order_id_for_key("20", "k-1"));
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(a, order_id_for_key("21", "k-1"));
        assert_ne!(a, order_id_for_key("20", "k-2"));
        // Pinned (Python: uuid.uuid5(ORDER_ID_NAMESPACE, "20\nk-1")): a
        // change here would give retries sent across an upgrade a new id.
        assert_eq!(a.to_string(), "bfb97a47-f0c7-5197-a1e1-7f2e201dbd93");
    }
}
