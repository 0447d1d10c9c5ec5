use billing_worker::config::Config;
use billing_worker::error::Error;
use billing_worker::startup::Application;
use common::config::ServiceConfig;
use common::startup::{MainError, StartupError};
use std::process::ExitCode;
use std::time::Duration;

common::global_allocator!();

fn main() -> ExitCode {
    common::logging::init();
    common::startup::exit_code(module_path!(), serve())
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
