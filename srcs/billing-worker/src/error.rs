//! The worker's one error type while it runs. None of these reaches a
//! client: the consumer loop answers them with a reconnect or a retry, and
//! `run()` with a log line and an exit code. Start-up errors are
//! `common::startup::StartupError`; the health endpoints build their own
//! responses.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database unavailable: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
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
    Task(#[from] tokio::task::JoinError),
    #[error("http server: {0}")]
    Http(#[source] std::io::Error),
}
