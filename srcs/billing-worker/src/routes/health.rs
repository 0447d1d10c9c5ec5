//! Readiness (`/ready`): the worker can do its job, i.e. it is consuming from
//! RabbitMQ and PostgreSQL answers, in `common::health`'s shape plus the
//! `orders` counters. `/health` is `common::health`'s.

use crate::error::Error;
use crate::status::{Counters, WorkerStatus};
use crate::store;
use actix_web::{web, HttpResponse};
use common::db::PgPool;
use common::health::{ready_response, Check};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// How long `/ready` waits for a database connection before saying "down".
const READY_DB_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize)]
struct Extra {
    orders: Counters,
}

pub async fn ready(pool: web::Data<PgPool>, status: web::Data<Arc<WorkerStatus>>) -> HttpResponse {
    let rabbitmq = status.is_consuming();
    let pool = pool.get_ref().clone();
    let database = web::block(move || -> Result<(), Error> {
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
