use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use common::error::ErrorCode;
use common::http::error_response;
use common::order::FieldError;

/// Every way a gateway request can fail. `Display` is the detailed text for
/// the log (it may name hosts or broker errors); the response carries only
/// the stable `code` and a message meant for clients.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("could not read the request body: {0}")]
    BadBody(#[source] actix_web::error::PayloadError),
    #[error("invalid order: {0}")]
    InvalidOrder(#[from] FieldError),
    #[error("inventory unreachable: {0}")]
    UpstreamUnavailable(String),
    #[error("inventory did not answer within {timeout_ms} ms")]
    UpstreamTimeout { timeout_ms: u64 },
    #[error("inventory sent an unusable response: {0}")]
    UpstreamBadResponse(String),
    #[error("RabbitMQ unavailable: {0}")]
    BrokerUnavailable(String),
    /// The broker refused the order (nack) or could not route it.
    #[error("RabbitMQ did not accept order {order_id}: {reason}")]
    OrderNotQueued {
        order_id: uuid::Uuid,
        reason: String,
    },
    #[error("RabbitMQ did not confirm order {order_id} within {timeout_ms} ms")]
    PublishTimeout {
        order_id: uuid::Uuid,
        timeout_ms: u64,
    },
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// The stable, machine-readable code of the JSON error body.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::BadBody(_) => ErrorCode::InvalidBody,
            Self::InvalidOrder(e) if e.field.is_some() => ErrorCode::ValidationFailed,
            Self::InvalidOrder(_) => ErrorCode::InvalidJson,
            Self::UpstreamUnavailable(_) => ErrorCode::UpstreamUnavailable,
            Self::UpstreamTimeout { .. } => ErrorCode::UpstreamTimeout,
            Self::UpstreamBadResponse(_) => ErrorCode::UpstreamBadResponse,
            Self::BrokerUnavailable(_) => ErrorCode::BrokerUnavailable,
            Self::OrderNotQueued { .. } => ErrorCode::OrderNotQueued,
            Self::PublishTimeout { .. } => ErrorCode::BrokerTimeout,
            Self::Internal(_) => ErrorCode::InternalError,
        }
    }

    fn client_message(&self) -> String {
        match self {
            Self::UnsupportedMediaType | Self::PayloadTooLarge { .. } | Self::BadBody(_) => {
                self.to_string()
            }
            Self::InvalidOrder(e) => e.message.clone(),
            Self::UpstreamUnavailable(_) => "the inventory service is unreachable".to_owned(),
            Self::UpstreamTimeout { timeout_ms } => {
                format!("the inventory service did not answer within {timeout_ms} ms")
            }
            Self::UpstreamBadResponse(_) => {
                "the inventory service sent a response the gateway cannot forward".to_owned()
            }
            Self::BrokerUnavailable(_) => {
                "the order queue is unavailable; the order was not accepted, try again shortly"
                    .to_owned()
            }
            Self::OrderNotQueued { .. } => {
                "the order queue refused the order; it was not accepted, try again shortly"
                    .to_owned()
            }
            // The message may have reached the queue after all: say so, with
            // the id, rather than claim it was lost.
            Self::PublishTimeout {
                order_id,
                timeout_ms,
            } => format!(
                "the order queue did not confirm order {order_id} within {timeout_ms} ms; \
                 it was not accepted and may or may not be processed"
            ),
            Self::Internal(_) => "internal server error".to_owned(),
        }
    }

    fn retry_after(&self) -> Option<&'static str> {
        match self {
            Self::BrokerUnavailable(_) | Self::OrderNotQueued { .. } => Some("5"),
            Self::UpstreamUnavailable(_) => Some("1"),
            _ => None,
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadBody(_) | Self::InvalidOrder(_) => StatusCode::BAD_REQUEST,
            Self::UpstreamUnavailable(_) | Self::UpstreamBadResponse(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } | Self::PublishTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::BrokerUnavailable(_) | Self::OrderNotQueued { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logging happens in the request-id middleware, which knows the request
    /// id; here the error only becomes a response.
    fn error_response(&self) -> HttpResponse {
        let field = match self {
            Self::InvalidOrder(e) => e.field,
            _ => None,
        };
        let mut resp = error_response(
            self.status_code(),
            self.code(),
            self.client_message(),
            field,
        );
        if let Some(secs) = self.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_stay_out_of_the_response() {
        let e = Error::BrokerUnavailable("amqp://billing@10.0.0.9 refused".into());
        assert!(e.to_string().contains("10.0.0.9"));
        assert!(!e.client_message().contains("10.0.0.9"));
        assert_eq!(e.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code(), ErrorCode::BrokerUnavailable);
    }
}
