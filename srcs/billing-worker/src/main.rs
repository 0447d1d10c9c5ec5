use billing_worker::config::{Config, DB_PREFIX};
use billing_worker::error::Error;
use billing_worker::startup::Application;
use common::config::ServiceConfig;
use common::db::PgSettings;
use common::startup::{MainError, StartupError};
use std::process::ExitCode;
use std::time::Duration;

common::global_allocator!();

/// How long `billing-worker migrate` waits for the database.
const MIGRATE_PATIENCE: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    common::logging::init();
    // `billing-worker migrate`: apply the migrations with the configured
    // database account, then exit (provisioning, as the migration role).
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        return common::startup::exit_code(module_path!(), migrate());
    }
    common::startup::exit_code(module_path!(), serve())
}

/// Reads only the database settings: migrating needs nothing else (not the
/// broker's password).
fn migrate() -> Result<(), MainError<common::db::MigrateError>> {
    let db = PgSettings::from_vars(DB_PREFIX, std::env::vars())?;
    common::db::migrate_now(
        &db,
        || billing_worker::MIGRATIONS,
        "billing-worker",
        MIGRATE_PATIENCE,
    )
    .map(drop)
    .map_err(MainError::Run)
}

fn serve() -> Result<(), MainError<Error>> {
    let config = Config::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| StartupError::Thread {
            what: "async runtime",
            source,
        })?;
    let result = runtime.block_on(async {
        Application::build(config)?
            .run()
            .await
            .map_err(MainError::Run)
    });
    // A store abandoned at stop (still blocked in the database past the
    // grace period) must not keep the process alive: its transaction is
    // rolled back when the connection closes, and its messages were not acked.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
