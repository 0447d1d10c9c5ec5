use billing_worker::config::Config;
use billing_worker::startup::Application;
use common::config::ServiceConfig;
use std::process::ExitCode;
use std::time::Duration;

// musl's allocator takes a global lock and maps and unmaps memory on nearly
// every request; mimalloc keeps per-thread heaps (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    common::logging::init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            log::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let app = match Application::build(config) {
            Ok(app) => app,
            Err(e) => {
                log::error!("start-up failed: {e}");
                return ExitCode::FAILURE;
            }
        };
        match app.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("billing-worker stopped: {e}");
                ExitCode::FAILURE
            }
        }
    });
    // A store abandoned at stop (still blocked in the database past the
    // grace period) must not keep the process alive: its transaction is
    // rolled back when the connection closes, and its messages were not acked.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}
