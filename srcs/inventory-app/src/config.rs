use common::config::ConfigError;
use common::db::PgTarget;
use secrecy::SecretString;
use serde::Deserialize;
use std::time::Duration;

/// Everything inventory-app reads from its environment (`INVENTORY_*`).
#[derive(Debug, Deserialize)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub db_host: String,
    pub db_port: u16,
    pub db_name: String,
    pub db_user: String,
    pub db_password: SecretString,
    #[serde(default = "default_pool_size")]
    pub db_pool_size: u32,
    /// HTTP worker threads; `None` lets actix use one per core.
    #[serde(default)]
    pub workers: Option<usize>,
}

/// Tunables with defaults, read from the same `INVENTORY_*` variables but
/// kept apart from `Config`, so that code that builds a `Config` by hand
/// (other crates' tests) does not change when one is added.
#[derive(Debug, Deserialize)]
pub struct Limits {
    /// How long a listing may wait for a client that stops reading before it
    /// gives its database connection back (the response is then cut).
    #[serde(default = "default_listing_stall_secs")]
    pub listing_stall_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            listing_stall_secs: default_listing_stall_secs(),
        }
    }
}

impl Limits {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    pub fn from_vars<I>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let limits: Self = common::config::from_iter(ENV_PREFIX, vars)?;
        limits.validate()?;
        Ok(limits)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least_one("LISTING_STALL_SECS", self.listing_stall_secs)
    }

    pub fn listing_stall(&self) -> Duration {
        Duration::from_secs(self.listing_stall_secs)
    }
}

fn at_least_one(name: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError(format!(
            "bad variable {ENV_PREFIX}{name}: must be at least 1 (got 0)"
        )));
    }
    Ok(())
}

pub const ENV_PREFIX: &str = "INVENTORY_";

fn default_pool_size() -> u32 {
    16
}

fn default_listing_stall_secs() -> u64 {
    30
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads and checks the variables: a value the types accept but the
    /// service cannot use stops start-up here, naming the variable, instead of
    /// panicking inside actix (0 workers) or being silently changed (pool 0).
    pub fn from_vars<I>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let config: Self = common::config::from_iter(ENV_PREFIX, vars)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least_one("WORKERS", self.workers.map_or(1, |w| w as u64))?;
        at_least_one("DB_POOL_SIZE", u64::from(self.db_pool_size))
    }

    pub fn pg_target(&self) -> PgTarget<'_> {
        PgTarget {
            host: &self.db_host,
            port: self.db_port,
            dbname: &self.db_name,
            user: &self.db_user,
            password: &self.db_password,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const REQUIRED: &[(&str, &str)] = &[
        ("INVENTORY_HOST", "127.0.0.1"),
        ("INVENTORY_PORT", "8080"),
        ("INVENTORY_DB_HOST", "127.0.0.1"),
        ("INVENTORY_DB_PORT", "5432"),
        ("INVENTORY_DB_NAME", "movies"),
        ("INVENTORY_DB_USER", "inventory"),
        ("INVENTORY_DB_PASSWORD", "hunter2"),
    ];

    #[test]
    fn optional_values_have_defaults() {
        let c = Config::from_vars(vars(REQUIRED)).unwrap();
        assert_eq!(c.db_pool_size, 16);
        assert_eq!(c.workers, None);
        let l = Limits::from_vars(vars(REQUIRED)).unwrap();
        assert_eq!(l.listing_stall_secs, 30);
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn missing_password_is_named() {
        let without: Vec<_> = REQUIRED
            .iter()
            .copied()
            .filter(|(k, _)| *k != "INVENTORY_DB_PASSWORD")
            .collect();
        let err = Config::from_vars(vars(&without)).unwrap_err();
        assert!(err.to_string().contains("INVENTORY_DB_PASSWORD"), "{err}");
    }

    #[test]
    fn malformed_pool_size_is_named() {
        let mut with = REQUIRED.to_vec();
        with.push(("INVENTORY_DB_POOL_SIZE", "many"));
        let err = Config::from_vars(vars(&with)).unwrap_err();
        assert!(err.to_string().contains("INVENTORY_DB_POOL_SIZE"), "{err}");
    }

    /// Zero passed the types: 0 workers panicked inside actix-server and a
    /// pool of 0 silently became 1. Each is now refused by name.
    #[test]
    fn zero_values_are_refused_by_name() {
        for name in [
            "INVENTORY_WORKERS",
            "INVENTORY_DB_POOL_SIZE",
            "INVENTORY_LISTING_STALL_SECS",
        ] {
            let mut with = REQUIRED.to_vec();
            with.push((name, "0"));
            let err = Config::from_vars(vars(&with))
                .and_then(|_| Limits::from_vars(vars(&with)))
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("configuration error: bad variable {name}: must be at least 1 (got 0)")
            );
            with.pop();
            with.push((name, "1"));
            assert!(Config::from_vars(vars(&with)).is_ok(), "{name}=1");
            assert!(Limits::from_vars(vars(&with)).is_ok(), "{name}=1");
        }
    }
}
