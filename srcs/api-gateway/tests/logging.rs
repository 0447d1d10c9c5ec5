//! Log lines: one access line per request and the error detail, each with
//! the request id. A test binary of its own: it counts every access line the
//! process logs, so no other test may run beside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "api/support/mod.rs"]
mod support;

use actix_web::http::Method;
use support::capture::{install, lines_with};
use support::{closed_port, config, send, spawn_app, wait_for};

#[actix_web::test]
async fn every_request_is_logged_once_with_its_id_and_errors_with_detail() {
    install();
    let inventory_port = closed_port();
    let gateway = spawn_app(config(
        &format!("http://127.0.0.1:{inventory_port}"),
        closed_port(),
        "/",
    ))
    .await;

    let req = gateway
        .request(Method::GET, "/api/movies?secret=x")
        .insert_header(("x-request-id", "log-test-502"));
    send(req, None).await;
    let req = gateway
        .request(Method::GET, "/health")
        .insert_header(("x-request-id", "log-test-200"))
        .insert_header((
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
    send(req, None).await;
    let generated = gateway.get("/nope").await;
    let generated = generated.header("x-request-id").unwrap().to_owned();

    // The access line is written after the response is handed over.
    let access = wait_for("three access lines", || async {
        let lines = lines_with("api_gateway::access");
        (lines.len() >= 3).then_some(lines)
    })
    .await;
    assert_eq!(access.len(), 3, "{access:#?}");
    assert!(access[0].contains("GET /api/movies 502 "), "{access:#?}");
    assert!(
        access[0].ends_with("request_id=log-test-502"),
        "{access:#?}"
    );
    assert!(!access[0].contains("secret"), "the query string was logged");
    assert!(access[1].contains("GET /health 200 "), "{access:#?}");
    assert!(
        access[1].ends_with(" trace_id=4bf92f3577b34da6a3ce929d0e0e4736 request_id=log-test-200"),
        "{access:#?}"
    );
    assert!(access[2].contains("GET /nope 404 "), "{access:#?}");
    assert!(
        access[2].ends_with(&format!("request_id={generated}")),
        "{access:#?}"
    );
    // Without a traceparent, each request starts a trace of its own.
    let trace_of = |line: &str| {
        line.split_once(" trace_id=")
            .and_then(|(_, rest)| rest.split_once(' '))
            .map(|(id, _)| id.to_owned())
    };
    let (first, third) = (trace_of(&access[0]), trace_of(&access[2]));
    assert!(
        first.as_ref().is_some_and(|t| t.len() == 32) && first != third,
        "{access:#?}"
    );

    // The endpoint's "marked down" line (api_gateway::upstreams) carries the
    // request id only when this request, not the background probe, saw the
    // endpoint fail first: a matter of timing, not of this request's logging.
    let errors: Vec<String> = lines_with("request_id=log-test-502")
        .into_iter()
        .filter(|l| !l.contains("api_gateway::access") && !l.contains("api_gateway::upstreams"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with("WARN"), "{errors:#?}");
    assert!(
        errors[0].contains(&format!("127.0.0.1:{inventory_port}")),
        "the error line lacks the detail: {errors:#?}"
    );
}
