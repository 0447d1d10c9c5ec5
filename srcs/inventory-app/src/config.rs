use common::db::PgTarget;
use secrecy::SecretString;
use serde::Deserialize;

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

pub const ENV_PREFIX: &str = "INVENTORY_";

fn default_pool_size() -> u32 {
    16
}

impl Config {
    pub fn from_env() -> Result<Self, common::config::ConfigError> {
        common::config::from_env(ENV_PREFIX)
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
        let c: Config = common::config::from_iter(ENV_PREFIX, vars(REQUIRED)).unwrap();
        assert_eq!(c.db_pool_size, 16);
        assert_eq!(c.workers, None);
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn missing_password_is_named() {
        let without: Vec<_> = REQUIRED
            .iter()
            .copied()
            .filter(|(k, _)| *k != "INVENTORY_DB_PASSWORD")
            .collect();
        let err = common::config::from_iter::<Config, _>(ENV_PREFIX, vars(&without)).unwrap_err();
        assert!(err.to_string().contains("INVENTORY_DB_PASSWORD"), "{err}");
    }

    #[test]
    fn malformed_pool_size_is_named() {
        let mut with = REQUIRED.to_vec();
        with.push(("INVENTORY_DB_POOL_SIZE", "many"));
        let err = common::config::from_iter::<Config, _>(ENV_PREFIX, vars(&with)).unwrap_err();
        assert!(err.to_string().contains("INVENTORY_DB_POOL_SIZE"), "{err}");
    }
}
