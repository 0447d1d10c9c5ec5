//! The project's one JSON error format, and the actix-web settings that make
//! actix's own errors (bad JSON, bad path or query, unknown route, wrong
//! method, oversized body) use it too:
//! `{"error":{"code":"validation_failed","message":"...","field":"title"}}`.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::{TcpListener, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::{
    InternalError, JsonPayloadError, PathError, PayloadError, QueryPayloadError,
};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::web::Bytes;
use actix_web::{guard, web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::Stream;
use pin_project_lite::pin_project;
use serde::Serialize;

use crate::error::ErrorCode;
use socket2::{Domain, Socket, Type};
use tokio::time::{sleep, Sleep};

#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable: clients branch on this, never on `message`.
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A JSON error response in the project's format.
pub fn error_response(
    status: StatusCode,
    code: ErrorCode,
    message: impl Into<String>,
    field: Option<&str>,
) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error: ErrorDetail {
            code,
            message: message.into(),
            field: field.map(str::to_owned),
        },
    })
}

fn as_actix_error(
    err: impl std::fmt::Debug + std::fmt::Display + 'static,
    resp: HttpResponse,
) -> actix_web::Error {
    InternalError::from_response(err, resp).into()
}

/// JSON body extractor settings: size limit, content type, and errors in our
/// format naming what is wrong (and the field, where serde says which).
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            let resp = match &err {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    format!("request body is larger than {limit} bytes"),
                    None,
                ),
                JsonPayloadError::ContentType => error_response(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ErrorCode::UnsupportedMediaType,
                    "Content-Type must be application/json",
                    None,
                ),
                JsonPayloadError::Deserialize(e) => {
                    let (message, field) = describe_json_error(e);
                    error_response(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::InvalidJson,
                        message,
                        field.as_deref(),
                    )
                }
                other => error_response(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidBody,
                    format!("could not read the request body: {other}"),
                    None,
                ),
            };
            as_actix_error(err, resp)
        })
}

/// serde_json says which field is wrong only inside its message text
/// ("invalid type: integer `5`, expected a string at line 1 column 12");
/// keep the message and pull a field name out where it names one.
pub fn describe_json_error(e: &serde_json::Error) -> (String, Option<String>) {
    let text = e.to_string();
    let field = text
        .split('`')
        .nth(1)
        .filter(|_| text.starts_with("missing field") || text.starts_with("unknown field"))
        .map(str::to_owned);
    let message = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("request body is not valid JSON: {text}")
        }
        _ => format!("request body does not match the expected shape: {text}"),
    };
    (message, field)
}

/// Path parameter errors (e.g. an id that is not a number) as 400 JSON.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req: &HttpRequest| {
        bad_request(
            err,
            ErrorCode::InvalidPathParameter,
            "invalid path parameter",
        )
    })
}

/// Query string errors as 400 JSON.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req: &HttpRequest| {
        bad_request(
            err,
            ErrorCode::InvalidQueryParameter,
            "invalid query string",
        )
    })
}

/// An extractor's error as 400 JSON: `code`, and `what` followed by the
/// extractor's own words.
fn bad_request(
    err: impl std::fmt::Debug + std::fmt::Display + 'static,
    code: ErrorCode,
    what: &str,
) -> actix_web::Error {
    let resp = error_response(
        StatusCode::BAD_REQUEST,
        code,
        format!("{what}: {err}"),
        None,
    );
    as_actix_error(err, resp)
}

/// Default service for unknown paths: 404 JSON.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    error_response(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
        None,
    )
}

/// Per-resource default for methods a route does not take: 405 JSON with
/// the `Allow` header listing the methods it does take (RFC 9110 requires it),
/// e.g. `.default_service(web::to(method_not_allowed("GET, POST")))`.
pub fn method_not_allowed(
    allow: &'static str,
) -> impl Fn(HttpRequest) -> std::future::Ready<HttpResponse> + Clone + 'static {
    move |req: HttpRequest| {
        let mut resp = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            format!("method {} is not allowed on {}", req.method(), req.path()),
            None,
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        std::future::ready(resp)
    }
}

/// The route of a GET handler, answering HEAD too (RFC 9110 9.3.2: a GET
/// resource supports HEAD). actix sends a HEAD response's headers only.
pub fn get_or_head() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// Safety net for errors actix produces without a body of ours (for example a
/// request it rejects before any handler runs): any 4xx/5xx response that is
/// not already JSON gets a JSON body with a code derived from its status.
/// Responses that are JSON already (ours, or proxied ones) pass unchanged.
pub fn json_error_pages<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        let is_json = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let (code, message) = status_code_text(status);
        let (req, old) = res.into_parts();
        let mut new = error_response(status, code, message, None);
        // Keep headers a client may need (Allow, Retry-After, request id).
        for (name, value) in old.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                new.headers_mut().insert(name.clone(), value.clone());
            }
        }
        new.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let res = ServiceResponse::new(req, new.map_into_boxed_body()).map_into_right_body();
        Ok(ErrorHandlerResponse::Response(res))
    })
}

fn status_code_text(status: StatusCode) -> (ErrorCode, String) {
    let code = match status {
        StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
        StatusCode::URI_TOO_LONG => ErrorCode::UriTooLong,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ErrorCode::HeadersTooLarge,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::ServiceUnavailable,
        s if s.is_client_error() => ErrorCode::ClientError,
        _ => ErrorCode::InternalError,
    };
    let message = status.canonical_reason().unwrap_or("error").to_owned();
    (code, message)
}

// --- Resource bounds shared by the services' HTTP servers -------------------

/// What one client may hold on a server: every service applies these, so
/// slow or oversized requests cost a bounded amount of memory and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Total time to receive a request body, counted from its head: a body
    /// dribbled more slowly is cut with 408 and the connection closed.
    pub body_timeout: Duration,
    /// Concurrent connections per worker thread; more wait in the backlog.
    pub max_connections: usize,
    /// Connections the kernel queues beyond those, not yet accepted.
    pub backlog: u32,
    /// How long an idle keep-alive connection is kept open.
    pub keep_alive: Duration,
    /// Time to receive the first request head of a new connection.
    pub request_head_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            body_timeout: Duration::from_secs(10),
            // Measured: a slow upload near the 64 KiB limit costs the
            // gateway ~145 KiB, so 512 of them on one worker ~75 MB.
            max_connections: 512,
            backlog: 1024,
            keep_alive: Duration::from_secs(5),
            request_head_timeout: Duration::from_secs(5),
        }
    }
}

/// A listening socket on `address` whose accept queue holds `backlog`
/// connections (std's `TcpListener::bind` fixes it at 128).
pub fn listen(address: impl ToSocketAddrs, backlog: u32) -> io::Result<TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on");
    for addr in address.to_socket_addrs()? {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        // As std does on Unix: a restart may bind while old connections linger.
        socket.set_reuse_address(true)?;
        let bound = socket
            .bind(&addr.into())
            .and_then(|()| socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX)));
        match bound {
            Ok(()) => return Ok(socket.into()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The request body deadline, as app data: `.app_data(BodyDeadline(d))`
/// beside `.wrap(from_fn(bound_requests))`. Without it, the default
/// [`ServerLimits::body_timeout`] applies.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Duration);

/// Middleware for every service (`.wrap(from_fn(bound_requests))`):
/// - refuses `CONNECT` and `Upgrade:` before reading anything of the body
///   (actix would otherwise read such a request's body until the client
///   closes);
/// - gives the body a total deadline: past it, reading fails and the answer
///   is 408 JSON, whatever the handler made of the failure;
/// - closes the connection after an answer whose request body was not read
///   to its end, instead of reading (draining) the rest of a chunked body for
///   as long as the client keeps sending it.
pub async fn bound_requests(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<HoldPayload<EitherBody<impl MessageBody>>>, actix_web::Error> {
    if req.method() == Method::CONNECT {
        let resp = error_response(
            StatusCode::NOT_IMPLEMENTED,
            ErrorCode::ConnectNotSupported,
            "CONNECT is not supported: this server is not a tunnel",
            None,
        );
        return Ok(refuse(req, resp));
    }
    if req.headers().contains_key(header::UPGRADE) {
        let resp = error_response(
            StatusCode::NOT_IMPLEMENTED,
            ErrorCode::UpgradeNotSupported,
            "protocol upgrades are not supported: send the request without an Upgrade header",
            Some("Upgrade"),
        );
        return Ok(refuse(req, resp));
    }
    // No body framed (a GET, most often): nothing to bound, no timer.
    let framed = req.headers().contains_key(header::CONTENT_LENGTH)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    if !framed {
        return Ok(next
            .call(req)
            .await?
            .map_into_left_body()
            .map_body(|_, body| HoldPayload {
                body,
                _payload: None,
            }));
    }
    let timeout = req
        .app_data::<BodyDeadline>()
        .map_or(ServerLimits::default().body_timeout, |d| d.0);
    let body = Rc::new(RefCell::new(DeadlineBody {
        payload: req.take_payload(),
        deadline: Box::pin(sleep(timeout)),
        timed_out: false,
    }));
    req.set_payload(Payload::from(
        Box::pin(DeadlinePayload(Rc::clone(&body))) as PayloadStream
    ));
    let res = next.call(req).await?;
    let timed_out = body.borrow().timed_out;
    let res = if timed_out {
        let ms = timeout.as_millis();
        let resp = error_response(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            format!("the request body did not arrive within {ms} ms"),
            None,
        );
        ServiceResponse::new(res.request().clone(), resp).map_into_right_body()
    } else {
        res.map_into_left_body()
    };
    Ok(res.map_body(|_, body_out| HoldPayload {
        body: body_out,
        _payload: Some(body),
    }))
}

fn refuse<B>(
    req: ServiceRequest,
    resp: HttpResponse,
) -> ServiceResponse<HoldPayload<EitherBody<B>>> {
    // The body is never read; actix closes the connection after the answer.
    req.into_response(resp)
        .map_into_right_body::<B>()
        .map_body(|_, body| HoldPayload {
            body,
            _payload: None,
        })
}

type PayloadStream = Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>;

struct DeadlineBody {
    payload: Payload,
    deadline: Pin<Box<Sleep>>,
    timed_out: bool,
}

/// The request's payload as handlers see it: the original one, failing with
/// `TimedOut` once the deadline has passed.
struct DeadlinePayload(Rc<RefCell<DeadlineBody>>);

impl Stream for DeadlinePayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut body = self.0.borrow_mut();
        if body.timed_out {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut body.payload).poll_next(cx) {
            return Poll::Ready(item);
        }
        match body.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                body.timed_out = true;
                Poll::Ready(Some(Err(PayloadError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request body deadline passed",
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

pin_project! {
    /// A response body that keeps the request's payload alive until the
    /// answer has been written: actix then sees the body unfinished and closes
    /// the connection, where a dropped chunked payload would be drained.
    pub struct HoldPayload<B> {
        #[pin]
        body: B,
        _payload: Option<Rc<RefCell<DeadlineBody>>>,
    }
}

impl<B: MessageBody> MessageBody for HoldPayload<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.project().body.poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_field_is_named() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            title: String,
        }
        let e = serde_json::from_str::<T>("{}").unwrap_err();
        let (msg, field) = describe_json_error(&e);
        assert_eq!(field.as_deref(), Some("title"));
        assert!(msg.contains("missing field"), "{msg}");
    }

    #[test]
    fn syntax_error_says_not_json() {
        let e = serde_json::from_str::<serde_json::Value>("{nope").unwrap_err();
        let (msg, field) = describe_json_error(&e);
        assert!(msg.starts_with("request body is not valid JSON"), "{msg}");
        assert_eq!(field, None);
    }
}
