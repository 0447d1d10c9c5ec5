//! Reading a service's `/metrics` page in tests: Debian's `promtool` checks
//! its format, and the samples are looked up by name and labels.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

/// `promtool check metrics` on `page`; fails the test with promtool's words.
/// promtool comes with Debian's `prometheus` package (scripts/test.sh's unit
/// step installs it).
pub fn promtool_check(page: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install Debian's prometheus package, as scripts/test.sh unit does")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- the page:\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every series of the page: each sample line's name and labels.
pub fn series(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

/// The value of the sample `series` (name and labels exactly as the page
/// writes them, e.g. `http_requests_total{route="/health",method="GET",status="2xx"}`).
pub fn value(page: &str, series: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, v) = l.rsplit_once(' ')?;
        (name == series).then(|| v.parse().ok()).flatten()
    })
}

/// Like [`value`], but a missing series fails the test, showing the page.
pub fn must(page: &str, series: &str) -> f64 {
    value(page, series).unwrap_or_else(|| panic!("no series {series} in:\n{page}"))
}
