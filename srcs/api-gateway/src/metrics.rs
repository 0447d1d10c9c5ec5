//! The gateway's own metrics, beside the shared ones (`common::metrics`):
//! the exchange with inventory, the orders published and their confirms, the
//! broker link's state, and the open client connections.

use std::time::Instant;

/// Whether this build counts requests and propagates traces (the cargo
/// feature `telemetry`, on by default). A constant, so that a build without
/// it has no trace of that work (not even a branch), and the code of both
/// builds is checked by every compile.
pub const TELEMETRY: bool = cfg!(feature = "telemetry");

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use common::metrics::{latency_histogram, register_all};
use std::sync::{Arc, OnceLock};

use crate::broker::Broker;
use crate::error::Error;
use crate::upstreams::Upstreams;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// How a publish ended: the `outcome` label of `gateway_orders_published_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// RabbitMQ confirmed it: the order was accepted (202).
    Confirmed,
    /// RabbitMQ answered with a nack.
    Nacked,
    /// Confirmed, but returned as unroutable (the queue was missing).
    Returned,
    /// No confirm within the publish timeout.
    Timeout,
    /// Refused at once: RabbitMQ blocks publishers (resource alarm).
    RefusedBlocked,
    /// Refused at once: no connection to RabbitMQ.
    RefusedDown,
    /// The channel failed under the publish.
    Failed,
}

/// The `outcome` labels of the publishes, in [`Publish`]'s order.
const PUBLISHED: [&str; 7] = [
    "confirmed",
    "nacked",
    "returned",
    "timeout",
    "refused_blocked",
    "refused_down",
    "failed",
];

/// The `outcome` labels of the exchanges with inventory.
const UPSTREAM: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "timeout", "unavailable"];

/// A family whose one label takes a few fixed values (`labels[i]`): each
/// series is looked up in the family once, then reached by its index. A
/// family lookup hashes the label with SipHash on every request, ~300
/// instructions (BENCHMARKS.md, "What metrics and trace ids cost").
#[derive(Debug, Clone)]
struct ByOutcome<M, const N: usize> {
    family: Family<OutcomeLabel, M>,
    series: Arc<[OnceLock<M>; N]>,
    labels: &'static [&'static str; N],
}

impl<M: Clone, const N: usize> ByOutcome<M, N> {
    fn new(family: Family<OutcomeLabel, M>, labels: &'static [&'static str; N]) -> Self {
        Self {
            family,
            series: Arc::new(std::array::from_fn(|_| OnceLock::new())),
            labels,
        }
    }

    /// The series of `labels[i]`; made (and so exported) at its first use,
    /// as the family alone would.
    fn get(&self, i: usize) -> &M {
        self.series[i].get_or_init(|| {
            self.family
                .get_or_create(&OutcomeLabel {
                    outcome: self.labels[i],
                })
                .clone()
        })
    }
}

/// Cheap to clone: every family shares its storage.
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    upstream: ByOutcome<Histogram, 7>,
    published: ByOutcome<Counter, 7>,
    confirm: Histogram,
    open_connections: Gauge,
    upstream_retries: Counter,
}

impl GatewayMetrics {
    /// Registers the families; the broker's state comes with
    /// [`register_broker`](Self::register_broker), once the broker exists
    /// (it counts its publishes here).
    pub fn register(registry: &mut Registry) -> Self {
        let me = Self {
            upstream: ByOutcome::new(Family::new_with_constructor(latency_histogram), &UPSTREAM),
            published: ByOutcome::new(Family::default(), &PUBLISHED),
            confirm: latency_histogram(),
            open_connections: Gauge::default(),
            upstream_retries: Counter::default(),
        };
        // One line a family: the table is the list of what this registers.
        #[rustfmt::skip]
        register_all(registry, [
            ("gateway_upstream_duration_seconds", "Exchanges with inventory up to its response head, by outcome: its status class, timeout or unavailable", Box::new(me.upstream.family.clone())),
            ("gateway_orders_published", "Orders handed to RabbitMQ, by outcome (confirmed, nacked, returned, timeout, refused_blocked, refused_down, failed)", Box::new(me.published.family.clone())),
            ("gateway_publish_confirm_duration_seconds", "Time from publishing an order to RabbitMQ's confirm (or nack)", Box::new(me.confirm.clone())),
            ("gateway_open_connections", "Client connections open on the public port", Box::new(me.open_connections.clone())),
            ("gateway_upstream_retries", "Requests to inventory sent again (to another endpoint when there is one) after an attempt failed before any response byte", Box::new(me.upstream_retries.clone())),
        ]);
        me
    }

    /// `gateway_inventory_endpoints{state}`: the inventory endpoints known
    /// (every address of every configured URL) that are up or down, read at
    /// each scrape.
    pub fn register_upstreams(registry: &mut Registry, upstreams: Arc<Upstreams>) {
        registry.register_collector(Box::new(EndpointStates(upstreams)));
    }

    pub fn upstream_retried(&self) {
        self.upstream_retries.inc();
    }

    pub fn register_broker(registry: &mut Registry, broker: Broker) {
        registry.register_collector(Box::new(BrokerState(broker)));
    }

    pub fn upstream<T>(&self, result: &Result<T, Error>, status: Option<u16>, started: Instant) {
        // An index into UPSTREAM.
        let outcome = match (result, status) {
            (Ok(_), Some(100..=199)) => 0,
            (Ok(_), Some(200..=299)) => 1,
            (Ok(_), Some(300..=399)) => 2,
            (Ok(_), Some(400..=499)) => 3,
            (Ok(_), _) => 4,
            (Err(Error::UpstreamTimeout { .. }), _) => 5,
            (Err(_), _) => 6,
        };
        self.upstream
            .get(outcome)
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn published(&self, outcome: Publish) {
        self.published.get(outcome as usize).inc();
    }

    pub fn confirm_took(&self, started: Instant) {
        self.confirm.observe(started.elapsed().as_secs_f64());
    }

    /// A guard counting one open client connection until it is dropped:
    /// actix keeps what `on_connect` stores for as long as the connection.
    pub fn connection_opened(&self) -> OpenConnection {
        self.open_connections.inc();
        OpenConnection(self.open_connections.clone())
    }
}

pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One gauge family computed at each scrape, a value per `state` label: what
/// the broker's and the inventory endpoints' collectors both report.
fn encode_by_state<const N: usize>(
    mut encoder: DescriptorEncoder,
    name: &str,
    help: &str,
    values: [(&str, i64); N],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for (state, value) in values {
        ConstGauge::new(value).encode(metric.encode_family(&[("state", state)])?)?;
    }
    Ok(())
}

/// `gateway_broker_state{state}`: 1 for the link's current state, 0 for the
/// others, read at each scrape.
#[derive(Clone)]
struct BrokerState(Broker);

impl std::fmt::Debug for BrokerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerState")
    }
}

impl Collector for BrokerState {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let current = if !self.0.is_connected() {
            "down"
        } else if self.0.is_blocked() {
            "blocked"
        } else {
            "connected"
        };
        encode_by_state(
            encoder,
            "gateway_broker_state",
            "The RabbitMQ link: 1 for its current state (connected, blocked, down), 0 for the others",
            ["connected", "blocked", "down"].map(|state| (state, i64::from(state == current))),
        )
    }
}

#[derive(Debug)]
struct EndpointStates(Arc<Upstreams>);

impl Collector for EndpointStates {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (known, up) = self.0.counts();
        encode_by_state(
            encoder,
            "gateway_inventory_endpoints",
            "Inventory endpoints (addresses of GATEWAY_INVENTORY_URL's names) by state: up (used) or down (skipped after a failure or a failed /health probe)",
            [("up", up), ("down", known - up)]
                .map(|(state, n)| (state, i64::try_from(n).unwrap_or(i64::MAX))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn each_outcome_counts_under_its_own_label() {
        let mut registry = Registry::default();
        let metrics = GatewayMetrics::register(&mut registry);
        let all = [
            (Publish::Confirmed, "confirmed"),
            (Publish::Nacked, "nacked"),
            (Publish::Returned, "returned"),
            (Publish::Timeout, "timeout"),
            (Publish::RefusedBlocked, "refused_blocked"),
            (Publish::RefusedDown, "refused_down"),
            (Publish::Failed, "failed"),
        ];
        for (n, (outcome, _)) in all.iter().enumerate() {
            for _ in 0..=n {
                metrics.published(*outcome);
            }
        }
        let started = Instant::now();
        metrics.upstream(&Ok(()), Some(404), started);
        metrics.upstream(&Ok(()), Some(404), started);
        metrics.upstream::<()>(&Err(Error::UpstreamUnavailable("x".into())), None, started);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for (n, (_, label)) in all.iter().enumerate() {
            let line = format!(
                "gateway_orders_published_total{{outcome=\"{label}\"}} {}\n",
                n + 1
            );
            assert!(text.contains(&line), "{line}: {text}");
        }
        for line in [
            "gateway_upstream_duration_seconds_count{outcome=\"4xx\"} 2\n",
            "gateway_upstream_duration_seconds_count{outcome=\"unavailable\"} 1\n",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        // A series appears at its first use, not before.
        assert!(!text.contains("outcome=\"2xx\""), "{text}");
    }
}
