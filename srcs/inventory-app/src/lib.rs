//! inventory-app: REST CRUD of movies in PostgreSQL, behind the api-gateway.

pub mod config;
pub mod error;
pub mod listing;
pub mod models;
pub mod queries;
pub mod routes;
pub mod schema;
pub mod startup;
pub mod state;
pub mod validation;

use diesel_migrations::{embed_migrations, EmbeddedMigrations};

/// The schema, compiled into the binary so a deployment is one file.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
