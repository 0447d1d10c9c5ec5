use std::path::Path;
use std::time::Duration;

use awc::http::Uri;
use common::amqp::AmqpSettings;
use common::config::{at_least_one, ConfigError, ServiceConfig};
use common::http::ServerLimits;
use serde::Deserialize;

use crate::host::AllowedHosts;

pub const ENV_PREFIX: &str = "GATEWAY_";
/// RabbitMQ: `GATEWAY_RABBITMQ_HOST`, `_PORT`, `_USER`, `_PASSWORD`, `_VHOST`.
pub const RABBITMQ_PREFIX: &str = "GATEWAY_RABBITMQ_";

/// The log target of the one-line-per-request access log (request_id.rs);
/// `GATEWAY_ACCESS_LOG_FILE` copies exactly these lines to a file.
pub const ACCESS_LOG_TARGET: &str = "api_gateway::access";

/// Everything api-gateway reads from its environment (`GATEWAY_*`).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// Base URL of inventory-app, e.g. `http://192.168.56.11:8080`, or a
    /// comma list of them (one per replica or per DNS name): the gateway
    /// balances over every address each name resolves to.
    pub inventory_url: String,
    /// Budget for one whole exchange with inventory (connect, send, answer).
    #[serde(default = "default_timeout_ms")]
    pub inventory_timeout_ms: u64,
    #[serde(skip)]
    pub rabbitmq: AmqpSettings,
    /// How long an order waits for RabbitMQ's publisher confirm.
    #[serde(default = "default_timeout_ms")]
    pub publish_timeout_ms: u64,
    /// HTTP worker threads; `None` lets actix use one per core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Longest wait for the next piece of a response body from inventory;
    /// past it the response is cut (a head deadline alone would let a
    /// stalled listing hang forever).
    #[serde(default = "default_timeout_ms")]
    pub inventory_idle_timeout_ms: u64,
    /// Total time a client has to send a request body (then 408).
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// Concurrent client connections per worker thread.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections the kernel queues beyond those.
    #[serde(default = "default_backlog")]
    pub backlog: u32,
    /// How long an idle keep-alive client connection stays open.
    #[serde(default = "default_timeout_ms")]
    pub keep_alive_ms: u64,
    /// Time a new connection has to send its first request head (then 408).
    #[serde(default = "default_timeout_ms")]
    pub request_head_timeout_ms: u64,
    /// A file that also gets the access log (appended; off when unset or
    /// empty). The containers keep it on a volume.
    #[serde(default)]
    pub access_log_file: Option<String>,
    /// Where `GET /metrics` is served (`GATEWAY_METRICS_HOST`/`_PORT`): a
    /// listener of its own on loopback or the private network, never the
    /// public port.
    #[serde(default = "common::metrics::default_host")]
    pub metrics_host: String,
    #[serde(default = "default_metrics_port")]
    pub metrics_port: u16,
    /// Host names the gateway answers for beyond `localhost` and IP
    /// addresses (a comma list, `*` for any): the DNS rebinding guard
    /// (host.rs).
    #[serde(default)]
    pub allowed_hosts: String,
    /// Drain period on SIGTERM/SIGINT (`GATEWAY_DRAIN_MS`, default 0: stop at
    /// once): `/health` and `/ready` answer 503 while requests are still
    /// served, so balancers move away before the listener closes. Set it
    /// where there is another replica to move to (docs/ha.md).
    #[serde(default)]
    pub drain_ms: u64,
}

fn default_metrics_port() -> u16 {
    9101
}

fn default_timeout_ms() -> u64 {
    5_000
}

fn default_body_timeout_ms() -> u64 {
    duration_ms(ServerLimits::default().body_timeout)
}

fn default_max_connections() -> usize {
    ServerLimits::default().max_connections
}

fn default_backlog() -> u32 {
    ServerLimits::default().backlog
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ServiceConfig for Config {
    const PREFIX: &'static str = ENV_PREFIX;

    fn read_nested(&mut self, vars: &[(String, String)]) -> Result<(), ConfigError> {
        self.rabbitmq = AmqpSettings::from_vars(RABBITMQ_PREFIX, vars.iter().cloned())?;
        Ok(())
    }

    /// Checks what the types alone cannot, so a typo stops start-up instead
    /// of failing every request later.
    fn validate(&self) -> Result<(), ConfigError> {
        self.inventory_bases()?;
        self.allowed_hosts()?;
        for (name, value) in [
            ("INVENTORY_TIMEOUT_MS", self.inventory_timeout_ms),
            ("PUBLISH_TIMEOUT_MS", self.publish_timeout_ms),
            ("INVENTORY_IDLE_TIMEOUT_MS", self.inventory_idle_timeout_ms),
            ("BODY_TIMEOUT_MS", self.body_timeout_ms),
            ("KEEP_ALIVE_MS", self.keep_alive_ms),
            ("REQUEST_HEAD_TIMEOUT_MS", self.request_head_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::bad(
                    format!("{ENV_PREFIX}{name}"),
                    "must be a positive number of milliseconds",
                ));
            }
        }
        for (name, value) in [
            ("WORKERS", self.workers.unwrap_or(1)),
            ("MAX_CONNECTIONS", self.max_connections),
            ("BACKLOG", self.backlog as usize),
        ] {
            at_least_one(&format!("{ENV_PREFIX}{name}"), value as u64)?;
        }
        Ok(())
    }
}

impl Config {
    /// What one client may hold on the gateway.
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            max_connections: self.max_connections,
            backlog: self.backlog,
            keep_alive: Duration::from_millis(self.keep_alive_ms),
            request_head_timeout: Duration::from_millis(self.request_head_timeout_ms),
        }
    }

    /// The `Host` allow-list of `GATEWAY_ALLOWED_HOSTS`.
    pub fn allowed_hosts(&self) -> Result<AllowedHosts, ConfigError> {
        AllowedHosts::parse(&format!("{ENV_PREFIX}ALLOWED_HOSTS"), &self.allowed_hosts)
    }

    pub fn inventory_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.inventory_idle_timeout_ms)
    }

    /// The inventory base URLs of the comma list, each without a trailing
    /// slash, ready for a request path to be appended. Never empty.
    pub fn inventory_bases(&self) -> Result<Vec<Uri>, ConfigError> {
        self.inventory_url.split(',').map(inventory_base).collect()
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
}

fn inventory_base(raw: &str) -> Result<Uri, ConfigError> {
    let bad = |why: &str| {
        ConfigError::bad(
            format!("{ENV_PREFIX}INVENTORY_URL"),
            format!(
                "{why} (got {raw:?}, expected e.g. http://127.0.0.1:8081 or a comma list of such URLs)"
            ),
        )
    };
    if raw.trim().is_empty() {
        return Err(bad("an empty URL"));
    }
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
    // The Host header inventory sees is this authority: credentials in it
    // would be sent in clear to every replica.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad("credentials in the URL are not allowed"));
    }
    raw.trim()
        .trim_end_matches('/')
        .parse()
        .map_err(|_| bad("not a URL"))
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
        Config::from_vars(vars(extra))
    }

    #[test]
    fn defaults_apply_and_password_stays_hidden() {
        let c = read(&[]).unwrap();
        assert_eq!(c.inventory_timeout_ms, 5_000);
        assert_eq!(c.publish_timeout_ms, 5_000);
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(
            format!("{:?}", c.rabbitmq),
            "amqp://billing@127.0.0.1:5672//"
        );
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
            refused_naming_inventory_url(bad);
        }
    }

    fn refused_naming_inventory_url(bad: &str) {
        let err = read(&[("GATEWAY_INVENTORY_URL", bad)]).unwrap_err();
        assert!(
            err.to_string().contains("GATEWAY_INVENTORY_URL"),
            "{bad}: {err}"
        );
    }

    #[test]
    fn trailing_slash_is_dropped_from_the_base() {
        let c = read(&[("GATEWAY_INVENTORY_URL", "http://10.0.0.1:8080/")]).unwrap();
        let bases = c.inventory_bases().unwrap();
        assert_eq!(bases.len(), 1);
        assert_eq!(bases[0].to_string(), "http://10.0.0.1:8080/");
        assert_eq!(bases[0].path(), "/");
    }

    #[test]
    fn inventory_url_may_be_a_comma_list_each_entry_checked() {
        let c = read(&[(
            "GATEWAY_INVENTORY_URL",
            "http://10.0.0.1:8080, http://inventory-app:8080/,http://[::1]:81",
        )])
        .unwrap();
        let hosts: Vec<_> = c
            .inventory_bases()
            .unwrap()
            .iter()
            .map(|u| u.authority().unwrap().to_string())
            .collect();
        assert_eq!(hosts, ["10.0.0.1:8080", "inventory-app:8080", "[::1]:81"]);
        for bad in [
            "http://10.0.0.1:8080,",
            "http://10.0.0.1:8080,,http://10.0.0.2:8080",
            "http://10.0.0.1:8080,https://10.0.0.2:8080",
            "http://10.0.0.1:8080,10.0.0.2:8080",
            "http://u:p@10.0.0.1:8080",
        ] {
            refused_naming_inventory_url(bad);
        }
    }

    #[test]
    fn limits_default_to_the_shared_ones_and_are_read() {
        let c = read(&[]).unwrap();
        assert_eq!(c.limits(), ServerLimits::default());
        assert_eq!(c.inventory_idle_timeout(), Duration::from_secs(5));
        let c = read(&[
            ("GATEWAY_BODY_TIMEOUT_MS", "250"),
            ("GATEWAY_MAX_CONNECTIONS", "7"),
            ("GATEWAY_BACKLOG", "9"),
            ("GATEWAY_KEEP_ALIVE_MS", "1500"),
            ("GATEWAY_REQUEST_HEAD_TIMEOUT_MS", "2500"),
            ("GATEWAY_INVENTORY_IDLE_TIMEOUT_MS", "300"),
        ])
        .unwrap();
        let limits = c.limits();
        assert_eq!(limits.body_timeout, Duration::from_millis(250));
        assert_eq!(limits.max_connections, 7);
        assert_eq!(limits.backlog, 9);
        assert_eq!(limits.keep_alive, Duration::from_millis(1500));
        assert_eq!(limits.request_head_timeout, Duration::from_millis(2500));
        assert_eq!(c.inventory_idle_timeout(), Duration::from_millis(300));
    }

    #[test]
    fn zero_limits_are_rejected_by_name() {
        for name in [
            "GATEWAY_BODY_TIMEOUT_MS",
            "GATEWAY_INVENTORY_IDLE_TIMEOUT_MS",
            "GATEWAY_KEEP_ALIVE_MS",
            "GATEWAY_REQUEST_HEAD_TIMEOUT_MS",
            "GATEWAY_MAX_CONNECTIONS",
            "GATEWAY_BACKLOG",
            "GATEWAY_WORKERS",
        ] {
            let err = read(&[(name, "0")]).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let err = read(&[("GATEWAY_MAX_CONNECTIONS", "lots")]).unwrap_err();
        assert!(err.to_string().contains("GATEWAY_MAX_CONNECTIONS"), "{err}");
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
        let err = Config::from_vars(without).unwrap_err();
        assert!(
            err.to_string().contains("GATEWAY_RABBITMQ_PASSWORD"),
            "{err}"
        );
    }

    #[test]
    fn password_is_read_from_its_file() {
        let path = test_support::secret_file("gateway-amqp-pw", "from-a-file\n");
        let with_file: Vec<_> = vars(&[])
            .into_iter()
            .filter(|(k, _)| k != "GATEWAY_RABBITMQ_PASSWORD")
            .chain([("GATEWAY_RABBITMQ_PASSWORD_FILE".to_owned(), path.clone())])
            .collect();
        let c = Config::from_vars(with_file).unwrap();
        assert_eq!(c.rabbitmq.uri().authority.userinfo.password, "from-a-file");
        // Both forms at once: refused, naming both.
        let err = read(&[("GATEWAY_RABBITMQ_PASSWORD_FILE", path.as_str())]).unwrap_err();
        assert!(
            err.to_string().contains(
                "set only one of GATEWAY_RABBITMQ_PASSWORD and GATEWAY_RABBITMQ_PASSWORD_FILE"
            ),
            "{err}"
        );
        std::fs::remove_file(path).unwrap();
    }
}
