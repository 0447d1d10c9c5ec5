//! Every route of the gateway; the handlers live in the modules named after
//! what they do (`proxy`, `billing`, `openapi`), and `/ready` in `health`,
//! where every service keeps it.

mod health;

use actix_web::web;
use common::http::{get_or_head, json_error_pages, method_not_allowed, not_found};

use crate::{billing, openapi, proxy};

/// `POST` an order at PATH; any other method is a 405 naming `POST`.
fn billing_resource(path: &str) -> actix_web::Resource {
    web::resource(path)
        .route(web::post().to(billing::create_order))
        .default_service(web::to(method_not_allowed("POST")))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // No JSON rewriting here: whatever inventory answers (even a non-JSON
    // error) reaches the client unchanged.
    // The resource is there for the metrics, which label a request by the
    // pattern it matched (a default service has none); the default service
    // takes the bare prefix.
    cfg.service(
        web::scope("/api/movies")
            .service(web::resource("/{tail:.*}").to(proxy::forward))
            .default_service(web::to(proxy::forward)),
    )
    .service(
        web::scope("")
            .wrap(json_error_pages())
            // Two static resources, not one of two paths: actix matches a
            // multi-path resource with a regex set, which cost an order
            // ~13 % of the gateway's instructions (BENCHMARKS.md). The
            // metrics label both `/api/billing` (a trailing slash is no
            // other route).
            .service(billing_resource("/api/billing"))
            .service(billing_resource("/api/billing/"))
            .service(
                web::resource("/api/openapi.yaml")
                    .route(get_or_head().to(openapi::spec))
                    .default_service(web::to(method_not_allowed("GET, HEAD"))),
            )
            .configure(|cfg| common::health::configure(cfg, health::ready))
            .default_service(web::to(not_found)),
    );
}
