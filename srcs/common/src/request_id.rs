//! One id per request, the same middleware in every HTTP service: taken from
//! the client's `X-Request-Id` when it is sane, made up otherwise; the
//! gateway forwards it to inventory and into the order message; it is
//! returned on every response and written as `request_id=ID` in every log
//! line of the request, in every service. Beside it, the request's W3C trace
//! context ([`crate::trace`]): continued from the caller's `traceparent`, or
//! started here, and logged as `trace_id=ID` just before `request_id=ID`.

use std::fmt;
use std::time::Instant;

use crate::logging::one_line;
use crate::trace::{TraceContext, TRACEPARENT};
use crate::REQUEST_ID_HEADER;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};

/// Longest client-sent id we keep; longer ones are replaced.
pub const MAX_LEN: usize = 128;

/// The request's id and trace context, stored in the request extensions by
/// [`middleware`]. Its `Display` is the log lines' closing tokens,
/// `trace_id=T request_id=ID`: write `{rid}`, never `request_id={...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId {
    pub id: String,
    pub trace: TraceContext,
}

impl RequestId {
    /// A fresh id in a new trace.
    pub fn fresh() -> Self {
        Self {
            id: generate(),
            trace: TraceContext::start(),
        }
    }

    /// The id of `req`. Every request passes the middleware, so the fallback
    /// (a fresh id) only matters for handlers called outside of it.
    pub fn of(req: &HttpRequest) -> Self {
        req.extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(Self::fresh)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} request_id={}", self.trace, self.id)
    }
}

pub fn header_name() -> HeaderName {
    HeaderName::from_static(REQUEST_ID_HEADER)
}

/// A client-sent id is kept when it is 1..=128 characters of
/// `[A-Za-z0-9._-]`, so it can neither break a log line or a header nor forge
/// a `key=value` token or a quoted string in one; anything else is replaced.
pub fn accept(value: Option<&HeaderValue>) -> Option<String> {
    let bytes = value?.as_bytes();
    let safe = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if bytes.is_empty() || bytes.len() > MAX_LEN || !bytes.iter().all(safe) {
        return None;
    }
    String::from_utf8(bytes.to_vec()).ok()
}

pub fn generate() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The log target of a service's one-line-per-request access log, as app
/// data (`.app_data(AccessLog("api_gateway::access"))`); without it the
/// lines go to `access`.
#[derive(Debug, Clone, Copy)]
pub struct AccessLog(pub &'static str);

/// Outermost middleware (`.wrap(from_fn(request_id::middleware))`): assigns the id, puts it on the response (errors
/// included), logs server-side failures with their detail, and writes one
/// access-log line per request.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let sent = req.headers().get(REQUEST_ID_HEADER);
    let id = match accept(sent) {
        Some(id) => id,
        None => {
            if sent.is_some() {
                log::debug!("replacing an unusable client X-Request-Id");
            }
            generate()
        }
    };
    let trace = TraceContext::continue_from(req.headers().get(TRACEPARENT).map(|v| v.as_bytes()));
    let rid = RequestId { id, trace };
    req.extensions_mut().insert(rid.clone());
    let target = req.app_data::<AccessLog>().map_or("access", |t| t.0);
    let method = req.method().clone();
    let path = loggable_path(req.path());

    let mut res = match next.call(req).await {
        Ok(res) => res,
        // An error that escaped every handler (none do today): answer it
        // with the id attached, and log it since no response will carry it.
        Err(err) => {
            log::error!("{method} {path}: {} {rid}", one_line(&err));
            let mut resp = err.error_response();
            if let Ok(value) = HeaderValue::from_str(&rid.id) {
                resp.headers_mut().insert(header_name(), value);
            }
            log_access(target, &method, &path, resp.status(), started, &rid);
            return Err(InternalError::from_response(err, resp).into());
        }
    };
    if let Ok(value) = HeaderValue::from_str(&rid.id) {
        res.headers_mut().insert(header_name(), value);
    }
    let status = res.status();
    if let Some(err) = res.response().error() {
        // The one log line of a failed request, with its detail (which the
        // response never shows): a handler's error only becomes a response.
        let err = one_line(err);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            log::error!("{method} {path} failed: {err} {rid}");
        } else if status.is_server_error() {
            log::warn!("{method} {path} failed: {err} {rid}");
        } else {
            log::debug!("{method} {path} rejected: {err} {rid}");
        }
    }
    log_access(target, &method, &path, status, started, &rid);
    Ok(res)
}

/// The request's path as log lines show it: every byte outside a safe set
/// (letters, digits, `-._~/%:@!$&()*+,;`) percent-encoded, `=`, `?`, quotes,
/// spaces and control characters included. So no path can end a line, open a
/// quote, or carry a `key=value` token: `/api/movies/x%20request_id=FORGED`
/// is logged as `/api/movies/x%20request_id%3DFORGED`, which
/// `grep request_id=FORGED` does not find.
pub fn loggable_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/%:@!$&()*+,;".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn log_access(
    target: &str,
    method: &Method,
    path: &str,
    status: StatusCode,
    started: Instant,
    rid: &RequestId,
) {
    log::info!(
        target: target,
        "{method} {path} {} {}ms {rid}",
        status.as_u16(),
        started.elapsed().as_millis(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn sane_ids_are_kept() {
        assert_eq!(accept(Some(&hv("abc-123"))).as_deref(), Some("abc-123"));
        let max = "x".repeat(MAX_LEN);
        assert_eq!(accept(Some(&hv(&max))), Some(max));
    }

    #[test]
    fn absurd_ids_are_refused() {
        assert_eq!(accept(None), None);
        assert_eq!(accept(Some(&hv(""))), None);
        assert_eq!(accept(Some(&hv("has space"))), None);
        assert_eq!(accept(Some(&hv(&"x".repeat(MAX_LEN + 1)))), None);
        let latin1 = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        assert_eq!(accept(Some(&latin1)), None);
        assert_eq!(accept(Some(&hv("tab\there"))), None);
        for forged in [
            "a\" b=c", "x=y", "\"q\"", "a/b", "a;b", "a,b", "a:b", "a%20b",
        ] {
            assert_eq!(accept(Some(&hv(forged))), None, "{forged}");
        }
        let every_safe = "AZaz09._-";
        assert_eq!(accept(Some(&hv(every_safe))).as_deref(), Some(every_safe));
    }

    #[test]
    fn logged_paths_carry_no_token_quote_or_space() {
        assert_eq!(loggable_path("/api/movies/42"), "/api/movies/42");
        assert_eq!(
            loggable_path("/api/movies/x%20request_id=FORGED"),
            "/api/movies/x%20request_id%3DFORGED"
        );
        assert_eq!(
            loggable_path("/a b\"c'd?e\n\u{e9}"),
            "/a%20b%22c%27d%3Fe%0A%C3%A9"
        );
    }

    #[test]
    fn generated_ids_are_uuid_v4() {
        let id = generate();
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
    }
}
