//! The worker's routes: only the probes, `GET /health` and `GET /ready`
//! (the handler in `health`, where every service keeps it).

mod health;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    common::health::configure(cfg, health::ready);
    cfg.default_service(web::to(common::http::not_found));
}
