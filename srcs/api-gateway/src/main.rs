use common::config::{ConfigError, ServiceConfig};
use common::startup::MainError;
use std::process::ExitCode;

use api_gateway::{Application, Config};

// musl's allocator takes a global lock and maps and unmaps memory on nearly
// every request; mimalloc keeps per-thread heaps (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    common::logging::init();
    common::startup::exit_code(module_path!(), serve().await)
}

async fn serve() -> Result<(), MainError<std::io::Error>> {
    let config = Config::from_env()?;
    if let Some(path) = config.access_log_file() {
        common::logging::copy_target_to_file(api_gateway::config::ACCESS_LOG_TARGET, path)
            .map_err(|e| ConfigError::bad("GATEWAY_ACCESS_LOG_FILE", e))?;
    }
    Application::build(config)?
        .run()
        .await
        .map_err(MainError::Run)
}
