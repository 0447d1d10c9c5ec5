//! `/health` and `/ready` reflect what the worker can do.

use crate::support::{closed_port, config, get_json, test_db, test_vhost, Worker};

#[actix_web::test]
async fn ready_when_consuming_and_the_database_answers() {
    let db = test_db();
    let vhost = test_vhost();
    let worker = Worker::start(config(&db, &vhost, 1000, 500));
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
    let db = test_db();
    let vhost = test_vhost();
    let mut cfg = config(&db, &vhost, 1000, 500);
    cfg.rabbitmq.port = closed_port();
    let worker = Worker::start(cfg);

    crate::support::eventually("the database to be seen up", || async {
        worker.ready().await.1["checks"]["postgres"] == "ok"
    })
    .await;
    let (status, body) = worker.ready().await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["rabbitmq"], "down");
    assert_eq!(get_json(worker.port, "/health").await.0, 200);

    worker.stop().await;
}

#[actix_web::test]
async fn not_ready_while_the_database_is_unreachable() {
    let db = test_db();
    let vhost = test_vhost();
    let mut cfg = config(&db, &vhost, 1000, 500);
    cfg.db.port = closed_port();
    let worker = Worker::start(cfg);

    let (status, body) = worker.ready().await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["postgres"], "down");
    assert_eq!(get_json(worker.port, "/health").await.0, 200);

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
    let db = test_db();
    let vhost = test_vhost();
    let worker = Worker::start(config(&db, &vhost, 1000, 500));
    worker.wait_ready().await;

    let answer = answer_while_holding(
        worker.port,
        b"CONNECT /health HTTP/1.1\r\nHost: w\r\n\r\n",
        b"",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    assert!(
        answer.contains("\"code\":\"connect_not_supported\""),
        "{answer}"
    );

    let answer = answer_while_holding(
        worker.port,
        b"GET /health HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    assert!(
        answer.contains("\"code\":\"upgrade_not_supported\""),
        "{answer}"
    );

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
