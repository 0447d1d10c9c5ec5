//! Load generator: publishes N orders to `billing_queue` exactly as the
//! gateway does (persistent, JSON, message_id = order_id, x-request-id header,
//! publisher confirms), to measure how fast the worker drains a backlog.
//!
//!   cargo run --release -p billing-worker --example publish_orders -- 100000 \
//!       amqp://guest:guest@127.0.0.1:55672/%2f

use common::order::OrderMessage;
use common::topology::{self, BILLING_QUEUE};
use futures_util::future::try_join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::time::Instant;
use uuid::Uuid;

/// Confirms awaited together: enough to keep the broker busy.
const WINDOW: usize = 1000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().as_deref().unwrap_or("1000").parse()?;
    let uri = args
        .next()
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:55672/%2f".to_owned());

    let connection = Connection::connect(&uri, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    topology::declare(&channel).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let n = WINDOW.min(count - sent);
        let mut confirms = Vec::with_capacity(n);
        for i in sent..sent + n {
            let order = OrderMessage {
                order_id: Uuid::new_v4(),
                user_id: format!("bench-{}", i % 1000),
                number_of_items: 1 + (i % 9) as i32,
                total_amount: format!("{}.{:02}", i % 500, i % 100),
            };
            let mut headers = FieldTable::default();
            headers.insert(
                ShortString::from(common::REQUEST_ID_HEADER),
                AMQPValue::LongString(LongString::from(format!("bench-{i}"))),
            );
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json"))
                .with_message_id(ShortString::from(order.order_id.to_string()))
                .with_headers(headers);
            let confirm = channel
                .basic_publish(
                    "".into(),
                    BILLING_QUEUE.into(),
                    BasicPublishOptions::default(),
                    &serde_json::to_vec(&order)?,
                    properties,
                )
                .await?;
            confirms.push(confirm);
        }
        for confirmation in try_join_all(confirms).await? {
            if !confirmation.is_ack() {
                return Err(format!("a publish was not confirmed: {confirmation:?}").into());
            }
        }
        sent += n;
    }
    println!(
        "published {count} orders in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    connection.close(200, "done".into()).await?;
    Ok(())
}
