//! Building and running the worker: `build()` binds the health listener and
//! prepares the pool (without connecting), `run()` serves health, migrates
//! and consumes until SIGTERM/SIGINT, `run_until()` until any future resolves
//! (tests use it to simulate a stop).

use crate::config::Config;
use crate::consumer::Consumer;
use crate::error::{one_line, WorkerError};
use crate::shutdown::{self, Shutdown};
use crate::status::WorkerStatus;
use crate::{health, MIGRATIONS};
use common::db::PgPool;
use diesel_migrations::MigrationHarness;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// How long the consumer waits for a database connection per try.
const DB_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(2);
const MIGRATE_RETRY_INITIAL: Duration = Duration::from_millis(250);
const MIGRATE_RETRY_MAX: Duration = Duration::from_secs(4);

pub struct Application {
    config: Arc<Config>,
    listener: TcpListener,
    health_port: u16,
    pool: PgPool,
    status: Arc<WorkerStatus>,
}

impl Application {
    pub fn build(config: Config) -> Result<Self, WorkerError> {
        let addr = format!("{}:{}", config.health_host, config.health_port);
        let bind_err = |source| WorkerError::Bind {
            addr: addr.clone(),
            source,
        };
        let listener = TcpListener::bind(&addr).map_err(bind_err)?;
        let health_port = listener.local_addr().map_err(bind_err)?.port();
        let pool = common::db::pool(
            &config.pg_target(),
            config.db_pool_size,
            DB_CHECKOUT_TIMEOUT,
        );
        Ok(Self {
            config: Arc::new(config),
            listener,
            health_port,
            pool,
            status: Arc::new(WorkerStatus::default()),
        })
    }

    pub fn health_port(&self) -> u16 {
        self.health_port
    }

    pub fn status(&self) -> Arc<WorkerStatus> {
        Arc::clone(&self.status)
    }

    /// Runs until SIGTERM or SIGINT, then stops gracefully.
    pub async fn run(self) -> Result<(), WorkerError> {
        self.run_until(shutdown::signal()).await
    }

    /// Runs until `stop` resolves, then: stops consuming, lets the batch in
    /// flight finish and be acked, closes channel and connection, stops the
    /// health server.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), WorkerError> {
        let (trigger, shutdown) = shutdown::channel();
        log::info!(
            "billing-worker starting: health on {}, database {:?}",
            self.listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            self.config.pg_target()
        );
        let server = health::server(self.listener, self.pool.clone(), Arc::clone(&self.status))?;
        let server_handle = server.handle();
        let mut server_task = tokio::spawn(server);

        let consumer = Consumer {
            config: Arc::clone(&self.config),
            pool: self.pool.clone(),
            status: Arc::clone(&self.status),
            shutdown: shutdown.clone(),
        };
        let pool = self.pool.clone();
        let status = Arc::clone(&self.status);
        let worker = tokio::spawn(async move {
            if migrate(&pool, &status, &shutdown).await {
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
        match server_result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(WorkerError::Http(e)),
            Err(e) => Err(WorkerError::Task(e.to_string())),
        }
    }
}

/// Applies pending migrations, waiting for the database as long as needed.
/// Unlike `common::db::migrate_with_retry` this gives up when a stop is
/// requested, so a worker whose database never came up still stops at once.
/// Returns false in that case.
async fn migrate(pool: &PgPool, status: &WorkerStatus, shutdown: &Shutdown) -> bool {
    let mut delay = MIGRATE_RETRY_INITIAL;
    let mut attempt = 1u32;
    loop {
        let pool = pool.clone();
        let task = tokio::task::spawn_blocking(move || -> Result<usize, String> {
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            conn.run_pending_migrations(MIGRATIONS)
                .map(|applied| applied.len())
                .map_err(|e| e.to_string())
        });
        let result = tokio::select! {
            joined = task => joined.unwrap_or_else(|e| Err(e.to_string())),
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
                    "database not ready (try {attempt}): {}; nothing is consumed until it is, retrying in {delay:?}",
                    one_line(&e)
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.requested() => return false,
        }
        delay = (delay * 2).min(MIGRATE_RETRY_MAX);
        attempt += 1;
    }
}
