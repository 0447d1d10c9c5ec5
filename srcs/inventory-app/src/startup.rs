use crate::config::Config;
use crate::state::AppState;
use crate::{routes, MIGRATIONS};
use actix_web::dev::Server;
use actix_web::middleware::{from_fn, NormalizePath};
use actix_web::{web, App, HttpServer};
use common::config::ServiceConfig;
use common::http::{
    bound_requests, json_config, json_error_pages, not_found, path_config, query_config,
    ServerLimits,
};
use common::request_id::{self, AccessLog};
pub use common::startup::StartupError;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long a request waits for a pooled connection: with the database down
/// it gets a 503 after this, instead of hanging.
const CHECKOUT_TIMEOUT: Duration = Duration::from_millis(800);
const MAX_BODY_BYTES: usize = 64 * 1024;
pub const ACCESS_LOG_TARGET: &str = "inventory_app::access";

/// A bound, not yet serving, inventory-app.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Checks the configuration, binds the listener (port 0 picks a free
    /// one), then starts migrations in the background, so the service answers
    /// (503 on data routes) while its database is still down. Call from
    /// inside an actix/tokio runtime.
    pub fn build(config: Config) -> Result<Self, StartupError> {
        config.validate()?;
        let server_limits = ServerLimits::default();
        let (listener, port) =
            common::startup::listen(&config.host, config.port, server_limits.backlog)?;

        let pool = common::db::pool(&config.db, CHECKOUT_TIMEOUT);
        let state = AppState::new(pool, config.limits.listing_stall());
        spawn_migrations(&state).map_err(|source| StartupError::Thread {
            what: "migrations",
            source,
        })?;

        let state = web::Data::new(state);
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(json_config(MAX_BODY_BYTES))
                .app_data(path_config())
                .app_data(query_config())
                .app_data(AccessLog(ACCESS_LOG_TARGET))
                .configure(routes::configure)
                .default_service(web::to(not_found))
                // The body deadline, CONNECT/Upgrade refusal and connection
                // close after an unread body (the 64 KiB limit is the JSON one).
                .wrap(from_fn(bound_requests))
                .wrap(json_error_pages())
                .wrap(NormalizePath::trim())
                // Outermost, so it logs the path as sent and the final status.
                .wrap(from_fn(request_id::middleware))
        })
        .listen(listener)
        .map_err(StartupError::Server)?;
        server = common::bounded_server!(server, server_limits);
        if let Some(workers) = config.workers {
            server = server.workers(workers);
        }
        log::info!(
            "inventory-app listening on {}:{port}, database {:?}",
            config.host,
            config.db
        );
        Ok(Self {
            port,
            server: server.run(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM).
    pub async fn run(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn spawn_migrations(state: &AppState) -> std::io::Result<()> {
    let pool = state.pool.clone();
    let migrated = state.migrated.clone();
    std::thread::Builder::new()
        .name("migrations".to_owned())
        .spawn(move || {
            common::db::migrate_with_retry(&pool, || MIGRATIONS, "inventory-app");
            migrated.store(true, Ordering::Release);
        })
        .map(drop)
}
