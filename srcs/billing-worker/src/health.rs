//! The worker's HTTP server: `GET /health` (the process is up) and `GET
//! /ready` (it can do its job: consuming from RabbitMQ and PostgreSQL
//! answering), in `common::health`'s shape plus the `orders` counters.

use crate::error::WorkerError;
use crate::status::{Counters, WorkerStatus};
use crate::store;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use common::db::PgPool;
use common::health::{ready_response, Check};
use common::http::ServerLimits;
use common::request_id::{self, AccessLog};
use serde::Serialize;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// How long `/ready` waits for a database connection before saying "down".
const READY_DB_TIMEOUT: Duration = Duration::from_secs(1);

pub const ACCESS_LOG_TARGET: &str = "billing_worker::access";

#[derive(Debug, Serialize)]
struct Extra {
    orders: Counters,
}

async fn ready(pool: web::Data<PgPool>, status: web::Data<Arc<WorkerStatus>>) -> HttpResponse {
    let rabbitmq = status.is_consuming();
    let pool = pool.get_ref().clone();
    let database = web::block(move || -> Result<(), WorkerError> {
        let mut conn = pool.get_timeout(READY_DB_TIMEOUT)?;
        Ok(store::ping(&mut conn)?)
    })
    .await;
    let postgres = matches!(database, Ok(Ok(())));
    ready_response(
        &[
            ("postgres", Check::up(postgres)),
            ("rabbitmq", Check::up(rabbitmq)),
        ],
        Extra {
            orders: status.counters(),
        },
    )
}

/// The health server on an already bound listener. It handles no signals
/// itself: the application stops it after the consumer has finished.
pub fn server(
    listener: TcpListener,
    pool: PgPool,
    status: Arc<WorkerStatus>,
) -> std::io::Result<Server> {
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
            .wrap(from_fn(request_id::middleware))
            .app_data(pool.clone())
            .app_data(status.clone())
            .app_data(AccessLog(ACCESS_LOG_TARGET))
            .configure(|cfg| common::health::configure(cfg, ready))
            .default_service(web::to(common::http::not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(2)
    .listen(listener)?;
    Ok(common::bounded_server!(server, limits).run())
}
