//! Liveness (`/health`: the process answers) and readiness (`/ready`: the
//! gateway can do its job, i.e. inventory answers and RabbitMQ is connected).

use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{web, HttpRequest, HttpResponse};
use common::http::{ErrorBody, ErrorDetail};
use serde::Serialize;

use crate::broker::Broker;
use crate::proxy::Inventory;
use crate::request_id::RequestId;

#[derive(Debug, Serialize)]
struct Readiness {
    status: &'static str,
    inventory: &'static str,
    rabbitmq: &'static str,
    /// Present when not ready, in the project's error format.
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    error: Option<ErrorBody>,
}

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

pub async fn ready(
    req: HttpRequest,
    inventory: web::Data<Inventory>,
    broker: web::Data<Broker>,
) -> HttpResponse {
    let inventory_up = inventory.is_up(&RequestId::of(&req)).await;
    let rabbitmq_up = broker.is_connected();
    let word = |up: bool| if up { "up" } else { "down" };
    if inventory_up && rabbitmq_up {
        return HttpResponse::Ok().json(Readiness {
            status: "ready",
            inventory: "up",
            rabbitmq: "up",
            error: None,
        });
    }
    let down: Vec<&str> = [("inventory", inventory_up), ("rabbitmq", rabbitmq_up)]
        .into_iter()
        .filter(|(_, up)| !up)
        .map(|(name, _)| name)
        .collect();
    let mut resp = HttpResponse::ServiceUnavailable().json(Readiness {
        status: "unavailable",
        inventory: word(inventory_up),
        rabbitmq: word(rabbitmq_up),
        error: Some(ErrorBody {
            error: ErrorDetail {
                code: "not_ready",
                message: format!("not ready: {} down", down.join(" and ")),
                field: None,
            },
        }),
    });
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}
