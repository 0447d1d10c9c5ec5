use common::config::{ConfigError, ServiceConfig};
use common::startup::MainError;
use std::process::ExitCode;

use api_gateway::{Application, Config};

common::global_allocator!();

fn main() -> ExitCode {
    common::startup::actix_main(module_path!(), serve())
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
