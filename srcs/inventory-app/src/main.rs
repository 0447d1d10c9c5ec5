use common::config::ServiceConfig;
use std::process::ExitCode;

use inventory_app::config::Config;
use inventory_app::startup::Application;

// musl's allocator takes a global lock and maps and unmaps memory on nearly
// every request; mimalloc keeps per-thread heaps (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    common::logging::init();
    let app = match Config::from_env()
        .map_err(Into::into)
        .and_then(Application::build)
    {
        Ok(app) => app,
        Err(e) => {
            log::error!("start-up failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = app.run().await {
        log::error!("server failed: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
