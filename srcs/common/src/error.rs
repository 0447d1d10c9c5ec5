//! Every error code the platform answers with, as one enum (in the way of
//! Lemmy's `LemmyErrorType`): a service cannot invent a code by typo, and a
//! reader finds every code in one place. Serialized snake_case; these strings
//! are the documented API (docs/api.md, openapi.yaml) and must not change.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // The request is wrong.
    ValidationFailed,
    InvalidJson,
    InvalidBody,
    InvalidPathParameter,
    InvalidQueryParameter,
    PayloadTooLarge,
    UnsupportedMediaType,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    ConnectNotSupported,
    UpgradeNotSupported,
    MisdirectedRequest,
    // What actix rejects before a handler runs (json_error_pages).
    BadRequest,
    UriTooLong,
    HeadersTooLarge,
    ClientError,
    // A dependency is down or slow.
    ServiceUnavailable,
    NotReady,
    DatabaseUnavailable,
    UpstreamUnavailable,
    UpstreamTimeout,
    UpstreamBadResponse,
    BrokerUnavailable,
    BrokerTimeout,
    OrderNotQueued,
    InternalError,
}

impl ErrorCode {
    /// The code as it appears in a response body and in log lines.
    /// serde's name is the one definition; it is computed once per variant.
    pub fn as_str(self) -> &'static str {
        names()
            .iter()
            .find(|(code, _)| *code == self)
            .map_or("internal_error", |(_, name)| name)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every variant, for the table of names and for tests.
pub const ALL: &[ErrorCode] = &[
    ErrorCode::ValidationFailed,
    ErrorCode::InvalidJson,
    ErrorCode::InvalidBody,
    ErrorCode::InvalidPathParameter,
    ErrorCode::InvalidQueryParameter,
    ErrorCode::PayloadTooLarge,
    ErrorCode::UnsupportedMediaType,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::RequestTimeout,
    ErrorCode::ConnectNotSupported,
    ErrorCode::UpgradeNotSupported,
    ErrorCode::MisdirectedRequest,
    ErrorCode::BadRequest,
    ErrorCode::UriTooLong,
    ErrorCode::HeadersTooLarge,
    ErrorCode::ClientError,
    ErrorCode::ServiceUnavailable,
    ErrorCode::NotReady,
    ErrorCode::DatabaseUnavailable,
    ErrorCode::UpstreamUnavailable,
    ErrorCode::UpstreamTimeout,
    ErrorCode::UpstreamBadResponse,
    ErrorCode::BrokerUnavailable,
    ErrorCode::BrokerTimeout,
    ErrorCode::OrderNotQueued,
    ErrorCode::InternalError,
];

fn names() -> &'static [(ErrorCode, &'static str)] {
    static NAMES: std::sync::OnceLock<Vec<(ErrorCode, &'static str)>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        ALL.iter()
            .filter_map(|&code| match serde_json::to_value(code) {
                Ok(serde_json::Value::String(s)) => Some((code, &*Box::leak(s.into_boxed_str()))),
                _ => None,
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented codes, pinned: renaming a variant must not change the API.
    #[test]
    fn codes_serialize_to_the_documented_names() {
        let documented = [
            "validation_failed",
            "invalid_json",
            "invalid_body",
            "invalid_path_parameter",
            "invalid_query_parameter",
            "payload_too_large",
            "unsupported_media_type",
            "not_found",
            "method_not_allowed",
            "request_timeout",
            "connect_not_supported",
            "upgrade_not_supported",
            "misdirected_request",
            "bad_request",
            "uri_too_long",
            "headers_too_large",
            "client_error",
            "service_unavailable",
            "not_ready",
            "database_unavailable",
            "upstream_unavailable",
            "upstream_timeout",
            "upstream_bad_response",
            "broker_unavailable",
            "broker_timeout",
            "order_not_queued",
            "internal_error",
        ];
        assert_eq!(ALL.len(), documented.len());
        for (code, name) in ALL.iter().zip(documented) {
            assert_eq!(serde_json::to_value(code).unwrap(), name);
            assert_eq!(code.as_str(), name);
            assert_eq!(code.to_string(), name);
        }
    }
}
