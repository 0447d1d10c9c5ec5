//! The broker's own limit for draining `billing_queue`: consumes N messages
//! with the worker's prefetch and acknowledges them in batches (one
//! multiple-ack per batch, as the worker does) without storing anything. What
//! is left is the cost of the broker delivering persistent messages from one
//! queue, plus the AMQP client.
//!
//! Connection settings come from BENCH_AMQP_{HOST,PORT,USER,PASSWORD,VHOST}.
//! The messages it takes are gone: run it on a bench instance's backlog only.

use bench_tools::Args;
use common::topology::BILLING_QUEUE;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: raw-consume --count N [--prefetch P] [--ack-every B] [--timeout SECONDS]
  Consumes N messages from billing_queue (prefetch P, default 1000), acking every
  B (default 500) with one multiple-ack. Prints: consumed=N seconds=S rate=R
  Env: BENCH_AMQP_HOST, BENCH_AMQP_PORT, BENCH_AMQP_USER, BENCH_AMQP_PASSWORD, BENCH_AMQP_VHOST";

#[tokio::main]
async fn main() -> ExitCode {
    bench_tools::exit_code("raw-consume", run()).await
}

async fn run() -> Result<bool, String> {
    let args = Args::parse(USAGE)?;
    let count: u64 = args
        .get("count")?
        .ok_or_else(|| format!("--count is required\n{USAGE}"))?;
    let prefetch: u16 = args.get_or("prefetch", 1000)?;
    let ack_every: u64 = args.get_or("ack-every", 500)?;
    let timeout: f64 = args.get_or("timeout", 300.0)?;
    if ack_every == 0 {
        return Err(format!("--ack-every must be > 0\n{USAGE}"));
    }
    let (connection, channel) = bench_tools::connect("bench-raw-consume").await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| format!("basic.qos: {e}"))?;

    let started = Instant::now();
    let mut consumer = channel
        .basic_consume(
            BILLING_QUEUE.into(),
            "bench-raw-consume".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("basic.consume: {e}"))?;
    let deadline = started + Duration::from_secs_f64(timeout);
    let mut consumed = 0u64;
    let mut complete = true;
    while consumed < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = match tokio::time::timeout(left, consumer.next()).await {
            Ok(Some(Ok(delivery))) => delivery,
            Ok(Some(Err(e))) => return Err(format!("consume: {e}")),
            Ok(None) => return Err("the consumer was cancelled".to_owned()),
            Err(_) => {
                eprintln!("raw-consume: only {consumed} of {count} messages after {timeout} s");
                complete = false;
                break;
            }
        };
        consumed += 1;
        if consumed.is_multiple_of(ack_every) || consumed == count {
            next.acker
                .ack(BasicAckOptions { multiple: true })
                .await
                .map_err(|e| format!("ack: {e}"))?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    println!(
        "consumed={consumed} seconds={seconds:.3} rate={:.1}",
        consumed as f64 / seconds.max(1e-9)
    );
    Ok(complete)
}
