use crate::config::Config;
use crate::state::AppState;
use crate::{routes, MIGRATIONS};
use actix_web::middleware::{from_fn, NormalizePath};
use actix_web::{web, App};
use common::config::ServiceConfig;
use common::health::Draining;
use common::http::{
    bound_requests, json_config, json_error_pages, not_found, path_config, query_config,
    ServerLimits,
};
use common::metrics::{self, http::HttpMetrics, pool::PoolCollector};
use common::request_id::{self, AccessLog};
use common::server::BoundedServer;
use common::startup::Servers;
pub use common::startup::{Bound, StartupError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long a request waits for a pooled connection: with the database down
/// it gets a 503 after this, instead of hanging.
const CHECKOUT_TIMEOUT: Duration = Duration::from_millis(800);
const MAX_BODY_BYTES: usize = 64 * 1024;
pub const ACCESS_LOG_TARGET: &str = "inventory_app::access";

/// A bound, not yet serving, inventory-app.
pub struct Application {
    servers: Servers,
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

        let (metrics_listener, metrics_port) =
            common::metrics::listen(&config.metrics_host, config.metrics_port)?;
        let pool = common::db::pool(&config.db, CHECKOUT_TIMEOUT);
        let mut registry = common::metrics::base("inventory-app", env!("CARGO_PKG_VERSION"));
        let http_metrics = HttpMetrics::register(&mut registry);
        registry.register_collector(Box::new(PoolCollector(pool.clone())));
        let metrics_server = common::metrics::serve(metrics_listener, Arc::new(registry))
            .map_err(StartupError::Server)?;
        let state = AppState::new(pool, config.limits.listing_stall());
        if config.migrate_at_start {
            spawn_migrations(&state).map_err(|source| StartupError::Thread {
                what: "migrations",
                source,
            })?;
        } else {
            // `inventory-app migrate` ran before, as the migration role.
            state.migrated.store(true, Ordering::Release);
        }

        let state = web::Data::new(state);
        let draining = Draining::default();
        let app_draining = draining.clone();
        let server = BoundedServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(app_draining.clone())
                .app_data(json_config(MAX_BODY_BYTES))
                .app_data(path_config())
                .app_data(query_config())
                .app_data(AccessLog(ACCESS_LOG_TARGET))
                .app_data(http_metrics.clone())
                .configure(routes::configure)
                .default_service(web::to(not_found))
                // The body deadline, CONNECT/Upgrade refusal and connection
                // close after an unread body (the 64 KiB limit is the JSON one).
                .wrap(from_fn(bound_requests))
                .wrap(json_error_pages())
                // Inside the path normalisation, so `/api/movies/1/` counts
                // under the route it is served by.
                .wrap(from_fn(metrics::http::middleware))
                .wrap(NormalizePath::trim())
                // Outermost, so it logs the path as sent and the final status.
                .wrap(from_fn(request_id::middleware))
        })
        .limits(server_limits)
        .workers(config.workers)
        .drain(draining, Duration::from_millis(config.drain_ms))
        .serve(listener)
        .map_err(StartupError::Server)?;
        log::info!(
            "inventory-app listening on {}:{port} (metrics on {}:{metrics_port}), database {:?}",
            config.host,
            config.metrics_host,
            config.db
        );
        Ok(Self {
            servers: Servers {
                port,
                server,
                metrics_port,
                metrics_server,
            },
        })
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM), then stops the
    /// metrics listener.
    pub async fn run(self) -> std::io::Result<()> {
        self.servers.run().await
    }
}

impl Bound for Application {
    fn servers(&self) -> &Servers {
        &self.servers
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
