//! Start-up, schema and database outages, against a real PostgreSQL.

use crate::support::*;
use actix_web::http::{Method, StatusCode};
use diesel::pg::PgConnection;
use diesel::sql_types::{Bool, Text};
use diesel::{QueryableByName, RunQueryDsl};
use diesel_migrations::MigrationHarness;
use inventory_app::error::Error;
use inventory_app::state::AppState;
use inventory_app::MIGRATIONS;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

fn exists(conn: &mut PgConnection, sql: &str) -> bool {
    diesel::sql_query(format!("SELECT EXISTS ({sql}) AS exists"))
        .get_result::<Exists>(conn)
        .unwrap()
        .exists
}

fn schema_present(conn: &mut PgConnection) -> (bool, bool, bool) {
    (
        exists(conn, "SELECT 1 FROM pg_class WHERE relname = 'movies'"),
        exists(
            conn,
            "SELECT 1 FROM pg_class WHERE relname = 'movies_title_trgm_idx'",
        ),
        exists(conn, "SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"),
    )
}

#[test]
fn migrations_apply_revert_completely_and_apply_again() {
    let name = unique_db_name();
    create_database(&name);
    let mut conn = connect(&name);

    assert_eq!(conn.run_pending_migrations(MIGRATIONS).unwrap().len(), 2);
    assert_eq!(schema_present(&mut conn), (true, true, true));

    conn.revert_all_migrations(MIGRATIONS).unwrap();
    assert_eq!(schema_present(&mut conn), (false, false, false));

    assert_eq!(conn.run_pending_migrations(MIGRATIONS).unwrap().len(), 2);
    assert_eq!(schema_present(&mut conn), (true, true, true));
    drop(conn);
    drop_database(&name);
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// A database of its own with the schema in place: its name (to drop it
/// after) and a connection to it.
fn migrated_database() -> (String, PgConnection) {
    let name = unique_db_name();
    create_database(&name);
    let mut conn = connect(&name);
    conn.run_pending_migrations(MIGRATIONS).unwrap();
    (name, conn)
}

#[test]
fn title_search_can_use_the_trigram_index() {
    let (name, mut conn) = migrated_database();
    // On an empty table the planner prefers a scan; forbid it to see whether
    // the index can serve an ILIKE '%...%' search at all.
    diesel::sql_query("SET enable_seqscan = off")
        .execute(&mut conn)
        .unwrap();
    let plan: Vec<PlanLine> =
        diesel::sql_query("EXPLAIN SELECT id FROM movies WHERE title ILIKE '%matrix%'")
            .load(&mut conn)
            .unwrap();
    let plan: Vec<String> = plan.into_iter().map(|p| p.line).collect();
    assert!(
        plan.iter().any(|l| l.contains("movies_title_trgm_idx")),
        "{plan:#?}"
    );
    drop(conn);
    drop_database(&name);
}

#[actix_web::test]
async fn unreachable_database_gives_503_json_and_health_stays_up() {
    let app = spawn_with(config(closed_port(), "movies"), None);
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    app.get("/ready").await.assert_error(503, "not_ready", None);
    app.get("/api/movies")
        .await
        .assert_error(503, "database_unavailable", None);
    let reply = app.get("/api/movies/1").await;
    reply.assert_error(503, "database_unavailable", None);
    assert_eq!(reply.header("retry-after"), Some("1"));
    app.post_json("/api/movies", &json!({"title": "x"}))
        .await
        .assert_error(503, "database_unavailable", None);
    app.put_json("/api/movies/1", &json!({"title": "x"}))
        .await
        .assert_error(503, "database_unavailable", None);
    app.delete("/api/movies/1")
        .await
        .assert_error(503, "database_unavailable", None);
    app.delete("/api/movies")
        .await
        .assert_error(503, "database_unavailable", None);
    // Input is still checked first: a bad request is a 400, not a 503.
    app.post_json("/api/movies", &json!({"title": ""}))
        .await
        .assert_error(400, "validation_failed", Some("title"));
}

/// A failed request is logged once, at warning level, with its request id
/// and the detail the response does not show.
#[actix_web::test]
async fn a_database_outage_is_logged_once_per_request_with_its_id() {
    test_support::logs::install();
    let app = spawn_with(config(closed_port(), "movies"), None);
    let rid = format!("rid-{}", unique_db_name());
    app.send(Method::GET, "/api/movies", None, None, Some(&rid))
        .await
        .assert_error(503, "database_unavailable", None);
    let line = test_support::logs::wait_for(
        &[
            "GET /api/movies failed: database unavailable: ",
            &format!(" request_id={rid}"),
        ],
        test_support::PATIENCE,
    )
    .await;
    assert!(line.starts_with("WARN common::request_id: "), "{line}");
    assert!(line.ends_with(&format!(" request_id={rid}")), "{line}");
    let about_it: Vec<_> = test_support::logs::lines_with(&rid)
        .into_iter()
        .filter(|l| !l.contains(inventory_app::startup::ACCESS_LOG_TARGET))
        .collect();
    assert_eq!(about_it, [line], "one line besides the access line");
}

/// A request that comes while the migrations still run (just after a start,
/// when a balancer probing `/health` may already send one) waits for them
/// within the pool's checkout timeout, as for a connection, instead of a 503
/// at once; one that they do not finish in time for gets the 503.
#[test]
fn a_request_during_the_migrations_waits_for_them_within_the_checkout_timeout() {
    let name = unique_db_name();
    create_database(&name);
    let db = config(pg_port(), &name).db;
    let checkout = Duration::from_millis(800);
    let state = AppState::new(common::db::pool(&db, checkout), Duration::from_secs(1));
    let migrated = state.migrated.clone();
    let finisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        migrated.store(true, Ordering::Release);
    });
    assert!(state.connection().is_ok());
    finisher.join().unwrap();

    let late = AppState::new(common::db::pool(&db, checkout), Duration::from_secs(1));
    match late.connection() {
        Err(Error::DatabaseUnavailable(why)) => {
            assert_eq!(why.to_string(), "migrations have not run yet")
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a connection before the migrations"),
    }
    drop(state);
    drop(late);
    drop_database(&name);
}

#[actix_web::test]
async fn a_database_that_appears_later_is_picked_up() {
    let name = unique_db_name();
    let mut app = spawn_with(config(pg_port(), &name), None);
    app.get("/ready").await.assert_error(503, "not_ready", None);
    app.get("/api/movies")
        .await
        .assert_error(503, "database_unavailable", None);

    create_database(&name);
    app.db_name = Some(name);
    app.wait_until_ready(Duration::from_secs(60)).await;
    let created = app.create("Late", "").await;
    assert_eq!(app.get("/api/movies").await.body, json!([created]));
}

#[actix_web::test]
async fn access_log_line_carries_the_request_id() {
    test_support::logs::install();
    let app = spawn_app().await;
    let rid = format!("rid-{}", unique_db_name());
    let reply = app
        .send(Method::GET, "/api/movies/", None, None, Some(&rid))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    app.send(Method::GET, "/api/movies/0", None, None, None)
        .await
        .assert_error(400, "validation_failed", Some("id"));

    // The access line is written after the response is handed over.
    let access = format!("{}: ", inventory_app::startup::ACCESS_LOG_TARGET);
    let lines = test_support::wait_until("the access lines", test_support::PATIENCE, || async {
        let lines = test_support::logs::lines_with(&access);
        let both = lines.iter().any(|l| l.contains("/api/movies/0 "))
            && lines.iter().any(|l| l.contains(&rid));
        both.then_some(lines)
    })
    .await;
    let tagged: Vec<_> = lines.iter().filter(|l| l.contains(&rid)).collect();
    assert_eq!(tagged.len(), 1, "{lines:#?}");
    assert!(
        tagged[0].contains("GET /api/movies/ 200 ")
            && tagged[0].ends_with(&format!("request_id={rid}")),
        "{tagged:?}"
    );
    // Without an id from the gateway, inventory makes one up (a UUID v4).
    assert!(
        lines.iter().any(|l| l.contains("GET /api/movies/0 400 ")
            && l.rsplit_once(" request_id=")
                .and_then(|(_, id)| uuid::Uuid::parse_str(id).ok())
                .is_some_and(|id| id.get_version_num() == 4)),
        "{lines:#?}"
    );
}

/// Runs the real binary with the required variables plus `extra`, and
/// returns its exit status and stderr. Start-up checks fail before anything
/// connects, so no database is needed; a run that passes them is stopped.
fn run_binary(extra: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_inventory-app"));
    cmd.env_clear()
        .env("INVENTORY_HOST", "127.0.0.1")
        .env("INVENTORY_PORT", "0")
        .env("INVENTORY_DB_HOST", "127.0.0.1")
        .env("INVENTORY_DB_PORT", closed_port().to_string())
        .env("INVENTORY_DB_NAME", "movies")
        .env("INVENTORY_DB_USER", "inventory")
        .env("INVENTORY_DB_PASSWORD", "hunter2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "inventory-app kept running with {extra:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// 0 workers used to panic inside actix-server, and a pool of 0 was silently
/// made 1: both now stop start-up with one line naming the variable.
#[test]
fn zero_workers_or_pool_size_stop_start_up_naming_the_variable() {
    for name in [
        "INVENTORY_WORKERS",
        "INVENTORY_DB_POOL_SIZE",
        "INVENTORY_LISTING_STALL_SECS",
    ] {
        let (status, stderr) = run_binary(&[(name, "0")]);
        assert_eq!(status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "configuration error: bad variable {name}: must be at least 1 (got 0)"
            )),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
    }
}

/// "cannot listen" is said only when the port cannot be bound.
#[test]
fn start_up_errors_say_what_failed() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (status, stderr) = run_binary(&[("INVENTORY_PORT", &port)]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "start-up failed: cannot listen on 127.0.0.1:{port}: "
        )),
        "{stderr}"
    );
    let thread = inventory_app::startup::StartupError::Thread {
        what: "migrations",
        source: std::io::Error::other("no"),
    };
    assert_eq!(thread.to_string(), "cannot start the migrations thread: no");
    let server = inventory_app::startup::StartupError::Server(std::io::Error::other("no"));
    assert_eq!(server.to_string(), "cannot start the HTTP server: no");
}

/// Rows the primary key index scan returned (EXPLAIN ANALYZE counts them; no
/// timing is measured or asserted).
fn rows_scanned(conn: &mut PgConnection, query: &str) -> i64 {
    let plan: Vec<PlanLine> = diesel::sql_query(format!(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {query}"
    ))
    .load(conn)
    .unwrap();
    let lines: Vec<String> = plan.into_iter().map(|p| p.line).collect();
    let scan = lines
        .iter()
        .find(|l| l.contains("Index Scan using movies_pkey on movies"))
        .unwrap_or_else(|| panic!("{query}: no primary key index scan: {lines:#?}"));
    let rows = scan
        .split("actual rows=")
        .nth(1)
        .and_then(|r| r.split([' ', '.']).next())
        .unwrap_or_else(|| panic!("{scan}"));
    rows.parse().unwrap()
}

/// The keyset page reads only its own rows from the primary key index,
/// however deep it is; the OFFSET page reads every row before it.
#[test]
fn keyset_pages_read_only_their_rows_at_any_depth() {
    let (name, mut conn) = migrated_database();
    diesel::sql_query(
        "INSERT INTO movies (title) SELECT 'Movie ' || g FROM generate_series(1, 100000) g",
    )
    .execute(&mut conn)
    .unwrap();
    diesel::sql_query("ANALYZE movies")
        .execute(&mut conn)
        .unwrap();
    let page = "SELECT id, title, description FROM movies";
    for after_id in [0, 50_000, 99_990] {
        let keyset = format!("{page} WHERE id > {after_id} ORDER BY id LIMIT 10");
        assert_eq!(rows_scanned(&mut conn, &keyset), 10, "{keyset}");
    }
    let deep = format!("{page} ORDER BY id LIMIT 10 OFFSET 99990");
    assert_eq!(rows_scanned(&mut conn, &deep), 100_000);
    drop(conn);
    drop_database(&name);
}

/// Asked to stop with a drain period (a replica behind a balancer), the
/// service answers its health checks 503 "draining" and goes on serving
/// requests until the period ends, then exits 0. The balancer (the gateway's
/// probes) moves away meanwhile, so no request meets a closed port.
#[actix_web::test]
async fn a_stop_signal_drains_then_exits() {
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_inventory-app"))
        .env_clear()
        .env("INVENTORY_HOST", "127.0.0.1")
        .env("INVENTORY_PORT", port.to_string())
        .env("INVENTORY_METRICS_PORT", "0")
        .env("INVENTORY_DB_HOST", "127.0.0.1")
        .env("INVENTORY_DB_PORT", closed_port().to_string())
        .env("INVENTORY_DB_NAME", "movies")
        .env("INVENTORY_DB_USER", "inventory")
        .env("INVENTORY_DB_PASSWORD", "hunter2")
        .env("INVENTORY_DRAIN_MS", "3000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = test_support::http_client(Duration::from_secs(5));
    let url = format!("http://127.0.0.1:{port}");
    let get = |path: &str| client.get(format!("{url}{path}")).send();
    test_support::wait_until(
        "inventory-app answers /health",
        Duration::from_secs(10),
        || async {
            get("/health")
                .await
                .ok()
                .filter(|r| r.status() == StatusCode::OK)
        },
    )
    .await;

    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let mut health =
        test_support::wait_until("/health answers 503", Duration::from_secs(2), || async {
            get("/health")
                .await
                .ok()
                .filter(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE)
        })
        .await;
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["checks"], json!({"shutdown": "draining"}), "{body}");
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    let ready = get("/ready").await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Still serving: a request gets its usual answer (here the 400 of a bad
    // id), not a refused connection.
    let served = get("/api/movies/abc").await.unwrap();
    assert_eq!(served.status(), StatusCode::BAD_REQUEST);
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited before the drain period ended"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after the drain"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = {
        use std::io::Read;
        let mut s = String::new();
        child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
        s
    };
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("event=draining"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
