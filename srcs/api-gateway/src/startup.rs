use common::config::ServiceConfig;
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App};
use common::health::Draining;
use common::http::{bound_requests, BodyDeadline};
use common::metrics::{self, http::HttpMetrics};
use common::request_id::{self, AccessLog};
use common::server::BoundedServer;
use common::startup::Servers;
pub use common::startup::{Bound, StartupError};
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::config::{Config, ACCESS_LOG_TARGET};
use crate::host;
use crate::metrics::{GatewayMetrics, TELEMETRY};
use crate::proxy::Inventory;
use crate::routes;
use crate::upstreams::{self, Upstreams};

/// A bound, not yet serving gateway.
pub struct Application {
    servers: Servers,
    broker: Broker,
    broker_task: JoinHandle<()>,
    /// Re-resolves and probes inventory's endpoints (upstreams.rs).
    refresh_task: actix_web::rt::task::JoinHandle<()>,
}

impl Application {
    /// Checks the configuration, binds the port (0 picks a free one), and
    /// starts the RabbitMQ connection loop in the background: nothing here
    /// waits for inventory or RabbitMQ. Call inside the actix runtime.
    pub fn build(config: Config) -> Result<Self, StartupError> {
        config.validate()?;
        let upstreams = Arc::new(Upstreams::new(&config.inventory_bases()?));
        let inventory_timeout = config.inventory_timeout();
        let limits = config.limits();
        let inventory_idle_timeout = config.inventory_idle_timeout();
        let (listener, port) = common::startup::listen(&config.host, config.port, limits.backlog)?;

        let (metrics_listener, metrics_port) =
            common::metrics::listen(&config.metrics_host, config.metrics_port)?;
        let mut registry = common::metrics::base("api-gateway", env!("CARGO_PKG_VERSION"));
        let http_metrics = HttpMetrics::register(&mut registry);
        let gateway_metrics = GatewayMetrics::register(&mut registry);
        let (broker, broker_task) = Broker::start(&config, gateway_metrics.clone());
        GatewayMetrics::register_broker(&mut registry, broker.clone());
        GatewayMetrics::register_upstreams(&mut registry, upstreams.clone());
        let metrics_server = common::metrics::serve(metrics_listener, Arc::new(registry))
            .map_err(StartupError::Server)?;
        let shared_broker = web::Data::new(broker.clone());
        let upstream_metrics = web::Data::new(gateway_metrics.clone());
        let refresh_task = upstreams::spawn_refresh(&upstreams);
        let inventory_metrics = gateway_metrics.clone();
        let allowed_hosts = config.allowed_hosts()?;
        let draining = Draining::default();
        let app_draining = draining.clone();
        let server = BoundedServer::new(move || {
            // Per worker: awc clients are not Send, and a pool per worker
            // keeps connections to inventory on the thread that uses them.
            let inventory = web::Data::new(Inventory::new(
                upstreams.clone(),
                inventory_timeout,
                inventory_idle_timeout,
                inventory_metrics.clone(),
            ));
            // Without telemetry, no upstream metrics: proxy.rs observes the
            // exchange only when they are there.
            let app = App::new();
            let app = if TELEMETRY {
                app.app_data(upstream_metrics.clone())
            } else {
                app
            };
            app.app_data(inventory)
                .app_data(shared_broker.clone())
                .app_data(BodyDeadline(limits.body_timeout))
                .app_data(AccessLog(ACCESS_LOG_TARGET))
                .app_data(http_metrics.clone())
                .app_data(allowed_hosts.clone())
                .app_data(app_draining.clone())
                // Inside bound_requests, so a refused request's body is not
                // read and its connection closes.
                .wrap(from_fn(host::check))
                // Inside the request-id middleware, so refusals carry an id
                // and an access-log line.
                .wrap(from_fn(bound_requests))
                // Outside the refusals, so they are counted too.
                .wrap(Condition::new(
                    TELEMETRY,
                    from_fn(metrics::http::middleware),
                ))
                .wrap(from_fn(request_id::middleware))
                .configure(routes::configure)
        })
        // What actix keeps per connection is dropped when it closes: the
        // guard counts the connections open.
        .on_connect(move |_, extensions| {
            if TELEMETRY {
                extensions.insert(gateway_metrics.connection_opened());
            }
        })
        .limits(limits)
        .workers(config.workers)
        .shutdown_timeout(10)
        .drain(draining, Duration::from_millis(config.drain_ms))
        .serve(listener)
        .map_err(StartupError::Server)?;
        log::info!(
            "api-gateway listening on {}:{port} (metrics on {}:{metrics_port}), inventory at {}, RabbitMQ at {:?}",
            config.host,
            config.metrics_host,
            config.inventory_url,
            config.rabbitmq
        );
        Ok(Self {
            servers: Servers {
                port,
                server,
                metrics_port,
                metrics_server,
            },
            broker,
            broker_task,
            refresh_task,
        })
    }

    /// Serves until the server stops (SIGINT/SIGTERM). Requests in flight
    /// finish first (their confirms included); then the RabbitMQ connection is
    /// closed.
    pub async fn run(self) -> std::io::Result<()> {
        let result = self.servers.run().await;
        self.refresh_task.abort();
        self.broker.stop();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.broker_task).await;
        result
    }
}

impl Bound for Application {
    fn servers(&self) -> &Servers {
        &self.servers
    }
}
