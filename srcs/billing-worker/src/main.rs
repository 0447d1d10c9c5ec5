use billing_worker::config::Config;
use billing_worker::startup::Application;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    common::logging::init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(2);
        }
    };
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
}
