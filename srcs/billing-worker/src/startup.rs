//! Building and running the worker, in the shape of the other services:
//! `build()` checks the configuration, binds and starts the health server and
//! prepares the pool (without connecting); `run()` migrates and consumes until
//! SIGTERM/SIGINT, `run_until()` until any future resolves (tests use it to
//! simulate a stop).

use crate::config::Config;
use crate::consumer::Consumer;
use crate::error::Error;
use crate::shutdown::{self, Shutdown};
use crate::status::WorkerStatus;
use crate::{routes, MIGRATIONS};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use common::config::ServiceConfig;
use common::db::{try_migrate, PgPool, MIGRATE_RETRY_INITIAL, MIGRATE_RETRY_MAX};
use common::http::ServerLimits;
use common::logging::one_line;
use common::metrics::{self, http::HttpMetrics, pool::PoolCollector, Registry};
use common::request_id::{self, AccessLog};
use common::retry::Backoff;
use common::server::BoundedServer;
pub use common::startup::StartupError;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// How long the consumer waits for a database connection per try.
const DB_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(2);
pub const ACCESS_LOG_TARGET: &str = "billing_worker::access";

pub struct Application {
    config: Arc<Config>,
    server: Server,
    port: u16,
    pool: PgPool,
    status: Arc<WorkerStatus>,
}

impl Application {
    /// Call inside a tokio runtime (the health server starts serving here).
    pub fn build(config: Config) -> Result<Self, StartupError> {
        config.validate()?;
        let (listener, port) = common::startup::listen(
            &config.health_host,
            config.health_port,
            ServerLimits::default().backlog,
        )?;
        let pool = common::db::pool(&config.db, DB_CHECKOUT_TIMEOUT);
        let status = Arc::new(WorkerStatus::default());
        let mut registry = common::metrics::base("billing-worker", env!("CARGO_PKG_VERSION"));
        registry.register_collector(Box::new(PoolCollector(pool.clone())));
        let http_metrics = HttpMetrics::register(&mut registry);
        crate::metrics::register(&mut registry, &status);
        let server = health_server(
            listener,
            pool.clone(),
            Arc::clone(&status),
            http_metrics,
            web::Data::new(registry),
        )
        .map_err(StartupError::Server)?;
        log::info!(
            "billing-worker listening on {}:{port} (health), database {:?}, RabbitMQ at {:?}",
            config.health_host,
            config.db,
            config.rabbitmq
        );
        Ok(Self {
            config: Arc::new(config),
            server,
            port,
            pool,
            status,
        })
    }

    /// The health server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn status(&self) -> Arc<WorkerStatus> {
        Arc::clone(&self.status)
    }

    /// Runs until SIGTERM or SIGINT, then stops gracefully.
    pub async fn run(self) -> Result<(), Error> {
        self.run_until(shutdown::signal()).await
    }

    /// Runs until `stop` resolves, then: stops consuming, lets the batch in
    /// flight finish and be acked, closes channel and connection, stops the
    /// health server.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), Error> {
        let (trigger, shutdown) = shutdown::channel();
        let server_handle = self.server.handle();
        let mut server_task = tokio::spawn(self.server);

        let consumer = Consumer {
            config: Arc::clone(&self.config),
            pool: self.pool.clone(),
            status: Arc::clone(&self.status),
            shutdown: shutdown.clone(),
        };
        let pool = self.pool.clone();
        let status = Arc::clone(&self.status);
        // Without migrations at start, `billing-worker migrate` ran before.
        let migrate_first = self.config.migrate_at_start;
        let worker = tokio::spawn(async move {
            if !migrate_first || migrate(&pool, &status, &shutdown).await {
                consumer.run().await;
            }
        });

        let mut server_result = None;
        tokio::select! {
            () = stop => {}
            result = &mut server_task => {
                log::error!("health server ended unexpectedly; stopping");
                server_result = Some(result);
            }
        }
        trigger.stop();
        if let Err(e) = worker.await {
            log::error!("consumer task failed: {e}");
        }
        server_handle.stop(true).await;
        let server_result = match server_result {
            Some(r) => r,
            None => server_task.await,
        };
        log::info!("billing-worker stopped");
        server_result?.map_err(Error::Http)
    }
}

/// The health server on an already bound listener (loopback): the probes
/// and `GET /metrics`. It handles no signals itself: the application stops
/// it after the consumer has finished.
fn health_server(
    listener: TcpListener,
    pool: PgPool,
    status: Arc<WorkerStatus>,
    http_metrics: web::Data<HttpMetrics>,
    registry: web::Data<Registry>,
) -> std::io::Result<Server> {
    let pool = web::Data::new(pool);
    let status = web::Data::new(status);
    // Probes only: a few connections are plenty, and none may hold more.
    let limits = ServerLimits {
        max_connections: 64,
        ..ServerLimits::default()
    };
    BoundedServer::new(move || {
        App::new()
            .wrap(from_fn(common::http::bound_requests))
            .wrap(common::http::json_error_pages())
            .wrap(from_fn(metrics::http::middleware))
            .wrap(from_fn(request_id::middleware))
            .app_data(pool.clone())
            .app_data(status.clone())
            .app_data(http_metrics.clone())
            .app_data(AccessLog(ACCESS_LOG_TARGET))
            .configure(|cfg| metrics::configure(cfg, registry.clone()))
            .configure(routes::configure)
    })
    .limits(limits)
    .workers(Some(1))
    .disable_signals()
    .shutdown_timeout(2)
    .serve(listener)
}

/// Applies pending migrations, waiting for the database as long as needed.
/// Unlike `common::db::migrate_with_retry` this gives up when a stop is
/// requested, so a worker whose database never came up still stops at once.
/// Returns false in that case.
async fn migrate(pool: &PgPool, status: &WorkerStatus, shutdown: &Shutdown) -> bool {
    let mut backoff = Backoff::new(MIGRATE_RETRY_INITIAL, MIGRATE_RETRY_MAX);
    loop {
        let pool = pool.clone();
        let task = tokio::task::spawn_blocking(move || try_migrate(&pool, MIGRATIONS));
        let result = tokio::select! {
            joined = task => joined.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())),
            () = shutdown.requested() => return false,
        };
        match result {
            Ok(applied) => {
                log::info!("database ready, {applied} migration(s) applied");
                return true;
            }
            Err(e) => {
                status.add_database_retry();
                log::warn!(
                    "database not ready (try {}): {}; nothing is consumed until it is, retrying in {:?}",
                    backoff.attempt(),
                    one_line(&e),
                    backoff.peek()
                );
            }
        }
        tokio::select! {
            () = backoff.wait() => {}
            () = shutdown.requested() => return false,
        }
    }
}
