//! `/api/movies*` against a stand-in upstream that records what it received
//! and answers what the test asks for.

use crate::support::upstream::{
    spawn_closing_keepalive_upstream, spawn_raw_upstream, spawn_upstream, spawn_upstream_on,
    Upstream,
};
use crate::support::{closed_port, config, raw_exchange, raw_headers, send, spawn_app, TestApp};
use actix_web::http::{Method, StatusCode};

/// A gateway in front of `upstream`; RabbitMQ is not needed here.
async fn gateway_for(upstream: &Upstream) -> TestApp {
    spawn_app(config(&upstream.url, closed_port(), "/")).await
}

#[actix_web::test]
async fn every_status_body_and_content_type_passes_unchanged() {
    let upstream = spawn_upstream();
    let gateway = gateway_for(&upstream).await;
    let cases: &[(u16, Option<&str>, &str)] = &[
        (200, Some("application/json"), r#"{"id":1,"title":"Alien"}"#),
        (201, Some("application/json"), r#"{"id":2}"#),
        (204, None, ""),
        (
            400,
            Some("application/json"),
            r#"{"error":{"code":"validation_failed","message":"m","field":"title"}}"#,
        ),
        // Non-JSON errors must not be rewritten into the gateway's format.
        (
            404,
            Some("text/html; charset=utf-8"),
            "<h1>no such movie</h1>",
        ),
        (405, Some("text/plain"), "method not allowed here"),
        (
            409,
            Some("application/problem+json"),
            r#"{"title":"conflict"}"#,
        ),
        (
            413,
            Some("application/json"),
            r#"{"error":{"code":"payload_too_large","message":"m"}}"#,
        ),
        (415, None, "no content type at all"),
        (500, Some("text/plain; charset=utf-8"), "boom"),
        (502, Some("text/plain"), "inventory's own 502"),
        (
            503,
            Some("application/json"),
            r#"{"error":{"code":"database_unavailable","message":"m"}}"#,
        ),
    ];
    for &(code, content_type, body) in cases {
        let mut query = vec![("body", body)];
        if let Some(ct) = content_type {
            query.push(("ct", ct));
        }
        let path = format!("/api/movies/status/{code}");
        let req = gateway.request(Method::GET, &path).query(&query).unwrap();
        let reply = send(req, None).await;
        assert_eq!(reply.status.as_u16(), code, "{reply:?}");
        assert_eq!(reply.content_type(), content_type, "{code}: {reply:?}");
        assert_eq!(reply.text(), body, "{code}: {reply:?}");
        assert!(reply.header("x-request-id").is_some(), "{reply:?}");
    }
    assert_eq!(upstream.seen().len(), cases.len());
}

#[actix_web::test]
async fn method_path_query_headers_and_body_are_forwarded() {
    let upstream = spawn_upstream();
    let gateway = gateway_for(&upstream).await;
    let path = "/api/movies/42/x?title=a%20b&limit=3&title=c";
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        let body = format!("{{\"sent_with\":\"{method}\",\"not\":\"validated\"");
        let req = gateway
            .request(method.clone(), path)
            .insert_header(("content-type", "application/json; charset=utf-8"))
            .insert_header(("accept", "application/json"))
            .insert_header(("x-custom", "kept"));
        let reply = send(req, Some(body.clone().into_bytes())).await;
        assert_eq!(reply.status, StatusCode::OK, "{method}: {reply:?}");
        assert_eq!(reply.content_type(), Some("application/vnd.echo+json"));
        assert_eq!(reply.header("x-upstream"), Some("echo"));

        let seen = upstream.last();
        assert_eq!(seen.method, method.as_str());
        assert_eq!(seen.path_and_query, path);
        assert_eq!(seen.body, body.as_bytes(), "{method}");
        assert_eq!(
            seen.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(seen.header("accept"), Some("application/json"));
        assert_eq!(seen.header("x-custom"), Some("kept"));
        assert_eq!(
            seen.header("content-length"),
            Some(body.len().to_string().as_str())
        );
        // Host names inventory, not the gateway.
        assert_eq!(
            seen.header("host"),
            Some(format!("127.0.0.1:{}", upstream.port).as_str())
        );
    }

    let reply = send(gateway.request(Method::HEAD, "/api/movies"), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.is_empty());
    assert_eq!(upstream.last().method, "HEAD");
}

#[actix_web::test]
async fn bare_prefix_and_trailing_slashes_are_proxied_as_sent() {
    let upstream = spawn_upstream();
    let gateway = gateway_for(&upstream).await;
    for path in [
        "/api/movies",
        "/api/movies/",
        "/api/movies/7",
        "/api/movies/7/",
    ] {
        let reply = gateway.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
        assert_eq!(upstream.last().path_and_query, path);
    }
    let before = upstream.seen().len();
    for path in ["/api/moviesX", "/api/movie", "/api"] {
        gateway.get(path).await.assert_error(404, "not_found", None);
    }
    assert_eq!(
        upstream.seen().len(),
        before,
        "the upstream saw a non-movie path"
    );
}

#[actix_web::test]
async fn client_request_id_is_kept_forwarded_and_returned() {
    let upstream = spawn_upstream();
    let gateway = gateway_for(&upstream).await;
    let req = gateway
        .request(Method::GET, "/api/movies")
        .insert_header(("x-request-id", "client-chosen-42"));
    let reply = send(req, None).await;
    assert_eq!(reply.header("x-request-id"), Some("client-chosen-42"));
    assert_eq!(
        upstream.last().header("x-request-id"),
        Some("client-chosen-42")
    );
}

#[actix_web::test]
async fn missing_request_id_is_generated_and_forwarded() {
    let upstream = spawn_upstream();
    let gateway = gateway_for(&upstream).await;
    let reply = gateway.get("/api/movies").await;
    let id = reply
        .header("x-request-id")
        .expect("a request id")
        .to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(upstream.last().header("x-request-id"), Some(id.as_str()));

    let other = gateway.get("/api/movies").await;
    assert_ne!(other.header("x-request-id"), Some(id.as_str()));
}

#[actix_web::test]
async fn absurd_request_ids_are_replaced() {
    let upstream = spawn_upstream();
    let gateway = gateway_for(&upstream).await;
    let too_long = "x".repeat(129);
    for bad in [too_long.as_str(), "has spaces in it", ""] {
        let req = gateway
            .request(Method::GET, "/api/movies")
            .insert_header(("x-request-id", bad));
        let reply = send(req, None).await;
        let id = reply.header("x-request-id").unwrap();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        assert_eq!(upstream.last().all("x-request-id"), vec![id]);
    }
}

#[actix_web::test]
async fn forwarded_for_is_added_or_appended() {
    let upstream = spawn_upstream();
    let gateway = gateway_for(&upstream).await;
    gateway.get("/api/movies").await;
    assert_eq!(upstream.last().header("x-forwarded-for"), Some("127.0.0.1"));

    let req = gateway
        .request(Method::GET, "/api/movies")
        .insert_header(("x-forwarded-for", "203.0.113.7"));
    send(req, None).await;
    assert_eq!(
        upstream.last().header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
}

#[actix_web::test]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    let upstream = spawn_upstream();
    let gateway = gateway_for(&upstream).await;
    let request = "GET /api/movies/hop HTTP/1.1\r\n\
                   Host: gateway\r\n\
                   Connection: close, X-Secret-Hop\r\n\
                   X-Secret-Hop: must-not-pass\r\n\
                   Keep-Alive: timeout=5\r\n\
                   TE: trailers\r\n\
                   Trailer: X-Checksum\r\n\
                   Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
                   Proxy-Connection: keep-alive\r\n\
                   X-End-To-End: passes\r\n\
                   \r\n";
    let response = raw_exchange(gateway.port, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let seen = upstream.last();
    for name in [
        "x-secret-hop",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert_eq!(seen.all(name), Vec::<&str>::new(), "{name} was forwarded");
    }
    // awc may add its own `connection` header, but never the client's.
    assert!(
        seen.all("connection")
            .iter()
            .all(|v| !v.contains("X-Secret")),
        "{seen:?}"
    );
    assert_eq!(seen.header("x-end-to-end"), Some("passes"));
}

#[actix_web::test]
async fn hop_by_hop_response_headers_are_not_returned() {
    let port = spawn_raw_upstream(
        "HTTP/1.1 201 Created\r\n\
         Content-Type: text/plain\r\n\
         Connection: close, X-Upstream-Hop\r\n\
         X-Upstream-Hop: must-not-pass\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Authenticate: Basic realm=\"inventory\"\r\n\
         Upgrade: h2c\r\n\
         X-End-To-End: passes\r\n\
         Content-Length: 5\r\n\
         \r\n\
         hello",
    )
    .await;
    let gateway = spawn_app(config(
        &format!("http://127.0.0.1:{port}"),
        closed_port(),
        "/",
    ))
    .await;
    let request = "GET /api/movies HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n";
    let response = raw_exchange(gateway.port, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.ends_with("\r\n\r\nhello"), "{response}");
    let headers = raw_headers(&response);
    let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    for name in [
        "x-upstream-hop",
        "keep-alive",
        "proxy-authenticate",
        "upgrade",
    ] {
        assert!(!names.contains(&name), "{name} was returned: {response}");
    }
    assert!(
        headers
            .iter()
            .all(|(k, v)| k != "connection" || !v.contains("X-Upstream-Hop")),
        "{response}"
    );
    assert!(headers.contains(&("x-end-to-end".to_owned(), "passes".to_owned())));
    assert!(headers.contains(&("content-type".to_owned(), "text/plain".to_owned())));
}

#[actix_web::test]
async fn unreachable_inventory_is_502_and_recovers_without_restart() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let gateway = spawn_app(config(
        &format!("http://127.0.0.1:{port}"),
        closed_port(),
        "/",
    ))
    .await;
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let reply = send(gateway.request(method.clone(), "/api/movies/1"), None).await;
        reply.assert_error(502, "upstream_unavailable", None);
    }

    // Inventory comes (back) on the same address: served at once.
    let upstream = spawn_upstream_on(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    let reply = gateway.get("/api/movies/1").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(upstream.last().path_and_query, "/api/movies/1");
}

#[actix_web::test]
async fn restarted_inventory_is_served_without_a_502_from_stale_pooled_connections() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = spawn_upstream_on(listener);
    let gateway = gateway_for(&upstream).await;
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let reply = send(gateway.request(method, "/api/movies/1"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }

    upstream.stop().await;
    let restarted = spawn_upstream_on(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let reply = send(gateway.request(method.clone(), "/api/movies/2"), None).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{method} after restart: {reply:?}"
        );
        assert_eq!(restarted.last().method, method.as_str());
    }
}

#[actix_web::test]
async fn a_reused_connection_closed_by_inventory_is_retried_only_for_idempotent_methods() {
    let (port, accepted) = spawn_closing_keepalive_upstream().await;
    let gateway = spawn_app(config(
        &format!("http://127.0.0.1:{port}"),
        closed_port(),
        "/",
    ))
    .await;
    let first = gateway.get("/api/movies/1").await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    // Goes out on the pooled connection, which inventory drops: retried on
    // a new one.
    let second = gateway.get("/api/movies/1").await;
    assert_eq!(second.status, StatusCode::OK, "{second:?}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);

    // A POST may have been processed before the connection dropped: not
    // retried, reported as 502.
    let req = gateway
        .request(Method::POST, "/api/movies")
        .insert_header(("content-type", "application/json"));
    send(req, Some(b"{}".to_vec()))
        .await
        .assert_error(502, "upstream_unavailable", None);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[actix_web::test]
async fn stalled_inventory_is_504_and_the_gateway_keeps_serving() {
    let upstream = spawn_upstream();
    let mut settings = config(&upstream.url, closed_port(), "/");
    settings.inventory_timeout_ms = 300;
    let gateway = spawn_app(settings).await;

    let req = gateway
        .request(Method::GET, "/api/movies/slow")
        .insert_header(("x-request-id", "slow-one"));
    let reply = send(req, None).await;
    reply.assert_error(504, "upstream_timeout", None);
    assert_eq!(reply.header("x-request-id"), Some("slow-one"));

    let reply = gateway.get("/api/movies/fast").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

#[actix_web::test]
async fn request_bodies_over_inventorys_limit_are_refused_before_forwarding() {
    let upstream = spawn_upstream();
    let gateway = gateway_for(&upstream).await;
    let limit = api_gateway::proxy::MAX_REQUEST_BODY;

    let req = gateway
        .request(Method::POST, "/api/movies")
        .insert_header(("content-type", "application/json"));
    let reply = send(req, Some(vec![b'a'; limit])).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(upstream.last().body.len(), limit);

    let before = upstream.seen().len();
    let req = gateway
        .request(Method::POST, "/api/movies")
        .insert_header(("content-type", "application/json"));
    send(req, Some(vec![b'a'; limit + 1]))
        .await
        .assert_error(413, "payload_too_large", None);

    // Without a Content-Length (chunked), the limit holds while streaming.
    let chunks = futures_util::stream::iter(
        (0..5).map(|_| Ok::<_, std::io::Error>(actix_web::web::Bytes::from(vec![b'b'; 20_000]))),
    );
    let reply = gateway
        .request(Method::PUT, "/api/movies/1")
        .send_stream(chunks)
        .await
        .unwrap()
        .status();
    assert_eq!(reply, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        upstream.seen().len(),
        before,
        "an oversized body was forwarded"
    );
}

#[actix_web::test]
async fn gateway_errors_carry_the_client_request_id() {
    let gateway = spawn_app(config(
        &format!("http://127.0.0.1:{}", closed_port()),
        closed_port(),
        "/",
    ))
    .await;
    for (method, path, status) in [
        (Method::GET, "/api/movies", 502),
        (Method::GET, "/nowhere", 404),
        (Method::DELETE, "/health", 405),
        (Method::POST, "/api/billing", 415),
    ] {
        let req = gateway
            .request(method, path)
            .insert_header(("x-request-id", "err-id-1"));
        let reply = send(req, None).await;
        assert_eq!(reply.status.as_u16(), status, "{path}: {reply:?}");
        assert_eq!(reply.header("x-request-id"), Some("err-id-1"), "{path}");
        assert_eq!(reply.content_type(), Some("application/json"), "{path}");
    }
}

#[actix_web::test]
async fn chunked_answers_stream_through_and_a_pipelined_head_of_one_keeps_the_connection_in_sync() {
    let upstream = spawn_upstream();
    let gateway = gateway_for(&upstream).await;
    let reply = gateway.get("/api/movies/chunked").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.text(), "[1,2,3]");

    // Unknown length: the HEAD's answer has no framing header and no body
    // (not even a last chunk), and the GET behind it is answered.
    let requests = "HEAD /api/movies/chunked HTTP/1.1\r\nHost: g\r\n\r\n\
                    GET /api/movies/chunked HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n";
    let response = raw_exchange(gateway.port, requests.as_bytes()).await;
    let (head_answer, rest) = response.split_once("\r\n\r\n").unwrap();
    assert!(head_answer.starts_with("HTTP/1.1 200"), "{response}");
    assert!(rest.starts_with("HTTP/1.1 200"), "{response:?}");
    assert!(
        rest.ends_with("\r\n\r\n3\r\n[1,\r\n2\r\n2,\r\n2\r\n3]\r\n0\r\n\r\n"),
        "{rest:?}"
    );
}
