//! Readiness (`/ready`): migrations done and PostgreSQL answers. `/health`
//! and the body's shape are `common::health`'s.

use crate::queries;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use common::health::{ready_response, Check};

/// Ready to serve data: migrations done and the database answers a query now.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let postgres = state.db(queries::ping).await.is_ok();
    ready_response(&[("postgres", Check::up(postgres))], ())
}
