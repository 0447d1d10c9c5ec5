//! The file copy of one log target (the gateway's access log). Its own test
//! binary: the logger is process-global.

use std::fs;

#[test]
fn only_the_chosen_target_reaches_the_file_and_lines_are_appended() {
    let dir = std::env::temp_dir().join(format!("mp-log-file-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    fs::write(&path, "kept line\n").unwrap();

    common::logging::init();
    common::logging::copy_target_to_file("svc::access", &path).unwrap();
    log::info!(target: "svc::access", "GET /api/movies 200 1ms request_id=abc");
    log::info!(target: "svc::other", "not an access line");
    log::debug!(target: "svc::access", "below the default info filter");
    log::logger().flush();

    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], "kept line");
    assert!(
        lines[1].ends_with(" INFO GET /api/movies 200 1ms request_id=abc"),
        "{}",
        lines[1]
    );
    // RFC 3339 UTC timestamp with milliseconds first.
    assert!(
        lines[1].starts_with("20") && lines[1].contains('T'),
        "{}",
        lines[1]
    );

    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unopenable_file_is_named() {
    let bad = std::path::Path::new("/proc/no-such-dir/access.log");
    let err = common::logging::copy_target_to_file("svc::x", bad).unwrap_err();
    assert!(err.contains("/proc/no-such-dir/access.log"), "{err}");
}
