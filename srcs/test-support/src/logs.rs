//! Log lines captured in memory. The logger is process-wide: installed once,
//! shared by every test of the binary, so a test finds its own lines by
//! something only it has (a request id, a database name).

use std::sync::{Mutex, Once};
use std::time::Duration;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let target = record.target();
        // The services' lines (and the middleware they share), not those of
        // the libraries under them.
        let ours = ["api_gateway", "inventory_app", "billing_worker", "common"]
            .iter()
            .any(|t| target.starts_with(t));
        if ours {
            LINES
                .lock()
                .unwrap()
                .push(format!("{} {target}: {}", record.level(), record.args()));
        }
    }
    fn flush(&self) {}
}

/// Installs the capturing logger (debug level) once per process. Lines look
/// like `LEVEL target: message`.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_boxed_logger(Box::new(Capture)).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// Every line captured so far that contains `needle`.
pub fn lines_with(needle: &str) -> Vec<String> {
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

/// Every line captured so far.
pub fn all_lines() -> Vec<String> {
    LINES.lock().unwrap().clone()
}

/// Waits (bounded by `limit`) for a line containing all of `needles`.
pub async fn wait_for(needles: &[&str], limit: Duration) -> String {
    let what = format!("a log line with {needles:?}");
    crate::wait_until(&what, limit, || async {
        all_lines()
            .into_iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
    })
    .await
}
