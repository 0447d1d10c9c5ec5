//! Stand-ins for inventory where a test needs an answer the real one never
//! gives (a chosen status/body/content type, a stall, raw headers) and needs
//! to see exactly what the gateway sent.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[track_caller]
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} sent {} times: {self:?}", all.len());
        all.first().copied()
    }
}

pub struct Upstream {
    pub url: String,
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    handle: ServerHandle,
    /// What `/api/movies/endless` streams have done so far.
    pub endless: Arc<Endless>,
}

/// Counters of the endless streams: bytes handed to actix, and streams that
/// have ended (dropped: actix drops a body whose client went away).
#[derive(Debug, Default)]
pub struct Endless {
    pub bytes: AtomicU64,
    pub dropped: AtomicUsize,
}

/// Counts the stream as dropped when it is.
struct DropGuard(Arc<Endless>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl Upstream {
    /// Stops the server as a restart would: idle keep-alive connections
    /// are closed.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    #[track_caller]
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream saw no request")
    }
}

pub fn spawn_upstream() -> Upstream {
    spawn_upstream_on(TcpListener::bind("127.0.0.1:0").unwrap())
}

/// Routes, under any method:
/// - `/health`: 200;
/// - `/api/movies/status/{code}?ct=..&body=..`: that status, content type
///   (none without `ct`) and body;
/// - `/api/movies/slow`: answers after 3 s;
/// - `/api/movies/chunked`: 200, `[1,2,3]` in three chunks (no length);
/// - `/api/movies/stall`: 200, streams one chunk (`first chunk;`), then
///   nothing, forever;
/// - `/api/movies/endless`: 200, streams 64 KiB chunks for as long as it is
///   read (see [`Endless`]);
/// - anything else: 200 `application/vnd.echo+json` describing the request,
///   with `X-Upstream: echo`.
pub fn spawn_upstream_on(listener: TcpListener) -> Upstream {
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let endless = Arc::new(Endless::default());
    let counters = endless.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(recorded.clone()))
            .app_data(web::Data::new(counters.clone()))
            .app_data(web::PayloadConfig::new(8 << 20))
            .default_service(web::to(answer))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Upstream {
        url: format!("http://127.0.0.1:{port}"),
        port,
        seen,
        handle,
        endless,
    }
}

async fn answer(
    req: HttpRequest,
    body: Bytes,
    seen: web::Data<Arc<Mutex<Vec<Seen>>>>,
    endless: web::Data<Arc<Endless>>,
) -> HttpResponse {
    let path = req.path().to_owned();
    if path == "/health" {
        return HttpResponse::Ok().json(serde_json::json!({"status": "ok"}));
    }
    let record = Seen {
        method: req.method().to_string(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map_or_else(String::new, |pq| pq.as_str().to_owned()),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    seen.lock().unwrap().push(record.clone());

    if let Some(code) = path.strip_prefix("/api/movies/status/") {
        let status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        let query: HashMap<String, String> =
            web::Query::<HashMap<String, String>>::from_query(req.query_string())
                .unwrap()
                .into_inner();
        let mut resp = HttpResponse::build(status);
        if let Some(ct) = query.get("ct") {
            resp.insert_header(("content-type", ct.as_str()));
        }
        return resp.body(query.get("body").cloned().unwrap_or_default());
    }
    if path == "/api/movies/chunked" {
        let chunks = futures_util::stream::iter(
            [&b"[1,"[..], b"2,", b"3]"].map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        return HttpResponse::Ok()
            .content_type("application/json")
            .streaming(chunks);
    }
    if path == "/api/movies/stall" {
        let first = futures_util::stream::once(async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"first chunk;"))
        });
        return HttpResponse::Ok()
            .content_type("application/json")
            .streaming(first.chain(futures_util::stream::pending()));
    }
    if path == "/api/movies/endless" {
        let guard = DropGuard(endless.get_ref().clone());
        let chunks = futures_util::stream::unfold(guard, |guard| async move {
            guard.0.bytes.fetch_add(64 * 1024, Ordering::SeqCst);
            Some((
                Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 64 * 1024])),
                guard,
            ))
        });
        return HttpResponse::Ok()
            .content_type("application/json")
            .streaming(chunks);
    }
    if path == "/api/movies/slow" {
        actix_web::rt::time::sleep(Duration::from_secs(3)).await;
        return HttpResponse::Ok().body("late");
    }
    HttpResponse::Ok()
        .insert_header(("content-type", "application/vnd.echo+json"))
        .insert_header(("x-upstream", "echo"))
        .body(
            serde_json::json!({
                "method": record.method,
                "path": record.path_and_query,
                "body": String::from_utf8_lossy(&record.body),
            })
            .to_string(),
        )
}

/// An upstream that reads one request head per connection and writes
/// `response` byte for byte, then closes: for headers actix would not emit
/// (for example `Connection` naming other headers).
pub async fn spawn_raw_upstream(response: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !read_head(&mut stream).await {
                    return;
                }
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    port
}

/// An upstream that answers the first request of each connection with
/// `200 ok` and keeps the connection open, then drops the connection without
/// an answer when a second request arrives on it: the race of a keep-alive
/// connection the server closes just as the client reuses it. Returns the
/// port and the number of connections accepted so far (not counting the
/// gateway's `/health` probes, which open connections of their own).
pub async fn spawn_closing_keepalive_upstream() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if !head.starts_with(b"GET /health ") {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                let answer =
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                // The next request on this connection gets no answer.
                let _ = stream.read(&mut [0u8; 4096]).await;
            });
        }
    });
    (port, accepted)
}

/// Reads until the end of a request head (the bytes after it may be read
/// too); false when the connection ends first.
async fn read_head(stream: &mut tokio::net::TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}
