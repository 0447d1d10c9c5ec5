//! api-gateway: the platform's one public entry point. Proxies `/api/movies*`
//! to inventory-app unchanged and queues billing orders on RabbitMQ, answering
//! only once the broker has confirmed them.

pub mod billing;
pub mod body;
pub mod broker;
pub mod config;
pub mod error;
pub mod host;
pub mod metrics;
pub mod openapi;
pub mod proxy;
pub mod routes;
pub mod startup;
pub mod upstreams;

pub use config::Config;
pub use startup::Application;
