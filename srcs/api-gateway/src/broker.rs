//! The gateway's one RabbitMQ connection and confirm-mode channel, kept alive
//! by a reconnect loop of our own (lapin's built-in recovery is young), and
//! publishing with publisher confirms.
//!
//! Requests never wait for a connection: while there is none they get 503 at
//! once, and the loop keeps trying in the background with capped backoff. All
//! requests share the current channel (lapin channels are concurrent) and each
//! awaits its own confirm.
//!
//! A channel whose confirm does not come within [`confirm_patience`], or
//! that answers with a nack, is suspect: the loop opens a fresh channel on the same connection and swaps
//! it in, and the order is published again on it. A
//! quorum queue's publisher (the channel, inside RabbitMQ) that had sent to a
//! leader whose machine then died can stay stuck after the new leader is
//! elected (RabbitMQ fixed such cases in later releases: rabbitmq-server
//! #13095, #14589). The VM test of the HA topology saw it on 3.10: after a
//! power-off of the leader's VM the queue had a new leader within 5 s, yet
//! the gateway's channel confirmed nothing for 146 s. A fresh channel starts
//! with a clean slate; its cost is the order published twice, which the
//! worker stores once.
//!
//! Resource alarms: RabbitMQ (3.10 measured) sends `connection.blocked` to a
//! connection only when that connection publishes during an alarm, and then
//! holds that publish until the alarm clears. So were orders the only
//! publishes, the first order after an alarm would hang until its confirm
//! timeout (504, and be stored later). Instead the loop publishes a tiny
//! probe (unroutable, dropped by the broker) every [`PROBE_EVERY`] on a
//! channel of its own: the probe is what gets held, the connection is
//! reported blocked within that period, and from then on orders and `/ready`
//! get 503 at once, until `connection.unblocked`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use common::order::OrderMessage;
use common::request_id::RequestId;
use common::retry::Backoff;
use common::topology::{self, Topology};
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionStatus, Event};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::Error;
use crate::metrics::{GatewayMetrics, Publish, TELEMETRY};

/// Name shown in RabbitMQ's connection list and stamped as `app_id`.
pub const APP_ID: &str = "api-gateway";

/// First pause before reconnecting to RabbitMQ; doubled after each failure.
const AMQP_RETRY_INITIAL: Duration = Duration::from_millis(250);
/// Longer than the worker's 3 s: while the link is down the gateway answers
/// 503 with `Retry-After: 5`, so reconnecting sooner brings no client back
/// sooner.
const AMQP_RETRY_MAX: Duration = Duration::from_secs(5);
/// Bounds one connect + channel + topology attempt; lapin's own connection
/// timeout covers only the TCP/AMQP handshake.
const CONNECT_BUDGET: Duration = Duration::from_secs(10);
/// Pause before an order is published again after a nack or a lost
/// confirm: a quorum queue's election takes a moment.
const REPUBLISH_PAUSE: Duration = Duration::from_millis(100);
/// Bounds opening a fresh channel on a live connection (it is a round trip
/// to the local node; the HA VM test saw one take over 2 s on a node busy
/// with a member rejoining).
const RENEW_BUDGET: Duration = Duration::from_secs(3);

/// How long one publish waits for its confirm before its channel is
/// replaced and the order published again: two fifths of the publish
/// timeout (2 s of the default 5 s), which leaves the rest for the fresh
/// channel. A quorum queue confirms within milliseconds when healthy.
///
/// Also before a connection's first confirm. An earlier rule let a
/// connection's first publishes wait their whole timeout (a quorum queue's
/// first order once took 5 s to be confirmed in the VM test), but a gateway
/// that had taken no order yet (one that has just been handed the shared
/// address) then waited out the whole timeout on a channel stuck on a dead
/// leader: 13 s without an accepted order where 10 s is promised
/// (docs/ha.md). A slow but healthy first confirm costs the order published
/// twice, which the worker stores once.
pub fn confirm_patience(publish_timeout: Duration) -> Duration {
    publish_timeout * 2 / 5
}
/// How often the loop looks at the link's state besides the error events.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often the alarm probe is published (see the module comment): about
/// the longest an alarm goes unnoticed. Ten empty messages a second, each
/// dropped at the exchange.
pub const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Routing key of the probe on the default exchange: no queue of that name
/// exists, so the broker drops the probe (it is not `mandatory`).
pub const PROBE_ROUTING_KEY: &str = "api-gateway.alarm-probe";

/// Cheap to clone; every clone shares one connection.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
    /// `true` asks the loop to close the connection and end; the loop also
    /// ends when every clone (so this sender) is gone.
    stop: Arc<watch::Sender<bool>>,
}

struct Shared {
    link: RwLock<Option<Link>>,
    /// Asks the loop for a fresh channel on the current connection (see the
    /// module comment); several requests asking at once make one.
    renew: Arc<Notify>,
    /// The generation a fresh channel was asked for (0: none).
    renew_for: AtomicU64,
    publish_timeout: Duration,
    metrics: GatewayMetrics,
    /// What the re-declaration after a returned order declares.
    topology: Topology,
}

/// A usable connection: the channel publishers share, and the connection's
/// status (to see a broker-side block without a round trip).
#[derive(Clone)]
struct Link {
    /// Tells links apart so a late failure report about an old link cannot
    /// tear down its replacement.
    generation: u64,
    channel: Channel,
    connection: ConnectionStatus,
}

impl Broker {
    /// Starts the connection loop in the background and returns at once, so
    /// the gateway starts (and answers 503 on billing) while RabbitMQ is down.
    /// Must be called inside a tokio runtime. The loop ends on [`stop`]
    /// or when the last clone of the handle is dropped; the returned task
    /// finishes once it has closed the connection.
    ///
    /// [`stop`]: Broker::stop
    pub fn start(config: &Config, metrics: GatewayMetrics) -> (Self, JoinHandle<()>) {
        let renew = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            link: RwLock::new(None),
            renew: Arc::clone(&renew),
            renew_for: AtomicU64::new(0),
            publish_timeout: config.publish_timeout(),
            metrics,
            topology: config.rabbitmq.topology(),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(Arc::downgrade(&shared), config.clone(), stopped, renew));
        let broker = Self {
            shared,
            stop: Arc::new(stop),
        };
        (broker, task)
    }

    /// Asks the loop to close the connection (cleanly, so RabbitMQ logs no
    /// lost client) and end. New publishes get 503 from then on.
    pub fn stop(&self) {
        self.shared.set(None);
        self.stop.send_replace(true);
    }

    /// Whether a connection with a confirm-mode channel is up right now.
    pub fn is_connected(&self) -> bool {
        self.shared.current().is_some_and(|l| l.is_usable())
    }

    /// Whether RabbitMQ blocks this connection's publishes (memory or disk
    /// alarm) right now.
    pub fn is_blocked(&self) -> bool {
        self.shared
            .current()
            .is_some_and(|l| l.connection.blocked())
    }

    /// Publishes `order` persistently to `billing_queue` and returns only
    /// once RabbitMQ has confirmed it (it is then on disk: the queue is
    /// durable and the message persistent; with a quorum queue, on a
    /// majority of the nodes). Any other outcome is an error and the order
    /// must not be reported as accepted.
    ///
    /// A nack (a quorum queue electing a new leader) or a confirm lost with
    /// the connection (its node died) is not final: the order is published
    /// again, on the replacement link once the loop has one, until the
    /// publish timeout. The broker may then hold it twice; the worker stores
    /// it once (`ON CONFLICT (order_id)`), which is why that is safe.
    pub async fn publish(&self, order: &OrderMessage, request_id: &RequestId) -> Result<(), Error> {
        let (outcome, result) = self.try_publish(order, request_id).await;
        if TELEMETRY {
            self.shared.metrics.published(outcome);
        }
        result
    }

    /// Publishes until confirmed, an error that publishing again cannot
    /// cure, or the publish timeout; says what the last publish came to.
    async fn try_publish(
        &self,
        order: &OrderMessage,
        request_id: &RequestId,
    ) -> (Publish, Result<(), Error>) {
        let timeout = self.shared.publish_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let payload = match serde_json::to_vec(order) {
            Ok(payload) => payload,
            Err(e) => return (Publish::Failed, Err(Error::Internal(Box::new(e)))),
        };
        let timed_out = || Error::PublishTimeout {
            order_id: order.order_id,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        // Without a link the first time, 503 at once: the broker is down, not
        // failing over (a failover leaves the loop reconnecting within it).
        let Some(mut link) = self.shared.current().filter(Link::is_usable) else {
            return (
                Publish::RefusedDown,
                Err(Error::BrokerUnavailable("not connected to RabbitMQ".into())),
            );
        };
        let patience = confirm_patience(timeout);
        let mut tries = 0u32;
        loop {
            tries += 1;
            let wait_until = deadline.min(tokio::time::Instant::now() + patience);
            let attempt = tokio::time::timeout_at(
                wait_until,
                self.publish_once(&link, order, &payload, request_id),
            );
            let (outcome, retry_after) = match attempt.await {
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    // Not confirmed at all: the next order gets a fresh
                    // channel (a no-op if one is already on its way).
                    self.shared.suspect(link.generation);
                    return (Publish::Timeout, Err(timed_out()));
                }
                Err(_) => {
                    log::warn!(
                        "order {} not confirmed within {patience:?}; publishing it again on a fresh channel {request_id}",
                        order.order_id
                    );
                    self.shared.suspect(link.generation);
                    (Publish::Timeout, timed_out())
                }
                Ok(Attempt::Done(outcome, result)) => {
                    if tries > 1 && result.is_ok() {
                        log::info!(
                            "order {} confirmed after {tries} publishes {request_id}",
                            order.order_id
                        );
                    }
                    return (outcome, result);
                }
                Ok(Attempt::Again { outcome, why, last }) => {
                    log::warn!(
                        "order {} not confirmed ({why}); publishing it again {request_id}",
                        order.order_id
                    );
                    if tokio::time::Instant::now() + REPUBLISH_PAUSE >= deadline {
                        return (outcome, Err(last));
                    }
                    (outcome, last)
                }
            };
            tokio::time::sleep(REPUBLISH_PAUSE).await;
            // The fresh channel once the loop has it (after a nack or a late
            // confirm), or a new connection after a lost one.
            let stale = link.generation;
            link = loop {
                if let Some(l) = self.shared.current().filter(Link::is_usable) {
                    if l.generation != stale || !self.shared.renewing(stale) {
                        break l;
                    }
                }
                if tokio::time::Instant::now() + REPUBLISH_PAUSE >= deadline {
                    return (outcome, Err(retry_after));
                }
                tokio::time::sleep(REPUBLISH_PAUSE).await;
            };
        }
    }

    /// One publish of `payload` on `link` and its confirm.
    async fn publish_once(
        &self,
        link: &Link,
        order: &OrderMessage,
        payload: &[u8],
        request_id: &RequestId,
    ) -> Attempt {
        // While RabbitMQ blocks publishers (memory or disk alarm), a confirm
        // would only arrive after the alarm clears: fail now instead.
        if link.connection.blocked() {
            return Attempt::Done(
                Publish::RefusedBlocked,
                Err(Error::BrokerUnavailable(
                    "RabbitMQ is blocking publishers (resource alarm)".into(),
                )),
            );
        }
        let trace = TELEMETRY.then_some(&request_id.trace);
        let properties = topology::order_properties(order.order_id, &request_id.id, trace, APP_ID);
        let started = Instant::now();
        let confirmed = topology::publish_order(&link.channel, payload, properties).await;
        if TELEMETRY && matches!(confirmed, Ok(Confirmation::Ack(_) | Confirmation::Nack(_))) {
            self.shared.metrics.confirm_took(started);
        }
        match confirmed {
            Ok(Confirmation::Ack(None)) => Attempt::Done(Publish::Confirmed, Ok(())),
            Ok(Confirmation::Ack(Some(returned))) => {
                // The queue is gone (deleted by hand?): declare it again so
                // the next order finds it.
                let channel = link.channel.clone();
                let declared = self.shared.topology;
                tokio::spawn(async move {
                    if let Err(e) = topology::declare(&channel, &declared).await {
                        log::warn!("re-declaring the RabbitMQ topology failed: {e}");
                    }
                });
                Attempt::Done(
                    Publish::Returned,
                    Err(Error::OrderNotQueued {
                        order_id: order.order_id,
                        reason: format!(
                            "returned as unroutable ({} {})",
                            returned.reply_code, returned.reply_text
                        ),
                    }),
                )
            }
            Ok(Confirmation::Nack(_)) => {
                self.shared.suspect(link.generation);
                Attempt::Again {
                    outcome: Publish::Nacked,
                    why: "nack".to_owned(),
                    last: Error::OrderNotQueued {
                        order_id: order.order_id,
                        reason: "negatively acknowledged (nack)".into(),
                    },
                }
            }
            Ok(Confirmation::NotRequested) => {
                self.shared.mark_broken(link.generation);
                Attempt::Done(
                    Publish::Failed,
                    Err(Error::Internal("channel is not in confirm mode".into())),
                )
            }
            Err(e) => {
                // Most likely the channel or connection died under us; let the
                // loop replace it now rather than at its next check.
                self.shared.mark_broken(link.generation);
                Attempt::Again {
                    outcome: Publish::Failed,
                    why: format!("publish failed: {e}"),
                    last: Error::BrokerUnavailable(format!("publish failed: {e}")),
                }
            }
        }
    }
}

/// What one publish came to.
enum Attempt {
    /// Final: confirmed, or an error that publishing again cannot cure.
    Done(Publish, Result<(), Error>),
    /// Not confirmed, but the order may be published again; `outcome` and
    /// `last` are what is reported if the time runs out first.
    Again {
        outcome: Publish,
        why: String,
        last: Error,
    },
}

impl Shared {
    fn current(&self) -> Option<Link> {
        self.link
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, link: Option<Link>) {
        *self
            .link
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = link;
    }

    /// Drops the link of `generation` if it is still the current one.
    fn mark_broken(&self, generation: u64) {
        let mut slot = self
            .link
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.as_ref().is_some_and(|l| l.generation == generation) {
            *slot = None;
        }
    }

    fn holds(&self, generation: u64) -> bool {
        self.current().is_some_and(|l| l.generation == generation)
    }

    /// The channel of `generation` missed a confirm or nacked: asks the loop
    /// for a fresh one, once per generation.
    fn suspect(&self, generation: u64) {
        if self.holds(generation) && self.renew_for.swap(generation, Ordering::AcqRel) != generation
        {
            self.renew.notify_one();
        }
    }

    /// A fresh channel for `generation` could not be had: its publishes go
    /// again on the current one.
    fn keep_channel(&self, generation: u64, why: &str) {
        let _ = self
            .renew_for
            .compare_exchange(generation, 0, Ordering::AcqRel, Ordering::Acquire);
        log::warn!("{why}; publishing on the current RabbitMQ channel");
    }

    /// Whether a fresh channel is on its way to replace `generation`'s.
    fn renewing(&self, generation: u64) -> bool {
        self.renew_for.load(Ordering::Acquire) == generation && self.holds(generation)
    }
}

impl Link {
    fn is_usable(&self) -> bool {
        self.connection.connected() && self.channel.status().connected()
    }
}

/// Connects, keeps the link while it is healthy, and reconnects with capped
/// exponential backoff whenever it is lost, until asked to stop.
async fn run(
    shared: Weak<Shared>,
    config: Config,
    mut stop: watch::Receiver<bool>,
    renew: Arc<Notify>,
) {
    let target = format!("{:?}", config.rabbitmq);
    let mut backoff = Backoff::new(AMQP_RETRY_INITIAL, AMQP_RETRY_MAX);
    let mut generation = 0u64;
    while !*stop.borrow() {
        let connected = tokio::select! {
            r = tokio::time::timeout(CONNECT_BUDGET, connect(&config)) => {
                r.unwrap_or_else(|_| Err(format!("no answer within {CONNECT_BUDGET:?}")))
            }
            _ = stop.changed() => return,
        };
        match connected {
            Ok((connection, mut channel, probe)) => {
                generation += 1;
                let Some(strong) = shared.upgrade() else {
                    close(&connection).await;
                    return;
                };
                strong.set(Some(Link {
                    generation,
                    channel: channel.clone(),
                    connection: connection.status().clone(),
                }));
                drop(strong);
                let failed = backoff.attempt() - 1;
                if failed > 0 {
                    log::info!("connected to RabbitMQ {target} after {failed} failed attempt(s)");
                } else {
                    log::info!("connected to RabbitMQ {target}");
                }
                backoff.reset();

                let lost = watch_link(
                    &shared,
                    &connection,
                    &mut channel,
                    &probe,
                    &mut generation,
                    &mut stop,
                    &renew,
                )
                .await;
                if let Some(strong) = shared.upgrade() {
                    strong.mark_broken(generation);
                }
                match lost {
                    Lost::Stop => {
                        close(&connection).await;
                        log::info!("RabbitMQ connection closed");
                        return;
                    }
                    Lost::Broken(reason) => {
                        log::warn!("RabbitMQ connection lost ({reason}); reconnecting");
                        close(&connection).await;
                    }
                }
            }
            Err(e) => {
                log::warn!(
                    "cannot connect to RabbitMQ {target} (attempt {}): {e}; retrying in {:?}",
                    backoff.attempt(),
                    backoff.peek()
                );
                tokio::select! {
                    _ = backoff.wait() => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// One connection with a confirm-mode channel and the topology declared, so
/// an order published before any worker ever ran still finds its queue; and
/// a plain channel for the alarm probe.
async fn connect(config: &Config) -> Result<(Connection, Channel, Channel), String> {
    let connection = config
        .rabbitmq
        .connect(APP_ID)
        .await
        .map_err(|e| e.to_string())?;
    let setup = async {
        let channel = confirm_channel(&connection).await?;
        topology::declare(&channel, &config.rabbitmq.topology()).await?;
        let probe = connection.create_channel().await?;
        Ok::<_, lapin::Error>((channel, probe))
    };
    match setup.await {
        Ok((channel, probe)) => Ok((connection, channel, probe)),
        Err(e) => {
            close(&connection).await;
            Err(format!("setting up the channel failed: {e}"))
        }
    }
}

/// A new channel in confirm mode, for the orders.
async fn confirm_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

enum Lost {
    /// The gateway is stopping (or every handle is gone).
    Stop,
    /// The link broke, for this reason.
    Broken(String),
}

/// Waits until the link is no longer usable and says why. Meanwhile swaps in
/// a fresh channel (and a new `generation`) whenever one is asked for.
async fn watch_link(
    shared: &Weak<Shared>,
    connection: &Connection,
    channel: &mut Channel,
    probe: &Channel,
    generation: &mut u64,
    stop: &mut watch::Receiver<bool>,
    renew: &Notify,
) -> Lost {
    let mut events = Box::pin(connection.events_listener());
    let mut tick = tokio::time::interval(CHECK_EVERY);
    let mut probe_tick = tokio::time::interval(PROBE_EVERY);
    probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The probe in flight: while the broker holds it, no other is sent.
    let mut probing: Option<JoinHandle<()>> = None;
    let mut probe_lost_told = false;
    loop {
        tokio::select! {
            _ = stop.changed() => return Lost::Stop,
            _ = renew.notified() => {
                let Some(strong) = shared.upgrade() else {
                    return Lost::Stop;
                };
                if !strong.renewing(*generation) {
                    continue; // asked for an older channel, already replaced
                }
                let fresh = tokio::time::timeout(RENEW_BUDGET, confirm_channel(connection)).await;
                match fresh {
                    Ok(Ok(fresh)) => {
                        *generation += 1;
                        strong.set(Some(Link {
                            generation: *generation,
                            channel: fresh.clone(),
                            connection: connection.status().clone(),
                        }));
                        let old = std::mem::replace(channel, fresh);
                        log::warn!("RabbitMQ channel {} missed a confirm or nacked; publishing on a fresh channel {}", old.id(), channel.id());
                        // Its publishes still waiting fail now and go again
                        // on the fresh channel. Best effort: it may be stuck.
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(RENEW_BUDGET, old.close(200, "replaced".into())).await;
                        });
                    }
                    // No fresh channel (a busy node): carry on with this one
                    // rather than drop a connection that may be fine; the
                    // waiting publishes go again on it. A dead connection
                    // shows in its status or events, as always.
                    Ok(Err(e)) => strong.keep_channel(*generation, &format!("a fresh channel failed: {e}")),
                    Err(_) => strong.keep_channel(*generation, &format!("no fresh channel within {RENEW_BUDGET:?}")),
                }
            }
            _ = probe_tick.tick() => {
                let idle = probing.as_ref().is_none_or(JoinHandle::is_finished);
                if idle && !connection.status().blocked() {
                    probing = Some(tokio::spawn(send_probe(probe.clone())));
                }
            }
            event = events.next() => match event {
                Some(Event::Error(e)) => return Lost::Broken(format!("connection error: {e}")),
                Some(Event::ConnectionBlocked(why)) => {
                    log::warn!("RabbitMQ blocks publishers: {why}");
                }
                Some(Event::ConnectionUnblocked) => {
                    log::info!("RabbitMQ unblocked publishers");
                }
                Some(_) => {}
                None => return Lost::Broken("connection closed".to_owned()),
            },
            _ = tick.tick() => {
                let Some(strong) = shared.upgrade() else {
                    return Lost::Stop;
                };
                if !strong.holds(*generation) {
                    return Lost::Broken("a publish on it failed".to_owned());
                }
                if !connection.status().connected() {
                    return Lost::Broken(format!("connection status {:?}", connection.status()));
                }
                if !channel.status().connected() {
                    return Lost::Broken(format!("channel status {:?}", channel.status()));
                }
                // Orders still work without the probe; only alarms would
                // show late (as a 504). Say so once, and carry on.
                if !probe.status().connected() && !probe_lost_told {
                    probe_lost_told = true;
                    log::warn!(
                        "the alarm probe channel closed ({:?}): a RabbitMQ resource alarm will show only once an order is held",
                        probe.status()
                    );
                }
            }
        }
    }
}

/// Publishes one alarm probe. Errors are left to the loop's own checks: a
/// dead channel shows in its status, which the loop looks at anyway.
async fn send_probe(probe: Channel) {
    let published = probe
        .basic_publish(
            "".into(),
            PROBE_ROUTING_KEY.into(),
            BasicPublishOptions::default(),
            b"",
            BasicProperties::default().with_app_id(APP_ID.into()),
        )
        .await;
    if let Err(e) = published {
        log::debug!("alarm probe not sent: {e}");
    }
}

async fn close(connection: &Connection) {
    // Best effort: when the link broke, the connection is dead already.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        connection.close(200, "api-gateway closing".into()),
    )
    .await;
}
