//! Proxied answers are streamed: any size arrives whole, a stall upstream is
//! cut and logged, a client that leaves or reads slowly holds nothing
//! upstream, and no client-sent request id can forge a log token.
//! A test binary of its own, as it installs the process-wide logger.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::inventory::spawn_inventory;
use crate::support::upstream::{spawn_upstream, Upstream};
use crate::support::{
    capture, client, closed_port, config, raw_exchange, send, spawn_app, wait_for, TestApp,
    PATIENCE,
};
use actix_web::http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The gateway's old whole-body buffer, which large listings overflowed.
const OLD_BUFFER: usize = 16 * 1024 * 1024;

#[actix_web::test]
async fn a_listing_larger_than_the_old_16_mib_buffer_arrives_complete() {
    let inventory = spawn_inventory().await;
    let seeded = inventory.execute(
        "INSERT INTO movies (title, description) \
         SELECT 'Movie ' || g, repeat('a long enough description ', 2) \
         FROM generate_series(1, 300000) AS g",
    );
    assert_eq!(seeded, 300_000);
    // The head deadline is not under test here: an inventory that builds the
    // whole answer before its head (a debug build, on a loaded machine) may
    // take longer than the default 5 s for 300,000 rows.
    let mut settings = config(&inventory.url, closed_port(), "/");
    settings.inventory_timeout_ms = 120_000;
    let gateway = spawn_app(settings).await;

    let direct = send(client().get(format!("{}/api/movies", inventory.url)), None).await;
    let through = gateway.get("/api/movies").await;
    assert_eq!(through.status, StatusCode::OK, "{:?}", through.headers);
    assert!(
        through.body.len() > OLD_BUFFER,
        "{} bytes",
        through.body.len()
    );
    assert_eq!(through.content_type(), direct.content_type());
    // Byte for byte what inventory sends, and a complete JSON array.
    assert!(through.body == direct.body, "the bodies differ");
    let movies: Vec<serde_json::Value> = serde_json::from_slice(&through.body).unwrap();
    assert_eq!(movies.len(), 300_000);
    assert_eq!(movies[0]["title"], "Movie 1");
    assert_eq!(movies[299_999]["title"], "Movie 300000");
}

/// Reads everything the server sends until it closes the connection.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the gateway neither finished nor cut the response")
        .unwrap();
    answer
}

/// A raw connection to the gateway with `GET path` sent (plus `headers`,
/// each ending in CRLF), for the tests that read an answer at their own pace.
async fn raw_get(port: u16, path: &str, headers: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: g\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// A gateway in front of a fake inventory, and a client that has asked it
/// for `/api/movies/endless` (a body that never ends).
async fn endless_stream() -> (Upstream, TestApp, tokio::net::TcpStream) {
    let upstream = spawn_upstream();
    let gateway = spawn_app(config(&upstream.url, closed_port(), "/")).await;
    let stream = raw_get(gateway.port, "/api/movies/endless", "").await;
    (upstream, gateway, stream)
}

/// Reads at least `bytes` bytes; panics with `closed` if the gateway closes first.
async fn read_at_least(stream: &mut tokio::net::TcpStream, bytes: usize, closed: &str) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < bytes {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "{closed}");
        got += n;
    }
}

#[actix_web::test]
async fn an_upstream_stalling_mid_stream_is_cut_and_logged() {
    capture::install();
    let upstream = spawn_upstream();
    let mut settings = config(&upstream.url, closed_port(), "/");
    settings.inventory_idle_timeout_ms = 500;
    let gateway = spawn_app(settings).await;

    let mut stream = raw_get(
        gateway.port,
        "/api/movies/stall",
        "X-Request-Id: stall-1\r\n",
    )
    .await;
    let answer = String::from_utf8(read_until_closed(&mut stream).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{answer}"
    );
    assert!(answer.contains("first chunk;"), "{answer}");
    // Cut, not ended: no last chunk, so no client takes it for whole.
    assert!(!answer.ends_with("0\r\n\r\n"), "{answer:?}");

    let cut = wait_for("the log line of the cut", || async {
        let lines = capture::lines_with(" request_id=stall-1");
        lines.into_iter().find(|l| {
            l.contains("GET /api/movies/stall: ") && l.contains(" event=response_cut trace_id=")
        })
    })
    .await;
    assert!(cut.starts_with("WARN"), "{cut}");
    assert!(cut.contains("sent nothing for 500 ms"), "{cut}");
    assert!(cut.contains("after 12 bytes"), "{cut}");

    // The gateway serves on.
    assert_eq!(gateway.get("/api/movies/1").await.status, StatusCode::OK);
}

#[actix_web::test]
async fn a_client_leaving_mid_stream_frees_the_upstream_side() {
    let (upstream, gateway, mut stream) = endless_stream().await;
    read_at_least(
        &mut stream,
        1024 * 1024,
        "the gateway closed an endless response",
    )
    .await;
    assert_eq!(upstream.endless.dropped.load(Ordering::SeqCst), 0);
    drop(stream);

    // The gateway drops its side, so the upstream's write fails and actix
    // drops the stream: nothing keeps producing for a client that is gone.
    wait_for("the upstream stream to be dropped", || async {
        (upstream.endless.dropped.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert_eq!(gateway.get("/api/movies/1").await.status, StatusCode::OK);
}

#[actix_web::test]
async fn a_client_that_does_not_read_holds_back_the_upstream() {
    let (upstream, _gateway, mut stream) = endless_stream().await;
    let mut head = [0u8; 1024];
    assert!(stream.read(&mut head).await.unwrap() > 0);

    // Then the client reads nothing. Without backpressure the gateway would
    // pull the endless body at memory speed; with it, production stops once
    // the socket buffers on both sides are full (a few MiB on loopback).
    // The idle timeout does not fire: the gateway is not waiting for
    // inventory, the client is.
    wait_for("the upstream to start streaming", || async {
        (upstream.endless.bytes.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    let produced = upstream.endless.bytes.load(Ordering::SeqCst);
    assert!(
        produced < 64 * 1024 * 1024,
        "{produced} bytes produced for a client that reads nothing"
    );
    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
    let later = upstream.endless.bytes.load(Ordering::SeqCst);
    assert!(later < 64 * 1024 * 1024, "{later} bytes");

    // The response is still alive and resumes when the client reads.
    read_at_least(
        &mut stream,
        16 * 1024 * 1024,
        "the response was cut while the client was slow",
    )
    .await;
    assert!(upstream.endless.bytes.load(Ordering::SeqCst) > later);
}

#[actix_web::test]
async fn a_forged_request_id_never_reaches_a_log_line() {
    capture::install();
    // Inventory down: the request fails, so the gateway logs an error line
    // as well as the access line.
    let gateway = spawn_app(config(
        &format!("http://127.0.0.1:{}", closed_port()),
        closed_port(),
        "/",
    ))
    .await;
    let forged = "a\" b=c";
    let req = gateway
        .request(Method::GET, "/api/movies/forged-id-probe")
        .insert_header(("x-request-id", forged));
    let reply = send(req, None).await;
    reply.assert_error(502, "upstream_unavailable", None);
    let id = reply.header("x-request-id").unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");

    let mine = wait_for("the request's access line", || async {
        let lines = capture::lines_with("/api/movies/forged-id-probe");
        (lines.iter().any(|l| l.contains("api_gateway::access"))).then_some(lines)
    })
    .await;
    assert!(mine.len() >= 2, "{mine:#?}");
    for line in &mine {
        assert!(line.contains(&format!("request_id={id}")), "{line}");
    }
    for line in capture::all_lines() {
        assert!(
            !line.contains("b=c") && !line.contains("a\""),
            "a client's id reached the log: {line}"
        );
    }

    // A safe id is kept as sent.
    let response = raw_exchange(
        gateway.port,
        b"GET /health HTTP/1.1\r\nHost: g\r\nX-Request-Id: Ab9._-z\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.contains("x-request-id: Ab9._-z\r\n"), "{response}");
}

/// A path is logged escaped: `x%20request_id=FORGED` in a path once put a
/// `request_id=FORGED` token in the access line, which `grep request_id=…`
/// then matched as the request's id.
#[actix_web::test]
async fn a_path_never_forges_a_request_id_token() {
    capture::install();
    let upstream = crate::support::upstream::spawn_upstream();
    let gateway = spawn_app(config(&upstream.url, closed_port(), "/")).await;
    let answer = raw_exchange(
        gateway.port,
        b"GET /api/movies/path-probe%20request_id=FORGED-PATH HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mine = wait_for("the request's access line", || async {
        let lines = capture::lines_with("/api/movies/path-probe");
        (lines.iter().any(|l| l.contains("api_gateway::access"))).then_some(lines)
    })
    .await;
    for line in &mine {
        assert!(
            line.contains("/api/movies/path-probe%20request_id%3DFORGED-PATH "),
            "{line}"
        );
    }
    for line in capture::all_lines() {
        assert!(
            !line.contains("request_id=FORGED-PATH"),
            "a path forged a request_id token: {line}"
        );
    }
}
