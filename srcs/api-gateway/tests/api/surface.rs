//! Health, readiness, unknown paths and methods, and the served OpenAPI
//! document.

use crate::support::rabbit;
use crate::support::upstream::spawn_upstream;
use crate::support::{closed_port, config, send, spawn_app, TestApp};
use actix_web::http::{Method, StatusCode};

/// A gateway whose inventory and RabbitMQ are both down (closed ports): what
/// it answers alone.
async fn gateway_alone() -> TestApp {
    spawn_app(config(
        &format!("http://127.0.0.1:{}", closed_port()),
        closed_port(),
        "/",
    ))
    .await
}

#[actix_web::test]
async fn health_answers_while_every_dependency_is_down() {
    let gateway = gateway_alone().await;
    let reply = gateway.get("/health").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), serde_json::json!({"status": "ok"}));

    let reply = gateway.get("/ready").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["inventory"], "down");
    assert_eq!(body["checks"]["rabbitmq"], "down");
    assert_eq!(body["error"]["code"], "not_ready");
}

#[actix_web::test]
async fn ready_names_what_is_down() {
    let vhost = rabbit::vhost();
    let upstream = spawn_upstream();

    // Both up.
    let gateway = spawn_app(config(&upstream.url, rabbit::amqp_port(), &vhost.name)).await;
    gateway.wait_ready().await;
    let body = gateway.get("/ready").await.json();
    assert_eq!(
        body,
        serde_json::json!({"status": "ready", "checks": {"inventory": "ok", "rabbitmq": "ok"}})
    );

    // Inventory down, RabbitMQ up.
    let gateway = spawn_app(config(
        &format!("http://127.0.0.1:{}", closed_port()),
        rabbit::amqp_port(),
        &vhost.name,
    ))
    .await;
    let reply = crate::support::wait_for("RabbitMQ to be connected", || async {
        let reply = gateway.get("/ready").await;
        (reply.json()["checks"]["rabbitmq"] == "ok").then_some(reply)
    })
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = reply.json();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["inventory"], "down");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("inventory"));

    // RabbitMQ down, inventory up.
    let gateway = spawn_app(config(&upstream.url, closed_port(), &vhost.name)).await;
    let reply = gateway.get("/ready").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = reply.json();
    assert_eq!(body["checks"]["inventory"], "ok");
    assert_eq!(body["checks"]["rabbitmq"], "down");
}

#[actix_web::test]
async fn unknown_paths_are_404_and_wrong_methods_405_in_json() {
    let upstream = spawn_upstream();
    let gateway = spawn_app(config(&upstream.url, closed_port(), "/")).await;
    for path in [
        "/",
        "/nope",
        "/api",
        "/api/billingX",
        "/api/openapi.json",
        "/health/x",
    ] {
        gateway.get(path).await.assert_error(404, "not_found", None);
    }
    for (method, path, allow) in [
        (Method::POST, "/health", "GET, HEAD"),
        (Method::PUT, "/ready", "GET, HEAD"),
        (Method::DELETE, "/api/openapi.yaml", "GET, HEAD"),
        (Method::PATCH, "/api/billing/", "POST"),
        (Method::TRACE, "/api/billing", "POST"),
    ] {
        let reply = send(gateway.request(method, path), None).await;
        reply.assert_error(405, "method_not_allowed", None);
        assert_eq!(reply.header("allow"), Some(allow), "{path}");
    }
    // HEAD is GET without the body.
    for (path, status) in [
        ("/health", 200),
        ("/api/openapi.yaml", 200),
        ("/ready", 503),
    ] {
        let reply = send(gateway.request(Method::HEAD, path), None).await;
        assert_eq!(reply.status.as_u16(), status, "HEAD {path}");
        assert!(reply.body.is_empty(), "HEAD {path} sent a body");
    }
    assert!(upstream.seen().is_empty());
}

#[actix_web::test]
async fn openapi_document_is_served_as_yaml() {
    let gateway = gateway_alone().await;
    let reply = gateway.get("/api/openapi.yaml").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type(), Some("application/yaml"));
    let text = reply.text();
    assert_eq!(
        text,
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml"))
            .unwrap()
    );
    assert!(
        text.starts_with("openapi: 3.0."),
        "{}",
        &text[..40.min(text.len())]
    );
    for path in [
        "/api/movies:",
        "/api/movies/{id}:",
        "/api/billing:",
        "/health:",
        "/ready:",
        "/api/openapi.yaml:",
    ] {
        assert!(
            text.contains(&format!("\n  {path}\n")),
            "{path} is not documented"
        );
    }
}

/// What actix's HTTP parser answers itself, before any middleware of ours
/// runs (docs/api.md, "Errors from the HTTP parser"): a bare status line,
/// `content-length: 0`, no `X-Request-Id`, and the connection closed. Pinned
/// here so that the documented exception is the one that holds.
#[actix_web::test]
async fn parser_errors_are_bare_statuses_as_documented() {
    let gateway = gateway_alone().await;
    // More header lines than actix parses (96); a head over its 128 KiB
    // buffer gets the same 431, but the client may see a reset instead, as
    // the server closes with unread bytes.
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n{}\r\n",
        (0..120)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: [(&str, &[u8], &str); 8] = [
        (
            "both Content-Length and Transfer-Encoding",
            b"POST /api/billing HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "400 Bad Request",
        ),
        (
            "a header line without a colon",
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nno-colon-here\r\n\r\n",
            "400 Bad Request",
        ),
        (
            "a method that is not a token",
            b"G(T /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            "400 Bad Request",
        ),
        (
            "a space in the request target",
            b"GET /api/movies /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            "400 Bad Request",
        ),
        (
            "an unusable Content-Length",
            b"POST /api/billing HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1x\r\n\r\n",
            "400 Bad Request",
        ),
        (
            "an unusable Transfer-Encoding",
            b"POST /api/billing HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "400 Bad Request",
        ),
        (
            "HTTP/1.1 without Host",
            b"GET /health HTTP/1.1\r\n\r\n",
            "400 Bad Request",
        ),
        (
            "more than 96 header lines",
            many_headers.as_bytes(),
            "431 Request Header Fields Too Large",
        ),
    ];
    for (what, request, status) in cases {
        let answer = crate::support::raw_exchange(gateway.port, request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{what}: {answer}"
        );
        let headers = crate::support::raw_headers(&answer);
        assert!(
            headers.contains(&("content-length".to_owned(), "0".to_owned())),
            "{what}: {answer}"
        );
        assert!(
            !headers.iter().any(|(name, _)| name == "x-request-id"),
            "{what}: {answer}"
        );
    }
    // A head that does not arrive in time: 408, the same bare answer.
    let mut settings = config(
        &format!("http://127.0.0.1:{}", closed_port()),
        closed_port(),
        "/",
    );
    settings.request_head_timeout_ms = 300;
    let slow = spawn_app(settings).await;
    let answer =
        crate::support::raw_exchange(slow.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await;
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    let headers = crate::support::raw_headers(&answer);
    assert!(
        headers.contains(&("content-length".to_owned(), "0".to_owned())),
        "{answer}"
    );
}
