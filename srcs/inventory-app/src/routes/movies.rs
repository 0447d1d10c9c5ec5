use crate::error::ApiError;
use crate::queries;
use crate::state::AppState;
use crate::validation::{self, RawMovieQuery};
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use diesel::OptionalExtension;
use serde_json::{json, Value};

pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<RawMovieQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = validation::movie_filter(query.into_inner())?;
    let movies = state.db(move |c| queries::list(c, &filter)).await?;
    Ok(HttpResponse::Ok().json(movies))
}

pub async fn create(
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let new = validation::new_movie(&body)?;
    let movie = state.db(move |c| queries::insert(c, &new)).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/movies/{}", movie.id)))
        .json(movie))
}

pub async fn delete_all(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let deleted = state.db(queries::delete_all).await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted": deleted })))
}

pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = validation::movie_id(&id)?;
    let movie = state
        .db(move |c| queries::find(c, id).optional())
        .await?
        .ok_or_else(|| ApiError::movie_not_found(id))?;
    Ok(HttpResponse::Ok().json(movie))
}

pub async fn update(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = validation::movie_id(&id)?;
    let changes = validation::movie_changes(&body)?;
    let movie = state
        .db(move |c| queries::update(c, id, &changes).optional())
        .await?
        .ok_or_else(|| ApiError::movie_not_found(id))?;
    Ok(HttpResponse::Ok().json(movie))
}

pub async fn delete(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = validation::movie_id(&id)?;
    let movie = state
        .db(move |c| queries::delete(c, id).optional())
        .await?
        .ok_or_else(|| ApiError::movie_not_found(id))?;
    Ok(HttpResponse::Ok().json(movie))
}
