//! One log format for every service: `LEVEL target: message` on stderr.
//! Under systemd, stderr goes to journald, which reads a `<N>` prefix as the
//! line's syslog priority, so `journalctl -p warning` works; elsewhere (local
//! run, tests) lines stay plain.

use std::io::Write;

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
        })
        .init();
}

fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}
