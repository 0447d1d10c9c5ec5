use common::config::ServiceConfig;
use common::startup::MainError;
use std::process::ExitCode;
use std::time::Duration;

use common::db::PgSettings;
use inventory_app::config::{Config, DB_PREFIX};
use inventory_app::startup::Application;
use inventory_app::MIGRATIONS;

common::global_allocator!();

/// How long `inventory-app migrate` waits for the database.
const MIGRATE_PATIENCE: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    // `inventory-app migrate`: apply the migrations with the configured
    // database account, then exit (provisioning, as the migration role).
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        common::logging::init();
        return common::startup::exit_code(module_path!(), migrate());
    }
    common::startup::actix_main(module_path!(), async {
        let app = Application::build(Config::from_env()?)?;
        app.run().await.map_err(MainError::Run)
    })
}

/// Reads only the database settings: migrating needs nothing else.
fn migrate() -> Result<(), MainError<common::db::MigrateError>> {
    let db = PgSettings::from_vars(DB_PREFIX, std::env::vars())?;
    common::db::migrate_now(&db, || MIGRATIONS, "inventory-app", MIGRATE_PATIENCE)
        .map(drop)
        .map_err(MainError::Run)
}
