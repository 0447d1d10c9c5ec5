//! Through the gateway to the real inventory-app (in-process, on a database
//! of its own): every answer must equal the one inventory gives directly.

use crate::support::inventory::spawn_inventory;
use crate::support::{client, closed_port, config, send, spawn_app, Reply};
use actix_web::http::{Method, StatusCode};
use serde_json::json;

/// Sends the same request to inventory and through the gateway.
async fn both(
    inventory: &str,
    gateway: &str,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> (Reply, Reply) {
    let client = client();
    let mut replies = Vec::new();
    for base in [inventory, gateway] {
        let mut req = client.request(method.clone(), format!("{base}{path}"));
        if let Some(ct) = content_type {
            req = req.insert_header(("content-type", ct));
        }
        replies.push(send(req, body.clone()).await);
    }
    let through = replies.pop().unwrap();
    (replies.pop().unwrap(), through)
}

#[track_caller]
fn assert_same(direct: &Reply, through: &Reply) {
    assert_eq!(through.status, direct.status, "{through:?} vs {direct:?}");
    assert_eq!(through.content_type(), direct.content_type());
    assert_eq!(through.body, direct.body, "{through:?} vs {direct:?}");
    assert_eq!(through.header("location"), direct.header("location"));
}

#[actix_web::test]
async fn movie_crud_through_the_gateway() {
    let inventory = spawn_inventory().await;
    let gateway = spawn_app(config(&inventory.url, closed_port(), "/")).await;

    let created = gateway
        .post_json(
            "/api/movies",
            &json!({"title": "Alien", "description": "1979"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let movie = created.json();
    let id = movie["id"].as_i64().unwrap();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/movies/{id}").as_str())
    );
    assert_eq!(movie["title"], "Alien");

    let fetched = gateway.get(&format!("/api/movies/{id}")).await;
    assert_eq!(fetched.json(), movie);
    let listed = gateway.get("/api/movies/?title=ali").await;
    assert_eq!(listed.json(), json!([movie]));

    let req = gateway
        .request(Method::PUT, &format!("/api/movies/{id}/"))
        .insert_header(("content-type", "application/json"));
    let updated = send(req, Some(br#"{"description":"Ridley Scott"}"#.to_vec())).await;
    assert_eq!(updated.status, StatusCode::OK, "{updated:?}");
    assert_eq!(updated.json()["description"], "Ridley Scott");

    let deleted = send(
        gateway.request(Method::DELETE, &format!("/api/movies/{id}")),
        None,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    let gone = gateway.get(&format!("/api/movies/{id}")).await;
    gone.assert_error(404, "not_found", None);
}

/// Method, path, content type, body.
type Case = (Method, &'static str, Option<&'static str>, Option<Vec<u8>>);

#[actix_web::test]
async fn inventory_answers_including_errors_pass_unchanged() {
    let inventory = spawn_inventory().await;
    let gateway = spawn_app(config(&inventory.url, closed_port(), "/")).await;
    gateway
        .post_json("/api/movies", &json!({"title": "Heat", "description": ""}))
        .await;
    let json = Some("application/json");
    let cases: Vec<Case> = vec![
        (Method::GET, "/api/movies", None, None),
        (Method::GET, "/api/movies/", None, None),
        (Method::GET, "/api/movies?limit=1&offset=0", None, None),
        (Method::GET, "/api/movies?limit=-1", None, None),
        (Method::GET, "/api/movies/999999", None, None),
        (Method::GET, "/api/movies/abc", None, None),
        (
            Method::POST,
            "/api/movies",
            json,
            Some(br#"{"description":"no title"}"#.to_vec()),
        ),
        (
            Method::POST,
            "/api/movies",
            json,
            Some(b"{not json".to_vec()),
        ),
        (
            Method::POST,
            "/api/movies",
            Some("text/plain"),
            Some(b"title".to_vec()),
        ),
        (
            Method::POST,
            "/api/movies",
            json,
            Some(vec![b' '; 70 * 1024]),
        ),
        (
            Method::PUT,
            "/api/movies/999999",
            json,
            Some(br#"{"title":"x"}"#.to_vec()),
        ),
        (Method::PATCH, "/api/movies", json, Some(b"{}".to_vec())),
        (Method::DELETE, "/api/movies/0", None, None),
    ];
    for (method, path, content_type, body) in cases {
        let (direct, through) = both(
            &inventory.url,
            &gateway.url,
            method.clone(),
            path,
            content_type,
            body,
        )
        .await;
        assert_same(&direct, &through);
        assert!(through.header("x-request-id").is_some());
    }
}

#[actix_web::test]
async fn head_through_the_gateway_keeps_inventorys_content_length() {
    let inventory = spawn_inventory().await;
    let gateway = spawn_app(config(&inventory.url, closed_port(), "/")).await;
    let created = gateway
        .post_json(
            "/api/movies",
            &json!({"title": "Heat", "description": "LA"}),
        )
        .await;
    let id = created.json()["id"].as_i64().unwrap();

    for path in [
        format!("/api/movies/{id}"),
        "/api/movies?title=heat".to_owned(),
    ] {
        let get = gateway.get(&path).await;
        let (direct, through) = both(
            &inventory.url,
            &gateway.url,
            Method::HEAD,
            &path,
            None,
            None,
        )
        .await;
        assert_eq!(through.status, StatusCode::OK, "{through:?}");
        assert!(through.body.is_empty(), "{through:?}");
        assert_eq!(through.content_type(), direct.content_type());
        // The length a GET has (RFC 9110 8.6), not the empty body's 0.
        let get_length = get.body.len().to_string();
        assert_eq!(direct.header("content-length"), Some(get_length.as_str()));
        assert_eq!(
            through.header("content-length"),
            Some(get_length.as_str()),
            "{path}"
        );
    }
}

#[actix_web::test]
async fn a_request_pipelined_after_a_head_gets_its_answer() {
    let inventory = spawn_inventory().await;
    let gateway = spawn_app(config(&inventory.url, closed_port(), "/")).await;
    let created = gateway
        .post_json(
            "/api/movies",
            &json!({"title": "Ran", "description": "Kurosawa"}),
        )
        .await;
    let id = created.json()["id"].as_i64().unwrap();
    let get = gateway.get(&format!("/api/movies/{id}")).await;
    let length = get.body.len();

    // Both requests in one write: the HEAD's answer (no body) must be
    // followed by the GET's, on the same connection.
    let requests = format!(
        "HEAD /api/movies/{id} HTTP/1.1\r\nHost: g\r\nX-Request-Id: head-1\r\n\r\n\
         GET /api/movies/{id} HTTP/1.1\r\nHost: g\r\nX-Request-Id: get-2\r\nConnection: close\r\n\r\n"
    );
    let response = crate::support::raw_exchange(gateway.port, requests.as_bytes()).await;
    let (head_answer, rest) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete answer: {response:?}"));
    assert!(head_answer.starts_with("HTTP/1.1 200"), "{response}");
    let head_headers = crate::support::raw_headers(&format!("{head_answer}\r\n\r\n"));
    assert!(
        head_headers.contains(&("content-length".to_owned(), length.to_string())),
        "{response}"
    );
    assert!(
        head_headers.contains(&("x-request-id".to_owned(), "head-1".to_owned())),
        "{response}"
    );
    // Right after the HEAD's head: the GET's answer, with the movie.
    assert!(rest.starts_with("HTTP/1.1 200"), "{response}");
    let get_headers = crate::support::raw_headers(rest);
    assert!(
        get_headers.contains(&("x-request-id".to_owned(), "get-2".to_owned())),
        "{response}"
    );
    let body = rest.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(body.as_bytes(), &get.body[..], "{response}");
}
