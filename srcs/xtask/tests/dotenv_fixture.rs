//! The Rust reader against the fixture every reader shares
//! (scripts/testdata/dotenv; scripts/dotenv-test.sh runs the others on it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::PathBuf;

use xtask::dotenv::{parse, Var};

fn fixture(name: &str) -> PathBuf {
    xtask::project_root()
        .join("scripts/testdata/dotenv")
        .join(name)
}

fn expected() -> Vec<Var> {
    fs::read_to_string(fixture("expected.tsv"))
        .unwrap()
        .lines()
        .map(|l| {
            let (key, value) = l.split_once('\t').unwrap();
            Var {
                key: key.into(),
                value: value.into(),
            }
        })
        .collect()
}

#[test]
fn lf_and_bom_crlf_files_give_the_expected_values() {
    let bom_crlf = fs::read(fixture("cases-bom-crlf.env")).unwrap();
    assert!(
        bom_crlf.starts_with(b"\xef\xbb\xbf") && bom_crlf.windows(2).any(|w| w == b"\r\n"),
        "the fixture lost its BOM/CRLF"
    );
    for name in ["cases.env", "cases-bom-crlf.env"] {
        let text = fs::read_to_string(fixture(name)).unwrap();
        assert_eq!(parse(&text, |_| None).unwrap(), expected(), "{name}");
    }
}

#[test]
fn every_error_file_is_refused_at_its_line() {
    let list = fs::read_to_string(fixture("errors/expected.tsv")).unwrap();
    let mut n = 0;
    for l in list.lines().filter(|l| !l.starts_with('#')) {
        let (name, line) = l.split_once('\t').unwrap();
        let text = fs::read_to_string(fixture(&format!("errors/{name}"))).unwrap();
        let e = parse(&text, |_| None).expect_err(name);
        assert_eq!(e.line.to_string(), line, "{name}: {e}");
        n += 1;
    }
    assert_eq!(n, 9);
}

#[test]
fn the_committed_env_parses_and_resolves_references() {
    let text = fs::read_to_string(xtask::project_root().join(".env")).unwrap();
    let vars = parse(&text, |_| None).unwrap();
    let get = |k| xtask::dotenv::get(&vars, k).unwrap().to_string();
    assert_eq!(get("GATEWAY_RABBITMQ_HOST"), get("VM_BILLING_IP"));
    assert!(get("HOST_GATEWAY_PORT").parse::<u16>().is_ok());
}
