//! PostgreSQL plumbing shared by inventory-app and billing-worker: the
//! connection string, a pool that never blocks start-up, and migrations that
//! wait for the database instead of failing when it is not up yet.

use crate::config::ConfigError;
use crate::retry::Backoff;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// A service's PostgreSQL settings, read once here for both services that
/// have a database, from `<PREFIX>HOST`, `PORT`, `NAME`, `USER`, `PASSWORD`
/// and `POOL_SIZE` (e.g. `INVENTORY_DB_HOST`). `Debug` never shows the password.
///
/// `HOST` may name several servers, comma-separated, each optionally with
/// its own port (`10.0.0.1,10.0.0.2` or `a:5432,b:5433`; `PORT` otherwise):
/// libpq then tries them in turn and keeps the one that accepts writes
/// (`target_session_attrs=read-write`), which after a failover is the new
/// primary. No proxy is needed.
#[derive(Clone, Deserialize)]
pub struct PgSettings {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password: SecretString,
    /// Most connections the service holds open at once.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
}

fn default_pool_size() -> u32 {
    16
}

/// Empty settings, only so that a service's config struct can mark the field
/// `#[serde(skip)]` (envy cannot read nested structs) and fill it with
/// [`PgSettings::from_vars`] right after.
impl Default for PgSettings {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 0,
            name: String::new(),
            user: String::new(),
            password: SecretString::from(String::new()),
            pool_size: default_pool_size(),
        }
    }
}

impl PgSettings {
    /// Reads and checks the settings under `prefix` (e.g. `"BILLING_DB_"`).
    pub fn from_vars<I>(prefix: &str, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let settings: Self = crate::config::from_iter(prefix, vars)?;
        // A pool of 0 used to be silently turned into 1 in one service and
        // refused in the other.
        crate::config::at_least_one(&format!("{prefix}POOL_SIZE"), settings.pool_size.into())?;
        settings
            .try_servers()
            .map_err(|why| ConfigError::bad(format!("{prefix}HOST"), why))?;
        Ok(settings)
    }

    /// The servers of `host`, each with its port.
    fn try_servers(&self) -> Result<Vec<(String, u16)>, String> {
        crate::hosts::parse(&self.host, self.port)
    }

    /// libpq's `host`, `port` and, for several servers, the session
    /// attribute that picks the primary.
    fn servers_conninfo(&self) -> String {
        let servers = self
            .try_servers()
            .unwrap_or_else(|_| vec![(self.host.clone(), self.port)]);
        if servers.len() == 1 {
            return format!("host={} port={}", quote(&servers[0].0), servers[0].1);
        }
        let hosts: Vec<&str> = servers.iter().map(|(h, _)| h.as_str()).collect();
        let ports: Vec<String> = servers.iter().map(|(_, p)| p.to_string()).collect();
        format!(
            "host={} port={} target_session_attrs=read-write",
            quote(&hosts.join(",")),
            quote(&ports.join(","))
        )
    }

    /// A libpq key/value connection string. Values are quoted so a password
    /// with spaces, quotes or backslashes cannot change its meaning.
    /// `connect_timeout` keeps a dead host from stalling a request for long
    /// (libpq applies it to each server of a list).
    ///
    /// The TCP settings end a connection whose server vanished without a
    /// word (its machine powered off or cut off: no RST ever comes). Without
    /// them a statement the server had received waits for its answer
    /// forever: a VM test saw a billing-worker stuck that way, its orders
    /// unacknowledged in the queue while the standby had long taken over.
    /// Keepalive probes after 5 s of silence, every 2 s, 3 unanswered: the
    /// connection fails about 11 s after the server's last packet, and the
    /// next one finds the new primary. `tcp_user_timeout` (10 s) does the
    /// same for data sent and never acknowledged, which keepalives do not
    /// cover. A live server's kernel answers both however long a statement
    /// runs, so slow work is never cut.
    pub fn conninfo(&self) -> String {
        format!(
            "{} dbname={} user={} password={} connect_timeout=2 keepalives=1 \
             keepalives_idle=5 keepalives_interval=2 keepalives_count=3 tcp_user_timeout=10000 \
             application_name={}",
            self.servers_conninfo(),
            quote(&self.name),
            quote(&self.user),
            quote(self.password.expose_secret()),
            quote(&application_name()),
        )
    }
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.name
        )
    }
}

fn application_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "movie-platform".to_owned())
}

fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A pool that is created without connecting, so a service starts while its
/// database is still down. `checkout_timeout` bounds how long a request waits
/// for a connection: with the database down, callers get an error (503) quickly
/// instead of hanging. Broken connections are tested on checkout and replaced,
/// so the pool recovers by itself when the database returns.
pub fn pool(settings: &PgSettings, checkout_timeout: Duration) -> PgPool {
    let manager = ConnectionManager::<PgConnection>::new(settings.conninfo());
    Pool::builder()
        .max_size(settings.pool_size.max(1))
        .min_idle(Some(0))
        .connection_timeout(checkout_timeout)
        .test_on_check_out(true)
        .error_handler(Box::new(QuietErrors))
        .build_unchecked(manager)
}

/// r2d2 logs every failed background connect at error level; while the database
/// is down that floods the log. Our callers report the outage themselves.
#[derive(Debug)]
struct QuietErrors;

impl<E: std::fmt::Display> diesel::r2d2::HandleError<E> for QuietErrors {
    fn handle_error(&self, error: E) {
        log::debug!("database connection attempt failed: {error}");
    }
}

/// First pause before retrying migrations; doubled after each failure.
pub const MIGRATE_RETRY_INITIAL: Duration = Duration::from_millis(250);
/// Longest pause between two migration tries (both services use these).
pub const MIGRATE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Runs the embedded migrations, retrying with backoff (`MIGRATE_RETRY_*`) until
/// the database accepts them. Logs each failed try. Blocking: call it from a
/// thread of its own (or `spawn_blocking`). `migrations` is the crate's
/// `embed_migrations!` constant, passed as `|| MIGRATIONS` because the type
/// is neither `Copy` nor `Clone`.
pub fn migrate_with_retry(pool: &PgPool, migrations: impl Fn() -> EmbeddedMigrations, what: &str) {
    let mut backoff = Backoff::new(MIGRATE_RETRY_INITIAL, MIGRATE_RETRY_MAX);
    loop {
        match try_migrate(pool, migrations()) {
            Ok(applied) => {
                log::info!("{what}: database ready, {applied} migration(s) applied");
                return;
            }
            Err(e) => {
                log::warn!(
                    "{what}: database not ready (try {}): {}; retrying in {:?}",
                    backoff.attempt(),
                    crate::logging::one_line(&e),
                    backoff.peek()
                );
            }
        }
        std::thread::sleep(backoff.next_delay());
    }
}

/// `*_MIGRATE_AT_START`'s default: a service migrates its own database.
pub fn default_migrate_at_start() -> bool {
    true
}

/// `<service> migrate`: runs the pending migrations and returns, for a
/// deployment where a migration role owns the database and the service serves
/// with a role that may only read and write rows (the VMs: provisioning runs
/// it with the migration role's credentials before it starts the service,
/// whose `*_MIGRATE_AT_START=false` then skips them). Waits for the database
/// with the usual backoff, but gives up after `patience`: a caller that is a
/// script must not hang.
pub fn migrate_now(
    settings: &PgSettings,
    migrations: impl Fn() -> EmbeddedMigrations,
    what: &str,
    patience: Duration,
) -> Result<usize, MigrateError> {
    let pool = pool(
        &PgSettings {
            pool_size: 1,
            ..settings.clone()
        },
        Duration::from_secs(5),
    );
    let deadline = std::time::Instant::now() + patience;
    let mut backoff = Backoff::new(MIGRATE_RETRY_INITIAL, MIGRATE_RETRY_MAX);
    loop {
        match try_migrate(&pool, migrations()) {
            Ok(applied) => {
                log::info!(
                    "{what}: {applied} migration(s) applied as {}",
                    settings.user
                );
                return Ok(applied);
            }
            Err(e) if std::time::Instant::now() + backoff.peek() < deadline => {
                log::warn!(
                    "{what}: cannot migrate yet (try {}): {}; retrying in {:?}",
                    backoff.attempt(),
                    crate::logging::one_line(&e),
                    backoff.peek()
                );
            }
            Err(e) => return Err(e),
        }
        std::thread::sleep(backoff.next_delay());
    }
}

/// Why migrations could not run: no connection, or the migration failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("{0}")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One try at the pending migrations; the number applied.
pub fn try_migrate(pool: &PgPool, migrations: EmbeddedMigrations) -> Result<usize, MigrateError> {
    let mut conn = pool.get()?;
    conn.run_pending_migrations(migrations)
        .map(|v| v.len())
        .map_err(MigrateError::Migration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vars;

    /// Settings for one server on 127.0.0.1:5432, database movies, user u.
    fn settings(password: &str) -> PgSettings {
        PgSettings {
            host: "127.0.0.1".into(),
            port: 5432,
            name: "movies".into(),
            user: "u".into(),
            password: SecretString::from(password),
            pool_size: 1,
        }
    }

    #[test]
    fn conninfo_quotes_every_value() {
        let t = settings("it's a \\secret");
        let info = t.conninfo();
        assert!(info.contains(r"password='it\'s a \\secret'"), "{info}");
        assert!(info.contains("dbname='movies'"), "{info}");
    }

    #[test]
    fn a_server_that_vanishes_ends_its_connections() {
        let t = settings("p");
        let info = t.conninfo();
        for setting in [
            "keepalives=1 ",
            "keepalives_idle=5 ",
            "keepalives_interval=2 ",
            "keepalives_count=3 ",
            "tcp_user_timeout=10000 ",
        ] {
            assert!(info.contains(setting), "{setting} missing: {info}");
        }
    }

    #[test]
    fn several_servers_make_a_multi_host_conninfo_that_picks_the_primary() {
        let mut t = settings("p");
        assert!(t
            .conninfo()
            .starts_with("host='127.0.0.1' port=5432 dbname="));
        assert!(!t.conninfo().contains("target_session_attrs"));
        t.host = "10.0.0.1, 10.0.0.2:5433".into();
        let info = t.conninfo();
        assert!(
            info.starts_with(
                "host='10.0.0.1,10.0.0.2' port='5432,5433' target_session_attrs=read-write "
            ),
            "{info}"
        );
    }

    #[test]
    fn a_bad_server_list_is_named() {
        for bad in ["a,,b", "a:x", ":1"] {
            let env = vars(&[
                ("X_HOST", bad),
                ("X_PORT", "5432"),
                ("X_NAME", "n"),
                ("X_USER", "u"),
                ("X_PASSWORD", "p"),
            ]);
            let err = PgSettings::from_vars("X_", env).unwrap_err();
            assert!(err.to_string().contains("X_HOST"), "{bad}: {err}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let t = PgSettings {
            host: "h".into(),
            port: 1,
            name: "d".into(),
            user: "u".into(),
            password: SecretString::from("hunter2"),
            pool_size: 1,
        };
        assert_eq!(format!("{t:?}"), "postgres://u@h:1/d");
    }

    /// The variable names of .env, read under the service's prefix.
    #[test]
    fn settings_are_read_under_the_prefix() {
        let mut env = vars(&[
            ("BILLING_DB_HOST", "10.0.0.2"),
            ("BILLING_DB_PORT", "5433"),
            ("BILLING_DB_NAME", "orders"),
            ("BILLING_DB_USER", "billing"),
            ("BILLING_DB_PASSWORD", "pw"),
            ("INVENTORY_DB_HOST", "elsewhere"),
        ]);
        let s = PgSettings::from_vars("BILLING_DB_", env.clone()).unwrap();
        assert_eq!(format!("{s:?}"), "postgres://billing@10.0.0.2:5433/orders");
        assert_eq!(s.pool_size, 16);
        env.push(("BILLING_DB_POOL_SIZE".into(), "0".into()));
        assert_eq!(
            PgSettings::from_vars("BILLING_DB_", env).unwrap_err(),
            ConfigError::bad("BILLING_DB_POOL_SIZE", "must be at least 1 (got 0)")
        );
    }
}
