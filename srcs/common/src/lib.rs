//! What the movie-platform services must agree on, kept in one place so that
//! the gateway and the billing worker cannot drift apart: the order message and
//! its validation, the RabbitMQ topology, the JSON error format, and the
//! conventions for configuration, logging and database start-up.

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod config;
#[cfg(feature = "db")]
pub mod db;
pub mod error;
pub mod health;
pub mod hosts;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod order;
pub mod request_id;
pub mod retry;
pub mod server;
pub mod startup;
#[cfg(feature = "amqp")]
pub mod topology;
pub mod trace;

/// HTTP header (and AMQP message header) that carries a request's id from the
/// gateway to inventory and to the billing worker, so one id follows a request
/// through every log line it causes.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
