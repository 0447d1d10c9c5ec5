//! Liveness (`/health`: the process answers) and readiness (`/ready`: the
//! gateway can do its job, i.e. inventory answers and RabbitMQ is connected
//! and not blocking publishers with a memory or disk alarm).

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
    let rabbitmq = if !broker.is_connected() {
        "down"
    } else if broker.is_blocked() {
        "blocked"
    } else {
        "up"
    };
    let rabbitmq_up = rabbitmq == "up";
    if inventory_up && rabbitmq_up {
        return HttpResponse::Ok().json(Readiness {
            status: "ready",
            inventory: "up",
            rabbitmq: "up",
            error: None,
        });
    }
    let mut problems = Vec::new();
    if !inventory_up {
        problems.push("inventory down".to_owned());
    }
    match rabbitmq {
        "up" => {}
        "blocked" => {
            problems.push("rabbitmq blocked (a memory or disk alarm stops publishing)".to_owned())
        }
        other => problems.push(format!("rabbitmq {other}")),
    }
    let mut resp = HttpResponse::ServiceUnavailable().json(Readiness {
        status: "unavailable",
        inventory: if inventory_up { "up" } else { "down" },
        rabbitmq,
        error: Some(ErrorBody {
            error: ErrorDetail {
                code: "not_ready",
                message: format!("not ready: {}", problems.join(" and ")),
                field: None,
            },
        }),
    });
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}
