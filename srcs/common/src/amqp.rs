//! Connecting to RabbitMQ from typed settings, without ever formatting the
//! password into a URL string that could end up in a log line.

use crate::config::ConfigError;
use crate::topology::{QueueType, Topology, DEFAULT_DELIVERY_LIMIT};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

/// A service's RabbitMQ settings, read once here for both services that use
/// the broker, from `<PREFIX>HOST`, `PORT`, `USER`, `PASSWORD` and `VHOST`
/// (e.g. `GATEWAY_RABBITMQ_HOST`), and the queue's `QUEUE_TYPE` and
/// `DELIVERY_LIMIT`. `Debug` never shows the password.
///
/// `HOST` may name the nodes of a cluster, comma-separated, each optionally
/// with its own port (`10.0.0.1,10.0.0.2,10.0.0.3` or `a:5672,b:5673`); an
/// entry without a port uses `PORT`. [`AmqpSettings::connect`] tries them in
/// the order given, so the list is a preference: the HA VMs list their own
/// node first, and a service whose node died moves to the next live one on
/// its reconnect, and back to its own on a later one. (Starting after the
/// node reached last time, as before, spread the gateways over the other
/// VMs' nodes: the VM test then saw the gateway holding the shared address
/// lose its link when another VM was powered off.)
#[derive(Clone, Deserialize)]
pub struct AmqpSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: SecretString,
    pub vhost: String,
    /// `classic` (default) or `quorum`: see [`crate::topology`].
    #[serde(default)]
    pub queue_type: QueueType,
    /// Quorum queues only: see [`Topology::delivery_limit`].
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,
}

fn default_delivery_limit() -> u32 {
    DEFAULT_DELIVERY_LIMIT
}

/// The largest AMQP frame this client takes, offered in the handshake (the
/// broker's own default is 128 KiB, and the smaller of the two wins). lapin
/// keeps a receive and a send buffer of 32 frames each per connection, filled
/// with zeroes: at 128 KiB that was 8 MiB, over half of an idle gateway's or
/// worker's memory (BENCHMARKS.md, "What the gateway's idle memory is"). An
/// order is a few hundred bytes, one frame at 8 KiB; a larger body is sent
/// as several frames. A message's properties and headers must fit in one
/// frame: ours are under 1 KiB (the ids, the traceparent, and the broker's
/// x-death entries once dead-lettered). 8 KiB is lapin's own starting size:
/// no buffer grows.
pub const FRAME_MAX: u32 = 8192;

/// Bounds one node's connect (TCP and AMQP handshake), so a node that
/// accepts the connection but never answers cannot hold up the others.
const NODE_CONNECT_BUDGET: Duration = Duration::from_secs(5);

/// Bounds the TCP handshake with one node. A live node answers a SYN within
/// milliseconds, even on a busy emulated VM (the kernel answers it, not
/// RabbitMQ); a powered-off or cut-off one never does, and lapin's async
/// connect has no timeout of its own (`connection_timeout` in the URI serves
/// only its blocking connect). A second spent on a dead node is a second more
/// before the next live one is tried.
const TCP_CONNECT_BUDGET: Duration = Duration::from_secs(1);

/// How long data sent to the broker may stay unacknowledged before the
/// kernel drops the connection (Linux's `TCP_USER_TIMEOUT`). A node whose
/// machine loses power or its network sends no RST: without this, only the
/// AMQP heartbeat (2 missed 10 s beats) ends the connection, and the VM test
/// saw the gateway holding the shared address wait 21 s for it, answering
/// no order. The gateway's alarm probe (every 100 ms) and the heartbeats keep
/// data in flight, so a dead peer shows within this time; the service then
/// reconnects to the next node. Same idea and same reason as the database
/// connections' `tcp_user_timeout` (`crate::db`).
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(5);

/// Empty settings, only so that a service's config struct can mark the field
/// `#[serde(skip)]` (envy cannot read nested structs) and fill it with
/// [`AmqpSettings::from_vars`] right after.
impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 0,
            user: String::new(),
            password: SecretString::from(String::new()),
            vhost: String::new(),
            queue_type: QueueType::default(),
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
        }
    }
}

impl AmqpSettings {
    /// Reads the settings under `prefix` (e.g. `"BILLING_RABBITMQ_"`).
    pub fn from_vars<I>(prefix: &str, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let settings: Self = crate::config::from_iter(prefix, vars).map_err(|e| match e {
            // envy names no variable for a bad enum value, and QUEUE_TYPE is
            // this struct's only enum.
            ConfigError::Other(msg) if msg.contains("unknown variant") => {
                ConfigError::bad(format!("{prefix}QUEUE_TYPE"), msg)
            }
            other => other,
        })?;
        settings
            .try_nodes()
            .map_err(|why| ConfigError::bad(format!("{prefix}HOST"), why))?;
        crate::config::at_least_one(
            &format!("{prefix}DELIVERY_LIMIT"),
            settings.delivery_limit.into(),
        )?;
        Ok(settings)
    }

    /// The queue declarations every service must agree on.
    pub fn topology(&self) -> Topology {
        Topology {
            queue_type: self.queue_type,
            delivery_limit: self.delivery_limit,
        }
    }

    /// The nodes of `host`, each with its port.
    fn try_nodes(&self) -> Result<Vec<(String, u16)>, String> {
        crate::hosts::parse(&self.host, self.port)
    }

    /// The nodes to try, in the order of `HOST` (checked when read, so a
    /// hand-built bad value only falls back to the text as it is).
    pub fn nodes(&self) -> Vec<(String, u16)> {
        self.try_nodes()
            .unwrap_or_else(|_| vec![(self.host.clone(), self.port)])
    }

    /// The URI of the first node.
    pub fn uri(&self) -> AMQPUri {
        let (host, port) = self
            .nodes()
            .into_iter()
            .next()
            .unwrap_or_else(|| (self.host.clone(), self.port));
        self.node_uri(host, port)
    }

    fn node_uri(&self, host: String, port: u16) -> AMQPUri {
        AMQPUri {
            scheme: AMQPScheme::AMQP,
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: self.user.clone(),
                    password: self.password.expose_secret().to_owned(),
                },
                host,
                port,
            },
            vhost: self.vhost.clone(),
            query: AMQPQueryString {
                // Detect a dead broker or a cut network within ~30 s even
                // when no traffic flows: the backstop behind
                // TCP_USER_TIMEOUT (Linux only), which is faster.
                heartbeat: Some(10),
                // (No `connection_timeout`: lapin's async connect ignores
                // it; see TCP_CONNECT_BUDGET.)
                frame_max: Some(FRAME_MAX),
                ..AMQPQueryString::default()
            },
        }
    }

    /// Connects with the service name shown in RabbitMQ's connection list,
    /// to the first node of the list that answers. The last node's error
    /// when none answers.
    pub async fn connect(&self, service: &str) -> lapin::Result<lapin::Connection> {
        let nodes = self.nodes();
        let mut last = None;
        for (host, port) in nodes.iter().cloned() {
            let props = lapin::ConnectionProperties::default().with_connection_name(service.into());
            let attempt = tokio::time::timeout(
                NODE_CONNECT_BUDGET,
                connect_node(self.node_uri(host.clone(), port), props),
            )
            .await
            .unwrap_or_else(|_| {
                Err(lapin::Error::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {NODE_CONNECT_BUDGET:?}"),
                )))
            });
            match attempt {
                Ok(connection) => {
                    if nodes.len() > 1 {
                        log::info!("{service}: connected to RabbitMQ node {host}:{port}");
                    }
                    return Ok(connection);
                }
                Err(e) => {
                    if nodes.len() > 1 {
                        log::warn!("{service}: RabbitMQ node {host}:{port} unavailable: {e}");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            lapin::Error::from(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no RabbitMQ node configured",
            ))
        }))
    }
}

/// lapin's own connect (`lapin::Connect for AMQPUri`), plain TCP only, with
/// the TCP handshake bounded and [`TCP_USER_TIMEOUT`] set on the socket.
async fn connect_node(
    uri: AMQPUri,
    props: lapin::ConnectionProperties,
) -> lapin::Result<lapin::Connection> {
    use lapin::tcp::{AMQPUriTcpExt, TLSConfig};
    let runtime = lapin::runtime::default_runtime()?;
    lapin::Connection::connector(
        uri,
        runtime,
        async move |uri, runtime| {
            let tcp = uri.connect_with_config_async(TLSConfig::default(), &runtime);
            let stream = tokio::time::timeout(TCP_CONNECT_BUDGET, tcp)
                .await
                .unwrap_or_else(|_| {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no TCP answer within {TCP_CONNECT_BUDGET:?}"),
                    ))
                })?;
            #[cfg(target_os = "linux")]
            if let lapin::tcp::AsyncTcpStream::Plain(tcp) = &stream {
                socket2::SockRef::from(tcp.get_ref())
                    .set_tcp_user_timeout(Some(TCP_USER_TIMEOUT))?;
            }
            Ok(stream)
        },
        props,
    )
    .await
}

impl std::fmt::Debug for AmqpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "amqp://{}@{}:{}/{}",
            self.user, self.host, self.port, self.vhost
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_under_the_prefix_and_hide_the_password() {
        let env = [
            ("GATEWAY_RABBITMQ_HOST", "10.0.0.3"),
            ("GATEWAY_RABBITMQ_PORT", "5672"),
            ("GATEWAY_RABBITMQ_USER", "gateway"),
            ("GATEWAY_RABBITMQ_PASSWORD", "s3cret"),
            ("GATEWAY_RABBITMQ_VHOST", "/"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let s = AmqpSettings::from_vars("GATEWAY_RABBITMQ_", env.clone()).unwrap();
        assert_eq!(format!("{s:?}"), "amqp://gateway@10.0.0.3:5672//");
        assert_eq!(s.uri().authority.userinfo.password, "s3cret");
        let without: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| !k.ends_with("VHOST"))
            .collect();
        assert_eq!(
            AmqpSettings::from_vars("GATEWAY_RABBITMQ_", without).unwrap_err(),
            ConfigError::Missing("GATEWAY_RABBITMQ_VHOST".into())
        );
        assert_eq!(s.topology(), Topology::default());
    }

    fn with_host(host: &str, extra: &[(&str, &str)]) -> Result<AmqpSettings, ConfigError> {
        let mut env = vec![
            ("W_HOST", host),
            ("W_PORT", "5672"),
            ("W_USER", "u"),
            ("W_PASSWORD", "p"),
            ("W_VHOST", "/"),
        ];
        env.extend_from_slice(extra);
        AmqpSettings::from_vars("W_", env.map_owned())
    }

    trait MapOwned {
        fn map_owned(self) -> Vec<(String, String)>;
    }
    impl MapOwned for Vec<(&str, &str)> {
        fn map_owned(self) -> Vec<(String, String)> {
            self.into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        }
    }

    #[test]
    fn host_may_list_the_nodes_of_a_cluster() {
        let s = with_host("10.0.0.1, 10.0.0.2:5673,10.0.0.3", &[]).unwrap();
        assert_eq!(
            s.nodes(),
            vec![
                ("10.0.0.1".to_owned(), 5672),
                ("10.0.0.2".to_owned(), 5673),
                ("10.0.0.3".to_owned(), 5672)
            ]
        );
        for bad in ["a,,b", "a:x"] {
            let err = with_host(bad, &[]).unwrap_err();
            assert!(err.to_string().contains("W_HOST"), "{bad}: {err}");
        }
    }

    /// A node whose machine is gone answers no SYN; lapin's async connect
    /// would wait for the kernel's own timeout (minutes). A listener whose
    /// accept queue is full drops SYNs the same way, on loopback.
    #[tokio::test]
    async fn a_node_that_answers_no_syn_is_left_after_the_tcp_budget() {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        listener.bind(&any.into()).unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        // Never accepted: the accept queue (of one) is full from here on.
        let _queued = std::net::TcpStream::connect(addr).unwrap();
        let s = with_host(&format!("127.0.0.1:{}", addr.port()), &[]).unwrap();
        let err = s.connect("amqp-tests").await.unwrap_err();
        assert!(
            err.to_string().contains("no TCP answer within 1s"),
            "not the TCP handshake's budget: {err}"
        );
    }

    #[test]
    fn queue_type_and_delivery_limit_are_read() {
        let s = with_host(
            "h",
            &[("W_QUEUE_TYPE", "quorum"), ("W_DELIVERY_LIMIT", "5")],
        )
        .unwrap();
        assert_eq!(
            s.topology(),
            Topology {
                queue_type: QueueType::Quorum,
                delivery_limit: 5
            }
        );
        let err = with_host("h", &[("W_QUEUE_TYPE", "stream")]).unwrap_err();
        assert!(err.to_string().contains("W_QUEUE_TYPE"), "{err}");
        let err = with_host("h", &[("W_DELIVERY_LIMIT", "0")]).unwrap_err();
        assert!(err.to_string().contains("W_DELIVERY_LIMIT"), "{err}");
    }
}
