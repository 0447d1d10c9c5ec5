//! A RabbitMQ vhost of each test's own (so `billing_queue` of one test never
//! sees another's orders), through the management API as guest.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::Value;

/// "guest:guest" in base64.
const AUTH: &str = "Basic Z3Vlc3Q6Z3Vlc3Q=";

/// One blocking management API call (`path` after `/api`); the status and
/// the JSON body (`Null` when there is none). Blocking, so `Drop` can use it
/// too; the calls are local and short.
pub fn mgmt(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    // HTTP/1.0: the answer is never chunked and ends with the connection.
    let request = format!(
        "{method} /api{path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("RabbitMQ management on port {port}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP answer: {answer}"));
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Percent-encodes a vhost name for a management API path.
pub fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A vhost with full rights for guest; deleted on drop, also when the test
/// failed.
pub struct TestVhost {
    pub name: String,
    pub mgmt_port: u16,
}

impl TestVhost {
    pub fn create(mgmt_port: u16, prefix: &str) -> Self {
        let name = crate::unique_name(prefix);
        let path = format!("/vhosts/{}", encode(&name));
        let (status, body) = mgmt(mgmt_port, "PUT", &path, None);
        assert!(
            (200..300).contains(&status),
            "creating vhost {name}: {status} {body}"
        );
        let rights = serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"});
        let path = format!("/permissions/{}/guest", encode(&name));
        let (status, body) = mgmt(mgmt_port, "PUT", &path, Some(&rights));
        assert!(
            (200..300).contains(&status),
            "permissions on {name}: {status} {body}"
        );
        Self { name, mgmt_port }
    }

    /// A management call about this vhost: `path` after `/api`, where `{vhost}`
    /// stands for the encoded name.
    pub fn mgmt(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        mgmt(
            self.mgmt_port,
            method,
            &path.replace("{vhost}", &encode(&self.name)),
            body,
        )
    }
}

impl TestVhost {
    /// (name, client-given connection name) of the connections to this vhost.
    pub fn connections(&self) -> Vec<(String, String)> {
        let (status, list) = self.mgmt("GET", "/vhosts/{vhost}/connections", None);
        assert_eq!(status, 200, "{list}");
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (
                    text(&c["name"]),
                    text(&c["client_properties"]["connection_name"]),
                )
            })
            .collect()
    }

    /// Has the broker close a connection, as an administrator would.
    pub fn close_connection(&self, name: &str) {
        let path = format!("/connections/{}", encode(name));
        let (status, body) = self.mgmt("DELETE", &path, None);
        assert!(
            (200..300).contains(&status),
            "closing connection {name}: {status} {body}"
        );
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        // Best effort: a leftover vhost harms nobody.
        let path = format!("/vhosts/{}", encode(&self.name));
        let _ = std::panic::catch_unwind(|| mgmt(self.mgmt_port, "DELETE", &path, None));
    }
}
