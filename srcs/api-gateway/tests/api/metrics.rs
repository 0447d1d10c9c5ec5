//! The metrics of the gateway and of inventory-app (both real, in-process):
//! served on their own loopback listener and never through the gateway's
//! public port, in a format `promtool` accepts, labelled by route pattern
//! so that ids and a scanner's paths add no series, and counting what the
//! gateway did with an order.

use crate::support::inventory::spawn_inventory;
use crate::support::{client, config, rabbit, send, spawn_app, TestApp};
use actix_web::http::StatusCode;
use serde_json::json;
use test_support::metrics::{must, promtool_check, series, value};

async fn page(url: &str) -> String {
    let reply = send(client().get(url), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{url}: {reply:?}");
    assert_eq!(
        reply.content_type(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    reply.text()
}

async fn ready_gateway_with_inventory(
    vhost: &rabbit::Vhost,
) -> (crate::support::inventory::Inventory, TestApp) {
    let inventory = spawn_inventory().await;
    let gateway = spawn_app(config(&inventory.url, rabbit::amqp_port(), &vhost.name)).await;
    gateway.wait_ready().await;
    (inventory, gateway)
}

#[actix_web::test]
async fn both_pages_pass_promtool_and_count_an_order_and_a_proxied_request() {
    let vhost = rabbit::vhost();
    let (inventory, gateway) = ready_gateway_with_inventory(&vhost).await;

    let listed = gateway.get("/api/movies").await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    let order = gateway
        .order(&json!({"user_id": "20", "number_of_items": 3, "total_amount": 10.5}))
        .await;
    assert_eq!(order.status, StatusCode::OK, "{order:?}");
    // The same route with a trailing slash: one series, not a second.
    let slash = gateway
        .post_json(
            "/api/billing/",
            &json!({"user_id": "21", "number_of_items": 1, "total_amount": 1}),
        )
        .await;
    assert_eq!(slash.status, StatusCode::OK, "{slash:?}");

    let gw = page(&gateway.metrics_url).await;
    promtool_check(&gw);
    assert_eq!(
        must(
            &gw,
            r#"gateway_orders_published_total{outcome="confirmed"}"#
        ),
        2.0
    );
    assert_eq!(
        must(&gw, "gateway_publish_confirm_duration_seconds_count"),
        2.0
    );
    assert_eq!(must(&gw, r#"gateway_broker_state{state="connected"}"#), 1.0);
    assert_eq!(must(&gw, r#"gateway_broker_state{state="down"}"#), 0.0);
    assert_eq!(
        must(
            &gw,
            r#"gateway_upstream_duration_seconds_count{outcome="2xx"}"#
        ),
        1.0
    );
    assert_eq!(
        must(
            &gw,
            r#"http_requests_total{route="/api/billing",method="POST",status="2xx"}"#
        ),
        2.0
    );
    assert!(!gw.contains(r#"route="/api/billing/""#), "{gw}");
    assert!(must(&gw, "gateway_open_connections") >= 1.0, "{gw}");
    assert!(must(&gw, "process_resident_memory_bytes") > 1e6);
    assert!(must(&gw, "process_open_fds") >= 3.0);
    assert!(
        gw.lines()
            .any(|l| l.starts_with(r#"build_info{service="api-gateway",version=""#)),
        "{gw}"
    );

    let inv = page(&inventory.metrics_url).await;
    promtool_check(&inv);
    assert_eq!(
        must(
            &inv,
            r#"http_requests_total{route="/api/movies",method="GET",status="2xx"}"#
        ),
        1.0
    );
    assert_eq!(must(&inv, "db_pool_max_connections"), 4.0);
    assert!(value(&inv, "db_pool_connections_idle").is_some(), "{inv}");
}

#[actix_web::test]
async fn metrics_are_not_served_on_the_public_port() {
    let vhost = rabbit::vhost();
    let (_inventory, gateway) = ready_gateway_with_inventory(&vhost).await;
    for path in [
        "/metrics",
        "/metrics/",
        "/api/metrics",
        "/api/movies/../../metrics",
        "/api/movies/metrics",
        "/api/billing/metrics",
    ] {
        let reply = gateway.get(path).await;
        assert_ne!(reply.status, StatusCode::OK, "{path}: {reply:?}");
        let text = reply.text();
        assert!(
            !text.contains("build_info") && !text.contains("# TYPE"),
            "{path}: {text}"
        );
    }
    // And the page is where it belongs.
    assert!(page(&gateway.metrics_url).await.contains("build_info"));
}

/// 1,000 distinct movie ids and 100 random unknown paths add at most five
/// series (the first request of a route makes its counter and histogram).
#[actix_web::test]
async fn ids_and_random_paths_add_at_most_five_series() {
    let vhost = rabbit::vhost();
    let (inventory, gateway) = ready_gateway_with_inventory(&vhost).await;
    // Warm the routes this test uses once, so the count below sees only
    // what the ids and paths add.
    assert_eq!(
        gateway.get("/api/movies/1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(gateway.get("/nope").await.status, StatusCode::NOT_FOUND);
    let before_gw = series(&page(&gateway.metrics_url).await);
    let before_inv = series(&page(&inventory.metrics_url).await);

    for id in 1..=1000 {
        let reply = gateway.get(&format!("/api/movies/{}", 100_000 + id)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    }
    for _ in 0..100 {
        let path = format!(
            "/{}/{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4()
        );
        let reply = gateway.get(&path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}: {reply:?}");
    }

    let after_gw = series(&page(&gateway.metrics_url).await);
    let after_inv = series(&page(&inventory.metrics_url).await);
    let new_gw: Vec<_> = after_gw.difference(&before_gw).collect();
    let new_inv: Vec<_> = after_inv.difference(&before_inv).collect();
    assert!(
        new_gw.len() <= 5,
        "the gateway got {} new series: {new_gw:#?}",
        new_gw.len()
    );
    assert!(
        new_inv.len() <= 5,
        "inventory got {} new series: {new_inv:#?}",
        new_inv.len()
    );
    // The ids did count, under the route's pattern.
    let gw = page(&gateway.metrics_url).await;
    let inv = page(&inventory.metrics_url).await;
    assert_eq!(
        must(
            &inv,
            r#"http_requests_total{route="/api/movies/{id}",method="GET",status="4xx"}"#
        ),
        1001.0
    );
    assert_eq!(
        must(
            &gw,
            r#"http_requests_total{route="unmatched",method="GET",status="4xx"}"#
        ),
        101.0
    );
}
