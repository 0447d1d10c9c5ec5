//! `/health` and `/ready` reflect what the worker can do.

use crate::support::{closed_port, config, get_json, TestDb, TestVhost, Worker};

#[actix_web::test]
async fn ready_when_consuming_and_the_database_answers() {
    let db = TestDb::create();
    let vhost = TestVhost::create().await;
    let worker = Worker::start(config(&db, &vhost, 1000, 500));
    worker.wait_ready().await;

    let (status, body) = worker.ready().await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["rabbitmq"], "up");
    assert_eq!(body["database"], "up");
    assert_eq!(body["orders"]["stored"], 0);

    let (status, body) = worker.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "up");

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
    let db = TestDb::create();
    let vhost = TestVhost::create().await;
    let mut cfg = config(&db, &vhost, 1000, 500);
    cfg.rabbitmq_port = closed_port();
    let worker = Worker::start(cfg);

    crate::support::eventually("the database to be seen up", || async {
        worker.ready().await.1["database"] == "up"
    })
    .await;
    let (status, body) = worker.ready().await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["rabbitmq"], "down");
    assert_eq!(get_json(worker.port, "/health").await.0, 200);

    worker.stop().await;
}

#[actix_web::test]
async fn not_ready_while_the_database_is_unreachable() {
    let db = TestDb::create();
    let vhost = TestVhost::create().await;
    let mut cfg = config(&db, &vhost, 1000, 500);
    cfg.db_port = closed_port();
    let worker = Worker::start(cfg);

    let (status, body) = worker.ready().await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["database"], "down");
    assert_eq!(get_json(worker.port, "/health").await.0, 200);

    // And it still stops promptly although the database never came up.
    worker.stop().await;
}
