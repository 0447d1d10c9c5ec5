//! The `Host` allow-list (DNS rebinding): a name the gateway does not
//! answer for gets 421 in the JSON error shape and never reaches inventory;
//! its own addresses and `localhost` pass with any port.

use crate::support::upstream::{spawn_upstream, Upstream};
use crate::support::{closed_port, config, raw_exchange, raw_headers, spawn_app, TestApp};

/// The status line and the JSON body of a raw answer.
fn status_and_json(answer: &str) -> (String, serde_json::Value) {
    let status = answer.lines().next().unwrap_or("").to_owned();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// A gateway with the default allow-list (no names of its own).
async fn default_gateway(upstream: &Upstream) -> TestApp {
    let mut settings = config(&upstream.url, closed_port(), "/");
    settings.allowed_hosts = String::new();
    spawn_app(settings).await
}

async fn exchange(port: u16, method: &str, path: &str, host: Option<&str>) -> String {
    // Without Host, HTTP/1.0 (actix refuses an HTTP/1.1 request without one).
    let (version, host) = host.map_or(("1.0", String::new()), |h| {
        ("1.1", format!("Host: {h}\r\n"))
    });
    raw_exchange(
        port,
        format!("{method} {path} HTTP/{version}\r\n{host}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
}

#[actix_web::test]
async fn a_foreign_host_gets_421_and_never_reaches_inventory() {
    let upstream = spawn_upstream();
    let gateway = default_gateway(&upstream).await;
    for (method, path) in [
        ("GET", "/api/movies/1"),
        ("DELETE", "/api/movies"),
        ("GET", "/health"),
    ] {
        for host in [
            "rebind.attacker.example",
            "rebind.attacker.example:8080",
            "localhost.attacker.example",
            "127.0.0.1.nip.io:8080",
        ] {
            let answer = exchange(gateway.port, method, path, Some(host)).await;
            let (status, json) = status_and_json(&answer);
            assert_eq!(status, "HTTP/1.1 421 Misdirected Request", "{answer}");
            assert!(
                raw_headers(&answer)
                    .contains(&("content-type".to_owned(), "application/json".to_owned())),
                "{answer}"
            );
            assert_eq!(json["error"]["code"], "misdirected_request", "{answer}");
            assert_eq!(json["error"]["field"], "Host", "{answer}");
            assert!(answer.contains("x-request-id: "), "{answer}");
        }
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
}

#[actix_web::test]
async fn loopback_names_and_addresses_pass_with_any_port() {
    let upstream = spawn_upstream();
    let gateway = default_gateway(&upstream).await;
    // The local run, the containers' published port, the VMs' forwarded
    // port and private address, a load balancer's probe without Host.
    for host in [
        Some("127.0.0.1:18080"),
        Some("127.0.0.1:20080"),
        Some("localhost:8080"),
        Some("localhost"),
        Some("[::1]:8080"),
        Some("192.168.56.10:8080"),
        None,
    ] {
        let answer = exchange(gateway.port, "GET", "/api/movies/1", host).await;
        assert!(answer.contains(" 200 OK\r\n"), "{host:?}: {answer}");
    }
}

#[actix_web::test]
async fn configured_names_pass_and_a_star_lets_every_host_in() {
    let upstream = spawn_upstream();
    let mut settings = config(&upstream.url, closed_port(), "/");
    settings.allowed_hosts = "gateway.example, movies.example.".to_owned();
    let gateway = spawn_app(settings).await;
    for host in ["gateway.example", "Movies.Example:8443"] {
        let answer = exchange(gateway.port, "GET", "/api/movies/1", Some(host)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    let answer = exchange(gateway.port, "GET", "/api/movies/1", Some("other.example")).await;
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");

    let mut settings = config(&upstream.url, closed_port(), "/");
    settings.allowed_hosts = "*".to_owned();
    let gateway = spawn_app(settings).await;
    let answer = exchange(
        gateway.port,
        "GET",
        "/api/movies/1",
        Some("rebind.attacker.example"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
