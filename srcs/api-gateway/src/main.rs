use common::config::ServiceConfig;
use std::process::ExitCode;

use api_gateway::{Application, Config};

// musl's allocator takes a global lock and maps and unmaps memory on nearly
// every request; mimalloc keeps per-thread heaps (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    common::logging::init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = config.access_log_file() {
        let copied =
            common::logging::copy_target_to_file(api_gateway::config::ACCESS_LOG_TARGET, path);
        if let Err(e) = copied {
            log::error!("bad variable GATEWAY_ACCESS_LOG_FILE: {e}");
            return ExitCode::FAILURE;
        }
    }
    let app = match Application::build(config) {
        Ok(app) => app,
        Err(e) => {
            log::error!("start-up failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = app.run().await {
        log::error!("server stopped with an error: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
