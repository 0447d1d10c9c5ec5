mod health;
mod movies;

use actix_web::web;
use common::http::{get_or_head, method_not_allowed};

/// Every route. Paths are matched after trailing slashes are trimmed
/// (see `startup`), so `/api/movies/` reaches the same handlers.
pub fn configure(cfg: &mut web::ServiceConfig) {
    common::health::configure(cfg, health::ready);
    cfg.service(
        web::resource("/api/movies")
            .route(get_or_head().to(movies::list))
            .route(web::post().to(movies::create))
            .route(web::delete().to(movies::delete_all))
            .default_service(web::to(method_not_allowed("GET, HEAD, POST, DELETE"))),
    )
    .service(
        web::resource("/api/movies/{id}")
            .route(get_or_head().to(movies::get))
            .route(web::put().to(movies::update))
            .route(web::delete().to(movies::delete))
            .default_service(web::to(method_not_allowed("GET, HEAD, PUT, DELETE"))),
    );
}
