//! `/api/movies*`: forwarded to inventory-app as they are, and inventory's
//! answer returned as it is (status, body, content type and end-to-end
//! headers). The gateway never parses movie bodies; only hop-by-hop headers
//! are dropped and `X-Forwarded-For` / `X-Request-Id` are set.
//!
//! The request body is buffered (it is small: [`MAX_REQUEST_BODY`]), so a
//! slow client never holds a connection to inventory and an idempotent
//! request can be re-sent. The response body is streamed as inventory sends
//! it, whatever its size: the gateway holds at most a few chunks of it, and a
//! slow client slows inventory down (TCP backpressure) rather than fill memory.
//! Only the start of an idempotent request's answer is held back
//! ([`HELD_START`]: all of a small answer): a replica that dies in the middle
//! of it, before the client has seen anything, is then one more failure to
//! retry on another replica, not a cut answer.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::error::PayloadError;
use actix_web::http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING,
};
use actix_web::http::{Method, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use awc::error::{ConnectError, SendRequestError};
use futures_util::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::body;
use crate::error::Error;
use crate::metrics::{GatewayMetrics, TELEMETRY};
use crate::upstreams::Upstreams;
use common::request_id::{self, RequestId};
use common::trace::TRACEPARENT;

/// Largest request body forwarded: what inventory accepts (its JSON limit),
/// so a bigger one is refused here, with the same 413, before it costs
/// anything upstream.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
/// Readiness probes must answer quickly even when inventory hangs.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for one connection to one inventory endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How much of an idempotent request's answer is read before its head goes
/// to the client. A movie or a page of a listing fits whole; a longer listing
/// streams on after its first 16 KiB. Per request in flight, so small.
const HELD_START: usize = 16 * 1024;

/// Headers that describe one connection, not the message (RFC 9110 7.6.1),
/// plus the non-standard ones proxies also drop.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The HTTP client for inventory-app. One per worker thread (awc clients are
/// not `Send`), each with its own keep-alive connection pool; the endpoints
/// and their health are shared by all ([`Upstreams`]).
pub struct Inventory {
    client: awc::Client,
    upstreams: Arc<Upstreams>,
    timeout: Duration,
    idle_timeout: Duration,
    metrics: GatewayMetrics,
}

type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>;

/// What inventory answered: the head, the start of the body already read
/// (idempotent requests only), and the body still to be read.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    start: Start,
    body: BodyStream,
}

/// The start of a body, read before the answer is relayed.
#[derive(Default)]
struct Start {
    chunks: Vec<Bytes>,
    /// Inventory sent nothing for the idle timeout while it was read: the
    /// relay cuts the answer once this much is sent, as it would have.
    stalled: bool,
}

/// Reads a body until it ends, [`HELD_START`] bytes have arrived, or
/// inventory has sent nothing for `idle`. An error means the answer broke
/// before the client saw any of it.
async fn read_start(body: &mut BodyStream, idle: Duration) -> Result<Start, PayloadError> {
    let mut start = Start::default();
    let mut held = 0;
    while held < HELD_START {
        match tokio::time::timeout(idle, body.next()).await {
            Err(_) => {
                start.stalled = true;
                break;
            }
            Ok(None) => {
                // Ended: the relay must not poll a finished stream again.
                *body = Box::pin(futures_util::stream::empty());
                break;
            }
            Ok(Some(chunk)) => {
                let chunk = chunk?;
                held += chunk.len();
                start.chunks.push(chunk);
            }
        }
    }
    Ok(start)
}

/// How one attempt failed, for the choice of the next.
enum Failure {
    /// No connection was made: nothing was sent, any request may go
    /// elsewhere.
    Connect { timed_out: bool },
    /// The connection ended (or broke) before the response head, or before
    /// the start of an idempotent request's answer was read: the request may
    /// have been processed, only an idempotent one goes again.
    BeforeHead,
}

impl Inventory {
    /// `timeout` bounds the exchange up to inventory's response head
    /// (connect, send, wait, retries included), `idle_timeout` each wait for
    /// the next piece of the response body.
    pub fn new(
        upstreams: Arc<Upstreams>,
        timeout: Duration,
        idle_timeout: Duration,
        metrics: GatewayMetrics,
    ) -> Self {
        // One connect may not take the whole budget: a replica that vanished
        // (its address silent, not refusing) would turn into a 504 what
        // another replica can answer. A connect on a LAN takes well under a
        // millisecond; with one replica the retries go to it until the
        // deadline, so a slow connect still succeeds as before.
        let connector = awc::Connector::new().timeout(timeout.min(CONNECT_TIMEOUT));
        let client = awc::Client::builder()
            .connector(connector)
            // The deadline is ours (below), over the whole exchange; two
            // timers racing would turn some 504s into 502s.
            .disable_timeout()
            .disable_redirects()
            // Forward the client's User-Agent and Date, not awc's.
            .no_default_headers()
            .finish();
        Self {
            client,
            upstreams,
            timeout,
            idle_timeout,
            metrics,
        }
    }

    /// Whether at least one inventory endpoint answers its `/health` with a
    /// 2xx, quickly.
    pub async fn is_up(&self, request_id: &str) -> bool {
        self.upstreams
            .any_up(&self.client, request_id, self.timeout.min(PROBE_TIMEOUT))
            .await
    }

    /// Sends the request to one endpoint after the other until one answers
    /// with a response head, within the deadline. A request goes to another
    /// endpoint when nothing was sent (the connect failed), and an idempotent
    /// one also when the connection ended before the head. A pooled
    /// keep-alive connection that inventory closes just as it is reused (a
    /// restart) fails that way too: with no other endpoint left, an
    /// idempotent request gets one more try on a fresh connection.
    async fn exchange(
        &self,
        method: &Method,
        path: &str,
        headers: &dyn Fn() -> HeaderMap,
        body: Option<Bytes>,
        request_id: &RequestId,
    ) -> Result<Answer, Error> {
        let idempotent = is_idempotent(method);
        let exchange = async {
            let mut tried = Vec::new();
            let mut stale_retry = idempotent;
            let mut target = self.upstreams.pick(&tried);
            loop {
                let Some(current) = target.take() else {
                    // Unreachable: `pick(&[])` always has an endpoint.
                    return Err(Error::UpstreamUnavailable(
                        "no inventory endpoint".to_owned(),
                    ));
                };
                let url = format!("{}{path}", current.prefix);
                let mut request = self.client.request(method.clone(), &url);
                // Made for each attempt rather than cloned: the first (and
                // nearly always only) one then copies no header map.
                *request.headers_mut() = headers();
                current.set_host(request.headers_mut());
                let sent = match &body {
                    Some(body) => request.send_body(body.clone()).await,
                    None => request.send().await,
                };
                let (failure, e) = match sent {
                    Ok(resp) => {
                        // The head's headers are taken, not copied: the body
                        // stream does not need them.
                        let mut headers = HeaderMap::new();
                        let resp = resp.map_body(|head, payload| {
                            headers = std::mem::take(&mut head.headers);
                            payload
                        });
                        let status = resp.status();
                        let mut body: BodyStream = Box::pin(resp);
                        // Once anything is relayed, nothing is retried: the
                        // answer is on its way to the client.
                        let start = if idempotent && *method != Method::HEAD {
                            read_start(&mut body, self.idle_timeout).await
                        } else {
                            Ok(Start::default())
                        };
                        match start {
                            Ok(start) => {
                                return Ok(Answer {
                                    status,
                                    headers,
                                    start,
                                    body,
                                })
                            }
                            Err(e) => (
                                Failure::BeforeHead,
                                format!("the answer broke before it was relayed: {e}"),
                            ),
                        }
                    }
                    Err(SendRequestError::Timeout) => return Err(self.timed_out()),
                    // awc reports a pooled connection that ended without an
                    // answer as `Disconnected`; the request may have been
                    // sent, so it counts as a failed exchange, not a connect.
                    Err(e @ SendRequestError::Connect(ConnectError::Disconnected)) => {
                        (Failure::BeforeHead, e.to_string())
                    }
                    Err(e @ SendRequestError::Connect(ConnectError::Timeout)) => {
                        (Failure::Connect { timed_out: true }, e.to_string())
                    }
                    Err(e @ SendRequestError::Connect(_)) => {
                        (Failure::Connect { timed_out: false }, e.to_string())
                    }
                    Err(e) => (Failure::BeforeHead, e.to_string()),
                };
                // Every log line about a request carries its id.
                self.upstreams
                    .mark_down(current.key, &format!("{e} {request_id}"));
                let error = format!("{url}: {e}");
                tried.push(current.key);
                target = match failure {
                    Failure::Connect { timed_out } => {
                        // Nothing was sent. After a connect timeout even an
                        // endpoint already tried may be tried again (the
                        // deadline ends it: 504, as before balancing).
                        match self.upstreams.pick(&tried) {
                            Some(next) => Some(next),
                            None if timed_out => self.upstreams.pick(&[]),
                            None => return Err(Error::UpstreamUnavailable(error)),
                        }
                    }
                    Failure::BeforeHead if !idempotent => {
                        return Err(Error::UpstreamUnavailable(error))
                    }
                    Failure::BeforeHead => match self.upstreams.pick(&tried) {
                        Some(next) => Some(next),
                        None if stale_retry => {
                            stale_retry = false;
                            self.upstreams.pick(&[])
                        }
                        None => return Err(Error::UpstreamUnavailable(error)),
                    },
                };
                log::info!(
                    "{method} {path}: inventory failed before answering, trying again: {error} event=upstream_retry {request_id}"
                );
                self.metrics.upstream_retried();
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(self.timed_out()))
    }

    fn timed_out(&self) -> Error {
        Error::UpstreamTimeout {
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Handler for every method on `/api/movies` and everything below it.
pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    inventory: web::Data<Inventory>,
) -> Result<HttpResponse, Error> {
    let body = body::read_limited(payload, req.headers(), MAX_REQUEST_BODY).await?;
    // Send a body (even an empty one) only if the client framed one, so a
    // GET stays a GET without `Content-Length: 0`.
    let framed =
        req.headers().contains_key(CONTENT_LENGTH) || req.headers().contains_key(TRANSFER_ENCODING);
    let body = (framed || !body.is_empty()).then_some(body);

    let request_id = RequestId::of(&req);
    let headers = || upstream_headers(req.headers(), req.peer_addr(), &request_id);
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());

    let started = std::time::Instant::now();
    let answer = inventory
        .exchange(req.method(), path, &headers, body, &request_id)
        .await;
    if let Some(metrics) = req.app_data::<web::Data<GatewayMetrics>>() {
        let status = answer.as_ref().ok().map(|a| a.status.as_u16());
        metrics.upstream(&answer, status, started);
    }
    let answer = answer?;
    let relay = Relay {
        start: answer.start.chunks.into(),
        body: answer.body,
        size: BodySize::Stream,
        idle_timeout: inventory.idle_timeout,
        // A stall while the start was read has used up the idle time: the
        // relay cuts the answer as soon as that start is sent.
        idle: answer
            .start
            .stalled
            .then(|| Box::pin(tokio::time::sleep(Duration::ZERO))),
        waiting: answer.start.stalled,
        sent: 0,
        request: req.clone(),
        request_id: request_id.clone(),
    };
    Ok(client_response(
        answer.status,
        &answer.headers,
        relay,
        req.method() == Method::HEAD,
    ))
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// Whether NAME is a hop-by-hop header of a message whose `Connection`
/// header names CONNECTION_NAMED: one of the fixed list, or one so named.
fn is_hop_by_hop(name: &HeaderName, connection_named: &[HeaderName]) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || connection_named.contains(name)
}

/// The headers a message's `Connection` header names, hop-by-hop beside the
/// fixed list. Most messages name none (or only standard ones), so this
/// usually allocates nothing, where a list of all of them did per message.
fn hop_by_hop(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names = Vec::new();
    for value in headers.get_all(CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        names.extend(
            value
                .split(',')
                .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok()),
        );
    }
    names
}

/// What inventory gets: the client's end-to-end headers, `Host` of its own
/// (set by awc from the URL), `X-Forwarded-For` extended with the client's
/// address, the request id, and a `traceparent` naming this request's trace
/// with the gateway as the parent (a client's `tracestate` passes unchanged).
fn upstream_headers(
    incoming: &HeaderMap,
    peer: Option<SocketAddr>,
    request_id: &RequestId,
) -> HeaderMap {
    let drop = hop_by_hop(incoming);
    let forwarded_for = HeaderName::from_static(X_FORWARDED_FOR);
    let rid = request_id::header_name();
    let traceparent = HeaderName::from_static(TRACEPARENT);
    let mut out = HeaderMap::new();
    for (name, value) in incoming.iter() {
        // Length and Expect are the gateway's business: the body is buffered.
        let ours = [
            &HOST,
            &CONTENT_LENGTH,
            &EXPECT,
            &forwarded_for,
            &rid,
            &traceparent,
        ];
        if is_hop_by_hop(name, &drop) || ours.contains(&name) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }

    let mut chain: Vec<u8> = Vec::new();
    for prior in incoming.get_all(&forwarded_for) {
        if !chain.is_empty() {
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(prior.as_bytes());
    }
    if let Some(peer) = peer {
        if !chain.is_empty() {
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(peer.ip().to_string().as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&chain) {
        if !chain.is_empty() {
            out.insert(forwarded_for, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&request_id.id) {
        out.insert(rid, value);
    }
    if TELEMETRY {
        if let Ok(value) = HeaderValue::from_bytes(&request_id.trace.header_bytes()) {
            out.insert(traceparent, value);
        }
    }
    out
}

/// Inventory's answer for the client: same status, headers and body, minus
/// hop-by-hop headers. The body keeps inventory's framing: a known length is
/// sent as `Content-Length` (for HEAD too: the length a GET would have, RFC
/// 9110 8.6), an unknown one chunked.
fn client_response(
    status: StatusCode,
    headers: &HeaderMap,
    mut relay: Relay,
    head: bool,
) -> HttpResponse {
    let drop = hop_by_hop(headers);
    let mut resp = HttpResponse::build(status);
    for (name, value) in headers.iter() {
        if is_hop_by_hop(name, &drop) || name == CONTENT_LENGTH {
            continue;
        }
        resp.append_header((name.clone(), value.clone()));
    }
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if head {
        if let Some(length) = length {
            resp.no_chunking(length);
        }
        return resp.body(HeadBody {
            length_set: length.is_some(),
        });
    }
    if bodiless {
        return resp.finish();
    }
    if let Some(length) = length {
        relay.size = BodySize::Sized(length);
    }
    resp.body(relay)
}

/// The (empty) body of a HEAD answer. actix decides whether a response
/// answers a HEAD from the last request it has *read*, so when a GET is
/// pipelined behind the HEAD it frames the HEAD's answer as a GET's. A body
/// of known size then fails (no bytes for its length: the connection drops
/// with nothing sent) and a chunked one gets a last chunk the client does
/// not expect. An unsized stream without chunking is framed right either
/// way: the `Content-Length` header set by hand, and no body bytes.
struct HeadBody {
    /// Whether `Content-Length` was set (`no_chunking`); without it, no
    /// framing at all.
    length_set: bool,
}

impl MessageBody for HeadBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        if self.length_set {
            BodySize::Stream
        } else {
            BodySize::None
        }
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Poll::Ready(None)
    }
}

/// Inventory's response body on its way to the client, one chunk at a time:
/// actix asks for the next chunk only once the previous one is written, so
/// a slow client holds back inventory instead of filling memory. Waiting for
/// inventory is bounded by the idle timeout; past it, or on an upstream
/// error, the stream fails, and actix aborts the response (the connection
/// is closed with the body incomplete, so no client takes it as whole).
struct Relay {
    /// The start of the body, already read ([`read_start`]): sent first.
    start: VecDeque<Bytes>,
    body: BodyStream,
    size: BodySize,
    idle_timeout: Duration,
    /// Made the first time the gateway waits for inventory: a body that
    /// is there when asked for (most) needs no timer at all.
    idle: Option<Pin<Box<Sleep>>>,
    /// Whether the idle timer runs: only while the gateway waits for
    /// inventory, not while the client takes its time reading.
    waiting: bool,
    sent: u64,
    /// The request, for the method and path in the log line of a cut:
    /// formatted only then, not for every response.
    request: HttpRequest,
    /// Ends the log line of a cut, as in every log line about a request.
    request_id: RequestId,
}

impl MessageBody for Relay {
    type Error = Error;

    fn size(&self) -> BodySize {
        self.size
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.start.pop_front() {
            this.sent += chunk.len() as u64;
            return Poll::Ready(Some(Ok(chunk)));
        }
        match this.body.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.waiting = false;
                this.sent += chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                log::warn!(
                    "{} {}: response cut after {} bytes: inventory's body failed: {e} event=response_cut {}",
                    this.request.method(),
                    this.request.path(),
                    this.sent,
                    this.request_id
                );
                Poll::Ready(Some(Err(Error::UpstreamBadResponse(e.to_string()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let deadline = Instant::now() + this.idle_timeout;
                    match &mut this.idle {
                        Some(idle) => idle.as_mut().reset(deadline),
                        None => this.idle = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.idle_timeout)));
                match idle.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        let timeout_ms =
                            u64::try_from(this.idle_timeout.as_millis()).unwrap_or(u64::MAX);
                        log::warn!(
                            "{} {}: response cut after {} bytes: inventory sent nothing for {timeout_ms} ms event=response_cut {}",
                            this.request.method(),
                            this.request.path(),
                            this.sent,
                            this.request_id
                        );
                        Poll::Ready(Some(Err(Error::UpstreamTimeout { timeout_ms })))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(id: &str) -> RequestId {
        RequestId {
            id: id.to_owned(),
            ..RequestId::fresh()
        }
    }

    #[test]
    fn inventory_gets_the_requests_trace_with_the_gateway_as_parent() {
        let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let incoming = map(&[("traceparent", client), ("tracestate", "vendor=x")]);
        let id = RequestId {
            id: "rid".to_owned(),
            trace: common::trace::TraceContext::continue_from(Some(client.as_bytes())),
        };
        let out = upstream_headers(&incoming, None, &id);
        let sent: Vec<_> = out.get_all("traceparent").collect();
        assert_eq!(sent.len(), 1);
        let sent = sent[0].to_str().unwrap();
        assert_eq!(sent, id.trace.header_value());
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_ne!(sent, client, "the gateway's own span is the parent");
        assert_eq!(out.get("tracestate").unwrap(), "vendor=x");
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let incoming = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("accept", "application/json"),
            ("host", "gateway"),
        ]);
        let out = upstream_headers(&incoming, None, &rid("rid"));
        let mut names: Vec<_> = out.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        assert_eq!(names, ["accept", "traceparent", "x-request-id"]);
        assert_eq!(out.get("accept").unwrap(), "application/json");
        assert_eq!(out.get("x-request-id").unwrap(), "rid");
    }

    #[test]
    fn forwarded_for_is_appended() {
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let incoming = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        let out = upstream_headers(&incoming, Some(peer), &rid("rid"));
        assert_eq!(
            out.get("x-forwarded-for").unwrap(),
            "1.1.1.1, 2.2.2.2, 10.1.2.3"
        );
        let out = upstream_headers(&HeaderMap::new(), Some(peer), &rid("rid"));
        assert_eq!(out.get("x-forwarded-for").unwrap(), "10.1.2.3");
    }

    #[test]
    fn client_request_id_is_replaced_by_the_accepted_one() {
        let incoming = map(&[("x-request-id", "bad id")]);
        let out = upstream_headers(&incoming, None, &rid("good"));
        let all: Vec<_> = out.get_all("x-request-id").collect();
        assert_eq!(all, vec!["good"]);
    }
}
