//! Shared bits of the benchmark helpers (`raw-publish`, `raw-consume`,
//! `startup`) that
//! scripts/bench.sh drives. They print one `key=value` line per result so a
//! shell script can read them without a JSON parser.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;
use std::str::FromStr;

use common::amqp::AmqpSettings;
use common::topology;
use lapin::{Channel, Connection};

/// Runs a broker tool's `run` and turns its outcome into the exit status:
/// 0 complete, 1 incomplete (`Ok(false)`), 2 an error (printed as `name: e`).
pub async fn exit_code(name: &str, run: impl Future<Output = Result<bool, String>>) -> ExitCode {
    match run.await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(2)
        }
    }
}

/// A connection named `name` to the broker of BENCH_AMQP_{HOST,PORT,USER,
/// PASSWORD,VHOST}, and one channel on it with the billing topology declared.
pub async fn connect(name: &str) -> Result<(Connection, Channel), String> {
    let target =
        AmqpSettings::from_vars("BENCH_AMQP_", std::env::vars()).map_err(|e| e.to_string())?;
    let connection = target
        .connect(name)
        .await
        .map_err(|e| format!("connect to {target:?}: {e}"))?;
    let channel = channel(&connection).await?;
    topology::declare(&channel, &target.topology())
        .await
        .map_err(|e| format!("declare topology: {e}"))?;
    Ok((connection, channel))
}

pub async fn channel(connection: &Connection) -> Result<Channel, String> {
    connection
        .create_channel()
        .await
        .map_err(|e| format!("create channel: {e}"))
}

/// `--name value` options, and whatever follows a bare `--` (a command line).
#[derive(Debug, Default)]
pub struct Args {
    options: HashMap<String, String>,
    pub rest: Vec<String>,
}

impl Args {
    pub fn parse(usage: &str) -> Result<Self, String> {
        Self::from_iter(std::env::args().skip(1), usage)
    }

    pub fn from_iter<I: IntoIterator<Item = String>>(args: I, usage: &str) -> Result<Self, String> {
        let mut parsed = Self::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            if arg == "--" {
                parsed.rest = it.collect();
                break;
            }
            if arg == "-h" || arg == "--help" {
                return Err(usage.to_owned());
            }
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}\n{usage}"));
            };
            let value = it
                .next()
                .ok_or_else(|| format!("--{name} needs a value\n{usage}"))?;
            parsed.options.insert(name.to_owned(), value);
        }
        Ok(parsed)
    }

    /// The option's value, parsed; `None` when absent.
    pub fn get<T>(&self, name: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.options
            .get(name)
            .map(|v| v.parse::<T>().map_err(|e| format!("--{name} {v:?}: {e}")))
            .transpose()
    }

    pub fn get_or<T>(&self, name: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.get(name)?.unwrap_or(default))
    }
}

/// The `p`-th percentile (0..=100) of `sorted` (nearest rank); 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        Args::from_iter(list.iter().map(|s| s.to_string()), "usage")
    }

    #[test]
    fn options_and_command_are_split_at_the_double_dash() {
        let a = args(&["--port", "8080", "--", "bin", "--port", "1"]).unwrap();
        assert_eq!(a.get::<u16>("port").unwrap(), Some(8080));
        assert_eq!(a.rest, vec!["bin", "--port", "1"]);
    }

    #[test]
    fn a_bad_value_names_the_option() {
        let err = args(&["--runs", "many"])
            .unwrap()
            .get::<u32>("runs")
            .unwrap_err();
        assert!(err.contains("--runs"), "{err}");
    }

    #[test]
    fn an_option_without_value_is_refused() {
        assert!(args(&["--runs"])
            .unwrap_err()
            .contains("--runs needs a value"));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
