use common::config::ServiceConfig;
use common::startup::MainError;
use std::process::ExitCode;

use inventory_app::config::Config;
use inventory_app::startup::Application;

common::global_allocator!();

fn main() -> ExitCode {
    common::startup::actix_main(module_path!(), async {
        let app = Application::build(Config::from_env()?)?;
        app.run().await.map_err(MainError::Run)
    })
}
