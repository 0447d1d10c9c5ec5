//! The connection loop: connect, declare the shared topology, consume
//! `billing_queue` batch by batch; on any broker failure drop everything and
//! start over after a capped backoff. lapin's own auto-recovery stays off: a
//! fresh connection, channel and consumer each time is simple to reason about,
//! and deliveries of a dead channel are simply dropped (the broker redelivers
//! them, and the unique order id makes that harmless).

use crate::batch::{self, Next};
use crate::config::Config;
use crate::error::Error;
use crate::process::{Outcome, Processor};
use crate::shutdown::Shutdown;
use crate::status::WorkerStatus;
use common::db::PgPool;
use common::logging::one_line;
use common::retry::Backoff;
use common::topology::{self, BILLING_QUEUE};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Name shown in RabbitMQ's connection list.
pub const CONNECTION_NAME: &str = "billing-worker";
const CONSUMER_TAG: &str = "billing-worker";
/// First pause before reconnecting to RabbitMQ; doubled after each failure.
const AMQP_RETRY_INITIAL: Duration = Duration::from_millis(250);
/// Short enough that the worker is back within a few seconds of a broker
/// restart.
const AMQP_RETRY_MAX: Duration = Duration::from_secs(3);
/// Bound on connecting and declaring, so a broker that accepts the TCP
/// connection but never answers cannot hang the loop.
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on each step of a graceful close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Consumer {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub status: Arc<WorkerStatus>,
    pub shutdown: Shutdown,
}

impl Consumer {
    /// Consumes until a stop is requested, reconnecting as often as needed.
    pub async fn run(self) {
        let processor = Processor {
            pool: self.pool.clone(),
            status: Arc::clone(&self.status),
            shutdown: self.shutdown.clone(),
        };
        let mut backoff = Backoff::new(AMQP_RETRY_INITIAL, AMQP_RETRY_MAX);
        while !self.shutdown.is_requested() {
            let mut consumed = false;
            let result = self.session(&processor, &mut consumed).await;
            self.status.set_consuming(false);
            let err = match result {
                Ok(()) => break,
                Err(e) => e,
            };
            if consumed {
                // It worked until now: start the backoff over.
                backoff.reset();
                self.status.add_reconnect();
                log::warn!(
                    "rabbitmq connection lost: {}; reconnecting in {:?}",
                    one_line(&err),
                    backoff.peek()
                );
            } else {
                log::warn!(
                    "rabbitmq unavailable (try {}): {}; retrying in {:?}",
                    backoff.attempt(),
                    one_line(&err),
                    backoff.peek()
                );
            }
            tokio::select! {
                () = backoff.wait() => {}
                () = self.shutdown.requested() => break,
            }
        }
        log::info!("consumer stopped");
    }

    /// One connection's life. `Ok` means a stop was requested and everything
    /// settled was acked before the channel and connection were closed.
    async fn session(&self, processor: &Processor, consumed: &mut bool) -> Result<(), Error> {
        let target = &self.config.rabbitmq;
        let setup = async {
            let connection = target.connect(CONNECTION_NAME).await?;
            let channel = connection.create_channel().await?;
            topology::declare(&channel, &target.topology()).await?;
            channel
                .basic_qos(self.config.prefetch, BasicQosOptions::default())
                .await?;
            let consumer = channel
                .basic_consume(
                    BILLING_QUEUE.into(),
                    CONSUMER_TAG.into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, Error>((connection, channel, consumer))
        };
        let (connection, channel, mut consumer) = tokio::select! {
            () = self.shutdown.requested() => return Ok(()),
            setup = tokio::time::timeout(SETUP_TIMEOUT, setup) => {
                setup.map_err(|_| Error::AmqpTimeout("connect"))??
            }
        };
        *consumed = true;
        self.status.set_consuming(true);
        log::info!(
            "consuming {BILLING_QUEUE} on {target:?} (prefetch {}, batch size {})",
            self.config.prefetch,
            self.config.batch_size
        );

        loop {
            match batch::collect(&mut consumer, self.config.batch_size, &self.shutdown).await? {
                Next::Stop => break,
                Next::Batch(deliveries) => match processor.process(deliveries).await? {
                    Outcome::Settled => {}
                    Outcome::Abandoned => break,
                },
            }
        }

        // Stop: no new deliveries, then close. Deliveries prefetched but not
        // settled go back to the queue when the channel closes.
        self.status.set_consuming(false);
        log::info!("stopping: cancelling the consumer and closing the connection");
        let tag = consumer.tag();
        close_step(
            "basic.cancel",
            channel.basic_cancel(tag, BasicCancelOptions::default()),
        )
        .await;
        close_step(
            "channel close",
            channel.close(200, "worker stopping".into()),
        )
        .await;
        close_step(
            "connection close",
            connection.close(200, "worker stopping".into()),
        )
        .await;
        Ok(())
    }
}

/// A close step that fails is only logged: the broker requeues whatever was
/// not acked when the connection goes away anyway.
async fn close_step(what: &str, step: impl Future<Output = lapin::Result<()>>) {
    match tokio::time::timeout(CLOSE_TIMEOUT, step).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::warn!("{what} failed while stopping: {}", one_line(&e)),
        Err(_) => log::warn!("{what} timed out while stopping"),
    }
}
