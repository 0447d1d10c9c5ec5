//! The process metrics Prometheus' own clients export under the same names
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), read
//! from `/proc` at each scrape: prometheus-client has no process collector,
//! and this is a few reads of files Linux documents (proc(5)).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux architecture we build for
/// (the kernel's USER_HZ); reading it would need libc, and unsafe code is
/// forbidden here.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug)]
pub struct ProcessCollector;

/// What one scrape reads; a field is `None` when its file could not be read
/// (then the metric is left out rather than reported as 0).
#[derive(Debug, Default, PartialEq)]
pub struct Sample {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

impl Sample {
    pub fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().map(stat_fields).unwrap_or_default();
        let field = |n: usize| fields.get(n).and_then(|v| v.parse::<f64>().ok());
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| status_kib(&status, key).map(|k| k * 1024.0);
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        Self {
            // utime + stime (fields 14 and 15 of proc(5), 1-based).
            cpu_seconds: field(14)
                .zip(field(15))
                .map(|(u, s)| (u + s) / TICKS_PER_SECOND),
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
            max_fds: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|s| max_open_files(&s)),
            // starttime (field 22) is in ticks since boot.
            start_time_seconds: boot.zip(field(22)).map(|(b, t)| b + t / TICKS_PER_SECOND),
        }
    }
}

/// The fields of `/proc/self/stat`, numbered as in proc(5) (index 1 is the
/// pid). The command name (field 2) may hold spaces and parentheses, so the
/// rest is split after its last `)`.
fn stat_fields(stat: &str) -> Vec<String> {
    let Some(close) = stat.rfind(')') else {
        return Vec::new();
    };
    let mut out = vec![String::new(), String::new(), String::new()];
    out.extend(stat[close + 1..].split_whitespace().map(str::to_owned));
    out
}

fn status_kib(status: &str, key: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn boot_time(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("btime "))?;
    line["btime ".len()..].trim().parse().ok()
}

fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    // "Max open files  <soft>  <hard>  files": the soft limit applies.
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = Sample::read();
        if let Some(v) = s.cpu_seconds {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes,
            ),
            ("process_open_fds", "Open file descriptors", s.open_fds),
            (
                "process_max_fds",
                "Limit of open file descriptors (soft)",
                s.max_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                s.start_time_seconds,
            ),
        ] {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn this_process_is_read() {
        let s = Sample::read();
        assert!(s.cpu_seconds.is_some());
        assert!(s.resident_bytes.unwrap() > 1024.0 * 1024.0);
        assert!(s.open_fds.unwrap() >= 3.0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = s.start_time_seconds.unwrap();
        assert!(
            start > now - 86_400.0 && start <= now + 1.0,
            "{start} vs {now}"
        );
    }

    #[test]
    fn a_command_name_with_spaces_and_parens_is_skipped() {
        let f = stat_fields("42 (a b) c) S 1 2 3");
        assert_eq!(f[3], "S");
        assert_eq!(f[4], "1");
    }

    #[test]
    fn the_soft_fd_limit_is_read() {
        let limits = "Limit  Soft Limit  Hard Limit  Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
    }
}
