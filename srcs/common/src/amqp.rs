//! Connecting to RabbitMQ from typed settings, without ever formatting the
//! password into a URL string that could end up in a log line.

use crate::config::ConfigError;
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// A service's RabbitMQ settings, read once here for both services that use
/// the broker, from `<PREFIX>HOST`, `PORT`, `USER`, `PASSWORD` and `VHOST`
/// (e.g. `GATEWAY_RABBITMQ_HOST`). `Debug` never shows the password.
#[derive(Clone, Deserialize)]
pub struct AmqpSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: SecretString,
    pub vhost: String,
}

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
        }
    }
}

impl AmqpSettings {
    /// Reads the settings under `prefix` (e.g. `"BILLING_RABBITMQ_"`).
    pub fn from_vars<I>(prefix: &str, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        crate::config::from_iter(prefix, vars)
    }

    pub fn uri(&self) -> AMQPUri {
        AMQPUri {
            scheme: AMQPScheme::AMQP,
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: self.user.clone(),
                    password: self.password.expose_secret().to_owned(),
                },
                host: self.host.clone(),
                port: self.port,
            },
            vhost: self.vhost.clone(),
            query: AMQPQueryString {
                // Detect a dead broker or a cut network within ~30 s even
                // when no traffic flows.
                heartbeat: Some(10),
                connection_timeout: Some(3_000),
                ..AMQPQueryString::default()
            },
        }
    }

    /// Connects with the service name shown in RabbitMQ's connection list.
    pub async fn connect(&self, service: &str) -> lapin::Result<lapin::Connection> {
        let props = lapin::ConnectionProperties::default().with_connection_name(service.into());
        lapin::Connection::connect_uri(self.uri(), props).await
    }
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
    }
}
