use common::config::{at_least_one, ConfigError, ServiceConfig};
use common::db::PgSettings;
use serde::Deserialize;
use std::time::Duration;

pub const ENV_PREFIX: &str = "INVENTORY_";
/// PostgreSQL: `INVENTORY_DB_HOST`, `_PORT`, `_NAME`, `_USER`, `_PASSWORD`, `_POOL_SIZE`.
pub const DB_PREFIX: &str = "INVENTORY_DB_";

/// Everything inventory-app reads from its environment (`INVENTORY_*`).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// HTTP worker threads; `None` lets actix use one per core.
    #[serde(default)]
    pub workers: Option<usize>,
    #[serde(skip)]
    pub db: PgSettings,
    #[serde(skip)]
    pub limits: Limits,
    /// Where `GET /metrics` is served (`INVENTORY_METRICS_HOST`/`_PORT`): a
    /// listener of its own, on loopback or the private network.
    #[serde(default = "common::metrics::default_host")]
    pub metrics_host: String,
    #[serde(default = "default_metrics_port")]
    pub metrics_port: u16,
    /// Whether the service runs its migrations at start
    /// (`INVENTORY_MIGRATE_AT_START`, default true). False where a migration
    /// role owns the database and `inventory-app migrate` ran before (the VMs):
    /// the role the service serves with may not change the schema.
    #[serde(default = "common::db::default_migrate_at_start")]
    pub migrate_at_start: bool,
    /// Drain period on SIGTERM/SIGINT (`INVENTORY_DRAIN_MS`, default 0: stop at
    /// once): `/health` and `/ready` answer 503 while requests are still
    /// served, so balancers move away before the listener closes. Set it
    /// where there is another replica to move to (docs/ha.md).
    #[serde(default)]
    pub drain_ms: u64,
}

fn default_metrics_port() -> u16 {
    9102
}

/// Tunables with defaults, read from the same `INVENTORY_*` variables.
#[derive(Debug, Clone, Deserialize)]
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
    pub fn listing_stall(&self) -> Duration {
        Duration::from_secs(self.listing_stall_secs)
    }
}

fn default_listing_stall_secs() -> u64 {
    30
}

impl ServiceConfig for Config {
    const PREFIX: &'static str = ENV_PREFIX;

    fn read_nested(&mut self, vars: &[(String, String)]) -> Result<(), ConfigError> {
        self.limits = common::config::from_iter(ENV_PREFIX, vars.iter().cloned())?;
        self.db = PgSettings::from_vars(DB_PREFIX, vars.iter().cloned())?;
        Ok(())
    }

    /// A value the types accept but the service cannot use stops start-up
    /// here, naming the variable, instead of panicking inside actix (0
    /// workers) or being silently changed (pool 0).
    fn validate(&self) -> Result<(), ConfigError> {
        let name = |var: &str| format!("{ENV_PREFIX}{var}");
        at_least_one(&name("WORKERS"), self.workers.map_or(1, |w| w as u64))?;
        at_least_one(&format!("{DB_PREFIX}POOL_SIZE"), self.db.pool_size.into())?;
        at_least_one(&name("LISTING_STALL_SECS"), self.limits.listing_stall_secs)
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
        assert_eq!(c.db.pool_size, 16);
        assert_eq!(c.workers, None);
        assert_eq!(c.limits.listing_stall_secs, 30);
        assert_eq!(
            format!("{:?}", c.db),
            "postgres://inventory@127.0.0.1:5432/movies"
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    /// The VMs' unit turns migrations at start off (provisioning ran
    /// `inventory-app migrate` as the owner role); the migration role's
    /// settings, which .env also holds, do not disturb the service's.
    #[test]
    fn migrations_run_at_start_unless_the_unit_says_otherwise() {
        assert!(Config::from_vars(vars(REQUIRED)).unwrap().migrate_at_start);
        let mut off = REQUIRED.to_vec();
        off.extend([
            ("INVENTORY_MIGRATE_AT_START", "false"),
            ("INVENTORY_DB_MIGRATION_USER", "inventory_owner"),
            ("INVENTORY_DB_MIGRATION_PASSWORD", "owner-secret"),
        ]);
        let c = Config::from_vars(vars(&off)).unwrap();
        assert!(!c.migrate_at_start);
        assert_eq!(c.db.user, "inventory");
        assert!(!format!("{c:?}").contains("owner-secret"));
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
            let err = Config::from_vars(vars(&with)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("configuration error: bad variable {name}: must be at least 1 (got 0)")
            );
            with.pop();
            with.push((name, "1"));
            assert!(Config::from_vars(vars(&with)).is_ok(), "{name}=1");
        }
    }

    #[test]
    fn password_is_read_from_its_file() {
        let path = test_support::secret_file("inventory-db-pw", "from-a-file\n");
        let mut with_file: Vec<_> = REQUIRED
            .iter()
            .copied()
            .filter(|(k, _)| *k != "INVENTORY_DB_PASSWORD")
            .collect();
        with_file.push(("INVENTORY_DB_PASSWORD_FILE", path.as_str()));
        let c = Config::from_vars(vars(&with_file)).unwrap();
        assert!(
            c.db.conninfo().contains("password='from-a-file' "),
            "the password read from the file"
        );
        std::fs::remove_file(&path).unwrap();
        let err = Config::from_vars(vars(&with_file)).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("INVENTORY_DB_PASSWORD_FILE: cannot read {path}")),
            "{err}"
        );
    }
}
