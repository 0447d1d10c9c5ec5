mod health;
mod movies;

use actix_web::web;
use common::http::method_not_allowed;

/// Every route. Paths are matched after trailing slashes are trimmed
/// (see `startup`), so `/api/movies/` reaches the same handlers.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/health")
            .route(web::get().to(health::health))
            .default_service(web::to(method_not_allowed("GET"))),
    )
    .service(
        web::resource("/ready")
            .route(web::get().to(health::ready))
            .default_service(web::to(method_not_allowed("GET"))),
    )
    .service(
        web::resource("/api/movies")
            .route(web::get().to(movies::list))
            .route(web::post().to(movies::create))
            .route(web::delete().to(movies::delete_all))
            .default_service(web::to(method_not_allowed("GET, POST, DELETE"))),
    )
    .service(
        web::resource("/api/movies/{id}")
            .route(web::get().to(movies::get))
            .route(web::put().to(movies::update))
            .route(web::delete().to(movies::delete))
            .default_service(web::to(method_not_allowed("GET, PUT, DELETE"))),
    );
}
