//! The database pool's state at each scrape, from r2d2's `Pool::state()`:
//! connections open, idle and in use, and the pool's size. r2d2 does not
//! count the callers waiting for a connection; the services' 503s and the
//! checkout timeouts in their logs show that pressure instead.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use crate::db::PgPool;

#[derive(Debug)]
pub struct PoolCollector(pub PgPool);

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = self.0.state();
        let idle = state.idle_connections;
        for (name, help, value) in [
            (
                "db_pool_connections_in_use",
                "Database connections checked out of the pool",
                state.connections.saturating_sub(idle),
            ),
            (
                "db_pool_connections_idle",
                "Open database connections waiting in the pool",
                idle,
            ),
            (
                "db_pool_max_connections",
                "The most connections the pool opens",
                self.0.max_size(),
            ),
        ] {
            let g = ConstGauge::new(i64::from(value));
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}
