use crate::error::Error;
use actix_web::web;
use common::db::PgPool;
use diesel::pg::PgConnection;
use diesel::QueryResult;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Shared by every worker: the pool, and whether migrations have finished
/// (until then the schema may not exist, so data routes answer 503).
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

    /// Until migrations have run the schema may not exist: data routes answer 503.
    pub fn check_migrated(&self) -> Result<(), Error> {
        if self.is_migrated() {
            Ok(())
        } else {
            Err(Error::DatabaseUnavailable(
                "migrations have not run yet".into(),
            ))
        }
    }

    /// Runs `query` on a pooled connection off the async workers.
    pub async fn db<T, F>(&self, query: F) -> Result<T, Error>
    where
        F: FnOnce(&mut PgConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.check_migrated()?;
        let pool = self.pool.clone();
        web::block(move || -> Result<T, Error> {
            let mut conn = pool.get()?;
            Ok(query(&mut conn)?)
        })
        .await?
    }
}
