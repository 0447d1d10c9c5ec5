//! The project's one JSON error format, and the actix-web settings that make
//! actix's own errors (bad JSON, bad path or query, unknown route, wrong
//! method, oversized body) use it too:
//! `{"error":{"code":"validation_failed","message":"...","field":"title"}}`.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::error::{InternalError, JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{guard, web, HttpRequest, HttpResponse};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable: clients branch on this, never on `message`.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A JSON error response in the project's format.
pub fn error_response(
    status: StatusCode,
    code: &'static str,
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
                    "payload_too_large",
                    format!("request body is larger than {limit} bytes"),
                    None,
                ),
                JsonPayloadError::ContentType => error_response(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "Content-Type must be application/json",
                    None,
                ),
                JsonPayloadError::Deserialize(e) => {
                    let (message, field) = describe_json_error(e);
                    error_response(
                        StatusCode::BAD_REQUEST,
                        "invalid_json",
                        message,
                        field.as_deref(),
                    )
                }
                other => error_response(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
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
        let resp = error_response(
            StatusCode::BAD_REQUEST,
            "invalid_path_parameter",
            format!("invalid path parameter: {err}"),
            None,
        );
        as_actix_error(err, resp)
    })
}

/// Query string errors as 400 JSON.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req: &HttpRequest| {
        let resp = error_response(
            StatusCode::BAD_REQUEST,
            "invalid_query_parameter",
            format!("invalid query string: {err}"),
            None,
        );
        as_actix_error(err, resp)
    })
}

/// Default service for unknown paths: 404 JSON.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
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
            "method_not_allowed",
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

fn status_code_text(status: StatusCode) -> (&'static str, String) {
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
        s if s.is_client_error() => "client_error",
        _ => "internal_error",
    };
    let message = status.canonical_reason().unwrap_or("error").to_owned();
    (code, message)
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
