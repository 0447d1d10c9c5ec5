//! `GATEWAY_INVENTORY_URL` as a comma list: the gateway spreads requests
//! over every inventory endpoint, skips one that fails, sends a request that
//! failed before any response byte again to another, and takes an endpoint
//! back once its `/health` answers.

use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use api_gateway::Application;
use test_support::metrics::must;

use crate::support::upstream::{spawn_raw_upstream, spawn_upstream, spawn_upstream_on, Upstream};
use crate::support::{closed_port, config, send, spawn_app, wait_for, TestApp};

async fn gateway_over(urls: &[String]) -> TestApp {
    spawn_app(config(&urls.join(","), closed_port(), "/")).await
}

/// Requests for movies each upstream has seen (probes are not recorded).
fn counts(upstreams: &[&Upstream]) -> Vec<usize> {
    upstreams.iter().map(|u| u.seen().len()).collect()
}

async fn metrics_page(gateway: &TestApp) -> String {
    let mut resp = gateway
        .client
        .get(&gateway.metrics_url)
        .send()
        .await
        .unwrap();
    String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap()
}

#[actix_web::test]
async fn requests_are_spread_round_robin() {
    let a = spawn_upstream();
    let b = spawn_upstream();
    let gateway = gateway_over(&[a.url.clone(), b.url.clone()]).await;
    for i in 0..20 {
        let reply = gateway.get(&format!("/api/movies/{i}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
    assert_eq!(counts(&[&a, &b]), [10, 10]);
    for u in [&a, &b] {
        assert_eq!(
            u.last().header("host"),
            Some(format!("127.0.0.1:{}", u.port).as_str())
        );
    }

    let page = metrics_page(&gateway).await;
    assert_eq!(
        must(&page, r#"gateway_inventory_endpoints{state="down"}"#),
        0.0,
        "{page}"
    );
    assert!(
        must(&page, r#"gateway_inventory_endpoints{state="up"}"#) >= 2.0,
        "{page}"
    );
    assert_eq!(must(&page, "gateway_upstream_retries_total"), 0.0, "{page}");
}

#[actix_web::test]
async fn a_name_goes_to_its_addresses_with_the_name_as_host() {
    let upstream = spawn_upstream();
    // `localhost` may also resolve to ::1, where nothing listens: refused,
    // so those requests go to 127.0.0.1 instead.
    let gateway = gateway_over(&[format!("http://localhost:{}", upstream.port)]).await;
    for i in 0..6 {
        let reply = gateway.get(&format!("/api/movies/{i}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(
            upstream.last().header("host"),
            Some(format!("localhost:{}", upstream.port).as_str())
        );
    }
    assert_eq!(upstream.seen().len(), 6);
}

#[actix_web::test]
async fn a_stopped_endpoint_costs_no_request_and_serves_again_when_back() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let a = spawn_upstream_on(listener);
    let b = spawn_upstream();
    let gateway = gateway_over(&[a.url.clone(), b.url.clone()]).await;
    for i in 0..4 {
        assert_eq!(
            gateway.get(&format!("/api/movies/{i}")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(counts(&[&a, &b]), [2, 2]);

    // Its port closed: every connect to it is refused.
    a.stop().await;
    let before = b.seen().len();
    let mut failed = Vec::new();
    for method in [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        for i in 0..8 {
            let reply = send(
                gateway.request(method.clone(), &format!("/api/movies/{i}")),
                None,
            )
            .await;
            if reply.status != StatusCode::OK {
                failed.push(format!("{method} {i}: {reply:?}"));
            }
        }
    }
    assert_eq!(failed, Vec::<String>::new(), "idempotent requests failed");
    assert_eq!(
        b.seen().len() - before,
        40,
        "the other endpoint served them all"
    );
    // A POST whose connect failed was never sent: it goes to the other one.
    for _ in 0..2 {
        let reply = gateway
            .post_json("/api/movies", &serde_json::json!({"title": "t"}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(b.last().method, "POST");
    }
    // The down endpoint is counted, and `/ready` still finds inventory (its
    // RabbitMQ is a closed port here, hence not ready).
    let page = wait_for("the stopped endpoint counted down", || async {
        let page = metrics_page(&gateway).await;
        (test_support::metrics::value(&page, r#"gateway_inventory_endpoints{state="down"}"#)
            == Some(1.0))
        .then_some(page)
    })
    .await;
    assert_eq!(
        must(&page, r#"gateway_inventory_endpoints{state="up"}"#),
        1.0,
        "{page}"
    );
    let ready = gateway.get("/ready").await.json();
    assert_eq!(ready["checks"]["inventory"], "ok", "{ready}");

    // Back on the same address: the probe finds it and it gets requests.
    let back = spawn_upstream_on(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    let sent = std::cell::Cell::new(0);
    wait_for("the endpoint back to receive requests", || async {
        sent.set(sent.get() + 1);
        let reply = gateway.get("/api/movies/again").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        (!back.seen().is_empty()).then_some(())
    })
    .await;
    // From then on, round-robin over both again.
    let (x, y) = (back.seen().len(), b.seen().len());
    for _ in 0..10 {
        assert_eq!(gateway.get("/api/movies/1").await.status, StatusCode::OK);
    }
    assert_eq!(
        (back.seen().len() - x, b.seen().len() - y),
        (5, 5),
        "after {} requests to find it back",
        sent.get()
    );
}

/// A replica that dies in the middle of an answer (its head and part of a
/// chunked body sent, then the connection closed), as a `kill -9` does.
const DIES_MID_ANSWER: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
    Transfer-Encoding: chunked\r\n\r\n9\r\n[{\"id\":1,\r\n";

#[actix_web::test]
async fn an_answer_cut_by_a_dying_replica_is_retried_on_another() {
    let dying = spawn_raw_upstream(DIES_MID_ANSWER).await;
    let b = spawn_upstream();
    let gateway = gateway_over(&[format!("http://127.0.0.1:{dying}"), b.url.clone()]).await;
    // Half of them go to the dying replica first: none of its cut answers
    // reaches the client, each is served whole by the other replica.
    for i in 0..10 {
        let reply = gateway.get(&format!("/api/movies/{i}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert!(!b.seen().is_empty(), "{reply:?}");
        assert_eq!(b.last().path_and_query, format!("/api/movies/{i}"));
    }
    assert_eq!(b.seen().len(), 10);

    // With no other replica, a clear 502 rather than a 200 cut short.
    let alone = spawn_app(config(
        &format!("http://127.0.0.1:{dying}"),
        closed_port(),
        "/",
    ))
    .await;
    let reply = alone.get("/api/movies?limit=5").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{reply:?}");
    assert_eq!(
        reply.json()["error"]["code"],
        "upstream_unavailable",
        "{reply:?}"
    );
}

#[actix_web::test]
async fn every_endpoint_down_is_a_quick_502_naming_inventory() {
    let urls = [
        format!("http://127.0.0.1:{}", closed_port()),
        format!("http://127.0.0.1:{}", closed_port()),
    ];
    let gateway = gateway_over(&urls).await;
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let started = Instant::now();
        let reply = send(gateway.request(method.clone(), "/api/movies/1"), None).await;
        reply.assert_error(502, "upstream_unavailable", None);
        assert!(
            reply.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("inventory"),
            "{reply:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{method}: {:?}",
            started.elapsed()
        );
    }
    let ready = gateway.get("/ready").await.json();
    assert_eq!(ready["checks"]["inventory"], "down", "{ready}");
}

#[actix_web::test]
async fn a_bad_entry_in_the_list_is_a_configuration_error_naming_the_variable() {
    let good = "http://127.0.0.1:8081";
    for list in [
        format!("{good},"),
        format!("{good}, ,{good}"),
        format!("{good},https://127.0.0.1:8082"),
        format!("{good},127.0.0.1:8082"),
        format!("{good},http://"),
    ] {
        let Err(err) = Application::build(config(&list, closed_port(), "/")) else {
            panic!("{list:?} was accepted");
        };
        let err = err.to_string();
        assert!(err.contains("GATEWAY_INVENTORY_URL"), "{list:?}: {err}");
    }
}
