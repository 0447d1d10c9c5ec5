//! The API description, compiled in from the repository's `openapi.yaml` so
//! the served document is always the one in the tree.

use actix_web::HttpResponse;

pub const SPEC: &str = include_str!("../../../openapi.yaml");

pub async fn spec() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(SPEC)
}
