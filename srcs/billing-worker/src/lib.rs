//! billing-worker: consumes `billing_queue` and stores every order once in
//! PostgreSQL (`orders` table), acknowledging a message only after its row is
//! committed. Also serves `/health` and `/ready` on a small HTTP port.

pub mod batch;
pub mod config;
pub mod consumer;
pub mod error;
pub mod metrics;
pub mod process;
pub mod routes;
pub mod schema;
pub mod shutdown;
pub mod startup;
pub mod status;
pub mod store;

use diesel_migrations::{embed_migrations, EmbeddedMigrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
