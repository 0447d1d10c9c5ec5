//! api-gateway's integration tests against the real RabbitMQ, inventory-app
//! and PostgreSQL, as one test binary (built and linked once). Three tests
//! keep a process of their own: `alarm.rs` (a broker-wide disk alarm no other
//! test may see), `limits.rs` (measures the process's memory) and
//! `logging.rs` (counts every access line the process logs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod balance;
mod billing;
mod hosts;
mod idempotency;
mod inventory;
mod metrics;
mod nodes;
mod proxy;
mod streaming;
mod support;
mod surface;
