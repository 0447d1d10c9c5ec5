//! Integration tests of the billing worker against real PostgreSQL and
//! RabbitMQ (see support.rs for the environment they need).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consuming;
mod failures;
mod health;
mod metrics;
mod migrations;
mod support;
