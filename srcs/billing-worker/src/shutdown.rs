//! A stop request shared by every task of the worker: set once (by a signal or
//! by a test), observed by the consumer loop between steps and while waiting.

use tokio::sync::watch;

/// Sends the stop request.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Observes the stop request; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once a stop was requested (at once if it already was).
    pub async fn requested(&self) {
        let mut rx = self.0.clone();
        // An error means the trigger is gone, which only happens when the
        // application is being torn down: treat it as a stop request too.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Resolves `grace` after a stop was requested: how long work already
    /// under way may still take before it is abandoned.
    pub async fn requested_then(&self, grace: std::time::Duration) {
        self.requested().await;
        tokio::time::sleep(grace).await;
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => log::info!("SIGTERM received, stopping event=stop_requested signal=SIGTERM"),
                    _ = tokio::signal::ctrl_c() => log::info!("SIGINT received, stopping event=stop_requested signal=SIGINT"),
                }
            }
            Err(e) => {
                log::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the worker");
                let _ = tokio::signal::ctrl_c().await;
                log::info!("SIGINT received, stopping event=stop_requested signal=SIGINT");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        log::info!("Ctrl-C received, stopping event=stop_requested signal=SIGINT");
    }
}
