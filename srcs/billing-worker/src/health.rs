//! `GET /health` (the process is up) and `GET /ready` (it can do its job:
//! consuming from RabbitMQ and PostgreSQL answering), as JSON.

use crate::error::WorkerError;
use crate::status::{Counters, WorkerStatus};
use crate::store;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use common::db::PgPool;
use common::http::ServerLimits;
use serde::Serialize;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// How long `/ready` waits for a database connection before saying "down".
const READY_DB_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize)]
struct Readiness {
    status: &'static str,
    rabbitmq: &'static str,
    database: &'static str,
    orders: Counters,
}

fn up_down(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "up" }))
}

async fn ready(pool: web::Data<PgPool>, status: web::Data<Arc<WorkerStatus>>) -> HttpResponse {
    let rabbitmq = status.is_consuming();
    let pool = pool.get_ref().clone();
    let database = web::block(move || -> Result<(), WorkerError> {
        let mut conn = pool.get_timeout(READY_DB_TIMEOUT)?;
        Ok(store::ping(&mut conn)?)
    })
    .await;
    let database = matches!(database, Ok(Ok(())));
    let body = Readiness {
        status: if rabbitmq && database {
            "ready"
        } else {
            "not_ready"
        },
        rabbitmq: up_down(rabbitmq),
        database: up_down(database),
        orders: status.counters(),
    };
    if rabbitmq && database {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// The health server on an already bound listener. It handles no signals
/// itself: the application stops it after the consumer has finished.
pub fn server(
    listener: TcpListener,
    pool: PgPool,
    status: Arc<WorkerStatus>,
) -> Result<Server, WorkerError> {
    let pool = web::Data::new(pool);
    let status = web::Data::new(status);
    // Probes only: a few connections are plenty, and none may hold more.
    let limits = ServerLimits {
        max_connections: 64,
        ..ServerLimits::default()
    };
    let server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(common::http::bound_requests))
            .wrap(common::http::json_error_pages())
            .app_data(pool.clone())
            .app_data(status.clone())
            .service(
                web::resource("/health")
                    .route(common::http::get_or_head().to(health))
                    .default_service(web::to(common::http::method_not_allowed("GET, HEAD"))),
            )
            .service(
                web::resource("/ready")
                    .route(common::http::get_or_head().to(ready))
                    .default_service(web::to(common::http::method_not_allowed("GET, HEAD"))),
            )
            .default_service(web::to(common::http::not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(2)
    .listen(listener)
    .map_err(WorkerError::Http)?;
    Ok(common::bounded_server!(server, limits).run())
}
