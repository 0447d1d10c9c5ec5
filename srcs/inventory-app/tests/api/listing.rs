//! The streamed listing and keyset paging, against a real PostgreSQL.

use crate::support::*;
use actix_web::http::StatusCode;
use diesel::pg::PgConnection;
use diesel::RunQueryDsl;
use inventory_app::models::MovieFilter;
use inventory_app::queries;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `n` movies "Movie 1".. "Movie n" (every third also "keep"), each with a
/// description of `description_len` characters, in one statement.
fn seed(conn: &mut PgConnection, n: u32, description_len: u32) {
    diesel::sql_query(format!(
        "INSERT INTO movies (title, description) \
         SELECT 'Movie ' || g || CASE WHEN g % 3 = 0 THEN ' keep' ELSE '' END, \
                repeat('d', {description_len}) \
         FROM generate_series(1, {n}) g"
    ))
    .execute(conn)
    .unwrap();
}

/// What the service answered before it streamed: the whole list, serialized.
fn old_rendering(conn: &mut PgConnection, filter: &MovieFilter) -> Vec<u8> {
    serde_json::to_vec(&queries::list(conn, filter).unwrap()).unwrap()
}

fn next_link(reply: &Reply) -> Option<String> {
    let link = reply.header("link")?;
    let target = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("not a next link: {link:?}"));
    Some(target.to_owned())
}

/// A raw HTTP/1.1 exchange, to see what is (and is not) on the wire.
fn raw_get(port: u16, path: &str, rid: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: {rid}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    stream
}

fn read_at_least(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0; n];
    stream.read_exact(&mut got).unwrap();
    got
}

/// Everything until the server closes (a reset counts as a close).
fn read_to_close(stream: &mut TcpStream, mut got: Vec<u8>) -> Vec<u8> {
    let mut buf = vec![0; 1 << 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
}

/// Splits a raw chunked answer into its head, its payload, and whether the
/// terminating zero-length chunk arrived.
fn dechunk(raw: &[u8]) -> (String, Vec<u8>, bool) {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\ntransfer-encoding: chunked"),
        "{head}"
    );
    let mut rest = &raw[end + 4..];
    let mut payload = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (head, payload, false);
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            return (head, payload, rest == b"\r\n");
        }
        if rest.len() < size + 2 {
            payload.extend_from_slice(&rest[..rest.len().min(size)]);
            return (head, payload, false);
        }
        payload.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Runs blocking socket work off the test's runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    actix_web::rt::task::spawn_blocking(f).await.unwrap()
}

/// Starts `GET /api/movies` on a raw socket with a request id of its own and
/// reads its first 64 KiB (the head and the first rows), then leaves the
/// rest unread: returns the id, the socket and what was read.
async fn start_listing(app: &TestApp) -> (String, TcpStream, Vec<u8>) {
    let port = app.port();
    let rid = unique_db_name();
    let sent = rid.clone();
    let (stream, first) = blocking(move || {
        let mut stream = raw_get(port, "/api/movies", &sent);
        let first = read_at_least(&mut stream, 64 * 1024);
        (stream, first)
    })
    .await;
    assert!(first.starts_with(b"HTTP/1.1 200 OK\r\n"));
    (rid, stream, first)
}

/// Polls `GET /api/movies/1` until it answers 200, for at most `limit`. With a
/// pool of one connection it can only succeed once the listing gave it back.
async fn wait_for_free_pool(app: &TestApp, limit: Duration) {
    let start = Instant::now();
    loop {
        let reply = app.get("/api/movies/1").await;
        if reply.status == StatusCode::OK {
            return;
        }
        reply.assert_error(503, "database_unavailable", None);
        assert!(
            start.elapsed() < limit,
            "the pool's only connection was not given back within {limit:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn a_listing_larger_than_16_mib_arrives_complete_and_byte_identical() {
    let app = spawn_app().await;
    let mut conn = app.db();
    seed(&mut conn, 300_000, 40);
    let expected = old_rendering(&mut conn, &MovieFilter::default());
    assert!(expected.len() > 16 << 20, "{} bytes", expected.len());

    let (status, headers, body) = app.get_bytes("/api/movies").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    assert!(headers.get("content-length").is_none(), "{headers:?}");
    assert!(
        body == expected,
        "{} vs {} bytes",
        body.len(),
        expected.len()
    );
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ids(&list), (1..=300_000).collect::<Vec<i64>>());

    // A search matching a third of the table streams too.
    let filter = MovieFilter {
        title: Some("KEEP".to_owned()),
        ..Default::default()
    };
    let (status, _, body) = app.get_bytes("/api/movies?title=KEEP").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == old_rendering(&mut conn, &filter));

    // HEAD says what GET would, without reading the table to the end.
    let (status, headers, body) = app.head("/api/movies").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    assert!(headers.get("content-length").is_none(), "{headers:?}");
    assert!(body.is_empty());
}

#[actix_web::test]
async fn small_answers_are_byte_identical_with_their_content_length() {
    let app = spawn_app().await;
    for (title, description) in [
        ("The \"Quoted\" One", "tab\there, newline\nthere"),
        ("Ünïcödé 映画 🎬", "\u{1} control and \\ backslash"),
        ("Alien", ""),
        ("Aliens", "</script> & <b>"),
    ] {
        app.create(title, description).await;
    }
    let mut conn = app.db();
    let first = queries::list(&mut conn, &MovieFilter::default()).unwrap()[0].id;
    for (query, filter) in [
        ("", MovieFilter::default()),
        (
            "?title=alien",
            MovieFilter {
                title: Some("alien".to_owned()),
                ..Default::default()
            },
        ),
        (
            "?limit=2&offset=1",
            MovieFilter {
                limit: Some(2),
                offset: Some(1),
                ..Default::default()
            },
        ),
        (
            &format!("?after_id={first}"),
            MovieFilter {
                after_id: Some(first),
                ..Default::default()
            },
        ),
        (
            "?title=nothing",
            MovieFilter {
                title: Some("nothing".to_owned()),
                ..Default::default()
            },
        ),
    ] {
        let (status, headers, body) = app.get_bytes(&format!("/api/movies{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}");
        let expected = old_rendering(&mut conn, &filter);
        assert_eq!(
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&expected),
            "{query}"
        );
        assert_eq!(
            headers.get("content-length").unwrap().to_str().unwrap(),
            expected.len().to_string(),
            "{query}"
        );
        let (_, head_headers, _) = app.head(&format!("/api/movies{query}")).await;
        assert_eq!(
            head_headers.get("content-length"),
            headers.get("content-length"),
            "{query}"
        );
    }
}

#[actix_web::test]
async fn a_client_leaving_mid_stream_gives_the_connection_back() {
    test_support::logs::install();
    let app = spawn_app_with(|c, _| c.db.pool_size = 1).await;
    seed(&mut app.db(), 150_000, 200);
    let (rid, stream, _) = start_listing(&app).await;
    // Closed with most of the answer unsent.
    drop(stream);
    // Well under the 30 s stall limit: only the disconnect can free it.
    wait_for_free_pool(&app, Duration::from_secs(5)).await;
    test_support::logs::wait_for(
        &[
            "event=listing_stopped reason=client_gone",
            &format!(" request_id={rid}"),
        ],
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(app.get("/api/movies?limit=1").await.status, StatusCode::OK);
}

#[actix_web::test]
async fn a_database_error_mid_stream_cuts_the_answer_and_is_logged() {
    test_support::logs::install();
    let app = spawn_app().await;
    seed(&mut app.db(), 150_000, 200);
    let (rid, mut stream, first) = start_listing(&app).await;
    // The client has the head and some rows; now the listing's backend dies.
    let db = app.db_name.clone().unwrap();
    #[derive(diesel::QueryableByName)]
    struct Terminated {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        terminated: bool,
    }
    let killed: Vec<Terminated> = diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity \
         WHERE datname = '{db}' AND query LIKE 'FETCH%'"
    ))
    .load(&mut connect("postgres"))
    .unwrap();
    assert_eq!(killed.len(), 1, "one listing backend");
    assert!(killed[0].terminated);

    let raw = blocking(move || read_to_close(&mut stream, first)).await;
    let (head, payload, complete) = dechunk(&raw);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(!complete, "a cut answer must not end with the last chunk");
    assert!(payload.starts_with(b"[{\"id\":1,"));
    assert!(serde_json::from_slice::<Value>(&payload).is_err());
    let line = test_support::logs::wait_for(
        &["event=listing_cut", &format!(" request_id={rid}")],
        Duration::from_secs(5),
    )
    .await;
    // libpq words the terminated backend either way, depending on whether
    // the server's goodbye message arrived before the socket closed.
    assert!(
        line.contains("terminating connection")
            || line.contains("server closed the connection unexpectedly"),
        "{line}"
    );
    // The pool replaces the dead connection.
    assert_eq!(app.get("/api/movies?limit=1").await.status, StatusCode::OK);
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_cut_after_the_stall_limit() {
    test_support::logs::install();
    let app = spawn_app_with(|c, l| {
        c.db.pool_size = 1;
        l.listing_stall_secs = 1;
    })
    .await;
    seed(&mut app.db(), 150_000, 200);
    let (rid, mut stream, first) = start_listing(&app).await;
    // The socket stays open but unread: after 1 s the listing lets go.
    test_support::logs::wait_for(
        &[
            "event=listing_stopped reason=stalled",
            &format!(" request_id={rid}"),
        ],
        Duration::from_secs(10),
    )
    .await;
    wait_for_free_pool(&app, Duration::from_secs(5)).await;
    let raw = blocking(move || read_to_close(&mut stream, first)).await;
    let (_, payload, complete) = dechunk(&raw);
    assert!(!complete);
    assert!(serde_json::from_slice::<Value>(&payload).is_err());
    test_support::logs::wait_for(
        &["event=listing_cut", &format!(" request_id={rid}")],
        Duration::from_secs(5),
    )
    .await;
}

#[actix_web::test]
async fn full_pages_link_to_the_next_one() {
    let app = spawn_app().await;
    let mut all = Vec::new();
    for title in ["a b", "a b", "c", "a b", "a b"] {
        all.push(app.create(title, "").await["id"].as_i64().unwrap());
    }
    let reply = app.get("/api/movies?limit=2").await;
    assert_eq!(ids(&reply.body), all[..2]);
    assert_eq!(
        reply.header("link"),
        Some(format!("</api/movies?after_id={}&limit=2>; rel=\"next\"", all[1]).as_str())
    );
    // offset pages link to the keyset page that follows them.
    let reply = app.get("/api/movies?limit=2&offset=2").await;
    assert_eq!(ids(&reply.body), all[2..4]);
    assert_eq!(
        next_link(&reply),
        Some(format!("/api/movies?after_id={}&limit=2", all[3]))
    );
    // The title goes along, encoded as the query decoder reads it back.
    let reply = app.get("/api/movies?title=a%20b&limit=2").await;
    assert_eq!(ids(&reply.body), [all[0], all[1]]);
    let next = next_link(&reply).unwrap();
    assert_eq!(
        next,
        format!("/api/movies?title=a+b&after_id={}&limit=2", all[1])
    );
    let reply = app.get(&next).await;
    assert_eq!(ids(&reply.body), [all[3], all[4]]);
    // Full, so it links on; the page after it is empty and does not.
    let reply = app.get(&next_link(&reply).unwrap()).await;
    assert_eq!(reply.body, json!([]));
    assert_eq!(reply.header("link"), None);
    // A page that is not full, no limit, or limit 0: no link.
    for query in [
        "?limit=10",
        "",
        "?limit=0",
        "?after_id=0",
        "?title=c&limit=1&after_id=3",
    ] {
        let reply = app.get(&format!("/api/movies{query}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}");
        if query == "?title=c&limit=1&after_id=3" {
            assert_eq!(reply.body, json!([]), "{query}");
        }
        assert_eq!(reply.header("link"), None, "{query}");
    }
    let reply = app.get(&format!("/api/movies?after_id={}", all[2])).await;
    assert_eq!(ids(&reply.body), all[3..]);
    // With an offset: skipped from the keyset position on.
    let reply = app
        .get(&format!("/api/movies?after_id={}&offset=1&limit=1", all[0]))
        .await;
    assert_eq!(ids(&reply.body), [all[2]]);
    assert_eq!(
        next_link(&reply),
        Some(format!("/api/movies?after_id={}&limit=1", all[2]))
    );
}

#[actix_web::test]
async fn keyset_paging_walks_the_table_without_gap_or_duplicate_while_it_changes() {
    let app = spawn_app().await;
    let mut conn = app.db();
    seed(&mut conn, 1000, 10);
    let initial: BTreeSet<i64> = (1..=1000).collect();
    let mut deleted_ahead = BTreeSet::new();
    let mut inserted = BTreeSet::new();
    let mut late = Vec::new();
    let mut seen = Vec::new();
    let mut next = Some("/api/movies?limit=37".to_owned());
    let mut page = 0;
    while let Some(path) = next {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let got = ids(&reply.body);
        assert!(got.len() <= 37);
        seen.extend(got);
        next = next_link(&reply);
        // Between pages: delete one movie behind the walk and one ahead of
        // it, and add two at the end.
        page += 1;
        let last = *seen.last().unwrap_or(&0);
        for id in [last - 5, last + 11 + page] {
            let gone = app.delete(&format!("/api/movies/{id}")).await.status == StatusCode::OK;
            if gone && id > last {
                deleted_ahead.insert(id);
            }
        }
        late.clear();
        for _ in 0..2 {
            let id = app.create("Movie late keep", "").await["id"]
                .as_i64()
                .unwrap();
            inserted.insert(id);
            late.push(id);
        }
        assert!(page < 200, "the walk does not end");
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "order or duplicate");
    let seen: BTreeSet<i64> = seen.into_iter().collect();
    // Exactly: everything that existed, but what was deleted before the walk
    // reached it and what was added after its last page.
    let mut expected: BTreeSet<i64> = initial.union(&inserted).copied().collect();
    expected.retain(|id| !deleted_ahead.contains(id) && !late.contains(id));
    assert_eq!(
        seen.symmetric_difference(&expected).collect::<Vec<_>>(),
        Vec::<&i64>::new()
    );
    assert!(!deleted_ahead.is_empty() && inserted.len() > 50);

    // The same walk restricted by title.
    let mut seen_keep = Vec::new();
    let mut next = Some("/api/movies?title=keep&limit=50".to_owned());
    while let Some(path) = next {
        let reply = app.get(&path).await;
        seen_keep.extend(ids(&reply.body));
        next = next_link(&reply);
    }
    let filter = MovieFilter {
        title: Some("keep".to_owned()),
        ..Default::default()
    };
    let expected: Vec<i64> = queries::list(&mut conn, &filter)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(seen_keep, expected);
}

#[actix_web::test]
async fn bad_after_id_is_400_naming_it() {
    let app = spawn_app().await;
    for query in [
        "after_id=-1",
        "after_id=abc",
        "after_id=1.5",
        "after_id=",
        "after_id=9223372036854775808",
        "after_id=99999999999999999999",
    ] {
        let reply = app.get(&format!("/api/movies?{query}")).await;
        reply.assert_error(400, "validation_failed", Some("after_id"));
    }
    let reply = app.get(&format!("/api/movies?after_id={}", i64::MAX)).await;
    assert_eq!(reply.body, json!([]));
}

/// A page too long to be sent whole (over 256 KiB) goes out before its end
/// is known: its Link comes from the database, and is the same.
#[actix_web::test]
async fn long_streamed_pages_link_like_short_ones() {
    let app = spawn_app().await;
    seed(&mut app.db(), 90, 10_000);
    for (query, link) in [
        (
            "?limit=30",
            Some("</api/movies?after_id=30&limit=30>; rel=\"next\""),
        ),
        (
            "?limit=90",
            Some("</api/movies?after_id=90&limit=90>; rel=\"next\""),
        ),
        ("?limit=91", None),
        (
            "?title=keep&limit=29",
            Some("</api/movies?title=keep&after_id=87&limit=29>; rel=\"next\""),
        ),
        (
            "?limit=30&offset=5",
            Some("</api/movies?after_id=35&limit=30>; rel=\"next\""),
        ),
        ("?limit=30&after_id=61", None),
    ] {
        let (status, headers, body) = app.get_bytes(&format!("/api/movies{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}");
        assert!(
            headers.get("content-length").is_none(),
            "{query}: not streamed"
        );
        assert_eq!(
            headers.get("link").map(|l| l.to_str().unwrap()),
            link,
            "{query}"
        );
        let list: Value = serde_json::from_slice(&body).unwrap();
        let last = ids(&list).last().copied();
        if let Some(link) = link {
            assert!(
                link.contains(&format!("after_id={}&", last.unwrap())),
                "{query}"
            );
        }
    }
}
