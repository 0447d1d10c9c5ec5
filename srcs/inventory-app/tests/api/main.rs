//! inventory-app's integration tests against a real PostgreSQL, one database
//! per test, as one test binary (built and linked once).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod lifecycle;
mod listing;
mod movies;
mod support;
