//! Prometheus metrics, the same way in every service: one registry per
//! running service (not a global one, so two services in one test process
//! keep apart), served as OpenMetrics text on `GET /metrics` of a listener of
//! its own that is bound to loopback or the private network, never on a
//! public port.
//!
//! Every service registers [`base`] (build info and the process), the RED
//! middleware of [`http`], and [`pool`] for its database; the rest are the
//! service's own (its `metrics` module). docs/observability.md lists them.

pub mod http;
#[cfg(feature = "db")]
pub mod pool;
pub mod process;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::header::CONTENT_TYPE as CONTENT_TYPE_HEADER;
use actix_web::{web, App, HttpResponse, HttpServer};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
pub use prometheus_client::registry::{Metric, Registry};

/// What `/metrics` serves: Prometheus' text format, which Prometheus and
/// `promtool check metrics` read (see [`render`]).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The commit the binary was built from: `MP_GIT_COMMIT` at build time, else
/// what `git` said then (see build.rs), else `unknown` (a build outside a
/// checkout, as in the container images).
pub const COMMIT: &str = env!("MP_BUILD_COMMIT");

/// The default of `<SERVICE>_METRICS_HOST`: loopback, which no forward of
/// the host reaches. (The fields are the services' own: envy cannot read
/// numbers through a flattened struct.)
pub fn default_host() -> String {
    "127.0.0.1".to_owned()
}

/// Binds a service's metrics listener: a small backlog, as only Prometheus
/// connects.
pub fn listen(host: &str, port: u16) -> Result<(TcpListener, u16), crate::startup::StartupError> {
    crate::startup::listen(host, port, 64)
}

/// Latency buckets (seconds) of every duration histogram: 1 ms to about 10 s.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations in seconds, with [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Registers a table of `(name, help, metric)`, in its order: each metric a
/// clone of the handle its owner keeps (they share their storage).
pub fn register_all<const N: usize>(
    registry: &mut Registry,
    families: [(&str, &str, Box<dyn Metric>); N],
) {
    for (name, help, metric) in families {
        registry.register(name, help, Boxed(metric));
    }
}

/// A boxed metric is no [`Metric`] itself (prometheus-client implements
/// [`EncodeMetric`] only for `Box<dyn EncodeMetric>`, which is not `Send`);
/// this passes every call through, `is_empty` included (a family without
/// series is left out of the page).
#[derive(Debug)]
struct Boxed(Box<dyn Metric>);

impl EncodeMetric for Boxed {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A registry holding what every service exports: `build_info` and the
/// process metrics.
pub fn base(service: &'static str, version: &'static str) -> Registry {
    let mut registry = Registry::default();
    let info = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
    info.get_or_create(&vec![
        ("service", service),
        ("version", version),
        ("commit", COMMIT),
    ])
    .set(1);
    registry.register(
        "build_info",
        "Always 1; its labels say which build of which service runs",
        info,
    );
    registry.register_collector(Box::new(process::ProcessCollector));
    registry
}

/// The registry in Prometheus' text format, for the `/metrics` handler and
/// for tests. prometheus-client writes OpenMetrics, which differs from it
/// in what we use only in three points: a counter's family is named without
/// the `_total` its sample carries, `# UNIT` lines, and the closing `# EOF`.
/// [`openmetrics_to_text`] rewrites exactly those, so `promtool check
/// metrics` (which reads only the older format) accepts the page.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    if let Err(e) = encode(&mut out, registry) {
        // Only a collector can fail (a formatting error): say so in the
        // scrape rather than serve half a page as if it were whole.
        log::warn!("encoding the metrics failed: {e}");
        out.clear();
    }
    openmetrics_to_text(&out)
}

/// See [`render`].
pub fn openmetrics_to_text(open: &str) -> String {
    let mut out = String::with_capacity(open.len());
    // A family's HELP line comes before its TYPE line, which says whether
    // the name needs its `_total`.
    let mut help: Option<(&str, &str)> = None;
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, text)) = help.take() {
                push_help(&mut out, name, "", text);
            }
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" && !name.ends_with("_total") {
                "_total"
            } else {
                ""
            };
            if let Some((help_name, text)) = help.take() {
                push_help(&mut out, help_name, suffix, text);
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        if let Some((name, text)) = help.take() {
            push_help(&mut out, name, "", text);
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn push_help(out: &mut String, name: &str, suffix: &str, text: &str) {
    out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
}

/// `GET /metrics`, for an app that has `web::Data<Registry>`.
pub async fn handler(registry: web::Data<Registry>) -> HttpResponse {
    let body = render(&registry);
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE_HEADER, CONTENT_TYPE))
        .body(body)
}

/// Adds `GET /metrics` to an app that already serves something else (the
/// worker's health server, which is bound to loopback).
pub fn configure(cfg: &mut web::ServiceConfig, registry: web::Data<Registry>) {
    cfg.app_data(registry)
        .route("/metrics", web::get().to(handler));
}

/// The metrics listener of a service whose main port is public: one worker
/// thread, `GET /metrics` and nothing else (404 otherwise). It ignores
/// signals: the service stops it once its main server has stopped.
pub fn serve(listener: TcpListener, registry: Arc<Registry>) -> std::io::Result<Server> {
    let data = web::Data::from(registry);
    Ok(
        HttpServer::new(move || App::new().configure(|cfg| configure(cfg, data.clone())))
            .workers(1)
            .listen(listener)?
            .shutdown_timeout(1)
            .disable_signals()
            .run(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn counters_get_their_total_in_the_family_name_and_eof_goes() {
        let mut registry = Registry::default();
        let c = Counter::<u64>::default();
        c.inc();
        registry.register("orders", "Orders seen", c);
        let g = Gauge::<i64>::default();
        registry.register("depth", "Depth", g);
        assert_eq!(
            render(&registry),
            "# HELP orders_total Orders seen.\n# TYPE orders_total counter\norders_total 1\n\
             # HELP depth Depth.\n# TYPE depth gauge\ndepth 0\n"
        );
    }
}
