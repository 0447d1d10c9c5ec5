//! The broker's own limit for what the gateway does on `POST /api/billing`:
//! persistent, mandatory publishes of order messages to `billing_queue`, each
//! awaited until RabbitMQ confirms it, from N concurrent publishers sharing
//! one channel or spread over several. No HTTP, no validation: what is left is
//! the cost of the broker and of the AMQP client.
//!
//! Also fills a backlog: `--count 100000` publishes exactly that many orders
//! (valid ones, as the gateway would write them) and stops.
//!
//! Connection settings come from BENCH_AMQP_{HOST,PORT,USER,PASSWORD,VHOST}.

use bench_tools::{percentile, Args};
use common::order::OrderMessage;
use common::topology;
use lapin::options::ConfirmSelectOptions;
use lapin::Channel;
use lapin::Confirmation;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const USAGE: &str = "usage: raw-publish (--count N | --duration SECONDS [--warmup SECONDS])
                   [--concurrency C] [--channels K]
  C publishers (default 16) share K channels (default 1) of one connection;
  each publishes one persistent, mandatory order and awaits its confirm.
  Prints: published=N seconds=S rate=R p50_ms=X p99_ms=Y errors=E
  Env: BENCH_AMQP_HOST, BENCH_AMQP_PORT, BENCH_AMQP_USER, BENCH_AMQP_PASSWORD, BENCH_AMQP_VHOST";

/// When to stop, and which confirms count.
#[derive(Clone, Copy)]
enum Plan {
    /// Publish exactly this many (sequence numbers 0..n).
    Count(u64),
    /// Count confirms that arrive between `from` and `until`.
    Window { from: Instant, until: Instant },
}

#[derive(Default)]
struct Tally {
    counted: u64,
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    bench_tools::exit_code("raw-publish", run()).await
}

async fn run() -> Result<bool, String> {
    let args = Args::parse(USAGE)?;
    let count: Option<u64> = args.get("count")?;
    let duration: Option<f64> = args.get("duration")?;
    let warmup: f64 = args.get_or("warmup", 0.0)?;
    let concurrency: usize = args.get_or("concurrency", 16)?;
    let channels: usize = args.get_or("channels", 1)?;
    if concurrency == 0 || channels == 0 {
        return Err(format!("--concurrency and --channels must be > 0\n{USAGE}"));
    }
    // The first channel declares the topology; the others only publish.
    let (connection, first) = bench_tools::connect("bench-raw-publish").await?;
    let mut chans = vec![first];
    for _ in 1..channels {
        chans.push(bench_tools::channel(&connection).await?);
    }
    for channel in &chans {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("confirm.select: {e}"))?;
    }

    let start = Instant::now();
    let plan = match (count, duration) {
        (Some(n), None) => Plan::Count(n),
        (None, Some(d)) if d > 0.0 && warmup >= 0.0 => {
            let from = start + Duration::from_secs_f64(warmup);
            Plan::Window {
                from,
                until: from + Duration::from_secs_f64(d),
            }
        }
        _ => return Err(format!("give either --count or --duration\n{USAGE}")),
    };

    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let channel = chans[i % channels].clone();
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(publisher(channel, next, plan)));
    }
    let mut total = Tally::default();
    for task in tasks {
        let t = task.await.map_err(|e| format!("publisher task: {e}"))?;
        total.counted += t.counted;
        total.errors += t.errors;
        total.latencies_us.extend(t.latencies_us);
        if total.first_error.is_none() {
            total.first_error = t.first_error;
        }
    }
    let seconds = match plan {
        Plan::Count(_) => start.elapsed().as_secs_f64(),
        Plan::Window { from, until } => (until - from).as_secs_f64(),
    };
    let _ = connection.close(200, "done".into()).await;

    total.latencies_us.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "published={} seconds={:.3} rate={:.1} p50_ms={:.3} p99_ms={:.3} errors={}",
        total.counted,
        seconds,
        total.counted as f64 / seconds.max(1e-9),
        ms(percentile(&total.latencies_us, 50.0)),
        ms(percentile(&total.latencies_us, 99.0)),
        total.errors
    );
    if let Some(e) = &total.first_error {
        eprintln!("raw-publish: {} errors, first: {e}", total.errors);
    }
    Ok(total.errors == 0)
}

async fn publisher(channel: Channel, next: Arc<AtomicU64>, plan: Plan) -> Tally {
    let mut tally = Tally::default();
    loop {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        match plan {
            Plan::Count(n) if seq >= n => break,
            Plan::Window { until, .. } if started >= until => break,
            _ => {}
        }
        let result = publish_one(&channel, seq).await;
        let done = Instant::now();
        let counts = match plan {
            Plan::Count(_) => true,
            Plan::Window { from, until } => done >= from && done <= until,
        };
        match result {
            Ok(()) if counts => {
                tally.counted += 1;
                tally
                    .latencies_us
                    .push(done.duration_since(started).as_micros() as u64);
            }
            Ok(()) => {}
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
                // A closed channel fails at once: don't spin through the plan.
                if !channel.status().connected() {
                    break;
                }
            }
        }
    }
    tally
}

/// One order, as the gateway writes it: JSON body, message id = order id,
/// persistent, mandatory, with a request id header; Ok once confirmed.
async fn publish_one(channel: &Channel, seq: u64) -> Result<(), String> {
    let order_id = Uuid::new_v4();
    let message = OrderMessage {
        order_id,
        user_id: format!("bench-{}", seq % 1000),
        number_of_items: (seq % 10 + 1) as i32,
        total_amount: format!("{}.{:02}", seq % 1000, seq % 100),
    };
    let body = serde_json::to_vec(&message).map_err(|e| format!("serialize: {e}"))?;
    // The same properties as the gateway's, so messages are the same size.
    let properties = topology::order_properties(
        order_id,
        &Uuid::new_v4().to_string(),
        Some(&common::trace::TraceContext::start()),
        "bench-raw-publish",
    );
    let confirm = topology::publish_order(channel, &body, properties)
        .await
        .map_err(|e| format!("publish: {e}"))?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) => Err(format!(
            "returned unroutable: {} {}",
            returned.reply_code, returned.reply_text
        )),
        Confirmation::Nack(_) => Err("nacked by the broker".to_owned()),
        Confirmation::NotRequested => Err("confirms not enabled".to_owned()),
    }
}
