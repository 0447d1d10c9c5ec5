//! The `Host` allow-list, against DNS rebinding: a web page on
//! `attacker.example` whose name is made to resolve to 127.0.0.1 (or to a
//! forwarded port) could otherwise drive the gateway from the victim's
//! browser, `DELETE /api/movies` included. Such requests carry the
//! attacker's name in `Host`, so the gateway answers only for:
//! - `localhost`, and any IP address (a page can only reach an address
//!   under its own origin, so an address in `Host` is not a rebinding);
//! - the names of `GATEWAY_ALLOWED_HOSTS` (a comma list, `*` for any),
//!   whatever the port. A request without `Host` (HTTP/1.0, a load
//!   balancer's probe) is no browser's and passes.
//!
//! Anything else gets 421 `misdirected_request` before it is routed.

use std::net::IpAddr;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HOST;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use common::config::ConfigError;
use common::error::ErrorCode;
use common::http::error_response;

/// The names the gateway answers for, beyond `localhost` and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    any: bool,
    names: Vec<String>,
}

impl AllowedHosts {
    /// Reads a `GATEWAY_ALLOWED_HOSTS` value: empty, `*`, or a comma list of
    /// host names without port. `variable` names it in errors.
    pub fn parse(variable: &str, raw: &str) -> Result<Self, ConfigError> {
        let entries: Vec<&str> = raw
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.contains(&"*") {
            if entries.len() > 1 {
                return Err(ConfigError::bad(
                    variable,
                    format!("`*` allows every host and must stand alone (got {raw:?})"),
                ));
            }
            return Ok(Self {
                any: true,
                names: Vec::new(),
            });
        }
        let mut names = Vec::new();
        for entry in entries {
            let valid = entry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !valid {
                return Err(ConfigError::bad(
                    variable,
                    format!(
                        "{entry:?} is not a host name (letters, digits, `-` and `.`, no port: any port is allowed)"
                    ),
                ));
            }
            names.push(normalize(entry));
        }
        Ok(Self { any: false, names })
    }

    /// Whether a request with this `Host` value is answered.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(name) = host_name(host) else {
            return false;
        };
        if name.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = normalize(name);
        name == "localhost" || self.names.contains(&name)
    }
}

/// Lower case, without the trailing dot of a fully qualified name.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The name part of a `Host` value (`name`, `name:port`, `[v6]`,
/// `[v6]:port`), or None when it is none of these.
fn host_name(host: &str) -> Option<&str> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        (v6, after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if let Some(port) = port {
        port.parse::<u16>().ok()?;
    }
    (!name.is_empty()).then_some(name)
}

/// Middleware: 421 for a `Host` the gateway does not answer for. Inside
/// `bound_requests`, so a refused request's body is not read and its
/// connection closes.
pub async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let allowed = req.app_data::<AllowedHosts>();
    let refused = req
        .headers()
        .get_all(HOST)
        .map(|v| v.to_str().unwrap_or(""))
        .find(|host| allowed.is_some_and(|a| !a.allows(host)))
        .map(str::to_owned);
    match refused {
        None => Ok(next.call(req).await?.map_into_left_body()),
        Some(host) => {
            let resp = error_response(
                StatusCode::MISDIRECTED_REQUEST,
                ErrorCode::MisdirectedRequest,
                format!(
                    "this gateway does not answer for host {host:?}: use its address, localhost, or a name of GATEWAY_ALLOWED_HOSTS"
                ),
                Some("Host"),
            );
            Ok(req.into_response(resp).map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(raw: &str) -> AllowedHosts {
        AllowedHosts::parse("GATEWAY_ALLOWED_HOSTS", raw).unwrap()
    }

    #[test]
    fn loopback_names_and_addresses_pass_with_any_port() {
        let a = allowed("");
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.:20080",
            "127.0.0.1",
            "127.0.0.1:18080",
            "[::1]",
            "[::1]:8080",
            "192.168.56.10:8080",
            "10.0.0.7",
        ] {
            assert!(a.allows(host), "{host}");
        }
    }

    #[test]
    fn other_names_and_malformed_values_are_refused() {
        let a = allowed("gateway.example, api.example.");
        for host in [
            "rebind.attacker.example",
            "rebind.attacker.example:8080",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "",
            ":8080",
            "localhost:port",
            "[::1",
            "[not-v6]:80",
            "user@localhost",
        ] {
            assert!(!a.allows(host), "{host}");
        }
        assert!(a.allows("gateway.example:443"));
        assert!(a.allows("API.example"));
    }

    #[test]
    fn a_star_allows_everything_and_must_stand_alone() {
        assert!(allowed("*").allows("rebind.attacker.example"));
        let err = AllowedHosts::parse("GATEWAY_ALLOWED_HOSTS", "*,localhost").unwrap_err();
        assert!(err.to_string().contains("GATEWAY_ALLOWED_HOSTS"), "{err}");
    }

    #[test]
    fn an_entry_with_a_port_is_refused_by_name() {
        let err = AllowedHosts::parse("GATEWAY_ALLOWED_HOSTS", "gateway.example:8080").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "configuration error: bad variable GATEWAY_ALLOWED_HOSTS: \"gateway.example:8080\" is not a host name"
            ),
            "{err}"
        );
    }
}
