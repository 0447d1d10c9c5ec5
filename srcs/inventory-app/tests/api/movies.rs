//! The HTTP API against a real PostgreSQL: one database per test.

use crate::support::{ids, spawn_app, TestApp};
use actix_web::http::{Method, StatusCode};
use serde_json::{json, Value};

fn titles(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|m| m["title"].as_str().unwrap())
        .collect()
}

async fn list(app: &TestApp, query: &str) -> Value {
    let reply = app.get(&format!("/api/movies{query}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {reply:?}");
    reply.body
}

#[actix_web::test]
async fn health_and_ready_answer_with_and_without_trailing_slash() {
    let app = spawn_app().await;
    for path in ["/health", "/health/"] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.body, json!({"status": "ok"}));
    }
    for path in ["/ready", "/ready/"] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(
            reply.body,
            json!({"status": "ready", "checks": {"postgres": "ok"}})
        );
    }
}

#[actix_web::test]
async fn create_answers_201_with_location_and_the_movie_reads_back() {
    let app = spawn_app().await;
    let reply = app
        .post_json(
            "/api/movies",
            &json!({"title": "  The Matrix  ", "description": "Neo wakes up.", "year": 1999}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let id = reply.body["id"].as_i64().unwrap();
    assert!(id > 0);
    // Title is stored trimmed; unknown fields are ignored, not echoed.
    assert_eq!(
        reply.body,
        json!({"id": id, "title": "The Matrix", "description": "Neo wakes up."})
    );
    let location = format!("/api/movies/{id}");
    assert_eq!(reply.header("location"), Some(location.as_str()));

    for path in [location.clone(), format!("{location}/")] {
        let got = app.get(&path).await;
        assert_eq!(got.status, StatusCode::OK, "{path}");
        assert_eq!(got.body, reply.body);
    }
}

#[actix_web::test]
async fn create_with_trailing_slash_and_default_description() {
    let app = spawn_app().await;
    let reply = app
        .post_json("/api/movies/", &json!({"title": "Alien"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(reply.body["description"], "");
}

#[actix_web::test]
async fn list_returns_every_movie_ordered_by_id() {
    let app = spawn_app().await;
    assert_eq!(list(&app, "").await, json!([]));
    let mut created = Vec::new();
    for title in ["Zodiac", "Alien", "Memento"] {
        created.push(app.create(title, "d").await);
    }
    let all = list(&app, "").await;
    assert_eq!(all, Value::Array(created.clone()));
    let all_ids = ids(&all);
    assert!(all_ids.windows(2).all(|w| w[0] < w[1]), "{all_ids:?}");
    assert_eq!(list(&app, "/").await, all);
}

#[actix_web::test]
async fn search_is_a_case_insensitive_substring_match() {
    let app = spawn_app().await;
    app.create("The Matrix", "").await;
    app.create("The Matrix Reloaded", "").await;
    app.create("Alien", "").await;
    assert_eq!(
        titles(&list(&app, "?title=matrix").await),
        ["The Matrix", "The Matrix Reloaded"]
    );
    assert_eq!(
        titles(&list(&app, "/?title=MATRIX%20re").await),
        ["The Matrix Reloaded"]
    );
    assert_eq!(titles(&list(&app, "?title=LIEN").await), ["Alien"]);
    assert_eq!(list(&app, "?title=nothing").await, json!([]));
    assert_eq!(ids(&list(&app, "?title=").await).len(), 3);
}

#[actix_web::test]
async fn search_takes_like_metacharacters_and_quotes_literally() {
    let app = spawn_app().await;
    for title in [
        "100% Pure",
        "1000 Pure",
        "snake_case",
        "snakeXcase",
        "Ocean's Eleven",
        r"back\slash",
        "backslash",
    ] {
        app.create(title, "").await;
    }
    // %25 = '%', %27 = '\'', %5C = '\'
    assert_eq!(titles(&list(&app, "?title=0%25").await), ["100% Pure"]);
    assert_eq!(titles(&list(&app, "?title=%25").await), ["100% Pure"]);
    assert_eq!(titles(&list(&app, "?title=e_c").await), ["snake_case"]);
    assert_eq!(titles(&list(&app, "?title=_").await), ["snake_case"]);
    assert_eq!(
        titles(&list(&app, "?title=n%27s").await),
        ["Ocean's Eleven"]
    );
    assert_eq!(titles(&list(&app, "?title=k%5Cs").await), [r"back\slash"]);
    assert_eq!(titles(&list(&app, "?title=%5C").await), [r"back\slash"]);
}

#[actix_web::test]
async fn limit_and_offset_page_through_the_ordered_list() {
    let app = spawn_app().await;
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(
            app.create(&format!("Movie {i}"), "").await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(ids(&list(&app, "?limit=2").await), all[..2]);
    assert_eq!(ids(&list(&app, "?limit=2&offset=2").await), all[2..4]);
    assert_eq!(ids(&list(&app, "?offset=3").await), all[3..]);
    assert_eq!(ids(&list(&app, "?offset=10").await), Vec::<i64>::new());
    assert_eq!(ids(&list(&app, "?limit=0").await), Vec::<i64>::new());
    assert_eq!(ids(&list(&app, "?limit=1000").await), all);
    assert_eq!(
        titles(&list(&app, "?title=movie&limit=1&offset=1").await),
        ["Movie 1"]
    );
}

#[actix_web::test]
async fn bad_paging_parameters_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    for (query, field) in [
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("limit=", "limit"),
        ("limit=1001", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
        ("limit=1&offset=-5", "offset"),
    ] {
        let reply = app.get(&format!("/api/movies?{query}")).await;
        reply.assert_error(400, "validation_failed", Some(field));
    }
    let reply = app.get("/api/movies?title=a%00b").await;
    reply.assert_error(400, "validation_failed", Some("title"));
}

#[actix_web::test]
async fn post_rejects_each_invalid_field_by_name() {
    let app = spawn_app().await;
    let long_title = "x".repeat(256);
    let long_description = "x".repeat(10_001);
    let cases = [
        (json!({}), "title"),
        (json!({"description": "no title"}), "title"),
        (json!({"title": ""}), "title"),
        (json!({"title": " \t\n "}), "title"),
        (json!({"title": long_title}), "title"),
        (json!({"title": null}), "title"),
        (json!({"title": 42}), "title"),
        (json!({"title": ["a"]}), "title"),
        (json!({"title": "a\u{0}b"}), "title"),
        (
            json!({"title": "ok", "description": long_description}),
            "description",
        ),
        (json!({"title": "ok", "description": null}), "description"),
        (json!({"title": "ok", "description": 7}), "description"),
        (
            json!({"title": "ok", "description": {"a": 1}}),
            "description",
        ),
    ];
    for (body, field) in cases {
        let reply = app.post_json("/api/movies", &body).await;
        reply.assert_error(400, "validation_failed", Some(field));
    }
    // Nothing was stored by the rejected requests.
    assert_eq!(list(&app, "").await, json!([]));
}

#[actix_web::test]
async fn post_accepts_values_at_the_length_limits() {
    let app = spawn_app().await;
    let title = "é".repeat(255);
    let description = "d".repeat(10_000);
    let movie = app.create(&title, &description).await;
    assert_eq!(movie["title"], title.as_str());
    assert_eq!(movie["description"], description.as_str());
}

#[actix_web::test]
async fn bodies_that_are_not_json_objects_are_rejected() {
    let app = spawn_app().await;
    let post = |ct: Option<&'static str>, body: &[u8]| {
        app.send(Method::POST, "/api/movies", ct, Some(body.to_vec()), None)
    };
    let json = Some("application/json");
    post(json, b"{\"title\": ")
        .await
        .assert_error(400, "invalid_json", None);
    post(json, b"not json")
        .await
        .assert_error(400, "invalid_json", None);
    post(json, b"")
        .await
        .assert_error(400, "invalid_json", None);
    for body in [&b"[1,2]"[..], b"\"The Matrix\"", b"42", b"null"] {
        post(json, body)
            .await
            .assert_error(400, "validation_failed", None);
    }
    post(Some("text/plain"), b"{\"title\":\"x\"}")
        .await
        .assert_error(415, "unsupported_media_type", None);
    post(None, b"{\"title\":\"x\"}")
        .await
        .assert_error(415, "unsupported_media_type", None);

    let huge =
        serde_json::to_vec(&json!({"title": "x", "description": "d".repeat(70_000)})).unwrap();
    post(json, &huge)
        .await
        .assert_error(413, "payload_too_large", None);
    assert_eq!(list(&app, "").await, json!([]));
}

#[actix_web::test]
async fn put_changes_only_the_fields_present() {
    let app = spawn_app().await;
    let movie = app.create("Alien", "In space").await;
    let id = movie["id"].as_i64().unwrap();
    let path = format!("/api/movies/{id}");

    let reply = app
        .put_json(&path, &json!({"description": "Nobody hears you scream"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        reply.body,
        json!({"id": id, "title": "Alien", "description": "Nobody hears you scream"})
    );

    let reply = app
        .put_json(&format!("{path}/"), &json!({"title": " Aliens ", "x": 1}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["title"], "Aliens");
    assert_eq!(reply.body["description"], "Nobody hears you scream");

    let reply = app.put_json(&path, &json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(app.get(&path).await.body, reply.body);

    let reply = app.put_json(&path, &json!({"description": ""})).await;
    assert_eq!(reply.body["description"], "");
}

#[actix_web::test]
async fn put_validates_present_fields() {
    let app = spawn_app().await;
    let movie = app.create("Alien", "In space").await;
    let path = format!("/api/movies/{}", movie["id"]);
    for (body, field) in [
        (json!({"title": null}), Some("title")),
        (json!({"title": "  "}), Some("title")),
        (json!({"title": "x".repeat(256)}), Some("title")),
        (json!({"title": 1}), Some("title")),
        (json!({"description": null}), Some("description")),
        (
            json!({"description": "x".repeat(10_001)}),
            Some("description"),
        ),
        (json!({"description": false}), Some("description")),
        (json!(["title"]), None),
    ] {
        let reply = app.put_json(&path, &body).await;
        reply.assert_error(400, "validation_failed", field);
    }
    app.send(
        Method::PUT,
        &path,
        Some("text/plain"),
        Some(b"{}".to_vec()),
        None,
    )
    .await
    .assert_error(415, "unsupported_media_type", None);
    assert_eq!(app.get(&path).await.body, movie);
}

#[actix_web::test]
async fn delete_one_returns_the_movie_and_it_is_gone() {
    let app = spawn_app().await;
    let keep = app.create("Keep", "").await;
    let gone = app.create("Gone", "").await;
    let path = format!("/api/movies/{}", gone["id"]);

    let reply = app.delete(&format!("{path}/")).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, gone);
    app.get(&path).await.assert_error(404, "not_found", None);
    app.delete(&path).await.assert_error(404, "not_found", None);
    assert_eq!(list(&app, "").await, json!([keep]));
}

#[actix_web::test]
async fn delete_all_says_how_many_it_deleted() {
    let app = spawn_app().await;
    for t in ["a", "b", "c"] {
        app.create(t, "").await;
    }
    let reply = app.delete("/api/movies").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, json!({"deleted": 3}));
    assert_eq!(list(&app, "").await, json!([]));

    let reply = app.delete("/api/movies/").await;
    assert_eq!(reply.body, json!({"deleted": 0}));
    // Ids keep growing after a wipe: an old URL never points at a new movie.
    let fresh = app.create("d", "").await;
    assert!(fresh["id"].as_i64().unwrap() > 3, "{fresh}");
}

#[actix_web::test]
async fn missing_movies_are_404_json() {
    let app = spawn_app().await;
    let path = "/api/movies/424242";
    app.get(path).await.assert_error(404, "not_found", None);
    app.put_json(path, &json!({"title": "x"}))
        .await
        .assert_error(404, "not_found", None);
    app.delete(path).await.assert_error(404, "not_found", None);
    let max = format!("/api/movies/{}", i64::MAX);
    app.get(&max).await.assert_error(404, "not_found", None);
}

#[actix_web::test]
async fn ids_that_are_not_positive_64_bit_integers_are_400_naming_id() {
    let app = spawn_app().await;
    for bad in [
        "abc",
        "0",
        "-1",
        "99999999999999999999",
        "1.5",
        "1e3",
        "%20",
    ] {
        let path = format!("/api/movies/{bad}");
        app.get(&path)
            .await
            .assert_error(400, "validation_failed", Some("id"));
        app.put_json(&path, &json!({"title": "x"}))
            .await
            .assert_error(400, "validation_failed", Some("id"));
        app.delete(&path)
            .await
            .assert_error(400, "validation_failed", Some("id"));
    }
}

#[actix_web::test]
async fn unknown_routes_and_wrong_methods_are_json() {
    let app = spawn_app().await;
    for path in ["/", "/api", "/api/movie", "/api/movies/1/extra", "/nope/"] {
        app.get(path).await.assert_error(404, "not_found", None);
    }
    for (method, path, allow) in [
        (Method::PATCH, "/api/movies", "GET, HEAD, POST, DELETE"),
        (Method::PUT, "/api/movies/", "GET, HEAD, POST, DELETE"),
        (Method::POST, "/api/movies/1", "GET, HEAD, PUT, DELETE"),
        (Method::PATCH, "/api/movies/1/", "GET, HEAD, PUT, DELETE"),
        (Method::POST, "/health", "GET, HEAD"),
        (Method::DELETE, "/ready", "GET, HEAD"),
    ] {
        let reply = app.send(method, path, None, None, None).await;
        reply.assert_error(405, "method_not_allowed", None);
        assert_eq!(reply.header("allow"), Some(allow), "{path}");
    }
}

#[actix_web::test]
async fn head_answers_like_get_without_a_body() {
    let app = spawn_app().await;
    let id = app.create("Heat", "LA, 1995").await["id"].as_i64().unwrap();
    for path in [
        format!("/api/movies/{id}"),
        format!("/api/movies/{id}/"),
        "/api/movies?title=heat".to_owned(),
        "/health".to_owned(),
        "/ready".to_owned(),
    ] {
        let get = app.get(&path).await;
        let (status, headers, body) = app.head(&path).await;
        assert_eq!(status, get.status, "{path}");
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/json",
            "{path}"
        );
        assert!(body.is_empty(), "HEAD {path} sent a body: {body:?}");
    }
    let (status, _, body) = app.head("/api/movies/999999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.is_empty());
}
