//! Why a service could not start, the same for all three: each variant says
//! what failed and keeps its cause, so an operator is not sent looking for a
//! port conflict when the cause is elsewhere.

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the HTTP server: {0}")]
    Server(#[source] std::io::Error),
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl StartupError {
    /// For `map_err` on the bind and `local_addr` calls of one address.
    pub fn bind(address: &str) -> impl Fn(std::io::Error) -> Self + '_ {
        move |source| Self::Bind {
            address: address.to_owned(),
            source,
        }
    }
}

/// Binds `host:port` with the given accept backlog and returns the listener
/// and the port it got (port 0 picks a free one, as tests do).
pub fn listen(
    host: &str,
    port: u16,
    backlog: u32,
) -> Result<(std::net::TcpListener, u16), StartupError> {
    let address = format!("{host}:{port}");
    let bind = StartupError::bind(&address);
    let listener = crate::http::listen(address.as_str(), backlog).map_err(&bind)?;
    let port = listener.local_addr().map_err(&bind)?.port();
    Ok((listener, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_port_in_use_is_named_with_its_cause() {
        let (_held, port) = listen("127.0.0.1", 0, 16).unwrap();
        let err = listen("127.0.0.1", port, 16).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot listen on 127.0.0.1:{port}: {}",
                err.source().unwrap()
            )
        );
        let io = err.source().unwrap().downcast_ref::<std::io::Error>();
        assert_eq!(io.unwrap().kind(), std::io::ErrorKind::AddrInUse);
    }

    /// inventory's `main` once said "cannot listen" for every start-up error.
    #[test]
    fn a_config_error_is_not_reported_as_a_bind_error() {
        let err = StartupError::from(ConfigError::bad("X_PORT", "must be at least 1 (got 0)"));
        assert_eq!(
            err.to_string(),
            "configuration error: bad variable X_PORT: must be at least 1 (got 0)"
        );
    }
}

/// What ends a service's `main` early: its configuration, its start-up, or
/// the server or consumer stopping with an error. One type, so that every
/// service logs it the same way and exits with the same status.
#[derive(Debug, thiserror::Error)]
pub enum MainError<E: std::fmt::Display> {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("start-up failed: {0}")]
    Startup(#[from] StartupError),
    #[error("stopped with an error: {0}")]
    Run(E),
}

/// The two servers of an HTTP service (gateway, inventory), bound and not
/// yet serving: its public one and its metrics listener.
pub struct Servers {
    pub port: u16,
    pub server: actix_web::dev::Server,
    pub metrics_port: u16,
    pub metrics_server: actix_web::dev::Server,
}

impl Servers {
    /// Serves until the public server stops (SIGINT/SIGTERM; requests in
    /// flight finish first), then stops the metrics listener.
    pub async fn run(self) -> std::io::Result<()> {
        let metrics = self.metrics_server.handle();
        actix_web::rt::spawn(self.metrics_server);
        let result = self.server.await;
        metrics.stop(false).await;
        result
    }
}

/// What a bound HTTP service tells its callers (tests, benches): its ports.
pub trait Bound {
    fn servers(&self) -> &Servers;

    /// The public port (the config's 0 picks a free one).
    fn port(&self) -> u16 {
        self.servers().port
    }

    /// The port of `GET /metrics`.
    fn metrics_port(&self) -> u16 {
        self.servers().metrics_port
    }
}

/// The `main` of an actix service (gateway, inventory): logging first, then
/// `serve` on actix's runtime (what `#[actix_web::main]` would set up), its
/// end as the exit status (see [`exit_code`]). `target` is the caller's
/// `module_path!()`.
pub fn actix_main<E: std::fmt::Display>(
    target: &str,
    serve: impl std::future::Future<Output = Result<(), MainError<E>>>,
) -> std::process::ExitCode {
    crate::logging::init();
    let result = actix_web::rt::System::new().block_on(serve);
    exit_code(target, result)
}

/// Every service's allocator. musl's takes a global lock and maps and unmaps
/// memory on nearly every request; mimalloc keeps per-thread heaps
/// (BENCHMARKS.md). A macro, so that only the service binaries choose it (the
/// tests and tools linking this crate keep the system's); the binary's crate
/// depends on `mimalloc`.
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
    };
}

/// The exit status of a service's `main`: success, or the error logged as
/// one line (journald keeps it) and status 1. `target` is the caller's
/// `module_path!()`, so the line carries the service's name like its others.
pub fn exit_code<E: std::fmt::Display>(
    target: &str,
    result: Result<(), MainError<E>>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            log::error!(target: target, "{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
