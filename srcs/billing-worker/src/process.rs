//! Settling one batch of deliveries: dead-letter what can never be an order,
//! store the orders in one transaction (retrying while the database is
//! unavailable), and only then acknowledge them. An order whose id is stored
//! already with other content is dead-lettered too, never dropped silently.

use crate::batch::{decode, Content, IdSource, Received};
use crate::error::Error;
use crate::shutdown::Shutdown;
use crate::status::WorkerStatus;
use crate::store::{self, NewOrder, RowOutcome};
use common::db::PgPool;
use common::logging::one_line;
use common::retry::Backoff;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First pause after a failed store; doubled after each further failure.
const STORE_RETRY_INITIAL: Duration = Duration::from_millis(250);
/// Longest pause between two tries, so the worker resumes within a few
/// seconds of the database coming back.
const STORE_RETRY_MAX: Duration = Duration::from_secs(4);
/// How long a store already running when a stop is requested may still take.
/// Its messages are acked if it commits in time; else they stay in the queue.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// How a batch ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every delivery was acked or dead-lettered.
    Settled,
    /// A stop was requested before the orders could be stored: nothing of
    /// them was acked, so RabbitMQ keeps them for the next start.
    Abandoned,
}

enum Stored {
    /// What became of each order, in the batch's order.
    Done(Vec<RowOutcome>),
    /// The database refused a row for its content: retrying cannot help.
    Refused(diesel::result::Error),
    Abandoned,
}

enum OneByOne {
    /// Index of the last order stored (to ack through), if any was.
    Settled(Option<usize>),
    Abandoned,
}

pub struct Processor {
    pub pool: PgPool,
    pub status: Arc<WorkerStatus>,
    pub shutdown: Shutdown,
}

/// Tally of one batch, for the summary log line.
#[derive(Default)]
struct Tally {
    stored: u64,
    duplicates: u64,
    dead_lettered: u64,
}

impl Processor {
    /// Settles a batch. An error means the channel is unusable (an ack or a
    /// reject could not be sent): the caller reconnects and the broker
    /// redelivers whatever was not acked.
    pub async fn process(&self, deliveries: Vec<Delivery>) -> Result<Outcome, Error> {
        let started = Instant::now();
        let received = deliveries.len();
        self.status.histograms().batch(received);
        let mut tally = Tally::default();
        let mut orders = Vec::with_capacity(received);
        for r in deliveries.into_iter().map(decode) {
            match &r.content {
                Content::Order { .. } => orders.push(r),
                Content::Invalid(e) => {
                    let why = match e.field {
                        Some(field) => format!("invalid field {field}: {e}"),
                        None => format!("invalid message: {e}"),
                    };
                    self.dead_letter(&r, &why).await?;
                    tally.dead_lettered += 1;
                }
            }
        }
        if orders.is_empty() {
            self.summary(received, &tally, started);
            return Ok(Outcome::Settled);
        }

        let rows: Arc<Vec<NewOrder>> = Arc::new(orders.iter().filter_map(row_of).collect());
        let last = match self.store_with_retry(rows).await {
            Stored::Done(outcomes) => self.settle(&orders, &outcomes, &mut tally).await?,
            Stored::Abandoned => return Ok(Outcome::Abandoned),
            Stored::Refused(e) => {
                log::warn!(
                    "the database refused a batch of {} order(s) ({}); storing them one by one to find the one(s) at fault",
                    orders.len(),
                    one_line(&e)
                );
                match self.store_one_by_one(&orders, &mut tally).await? {
                    OneByOne::Settled(last) => last.and_then(|i| orders.get(i)),
                    OneByOne::Abandoned => return Ok(Outcome::Abandoned),
                }
            }
        };
        // Every delivery of this channel with a lower tag is either in this
        // batch (stored now, or already rejected: that frame went out first)
        // or was settled with an earlier batch, so one multiple-ack on the
        // highest tag acknowledges exactly this batch's stored orders.
        if let Some(last) = last {
            ack_through(last).await?;
        }
        self.summary(received, &tally, started);
        Ok(Outcome::Settled)
    }

    /// Stores each order in a transaction of its own, dead-lettering those
    /// the database refuses.
    async fn store_one_by_one(
        &self,
        orders: &[Received],
        tally: &mut Tally,
    ) -> Result<OneByOne, Error> {
        let mut last_stored = None;
        for (i, r) in orders.iter().enumerate() {
            let Some(row) = row_of(r) else { continue };
            match self.store_with_retry(Arc::new(vec![row])).await {
                Stored::Done(outcomes) => {
                    if self
                        .settle(std::slice::from_ref(r), &outcomes, tally)
                        .await?
                        .is_some()
                    {
                        last_stored = Some(i);
                    }
                }
                Stored::Refused(e) => {
                    self.dead_letter(r, &format!("refused by the database: {}", one_line(&e)))
                        .await?;
                    tally.dead_lettered += 1;
                }
                Stored::Abandoned => return Ok(OneByOne::Abandoned),
            }
        }
        Ok(OneByOne::Settled(last_stored))
    }

    /// Runs the insert on a blocking thread, retrying the very same rows with
    /// capped exponential backoff while the database is unavailable. The
    /// deliveries stay unacknowledged (held by this worker) meanwhile, so
    /// nothing is lost and RabbitMQ is not asked to redeliver in a hot loop.
    async fn store_with_retry(&self, rows: Arc<Vec<NewOrder>>) -> Stored {
        let mut backoff = Backoff::new(STORE_RETRY_INITIAL, STORE_RETRY_MAX);
        loop {
            let pool = self.pool.clone();
            let batch = Arc::clone(&rows);
            let started = Instant::now();
            let task = tokio::task::spawn_blocking(move || -> Result<Vec<RowOutcome>, Error> {
                let mut conn = pool.get()?;
                Ok(store::store_orders(&mut conn, &batch)?)
            });
            let result = tokio::select! {
                joined = task => joined.unwrap_or_else(|e| Err(Error::Task(e))),
                () = self.shutdown.requested_then(STOP_GRACE) => {
                    log::warn!(
                        "stop requested: a store of {} order(s) is still running after {STOP_GRACE:?}; leaving them unacknowledged in the queue",
                        rows.len()
                    );
                    return Stored::Abandoned;
                }
            };
            match result {
                Ok(inserted) => {
                    self.status.histograms().committed(started.elapsed());
                    if backoff.attempt() > 1 {
                        log::info!(
                            "database is back: {} order(s) stored on try {}",
                            rows.len(),
                            backoff.attempt()
                        );
                    }
                    return Stored::Done(inserted);
                }
                Err(Error::Database(e)) if store::is_row_rejection(&e) => {
                    return Stored::Refused(e)
                }
                Err(e) => {
                    self.status.add_database_retry();
                    log::warn!(
                        "cannot store {} order(s) (try {}): {}; they stay unacknowledged, retrying in {:?}",
                        rows.len(),
                        backoff.attempt(),
                        one_line(&e),
                        backoff.peek()
                    );
                }
            }
            tokio::select! {
                () = backoff.wait() => {}
                () = self.shutdown.requested() => {
                    log::info!(
                        "stop requested while the database is unavailable: {} order(s) stay in the queue",
                        rows.len()
                    );
                    return Stored::Abandoned;
                }
            }
        }
    }

    /// Logs one line per order (so an order id or a request id can be
    /// grepped), counts stored orders and duplicates, and dead-letters the
    /// orders in conflict with a stored one. Returns the last delivery to
    /// ack through (none when every order was dead-lettered).
    async fn settle<'a>(
        &self,
        orders: &'a [Received],
        outcomes: &[RowOutcome],
        tally: &mut Tally,
    ) -> Result<Option<&'a Received>, Error> {
        let mut last = None;
        for (r, outcome) in orders.iter().zip(outcomes) {
            let Content::Order { order, id_source } = &r.content else {
                continue;
            };
            let id = order.order_id;
            match outcome {
                RowOutcome::Inserted => {
                    tally.stored += 1;
                    self.status.histograms().stored_order(r.timestamp);
                    if *id_source == IdSource::Generated {
                        log::info!(
                            "order {id} stored (the message had no id, so this one was generated: a redelivery of it would be stored again) event=order_stored order_id={id} {}",
                            r.request()
                        );
                    } else {
                        log::info!(
                            "order {id} stored event=order_stored order_id={id} {}",
                            r.request()
                        );
                    }
                }
                RowOutcome::Duplicate => {
                    tally.duplicates += 1;
                    log::info!(
                        "order {id} was already stored, duplicate skipped event=order_duplicate order_id={id} redelivered={} {}",
                        r.redelivered,
                        r.request()
                    );
                }
                RowOutcome::Conflict(stored) => {
                    // The first order under this id stays; this one is kept
                    // in the dead-letter queue for a person to look at.
                    self.dead_letter(
                        r,
                        &format!(
                            "order id {id} is stored already with other content (an Idempotency-Key reused with another body?): stored {}, this message {}; the stored order stays",
                            describe(stored),
                            describe(order)
                        ),
                    )
                    .await?;
                    tally.dead_lettered += 1;
                    continue;
                }
            }
            last = Some(r);
        }
        Ok(last)
    }

    async fn dead_letter(&self, r: &Received, why: &str) -> Result<(), Error> {
        log::warn!(
            "dead-lettering message ({}{}): {why} {}",
            r.describe(),
            r.order_id()
                .map(|id| format!(", order {id}"))
                .unwrap_or_default(),
            r.request()
        );
        let sent = r
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await?;
        if !sent {
            return Err(Error::ChannelLost);
        }
        self.status.add_dead_lettered(1);
        Ok(())
    }

    fn summary(&self, received: usize, tally: &Tally, started: Instant) {
        self.status.add_stored(tally.stored);
        self.status.add_duplicates(tally.duplicates);
        // A lone delivery already has its own line.
        if received > 1 {
            log::info!(
                "batch of {received}: stored {} order(s), {} duplicate(s) skipped, {} dead-lettered, in {} ms",
                tally.stored,
                tally.duplicates,
                tally.dead_lettered,
                started.elapsed().as_millis()
            );
        }
    }
}

/// An order's content for a log line; `user_id` is printable (validated).
fn describe(o: &NewOrder) -> String {
    format!(
        "(user {:?}, {} item(s), {})",
        o.user_id, o.number_of_items, o.total_amount
    )
}

fn row_of(r: &Received) -> Option<NewOrder> {
    match &r.content {
        Content::Order { order, .. } => Some(order.clone()),
        Content::Invalid(_) => None,
    }
}

async fn ack_through(last: &Received) -> Result<(), Error> {
    let sent = last.acker.ack(BasicAckOptions { multiple: true }).await?;
    if sent {
        Ok(())
    } else {
        Err(Error::ChannelLost)
    }
}
