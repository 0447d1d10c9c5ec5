//! The worker's settings, read once at start from `BILLING_*` variables.

use common::amqp::AmqpTarget;
use common::config::ConfigError;
use common::db::PgTarget;
use secrecy::SecretString;
use serde::Deserialize;

pub const PREFIX: &str = "BILLING_";

#[derive(Debug, Deserialize)]
pub struct Config {
    pub health_host: String,
    pub health_port: u16,
    pub db_host: String,
    pub db_port: u16,
    pub db_name: String,
    pub db_user: String,
    pub db_password: SecretString,
    pub db_pool_size: u32,
    pub rabbitmq_host: String,
    pub rabbitmq_port: u16,
    pub rabbitmq_user: String,
    pub rabbitmq_password: SecretString,
    pub rabbitmq_vhost: String,
    /// Unacknowledged deliveries RabbitMQ may hand this worker at once.
    pub prefetch: u16,
    /// Deliveries stored per transaction (at most; fewer when traffic is light).
    pub batch_size: usize,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        common::config::from_env::<Self>(PREFIX)?.validated()
    }

    /// Same as [`Config::from_env`] over an explicit set of variables.
    pub fn from_vars<I>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        common::config::from_iter::<Self, _>(PREFIX, vars)?.validated()
    }

    /// Checks what serde cannot: a batch has to fit in the prefetch window,
    /// or the worker would wait for deliveries RabbitMQ will never send.
    pub fn validated(self) -> Result<Self, ConfigError> {
        if self.batch_size < 1 {
            return Err(ConfigError(format!(
                "bad variable {PREFIX}BATCH_SIZE: must be at least 1 (got {})",
                self.batch_size
            )));
        }
        if usize::from(self.prefetch) < self.batch_size {
            return Err(ConfigError(format!(
                "bad variable {PREFIX}PREFETCH: must be at least {PREFIX}BATCH_SIZE ({}), got {}",
                self.batch_size, self.prefetch
            )));
        }
        if self.db_pool_size < 1 {
            return Err(ConfigError(format!(
                "bad variable {PREFIX}DB_POOL_SIZE: must be at least 1 (got 0)"
            )));
        }
        Ok(self)
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

    pub fn amqp_target(&self) -> AmqpTarget<'_> {
        AmqpTarget {
            host: &self.rabbitmq_host,
            port: self.rabbitmq_port,
            user: &self.rabbitmq_user,
            password: &self.rabbitmq_password,
            vhost: &self.rabbitmq_vhost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut base: Vec<(String, String)> = [
            ("HEALTH_HOST", "127.0.0.1"),
            ("HEALTH_PORT", "8082"),
            ("DB_HOST", "127.0.0.1"),
            ("DB_PORT", "5432"),
            ("DB_NAME", "orders"),
            ("DB_USER", "billing"),
            ("DB_PASSWORD", "s3cret-db"),
            ("DB_POOL_SIZE", "4"),
            ("RABBITMQ_HOST", "127.0.0.1"),
            ("RABBITMQ_PORT", "5672"),
            ("RABBITMQ_USER", "billing"),
            ("RABBITMQ_PASSWORD", "s3cret-mq"),
            ("RABBITMQ_VHOST", "/"),
            ("PREFETCH", "1000"),
            ("BATCH_SIZE", "500"),
        ]
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), (*v).to_owned()))
        .collect();
        for (k, v) in overrides {
            let key = format!("{PREFIX}{k}");
            base.retain(|(name, _)| *name != key);
            if !v.is_empty() {
                base.push((key, (*v).to_owned()));
            }
        }
        base
    }

    #[test]
    fn the_env_file_values_are_accepted() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(c.prefetch, 1000);
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.health_port, 8082);
    }

    #[test]
    fn zero_batch_size_names_the_variable() {
        let e = Config::from_vars(vars(&[("BATCH_SIZE", "0")])).unwrap_err();
        assert!(e.to_string().contains("BILLING_BATCH_SIZE"), "{e}");
    }

    #[test]
    fn prefetch_below_batch_size_names_the_variable() {
        let e = Config::from_vars(vars(&[("PREFETCH", "10"), ("BATCH_SIZE", "11")])).unwrap_err();
        assert!(e.to_string().contains("BILLING_PREFETCH"), "{e}");
    }

    #[test]
    fn prefetch_out_of_range_names_the_variable() {
        let e = Config::from_vars(vars(&[("PREFETCH", "70000")])).unwrap_err();
        assert!(e.to_string().contains("BILLING_PREFETCH"), "{e}");
    }

    #[test]
    fn missing_variable_is_named() {
        let e = Config::from_vars(vars(&[("RABBITMQ_VHOST", "")])).unwrap_err();
        assert!(e.to_string().contains("BILLING_RABBITMQ_VHOST"), "{e}");
    }

    #[test]
    fn debug_output_hides_passwords() {
        let c = Config::from_vars(vars(&[])).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
