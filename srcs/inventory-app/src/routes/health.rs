use crate::error::ApiError;
use crate::queries;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

/// The process is up; says nothing about the database.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready to serve data: migrations done and the database answers a query now.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.db(queries::ping).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
