use inventory_app::config::Config;
use inventory_app::startup::Application;

#[actix_web::main]
async fn main() {
    common::logging::init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(1);
        }
    };
    let app = match Application::build(&config) {
        Ok(app) => app,
        Err(e) => {
            log::error!("cannot listen on {}:{}: {e}", config.host, config.port);
            std::process::exit(1);
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
        std::process::exit(1);
    }
}
