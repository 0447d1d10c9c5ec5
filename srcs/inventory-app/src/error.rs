use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use common::error::ErrorCode;
use common::http::error_response;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// The cause of a 503 or 500, kept for the log line (never sent to clients).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Every way a request can fail, with its status and stable error code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `field` names the body field, query or path parameter at fault.
    #[error("{message}")]
    Validation {
        field: Option<&'static str>,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    /// Pool checkout failed, the connection broke, or migrations are pending.
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(#[source] Cause),
    #[error("internal error: {0}")]
    Internal(#[source] Cause),
}

impl Error {
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            field: Some(field),
            message: message.into(),
        }
    }

    pub fn body(message: impl Into<String>) -> Self {
        Self::Validation {
            field: None,
            message: message.into(),
        }
    }

    pub fn movie_not_found(id: i64) -> Self {
        Self::NotFound(format!("movie {id} not found"))
    }
}

impl From<DieselError> for Error {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => Self::NotFound("record not found".to_owned()),
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => Self::DatabaseUnavailable(Box::new(e)),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Self::DatabaseUnavailable(Box::new(e))
    }
}

impl From<actix_web::error::BlockingError> for Error {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Self::Internal(Box::new(e))
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            Self::Validation { field, message } => {
                error_response(status, ErrorCode::ValidationFailed, message, *field)
            }
            Self::NotFound(message) => error_response(status, ErrorCode::NotFound, message, None),
            // The detail is logged by the request-id middleware, with the id.
            Self::DatabaseUnavailable(_) => {
                let mut resp = error_response(
                    status,
                    ErrorCode::DatabaseUnavailable,
                    "the database is unavailable, try again shortly",
                    None,
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                resp
            }
            // The detail goes to the log only (the middleware's line): it may
            // show SQL or internals.
            Self::Internal(_) => error_response(
                status,
                ErrorCode::InternalError,
                "internal server error",
                None,
            ),
        }
    }
}
