//! The worker's settings, read once at start from `BILLING_*` variables.

use common::amqp::AmqpSettings;
use common::config::{at_least_one, ConfigError, ServiceConfig};
use common::db::PgSettings;
use serde::Deserialize;

pub const PREFIX: &str = "BILLING_";
/// PostgreSQL: `BILLING_DB_HOST`, `_PORT`, `_NAME`, `_USER`, `_PASSWORD`, `_POOL_SIZE`.
pub const DB_PREFIX: &str = "BILLING_DB_";
/// RabbitMQ: `BILLING_RABBITMQ_HOST`, `_PORT`, `_USER`, `_PASSWORD`, `_VHOST`.
pub const RABBITMQ_PREFIX: &str = "BILLING_RABBITMQ_";

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub health_host: String,
    pub health_port: u16,
    #[serde(skip)]
    pub db: PgSettings,
    #[serde(skip)]
    pub rabbitmq: AmqpSettings,
    /// Unacknowledged deliveries RabbitMQ may hand this worker at once.
    pub prefetch: u16,
    /// Deliveries stored per transaction (at most; fewer when traffic is light).
    pub batch_size: usize,
    /// Whether the worker runs its migrations before it consumes
    /// (`BILLING_MIGRATE_AT_START`, default true). False where a migration
    /// role owns the database and `billing-worker migrate` ran before (the
    /// VMs): the role the worker stores with may not change the schema.
    #[serde(default = "common::db::default_migrate_at_start")]
    pub migrate_at_start: bool,
}

impl ServiceConfig for Config {
    const PREFIX: &'static str = PREFIX;

    fn read_nested(&mut self, vars: &[(String, String)]) -> Result<(), ConfigError> {
        self.db = PgSettings::from_vars(DB_PREFIX, vars.iter().cloned())?;
        self.rabbitmq = AmqpSettings::from_vars(RABBITMQ_PREFIX, vars.iter().cloned())?;
        Ok(())
    }

    /// Checks what serde cannot: a batch has to fit in the prefetch window,
    /// or the worker would wait for deliveries RabbitMQ will never send.
    fn validate(&self) -> Result<(), ConfigError> {
        at_least_one(&format!("{PREFIX}BATCH_SIZE"), self.batch_size as u64)?;
        if usize::from(self.prefetch) < self.batch_size {
            return Err(ConfigError::bad(
                format!("{PREFIX}PREFETCH"),
                format!(
                    "must be at least {PREFIX}BATCH_SIZE ({}), got {}",
                    self.batch_size, self.prefetch
                ),
            ));
        }
        at_least_one(&format!("{DB_PREFIX}POOL_SIZE"), self.db.pool_size.into())
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

    /// Each bad value (or missing variable) is refused naming its variable.
    #[test]
    fn bad_values_name_their_variable() {
        for (set, named) in [
            (&[("BATCH_SIZE", "0")][..], "BILLING_BATCH_SIZE"),
            (
                &[("PREFETCH", "10"), ("BATCH_SIZE", "11")],
                "BILLING_PREFETCH",
            ),
            (&[("PREFETCH", "70000")], "BILLING_PREFETCH"),
            (&[("RABBITMQ_VHOST", "")], "BILLING_RABBITMQ_VHOST"),
        ] {
            let e = Config::from_vars(vars(set)).unwrap_err();
            assert!(e.to_string().contains(named), "{set:?}: {e}");
        }
    }

    #[test]
    fn debug_output_hides_passwords() {
        let c = Config::from_vars(vars(&[])).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn passwords_are_read_from_their_files() {
        let db = test_support::secret_file("billing-db-pw", "db-from-file\n");
        let mq = test_support::secret_file("billing-amqp-pw", "mq-from-file\n");
        let c = Config::from_vars(vars(&[
            ("DB_PASSWORD", ""),
            ("DB_PASSWORD_FILE", &db),
            ("RABBITMQ_PASSWORD", ""),
            ("RABBITMQ_PASSWORD_FILE", &mq),
        ]))
        .unwrap();
        assert!(c.db.conninfo().contains("password='db-from-file' "));
        assert_eq!(c.rabbitmq.uri().authority.userinfo.password, "mq-from-file");
        let shown = format!("{c:?}");
        assert!(!shown.contains("from-file"), "{shown}");
        for path in [db, mq] {
            std::fs::remove_file(path).unwrap();
        }
    }
}
