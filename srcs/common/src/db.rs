//! PostgreSQL plumbing shared by inventory-app and billing-worker: the
//! connection string, a pool that never blocks start-up, and migrations that
//! wait for the database instead of failing when it is not up yet.

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// Where and as whom to connect. `Debug` never shows the password.
pub struct PgTarget<'a> {
    pub host: &'a str,
    pub port: u16,
    pub dbname: &'a str,
    pub user: &'a str,
    pub password: &'a SecretString,
}

impl PgTarget<'_> {
    /// A libpq key/value connection string. Values are quoted so a password
    /// with spaces, quotes or backslashes cannot change its meaning.
    /// `connect_timeout` keeps a dead host from stalling a request for long.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} dbname={} user={} password={} connect_timeout=2 application_name={}",
            quote(self.host),
            self.port,
            quote(self.dbname),
            quote(self.user),
            quote(self.password.expose_secret()),
            quote(&application_name()),
        )
    }
}

impl std::fmt::Debug for PgTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
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
pub fn pool(target: &PgTarget<'_>, max_size: u32, checkout_timeout: Duration) -> PgPool {
    let manager = ConnectionManager::<PgConnection>::new(target.conninfo());
    Pool::builder()
        .max_size(max_size.max(1))
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

/// Runs the embedded migrations, retrying with backoff (capped at 5 s) until
/// the database accepts them. Logs each failed try. Blocking: call it from a
/// thread of its own (or `spawn_blocking`). `migrations` is the crate's
/// `embed_migrations!` constant, passed as `|| MIGRATIONS` because the type
/// is neither `Copy` nor `Clone`.
pub fn migrate_with_retry(pool: &PgPool, migrations: impl Fn() -> EmbeddedMigrations, what: &str) {
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1u32;
    loop {
        match try_migrate(pool, migrations()) {
            Ok(applied) => {
                log::info!("{what}: database ready, {applied} migration(s) applied");
                return;
            }
            Err(e) => {
                log::warn!(
                    "{what}: database not ready (try {attempt}): {e}; retrying in {delay:?}"
                );
            }
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(5));
        attempt += 1;
    }
}

fn try_migrate(pool: &PgPool, migrations: EmbeddedMigrations) -> Result<usize, String> {
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    conn.run_pending_migrations(migrations)
        .map(|v| v.len())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_quotes_every_value() {
        let password = SecretString::from("it's a \\secret");
        let t = PgTarget {
            host: "127.0.0.1",
            port: 5432,
            dbname: "movies",
            user: "u",
            password: &password,
        };
        let info = t.conninfo();
        assert!(info.contains(r"password='it\'s a \\secret'"), "{info}");
        assert!(info.contains("dbname='movies'"), "{info}");
    }

    #[test]
    fn debug_hides_the_password() {
        let password = SecretString::from("hunter2");
        let t = PgTarget {
            host: "h",
            port: 1,
            dbname: "d",
            user: "u",
            password: &password,
        };
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
