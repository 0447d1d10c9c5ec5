//! `/health` and `/ready` reflect what the worker can do.

use crate::support::{
    closed_port, config, get_json, spawn_app, test_db, test_vhost, TestApp, TestDb, TestVhost,
};
use billing_worker::config::Config;

/// A worker on a database and vhost of its own (kept while it runs), its
/// configuration changed by `change` (e.g. a dependency behind a closed port).
fn worker_with(change: impl FnOnce(&mut Config)) -> (TestDb, TestVhost, TestApp) {
    let db = test_db();
    let vhost = test_vhost();
    let mut cfg = config(&db, &vhost, 1000, 500);
    change(&mut cfg);
    let worker = spawn_app(cfg);
    (db, vhost, worker)
}

/// `/ready` answers 503 `not_ready` with `check` down, while `/health`
/// answers 200.
async fn assert_not_ready_for(worker: &TestApp, check: &str) {
    let (status, body) = worker.ready().await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"][check], "down");
    assert_eq!(get_json(worker.port, "/health").await.0, 200);
}

#[actix_web::test]
async fn ready_when_consuming_and_the_database_answers() {
    let (_db, _vhost, worker) = worker_with(|_| {});
    worker.wait_ready().await;

    let (status, body) = worker.ready().await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["rabbitmq"], "ok");
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(body["orders"]["stored"], 0);

    let (status, body) = worker.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");

    let (status, body) = worker.get("/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");

    let resp = awc::Client::default()
        .post(format!("http://127.0.0.1:{}/ready", worker.port))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers().get("allow").unwrap(), "GET, HEAD");

    // HEAD is GET without the body.
    for path in ["/health", "/ready"] {
        let mut resp = awc::Client::default()
            .head(format!("http://127.0.0.1:{}{path}", worker.port))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "HEAD {path}");
        assert!(
            resp.body().await.unwrap().is_empty(),
            "HEAD {path} sent a body"
        );
    }

    worker.stop().await;
}

#[actix_web::test]
async fn not_ready_while_rabbitmq_is_unreachable() {
    let (_db, _vhost, worker) = worker_with(|cfg| cfg.rabbitmq.port = closed_port());

    crate::support::eventually("the database to be seen up", || async {
        worker.ready().await.1["checks"]["postgres"] == "ok"
    })
    .await;
    assert_not_ready_for(&worker, "rabbitmq").await;

    worker.stop().await;
}

#[actix_web::test]
async fn not_ready_while_the_database_is_unreachable() {
    let (_db, _vhost, worker) = worker_with(|cfg| cfg.db.port = closed_port());

    assert_not_ready_for(&worker, "postgres").await;

    // And it still stops promptly although the database never came up.
    worker.stop().await;
}

/// Writes `request` and reads what the server sends until it closes, while
/// keeping the write side open (and dribbling `dribble`, if any, every
/// 200 ms): the answer must come from the server, not from our EOF.
async fn answer_while_holding(port: u16, request: &'static [u8], dribble: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(request).await.unwrap();
    let dribbler = tokio::spawn(async move {
        while !dribble.is_empty() && write.write_all(dribble).await.is_ok() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        // Holds the write half open until aborted.
        std::future::pending::<()>().await;
    });
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(45),
        read.read_to_end(&mut answer),
    )
    .await
    .expect("the health port held the connection")
    .ok();
    dribbler.abort();
    String::from_utf8_lossy(&answer).into_owned()
}

#[actix_web::test]
async fn the_health_port_refuses_connect_and_upgrade_and_bounds_bodies() {
    let (_db, _vhost, worker) = worker_with(|_| {});
    worker.wait_ready().await;

    for (head, code) in [
        (
            &b"CONNECT /health HTTP/1.1\r\nHost: w\r\n\r\n"[..],
            "connect_not_supported",
        ),
        (
            b"GET /health HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "upgrade_not_supported",
        ),
    ] {
        let answer = answer_while_holding(worker.port, head, b"").await;
        assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
        assert!(answer.contains(&format!("\"code\":\"{code}\"")), "{answer}");
    }

    // A chunked body dribbled for ever to a route that does not read it:
    // answered, and the connection closed (actix alone would keep reading).
    let answer = answer_while_holding(
        worker.port,
        b"GET /health HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"1\r\n \r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    worker.stop().await;
}
