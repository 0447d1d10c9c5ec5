//! One `/health` and `/ready` for every service:
//! - `GET /health` → 200 `{"status":"ok"}`: the process answers.
//! - `GET /ready` → 200 `{"status":"ready","checks":{"postgres":"ok",...}}`
//!   when every dependency works, else 503 `{"status":"not_ready","checks":
//!   {...},"error":{"code":"not_ready","message":"not ready: postgres down"}}`
//!   with `Retry-After`. A service may add fields of its own (the worker's
//!   `orders` counters).
//! - While a service drains before it stops ([`Draining`]), both answer 503
//!   `{"status":"not_ready","checks":{"shutdown":"draining"},...}`: a
//!   balancer's health check then sends new requests elsewhere while the
//!   service still serves what reaches it.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, FromRequest, Handler, HttpResponse, Responder};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::ErrorCode;
use crate::http::{get_or_head, method_not_allowed, ErrorDetail};

/// The state of one dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Ok,
    Down,
    /// Connected, but RabbitMQ blocks publishers (a memory or disk alarm).
    Blocked,
    /// The service was asked to stop and drains first ([`Draining`]).
    Draining,
}

impl Check {
    pub fn up(ok: bool) -> Self {
        if ok {
            Self::Ok
        } else {
            Self::Down
        }
    }

    fn problem(self, name: &str) -> Option<String> {
        match self {
            Self::Ok => None,
            Self::Down => Some(format!("{name} down")),
            Self::Blocked => Some(format!(
                "{name} blocked (a memory or disk alarm stops publishing)"
            )),
            Self::Draining => Some(format!(
                "{name} in progress (requests are still served until the drain period ends: send new ones elsewhere)"
            )),
        }
    }
}

/// Whether the service is draining: asked to stop, it first answers its
/// health checks with 503 for a drain period while it goes on serving
/// (`common::server::BoundedServer::drain` sets it). One per service,
/// shared by its server and its app (`app_data`).
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `/health` and `/ready` while draining: 503, whatever the checks say.
async fn unless_draining(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req
        .app_data::<Draining>()
        .is_some_and(Draining::is_draining)
    {
        let resp = ready_response(&[("shutdown", Check::Draining)], ());
        return Ok(req.into_response(resp).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[derive(Serialize)]
struct Readiness<'a, E: Serialize> {
    status: &'static str,
    checks: BTreeMap<&'a str, Check>,
    #[serde(flatten)]
    extra: E,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorDetail>,
}

/// `GET /health`.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The `/ready` answer for these checks, with `extra` fields (`()` for none).
pub fn ready_response(checks: &[(&str, Check)], extra: impl Serialize) -> HttpResponse {
    let problems: Vec<String> = checks
        .iter()
        .filter_map(|(name, check)| check.problem(name))
        .collect();
    let ready = problems.is_empty();
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        checks: checks.iter().copied().collect(),
        extra,
        error: (!ready).then(|| ErrorDetail {
            code: ErrorCode::NotReady,
            message: format!("not ready: {}", problems.join(" and ")),
            field: None,
        }),
    };
    if ready {
        return HttpResponse::Ok().json(body);
    }
    let mut resp = HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE).json(body);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}

/// Registers `/health` and `/ready` (with `ready` as its handler), GET and
/// HEAD, 405 JSON for other methods: `.configure(|c| health::configure(c, ready))`.
pub fn configure<F, Args>(cfg: &mut web::ServiceConfig, ready: F)
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    cfg.service(
        web::resource("/health")
            .route(get_or_head().to(health))
            .default_service(web::to(method_not_allowed("GET, HEAD")))
            .wrap(from_fn(unless_draining)),
    )
    .service(
        web::resource("/ready")
            .route(get_or_head().to(ready))
            .default_service(web::to(method_not_allowed("GET, HEAD")))
            .wrap(from_fn(unless_draining)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn body(resp: HttpResponse) -> (u16, Option<String>, serde_json::Value) {
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = to_bytes(resp.into_body()).await.unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    #[actix_web::test]
    async fn ready_names_every_check() {
        let resp = ready_response(&[("postgres", Check::Ok), ("rabbitmq", Check::Ok)], ());
        assert_eq!(
            body(resp).await,
            (
                200,
                None,
                serde_json::json!({"status":"ready","checks":{"postgres":"ok","rabbitmq":"ok"}})
            )
        );
    }

    #[actix_web::test]
    async fn not_ready_names_what_is_down_and_keeps_extra_fields() {
        let resp = ready_response(
            &[("inventory", Check::Down), ("rabbitmq", Check::Blocked)],
            serde_json::json!({"orders": {"stored": 1}}),
        );
        assert_eq!(
            body(resp).await,
            (
                503,
                Some("5".to_owned()),
                serde_json::json!({
                    "status": "not_ready",
                    "checks": {"inventory": "down", "rabbitmq": "blocked"},
                    "orders": {"stored": 1},
                    "error": {
                        "code": "not_ready",
                        "message": "not ready: inventory down and rabbitmq blocked (a memory or disk alarm stops publishing)"
                    }
                })
            )
        );
    }
}
