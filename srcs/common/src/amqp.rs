//! Connecting to RabbitMQ from typed settings, without ever formatting the
//! password into a URL string that could end up in a log line.

use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use secrecy::{ExposeSecret, SecretString};

pub struct AmqpTarget<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a SecretString,
    pub vhost: &'a str,
}

impl AmqpTarget<'_> {
    pub fn uri(&self) -> AMQPUri {
        AMQPUri {
            scheme: AMQPScheme::AMQP,
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: self.user.to_owned(),
                    password: self.password.expose_secret().to_owned(),
                },
                host: self.host.to_owned(),
                port: self.port,
            },
            vhost: self.vhost.to_owned(),
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

impl std::fmt::Debug for AmqpTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "amqp://{}@{}:{}/{}",
            self.user, self.host, self.port, self.vhost
        )
    }
}
