//! The worker's own metrics, beside the shared ones (`common::metrics`),
//! served on its health listener (loopback): the counters `/ready` already
//! reports (read from [`WorkerStatus`] at each scrape, so both always agree),
//! whether it consumes, and the histograms of its batches and of the orders'
//! age when stored.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use common::metrics::{latency_histogram, register_all};

use crate::status::WorkerStatus;

/// The histograms, kept in [`WorkerStatus`] so that whatever reports there
/// reaches them too.
#[derive(Debug, Clone)]
pub struct Histograms {
    batch_size: Histogram,
    commit: Histogram,
    order_age: Histogram,
}

impl Default for Histograms {
    fn default() -> Self {
        Self {
            batch_size: Histogram::new([
                1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
            ]),
            commit: latency_histogram(),
            // The message timestamp has one-second resolution.
            order_age: Histogram::new([
                1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0,
                86400.0,
            ]),
        }
    }
}

impl Histograms {
    /// Deliveries in one batch taken from the queue.
    pub fn batch(&self, deliveries: usize) {
        self.batch_size.observe(deliveries as f64);
    }

    /// One successful store transaction.
    pub fn committed(&self, took: Duration) {
        self.commit.observe(took.as_secs_f64());
    }

    /// An order just stored, published at `timestamp` (AMQP `timestamp`,
    /// seconds since the epoch, set by the gateway). A clock behind the
    /// gateway's counts as age 0.
    pub fn stored_order(&self, timestamp: Option<u64>) {
        let Some(published) = timestamp else { return };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.order_age.observe((now - published as f64).max(0.0));
    }
}

/// The worker's registry: the shared base, its pool, and this module.
pub fn register(registry: &mut Registry, status: &Arc<WorkerStatus>) {
    let h = status.histograms();
    // One line a family: the table is the list of what this registers.
    #[rustfmt::skip]
    register_all(registry, [
        ("billing_batch_size", "Deliveries per batch taken from billing_queue", Box::new(h.batch_size.clone())),
        ("billing_batch_commit_duration_seconds", "Time of one successful store transaction (a batch, or one order when a batch is retried one by one)", Box::new(h.commit.clone())),
        ("billing_order_age_seconds", "Time from the gateway's publish (the message timestamp) to the order's row being stored", Box::new(h.order_age.clone())),
    ]);
    registry.register_collector(Box::new(StatusCollector(Arc::clone(status))));
}

#[derive(Debug)]
struct StatusCollector(Arc<WorkerStatus>);

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = self.0.counters();
        for (name, help, value) in [
            (
                "billing_orders_stored",
                "Orders stored as new rows",
                c.stored,
            ),
            (
                "billing_duplicates_skipped",
                "Orders already stored with the same content (redeliveries, retried requests), acked without a new row",
                c.duplicates_skipped,
            ),
            (
                "billing_dead_lettered",
                "Messages rejected to the dead-letter queue (not an order, or in conflict with a stored one)",
                c.dead_lettered,
            ),
            (
                "billing_db_retries",
                "Failed database attempts that were retried (store or migration)",
                c.database_retries,
            ),
            (
                "billing_broker_reconnects",
                "Reconnections to RabbitMQ after the link was lost",
                c.rabbitmq_reconnects,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let g = ConstGauge::new(i64::from(self.0.is_consuming()));
        g.encode(encoder.encode_descriptor(
            "billing_consuming",
            "1 while the worker consumes billing_queue, else 0",
            None,
            g.metric_type(),
        )?)?;
        Ok(())
    }
}
