use crate::error::Error;
use actix_web::web;
use common::db::PgPool;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, PooledConnection};
use diesel::QueryResult;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a request that came before the migrations finished looks again.
const MIGRATIONS_POLL: Duration = Duration::from_millis(5);

/// Shared by every worker: the pool, and whether migrations have finished
/// (until then the schema may not exist: see [`AppState::connection`]).
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub migrated: Arc<AtomicBool>,
    /// See `Config::listing_stall_secs`.
    pub listing_stall: Duration,
}

impl AppState {
    pub fn new(pool: PgPool, listing_stall: Duration) -> Self {
        Self {
            pool,
            migrated: Arc::new(AtomicBool::new(false)),
            listing_stall,
        }
    }

    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    /// A pooled connection, once migrations have run (until then the schema
    /// may not exist). A request that comes while they still run, in the
    /// first moments after a start, when a balancer that probes `/health`
    /// may already send one, waits for them as it waits for a connection:
    /// both within the pool's checkout timeout, then 503. Blocking: call off
    /// the async workers.
    pub fn connection(&self) -> Result<PooledConnection<ConnectionManager<PgConnection>>, Error> {
        let deadline = Instant::now() + self.pool.connection_timeout();
        while !self.is_migrated() {
            if Instant::now() >= deadline {
                return Err(Error::DatabaseUnavailable(
                    "migrations have not run yet".into(),
                ));
            }
            std::thread::sleep(MIGRATIONS_POLL);
        }
        Ok(self
            .pool
            .get_timeout(deadline.saturating_duration_since(Instant::now()))?)
    }

    /// Runs `query` on a pooled connection off the async workers.
    pub async fn db<T, F>(&self, query: F) -> Result<T, Error>
    where
        F: FnOnce(&mut PgConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let state = self.clone();
        web::block(move || -> Result<T, Error> {
            let mut conn = state.connection()?;
            Ok(query(&mut conn)?)
        })
        .await?
    }
}
