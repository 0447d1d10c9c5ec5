use crate::error::Error;
use crate::listing::{self, ListingBody, Piece};
use crate::models::{Movie, MovieFilter};
use crate::queries;
use crate::state::AppState;
use crate::validation::{self, RawMovieQuery};
use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use common::request_id::RequestId;
use diesel::{OptionalExtension, PgConnection, QueryResult};
use serde_json::{json, Value};

/// Streams the listing (see `listing`). Errors before the first byte are
/// ordinary error responses.
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<RawMovieQuery>,
) -> Result<HttpResponse, Error> {
    let filter = validation::movie_filter(query.into_inner())?;
    let rid = RequestId::of(&req);
    let mut rx = listing::start(&state, filter.clone(), rid.clone());
    let next_after = match rx.recv().await {
        Some(Piece::Start { next_after }) => next_after,
        Some(Piece::Failed(e)) => return Err(e),
        _ => return Err(stopped_early()),
    };
    let mut resp = HttpResponse::Ok();
    resp.insert_header(header::ContentType::json());
    if let Some(after_id) = next_after {
        resp.insert_header((header::LINK, next_link(&filter, after_id)?));
    }
    match rx.recv().await {
        // The whole answer: sent with its length, as before streaming.
        Some(Piece::Last(bytes)) => Ok(resp.body(bytes)),
        // HEAD of a long answer: its headers say chunked, as GET's would;
        // dropping `rx` stops the read.
        Some(Piece::Data(_)) if req.method() == Method::HEAD => Ok(resp.body(ListingBody::empty())),
        Some(Piece::Data(first)) => Ok(resp.body(ListingBody::new(first, rx, rid))),
        Some(Piece::Failed(e)) => Err(e),
        Some(Piece::Start { .. }) | None => Err(stopped_early()),
    }
}

fn stopped_early() -> Error {
    Error::Internal("the listing stopped before its first chunk".into())
}

/// `Link: </api/movies?...&after_id=N&limit=K>; rel="next"`, path-relative so
/// it stays right behind the gateway (which forwards it unchanged).
fn next_link(filter: &MovieFilter, after_id: i64) -> Result<String, Error> {
    let limit = filter.limit.unwrap_or_default();
    let mut params = Vec::with_capacity(3);
    if let Some(title) = &filter.title {
        params.push(("title", title.clone()));
    }
    params.push(("after_id", after_id.to_string()));
    params.push(("limit", limit.to_string()));
    let query = serde_urlencoded::to_string(&params)
        .map_err(|e| Error::Internal(format!("encoding the next link: {e}").into()))?;
    Ok(format!("</api/movies?{query}>; rel=\"next\""))
}

pub async fn create(
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, Error> {
    let new = validation::new_movie(&body)?;
    let movie = state.db(move |c| queries::insert(c, &new)).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/movies/{}", movie.id)))
        .json(movie))
}

pub async fn delete_all(state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let deleted = state.db(queries::delete_all).await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted": deleted })))
}

pub async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, Error> {
    let id = validation::movie_id(&id)?;
    one_movie(&state, id, move |c| queries::find(c, id)).await
}

pub async fn update(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, Error> {
    let id = validation::movie_id(&id)?;
    let changes = validation::movie_changes(&body)?;
    one_movie(&state, id, move |c| queries::update(c, id, &changes)).await
}

pub async fn delete(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let id = validation::movie_id(&id)?;
    one_movie(&state, id, move |c| queries::delete(c, id)).await
}

/// GET, PUT and DELETE of one movie answer alike: the row `query` returns,
/// or 404 naming `id` when there is none.
async fn one_movie<F>(state: &AppState, id: i64, query: F) -> Result<HttpResponse, Error>
where
    F: FnOnce(&mut PgConnection) -> QueryResult<Movie> + Send + 'static,
{
    let movie = state
        .db(move |c| query(c).optional())
        .await?
        .ok_or_else(|| Error::movie_not_found(id))?;
    Ok(HttpResponse::Ok().json(movie))
}
