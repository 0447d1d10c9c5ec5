//! `POST /api/billing`: validate an order, give it an id, and answer 200 only
//! once RabbitMQ has confirmed the persistent message.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{mime, web, HttpRequest, HttpResponse};
use common::order::{parse_order, OrderMessage};
use serde::Serialize;
use uuid::Uuid;

use crate::body;
use crate::broker::Broker;
use crate::error::GatewayError;
use crate::request_id::RequestId;

/// An order is four short fields; anything bigger is not an order.
pub const MAX_ORDER_BODY: usize = 16 * 1024;

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
) -> Result<HttpResponse, GatewayError> {
    require_json(&req)?;
    let body = body::read_limited(payload, req.headers(), MAX_ORDER_BODY).await?;
    let input = parse_order(&body)?;
    // The id is always ours: a client-chosen one could collide with (and,
    // through the worker's idempotency, silently replace) another order.
    let order_id = Uuid::new_v4();
    let message = OrderMessage::new(order_id, &input);
    let request_id = RequestId::of(&req);
    broker.publish(&message, &request_id).await?;
    log::info!("request_id={request_id} order {order_id} queued");
    Ok(HttpResponse::Ok().json(Queued {
        message: "Order queued for processing",
        status: "queued",
        order_id,
    }))
}

/// `application/json` (any parameters) or a `+json` type; else 415.
fn require_json(req: &HttpRequest) -> Result<(), GatewayError> {
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
        _ => Err(GatewayError::UnsupportedMediaType),
    }
}
