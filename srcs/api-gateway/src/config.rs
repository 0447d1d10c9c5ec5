use std::path::Path;
use std::time::Duration;

use awc::http::Uri;
use common::amqp::AmqpTarget;
use common::config::ConfigError;
use secrecy::SecretString;
use serde::Deserialize;

pub const ENV_PREFIX: &str = "GATEWAY_";

/// The log target of the one-line-per-request access log (request_id.rs);
/// `GATEWAY_ACCESS_LOG_FILE` copies exactly these lines to a file.
pub const ACCESS_LOG_TARGET: &str = "api_gateway::access";

/// Everything api-gateway reads from its environment (`GATEWAY_*`).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// Base URL of inventory-app, e.g. `http://192.168.56.11:8080`.
    pub inventory_url: String,
    /// Budget for one whole exchange with inventory (connect, send, answer).
    #[serde(default = "default_timeout_ms")]
    pub inventory_timeout_ms: u64,
    pub rabbitmq_host: String,
    pub rabbitmq_port: u16,
    pub rabbitmq_user: String,
    pub rabbitmq_password: SecretString,
    pub rabbitmq_vhost: String,
    /// How long an order waits for RabbitMQ's publisher confirm.
    #[serde(default = "default_timeout_ms")]
    pub publish_timeout_ms: u64,
    /// HTTP worker threads; `None` lets actix use one per core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// A file that also gets the access log (appended; off when unset or
    /// empty). The containers keep it on a volume.
    #[serde(default)]
    pub access_log_file: Option<String>,
}

fn default_timeout_ms() -> u64 {
    5_000
}

impl Config {
    /// Reads and checks the configuration; the error names the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let config: Self = common::config::from_env(ENV_PREFIX)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot, so a typo stops start-up instead
    /// of failing every request later.
    pub fn validate(&self) -> Result<(), ConfigError> {
        inventory_base(&self.inventory_url)?;
        for (name, value) in [
            ("INVENTORY_TIMEOUT_MS", self.inventory_timeout_ms),
            ("PUBLISH_TIMEOUT_MS", self.publish_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError(format!(
                    "bad variable {ENV_PREFIX}{name}: must be a positive number of milliseconds"
                )));
            }
        }
        if self.workers == Some(0) {
            return Err(ConfigError(format!(
                "bad variable {ENV_PREFIX}WORKERS: must be at least 1"
            )));
        }
        Ok(())
    }

    /// The inventory base URL without a trailing slash, ready for a request
    /// path to be appended.
    pub fn inventory_base(&self) -> Result<String, ConfigError> {
        inventory_base(&self.inventory_url)
    }

    /// Where the access log is copied, if anywhere.
    pub fn access_log_file(&self) -> Option<&Path> {
        self.access_log_file
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(Path::new)
    }

    pub fn inventory_timeout(&self) -> Duration {
        Duration::from_millis(self.inventory_timeout_ms)
    }

    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
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

fn inventory_base(raw: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| {
        ConfigError(format!(
            "bad variable {ENV_PREFIX}INVENTORY_URL: {why} (got {raw:?}, expected e.g. http://127.0.0.1:8081)"
        ))
    };
    let uri: Uri = raw.trim().parse().map_err(|_| bad("not a URL"))?;
    // awc is built without TLS: only plain http can work.
    if uri.scheme_str() != Some("http") {
        return Err(bad("the scheme must be http"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("the host is missing"));
    }
    if uri.query().is_some() {
        return Err(bad("a query string is not allowed"));
    }
    Ok(raw.trim().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all = vec![
            ("GATEWAY_HOST", "127.0.0.1"),
            ("GATEWAY_PORT", "8080"),
            ("GATEWAY_INVENTORY_URL", "http://127.0.0.1:8081"),
            ("GATEWAY_RABBITMQ_HOST", "127.0.0.1"),
            ("GATEWAY_RABBITMQ_PORT", "5672"),
            ("GATEWAY_RABBITMQ_USER", "billing"),
            ("GATEWAY_RABBITMQ_PASSWORD", "hunter2"),
            ("GATEWAY_RABBITMQ_VHOST", "/"),
        ];
        for (k, v) in extra {
            all.retain(|(name, _)| name != k);
            all.push((k, v));
        }
        all.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn read(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let c: Config = common::config::from_iter(ENV_PREFIX, vars(extra))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_apply_and_password_stays_hidden() {
        let c = read(&[]).unwrap();
        assert_eq!(c.inventory_timeout_ms, 5_000);
        assert_eq!(c.publish_timeout_ms, 5_000);
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", c.amqp_target()).contains("hunter2"));
    }

    #[test]
    fn access_log_file_is_off_unless_set() {
        assert_eq!(read(&[]).unwrap().access_log_file(), None);
        let empty = read(&[("GATEWAY_ACCESS_LOG_FILE", "")]).unwrap();
        assert_eq!(empty.access_log_file(), None);
        let set = read(&[(
            "GATEWAY_ACCESS_LOG_FILE",
            "/var/logs/api-gateway/access.log",
        )])
        .unwrap();
        assert_eq!(
            set.access_log_file(),
            Some(Path::new("/var/logs/api-gateway/access.log"))
        );
    }

    #[test]
    fn inventory_url_must_be_http() {
        for bad in [
            "nope",
            "https://x:1",
            "ftp://x",
            "http://",
            "http://h:1/?a=b",
            "",
        ] {
            let err = read(&[("GATEWAY_INVENTORY_URL", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("GATEWAY_INVENTORY_URL"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn trailing_slash_is_dropped_from_the_base() {
        let c = read(&[("GATEWAY_INVENTORY_URL", "http://10.0.0.1:8080/")]).unwrap();
        assert_eq!(c.inventory_base().unwrap(), "http://10.0.0.1:8080");
    }

    #[test]
    fn zero_timeout_is_rejected_by_name() {
        let err = read(&[("GATEWAY_PUBLISH_TIMEOUT_MS", "0")]).unwrap_err();
        assert!(
            err.to_string().contains("GATEWAY_PUBLISH_TIMEOUT_MS"),
            "{err}"
        );
    }

    #[test]
    fn missing_password_is_named() {
        let without: Vec<_> = vars(&[])
            .into_iter()
            .filter(|(k, _)| k != "GATEWAY_RABBITMQ_PASSWORD")
            .collect();
        let err = common::config::from_iter::<Config, _>(ENV_PREFIX, without).unwrap_err();
        assert!(
            err.to_string().contains("GATEWAY_RABBITMQ_PASSWORD"),
            "{err}"
        );
    }
}
