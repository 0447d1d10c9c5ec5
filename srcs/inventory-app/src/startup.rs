use crate::config::{Config, Limits};
use crate::state::AppState;
use crate::{routes, MIGRATIONS};
use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Logger, NormalizePath};
use actix_web::{web, App, HttpServer};
use common::config::ConfigError;
use common::http::{
    bound_requests, json_config, json_error_pages, not_found, path_config, query_config,
    ServerLimits,
};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long a request waits for a pooled connection: with the database down
/// it gets a 503 after this, instead of hanging.
const CHECKOUT_TIMEOUT: Duration = Duration::from_millis(800);
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Method, path, status, latency and the gateway's request id (`-` if none).
const ACCESS_LOG_FORMAT: &str = "%r %s %Dms rid=%{x-request-id}i";

/// Why the service could not start: each says what failed, so an operator
/// is not sent looking for a port conflict when the cause is elsewhere.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot start the HTTP server: {0}")]
    Server(std::io::Error),
    #[error("cannot start the migrations thread: {0}")]
    Migrations(std::io::Error),
}

/// A bound, not yet serving, inventory-app.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds the listener, then starts migrations in the background, so the
    /// service answers (503 on data routes) while its database is still down.
    /// Call from inside an actix/tokio runtime.
    pub fn build(config: &Config) -> Result<Self, StartupError> {
        Self::build_with(config, &Limits::default())
    }

    /// [`build`](Self::build) with tunables other than the defaults.
    pub fn build_with(config: &Config, limits: &Limits) -> Result<Self, StartupError> {
        config.validate()?;
        limits.validate()?;
        let address = format!("{}:{}", config.host, config.port);
        let bind_error = |source| StartupError::Bind {
            address: address.clone(),
            source,
        };
        let server_limits = ServerLimits::default();
        let listener =
            common::http::listen((config.host.as_str(), config.port), server_limits.backlog)
                .map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();

        let pool = common::db::pool(&config.pg_target(), config.db_pool_size, CHECKOUT_TIMEOUT);
        let state = AppState::new(pool, limits.listing_stall());
        spawn_migrations(&state).map_err(StartupError::Migrations)?;

        let state = web::Data::new(state);
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(json_config(MAX_BODY_BYTES))
                .app_data(path_config())
                .app_data(query_config())
                .configure(routes::configure)
                .default_service(web::to(not_found))
                // The body deadline, CONNECT/Upgrade refusal and connection
                // close after an unread body (the 64 KiB limit is the JSON one).
                .wrap(from_fn(bound_requests))
                .wrap(json_error_pages())
                .wrap(NormalizePath::trim())
                // Outermost, so it logs the path as sent and the final status.
                .wrap(Logger::new(ACCESS_LOG_FORMAT))
        })
        .listen(listener)
        .map_err(StartupError::Server)?;
        server = common::bounded_server!(server, server_limits);
        if let Some(workers) = config.workers {
            server = server.workers(workers);
        }
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
