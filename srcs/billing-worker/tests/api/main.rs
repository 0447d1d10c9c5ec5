//! billing-worker's integration tests against the real PostgreSQL and
//! RabbitMQ, as one test binary (built and linked once); `support` says what
//! environment they need and holds `spawn_app`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consuming;
mod failures;
mod health;
mod metrics;
mod migrations;
mod support;
