use common::config::ServiceConfig;
use common::startup::MainError;
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
    common::startup::exit_code(module_path!(), serve().await)
}

async fn serve() -> Result<(), MainError<std::io::Error>> {
    let config = Config::from_env()?;
    Application::build(config)?
        .run()
        .await
        .map_err(MainError::Run)
}
