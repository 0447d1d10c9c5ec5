//! One log format for every service: `LEVEL target: message` on stderr.
//! Under systemd, stderr goes to journald, which reads a `<N>` prefix as the
//! line's syslog priority, so `journalctl -p warning` works; elsewhere (local
//! run, tests) lines stay plain.
//!
//! A service may also copy the lines of one target (the gateway's access log)
//! to a file: [`copy_target_to_file`], off unless the service is asked to.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

/// Installs the logger. The filter comes from `RUST_LOG` (default `info`).
pub fn init() {
    // systemd sets JOURNAL_STREAM when stderr is connected to the journal.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(log::LevelFilter::Info)
        // lapin's tracing bridge logs an "io_loop" span line on every
        // connect; noise unless asked for. RUST_LOG, parsed last, overrides.
        .filter_module("tracing::span", log::LevelFilter::Warn)
        .parse_env(env_logger::Env::default())
        .format(move |buf, record| {
            if journald {
                writeln!(
                    buf,
                    "<{}>{} {}: {}",
                    syslog_priority(record.level()),
                    record.level(),
                    record.target(),
                    record.args()
                )
            } else {
                writeln!(
                    buf,
                    "{} {:<5} {}: {}",
                    buf.timestamp_millis(),
                    record.level(),
                    record.target(),
                    record.args()
                )
            }
        });
    let stderr = builder.build();
    log::set_max_level(stderr.filter());
    // Only fails if a logger is already installed (a test calling twice).
    let _ = log::set_boxed_logger(Box::new(Tee { stderr }));
}

/// The file copy of one target, when a service asked for it.
static FILE_COPY: OnceLock<env_logger::Logger> = OnceLock::new();

/// Appends every record of `target` to `path` too (created if missing, never
/// truncated), as `TIMESTAMP LEVEL message`, one line each. Call once, after
/// [`init`]; `RUST_LOG` still decides which records exist at all. The error
/// names the file.
pub fn copy_target_to_file(target: &str, path: &Path) -> Result<(), String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
    let copy = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Off)
        .filter_module(target, log::LevelFilter::Trace)
        .target(env_logger::Target::Pipe(Box::new(file)))
        .format(|buf, record| {
            writeln!(
                buf,
                "{} {} {}",
                buf.timestamp_millis(),
                record.level(),
                record.args()
            )
        })
        .build();
    FILE_COPY
        .set(copy)
        .map_err(|_| "a log file copy is already set".to_owned())
}

/// stderr as configured, plus the optional file copy of one target.
struct Tee {
    stderr: env_logger::Logger,
}

impl log::Log for Tee {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.stderr.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.stderr.matches(record) {
            return;
        }
        self.stderr.log(record);
        if let Some(copy) = FILE_COPY.get().filter(|c| c.matches(record)) {
            copy.log(record);
        }
    }

    fn flush(&self) {
        self.stderr.flush();
        if let Some(copy) = FILE_COPY.get() {
            copy.flush();
        }
    }
}

fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// An error's text on one line: libpq's messages span several lines, which
/// would split a log entry (and lose its priority under journald).
pub fn one_line(err: &impl std::fmt::Display) -> String {
    err.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
