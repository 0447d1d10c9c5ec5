//! What one client can hold on the gateway (and on inventory, which applies
//! the same shared limits): bodies have a total deadline and a size limit,
//! CONNECT and Upgrade are refused unread, connections are capped, and
//! hundreds of slow uploads cost bounded memory while normal requests answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "api/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use support::inventory::{spawn_inventory, Inventory};
use support::upstream::{spawn_upstream, Upstream};
use support::{closed_port, config, raw_headers, rss_kib, spawn_app, TestApp, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn gateway_with(
    upstream: &Upstream,
    body_timeout_ms: u64,
    max_connections: usize,
) -> TestApp {
    let mut settings = config(&upstream.url, closed_port(), "/");
    settings.body_timeout_ms = body_timeout_ms;
    settings.max_connections = max_connections;
    spawn_app(settings).await
}

/// A real inventory-app (it applies the same limits, so the tests send it the
/// same bytes) and its port; it runs while the `Inventory` lives.
async fn inventory() -> (Inventory, u16) {
    let inventory = spawn_inventory().await;
    let port = inventory.url.rsplit(':').next().unwrap().parse().unwrap();
    (inventory, port)
}

/// Writes `head`, then keeps the connection open (the write side too) while
/// reading: what the server sends until it closes.
async fn answer_without_closing(port: u16, head: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(head).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server kept reading instead of answering")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[track_caller]
fn assert_json_error(response: &str, status: &str, code: &str) {
    assert!(
        response.starts_with(&format!("HTTP/1.1 {status}")),
        "{response}"
    );
    let headers = raw_headers(response);
    assert!(
        headers.contains(&("content-type".to_owned(), "application/json".to_owned())),
        "{response}"
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    assert_eq!(json["error"]["code"], code, "{response}");
}

#[actix_web::test]
async fn connect_and_upgrade_are_refused_before_the_body_is_read() {
    let upstream = spawn_upstream();
    let gateway = gateway_with(&upstream, 10_000, 1024).await;
    let (_inventory, inventory_port) = inventory().await;
    for port in [gateway.port, inventory_port] {
        let answer = answer_without_closing(
            port,
            b"CONNECT /api/movies HTTP/1.1\r\nHost: g\r\n\r\nwhatever follows is never read",
        )
        .await;
        assert_json_error(&answer, "501", "connect_not_supported");

        let answer = answer_without_closing(
            port,
            b"GET /api/movies HTTP/1.1\r\nHost: g\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await;
        assert_json_error(&answer, "501", "upgrade_not_supported");
        assert!(answer.contains("\"field\":\"Upgrade\""), "{answer}");
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    assert!(answer_without_closing(
        gateway.port,
        b"GET /api/movies/1 HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"
    )
    .await
    .starts_with("HTTP/1.1 200"));
}

#[actix_web::test]
async fn a_dribbled_body_gets_408_and_its_connection_closed() {
    let upstream = spawn_upstream();
    let gateway = gateway_with(&upstream, 1_000, 1024).await;
    let (_inventory, inventory_port) = inventory().await;

    // Part of a declared length, then silence.
    let answer = answer_without_closing(
        gateway.port,
        b"PUT /api/movies/1 HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"title\"",
    )
    .await;
    assert_json_error(&answer, "408", "request_timeout");
    assert!(answer.contains("x-request-id: "), "{answer}");

    // Chunked, one small chunk every 200 ms for ever: actix alone would read
    // (drain) it after any answer for as long as it comes.
    for port in [gateway.port, inventory_port] {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream
            .write_all(
                b"POST /api/movies HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .await
            .unwrap();
        let (mut read, mut write) = stream.into_split();
        let dribbler = tokio::spawn(async move {
            loop {
                if write.write_all(b"1\r\n \r\n").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let mut answer = Vec::new();
        tokio::time::timeout(PATIENCE, read.read_to_end(&mut answer))
            .await
            .expect("a dribbled chunked body held the connection")
            .ok();
        dribbler.abort();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        if port == gateway.port {
            assert_json_error(&answer, "408", "request_timeout");
        } else {
            // Inventory's deadline is the shared default (10 s); what counts
            // here is that it ends, with 408.
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        }
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
}

#[actix_web::test]
async fn the_connection_cap_holds_new_connections_until_one_is_free() {
    let upstream = spawn_upstream();
    // One worker, two connections.
    let gateway = gateway_with(&upstream, 2_000, 2).await;
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(("127.0.0.1", gateway.port))
            .await
            .unwrap();
        stream
            .write_all(b"PUT /api/movies/1 HTTP/1.1\r\nHost: g\r\nContent-Length: 10\r\n\r\n12")
            .await
            .unwrap();
        holders.push(tokio::spawn(async move {
            // The 408 is written before the gateway frees the connection
            // (it then reads and discards for a moment, and closes).
            let mut answer = vec![0u8; 4096];
            let n = stream.read(&mut answer).await.unwrap();
            let answered = Instant::now();
            answer.truncate(n);
            let _ = stream.read_to_end(&mut answer).await;
            (answered, String::from_utf8_lossy(&answer).into_owned())
        }));
    }
    // Give the gateway time to accept both before the third arrives (an
    // ordering aid, not an assertion: the check below is on the order).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = answer_without_closing(
        gateway.port,
        b"GET /health HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answered = Instant::now();
    assert!(third.starts_with("HTTP/1.1 200"), "{third}");
    let mut first_freed = None;
    for holder in holders {
        let (closed, answer) = tokio::time::timeout(PATIENCE, holder)
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        first_freed = Some(first_freed.map_or(closed, |t: Instant| t.min(closed)));
    }
    // The third connection waited in the backlog until a slot was freed.
    assert!(
        answered >= first_freed.unwrap(),
        "the third connection was served while two held the cap of two"
    );
}

/// What one slow upload saw: the answer, and how long after connecting the
/// gateway closed the connection.
struct Held {
    answer: String,
    closed_after: Duration,
}

/// Connects, sends a head announcing `Content-Length: 65536` (the most the
/// gateway accepts) and 60,000 bytes of it, then one byte a second: the
/// body a buffering proxy keeps in memory for as long as the client likes.
async fn slow_upload(port: u16) -> Held {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(b"PUT /api/movies/1 HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nContent-Length: 65536\r\n\r\n")
        .await
        .unwrap();
    stream.write_all(&vec![b' '; 60_000]).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let dribbler = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, read.read_to_end(&mut answer)).await;
    dribbler.abort();
    Held {
        answer: String::from_utf8_lossy(&answer).into_owned(),
        closed_after: started.elapsed(),
    }
}

#[actix_web::test]
async fn hundreds_of_slow_uploads_cost_bounded_memory_and_are_all_closed() {
    const UPLOADS: usize = 300;
    let upstream = spawn_upstream();
    let deadline = Duration::from_secs(3);
    let gateway = gateway_with(&upstream, 3_000, 1024).await;
    assert_eq!(
        gateway.get("/api/movies/warm-up").await.status,
        StatusCode::OK
    );
    let before = rss_kib();

    let uploads: Vec<_> = (0..UPLOADS)
        .map(|_| tokio::spawn(slow_upload(gateway.port)))
        .collect();
    // While they are held: normal requests answer, and memory stays bounded.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut peak = rss_kib();
    for i in 0..20 {
        let reply = gateway.get(&format!("/api/movies/normal-{i}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        peak = peak.max(rss_kib());
    }
    let mut held = Vec::new();
    for upload in uploads {
        held.push(upload.await.unwrap());
        peak = peak.max(rss_kib());
    }

    for h in &held {
        assert!(h.answer.starts_with("HTTP/1.1 408"), "{}", h.answer);
    }
    // Every connection was closed by the gateway: within the deadline plus a
    // generous margin for a loaded machine (the old gateway never closed
    // them; the timeout above bounds the wait at PATIENCE).
    let slowest = held.iter().map(|h| h.closed_after).max().unwrap();
    assert!(
        slowest < deadline + Duration::from_secs(20),
        "a slow upload was held for {slowest:?}"
    );
    // 300 bodies of 60,000 bytes are 17 MiB; the old 1 MiB limit and no
    // deadline let such clients take hundreds of MiB. The bound leaves room
    // for allocator slack and the test's own clients.
    let grown_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 96,
        "RSS grew by {grown_mib} MiB for {UPLOADS} uploads"
    );
    assert!(upstream.seen().iter().all(|s| s.method == "GET"));
    eprintln!("{UPLOADS} slow uploads: RSS {before} KiB before, peak {peak} KiB, slowest close {slowest:?}");
}

/// Opens `connections` connections to `port`, each sending `requests`
/// pipelined `GET path` and never reading an answer, and returns how much
/// this process's RSS grew (KiB, the peak over a few seconds) while they are
/// held open. The writers may block (a server that stops reading is the
/// point), so they run in tasks of their own and are aborted at the end.
async fn pipelined_growth_kib(port: u16, connections: usize, requests: usize, path: &str) -> u64 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let burst = request.repeat(requests).into_bytes();
    let before = rss_kib();
    let mut streams = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..connections {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (read, mut write) = stream.into_split();
        // The read half is kept (not read): the socket stays open.
        streams.push(read);
        let burst = burst.clone();
        writers.push(tokio::spawn(async move {
            let _ = write.write_all(&burst).await;
            // Keep the write half open too, as a client waiting would.
            std::future::pending::<()>().await;
            drop(write);
        }));
    }
    // The server works through what it was sent; sample its peak.
    let mut peak = rss_kib();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(rss_kib());
    }
    for writer in writers {
        writer.abort();
    }
    drop(streams);
    peak.saturating_sub(before)
}

/// One client pipelining thousands of requests and never reading once made
/// the gateway (and inventory, on the same server code) hold every request
/// it had read, decoded at once: 20 connections × 8,000 requests took the
/// gateway from 45 MB to 474 MB. actix-http now decodes at most 16 ahead per
/// connection, and stops reading while the client leaves answers unread.
/// The gateway's upstream is the real inventory here (a test upstream would
/// keep a record of every request it saw, and be measured with them).
#[actix_web::test]
async fn pipelined_requests_never_read_cost_bounded_memory() {
    const CONNECTIONS: usize = 20;
    const REQUESTS: usize = 8_000;
    let (inventory, inventory_port) = inventory().await;
    let mut settings = config(&inventory.url, closed_port(), "/");
    settings.max_connections = 1024;
    let gateway = spawn_app(settings).await;
    // Warm both (inventory's migrations, the gateway's pool to it) first.
    support::wait_for("inventory through the gateway", || async {
        let status = gateway.get("/api/movies/1").await.status;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    for (name, port) in [("gateway", gateway.port), ("inventory", inventory_port)] {
        let grown = pipelined_growth_kib(port, CONNECTIONS, REQUESTS, "/api/movies/1").await;
        eprintln!("{name}: {CONNECTIONS} connections × {REQUESTS} pipelined requests never read: RSS +{grown} KiB");
        assert!(
            grown < 30 * 1024,
            "{name}: RSS grew by {} MiB for {CONNECTIONS} connections × {REQUESTS} pipelined requests",
            grown / 1024
        );
        // The server still answers others.
        let answer = answer_without_closing(
            port,
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{name}: {answer}");
    }
}
