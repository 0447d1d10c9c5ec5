use std::process::ExitCode;

use api_gateway::{Application, Config};

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
    let app = match Application::build(config).await {
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
