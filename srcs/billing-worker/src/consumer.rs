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
use lapin::{Channel, Connection};
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
/// After this long without a delivery the worker swaps its channel for a
/// fresh one (cancel, close, open, consume). Why: a quorum queue's consumer
/// can be left holding deliveries it never receives. The HA VM test saw it
/// on RabbitMQ 3.10 (Debian 12's): after a power-off of the queue leader's
/// VM, a worker on a surviving node stopped receiving anything, while the
/// new leader counted 1000 orders (its whole prefetch window) as delivered
/// to it: unacknowledged, so never given to another worker, for as long as
/// the channel lived (over 10 minutes). Closing the channel returns them to
/// the queue. An idle worker pays a channel open and close each period; a
/// busy one never renews. A channel that does not close within
/// [`RENEW_CLOSE_TIMEOUT`] ends the whole connection instead.
pub const IDLE_RENEW: Duration = Duration::from_secs(30);
/// Bound on cancelling and closing the idle channel: two round trips to the
/// node, which a loaded machine (the tests' beside everything else) can
/// slow to seconds; past it the channel is taken for hung.
const RENEW_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

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
            let (channel, consumer) = self.subscribe(&connection, true).await?;
            Ok::<_, Error>((connection, channel, consumer))
        };
        let (connection, mut channel, mut consumer) = tokio::select! {
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
            let next = batch::collect(
                &mut consumer,
                self.config.batch_size,
                &self.shutdown,
                IDLE_RENEW,
            )
            .await?;
            match next {
                Next::Stop => break,
                Next::Idle => {
                    if let Err(e) = self.renew(&connection, &mut channel, &mut consumer).await {
                        // The broker frees the old channel's deliveries
                        // once the connection is gone.
                        close_step(
                            "connection close",
                            connection.close(200, "channel renewal failed".into()),
                        )
                        .await;
                        return Err(e);
                    }
                }
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

    /// A channel with the prefetch window and the consumer on
    /// `billing_queue` (the topology declared first when `declare`).
    async fn subscribe(
        &self,
        connection: &Connection,
        declare: bool,
    ) -> Result<(Channel, lapin::Consumer), Error> {
        let channel = connection.create_channel().await?;
        if declare {
            topology::declare(&channel, &self.config.rabbitmq.topology()).await?;
        }
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
        Ok((channel, consumer))
    }

    /// Swaps an idle channel for a fresh one ([`IDLE_RENEW`]). Everything
    /// received on it is settled by now, so closing it returns only what the
    /// broker counts as delivered and the worker never received.
    async fn renew(
        &self,
        connection: &Connection,
        channel: &mut Channel,
        consumer: &mut lapin::Consumer,
    ) -> Result<(), Error> {
        let old = channel.clone();
        let tag = consumer.tag();
        let closed = tokio::time::timeout(RENEW_CLOSE_TIMEOUT, async move {
            old.basic_cancel(tag, BasicCancelOptions::default()).await?;
            old.close(200, "idle: renewing the channel".into()).await
        })
        .await
        .map_err(|_| Error::AmqpTimeout("closing an idle channel"))?;
        closed?;
        let (fresh, fresh_consumer) =
            tokio::time::timeout(SETUP_TIMEOUT, self.subscribe(connection, false))
                .await
                .map_err(|_| Error::AmqpTimeout("opening a fresh channel"))??;
        log::debug!(
            "no delivery for {IDLE_RENEW:?}: channel {} renewed as channel {}",
            channel.id(),
            fresh.id()
        );
        *channel = fresh;
        *consumer = fresh_consumer;
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
