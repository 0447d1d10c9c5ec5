use std::process::ExitCode;

use inventory_app::config::{Config, Limits};
use inventory_app::startup::Application;

// musl's allocator takes a global lock and maps and unmaps memory on nearly
// every request; mimalloc keeps per-thread heaps (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    common::logging::init();
    let (config, limits) = match Config::from_env().and_then(|c| Ok((c, Limits::from_env()?))) {
        Ok(both) => both,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let app = match Application::build_with(&config, &limits) {
        Ok(app) => app,
        Err(e) => {
            log::error!("start-up failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "inventory-app listening on {}:{}, database {:?}",
        config.host,
        app.port(),
        config.pg_target()
    );
    if let Err(e) = app.run().await {
        log::error!("server failed: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
