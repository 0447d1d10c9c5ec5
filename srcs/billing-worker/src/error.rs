//! The worker's one error type. Most of these never leave the consumer loop
//! (they trigger a reconnect or a retry); the HTTP side maps them to the
//! project's JSON error format with stable codes.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] common::config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("database unavailable: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("rabbitmq: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("rabbitmq: timed out during {0}")]
    AmqpTimeout(&'static str),
    /// The consumer stream ended (`None`): the broker cancelled us or the
    /// channel died. Either way the loop reconnects.
    #[error("rabbitmq: the consumer was cancelled or its channel closed")]
    ConsumerEnded,
    /// An ack could not be sent because the channel is gone; the broker will
    /// redeliver, and the unique order id makes that harmless.
    #[error("rabbitmq: channel closed before the ack was sent")]
    ChannelLost,
    #[error("background task failed: {0}")]
    Task(String),
    #[error("http server: {0}")]
    Http(std::io::Error),
}

/// An error's text on one line: libpq's messages span several lines, which
/// would split a log entry (and lose its priority under journald).
pub fn one_line(err: &impl std::fmt::Display) -> String {
    err.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl WorkerError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(_) => "configuration_error",
            Self::Bind { .. } | Self::Http(_) => "http_server_error",
            Self::Pool(_) | Self::Database(_) | Self::Migration(_) => "database_unavailable",
            Self::Amqp(_) | Self::AmqpTimeout(_) | Self::ConsumerEnded | Self::ChannelLost => {
                "broker_unavailable"
            }
            Self::Task(_) => "internal_error",
        }
    }
}

impl ResponseError for WorkerError {
    fn status_code(&self) -> StatusCode {
        match self.code() {
            "database_unavailable" | "broker_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        common::http::error_response(self.status_code(), self.code(), self.to_string(), None)
    }
}
