//! The one place API failures become HTTP answers: every error is JSON
//! `{"error": {"code", "message", "field"?}}` with the status that says what kind
//! of failure it is. Internal failures are logged with their cause and answered
//! with a generic message; nothing internal leaks to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::dispatch::RequestError;
use crate::queue::QueueError;

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_request`, `not_found`, `conflict`,
    /// `payload_too_large`, `queue_full`, `unauthorized`, `no_backend`, `internal`.
    pub code: String,
    pub message: String,
    /// The request field at fault (`params.steps`, `status`, `id`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Invalid { field: Option<String>, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than {limit} bytes (api.max_body_bytes)")]
    TooLarge { limit: usize },
    #[error("{0}")]
    QueueFull(String),
    #[error("a valid `Authorization: Bearer <token>` header is required (api.token)")]
    Unauthorized,
    #[error("{0}")]
    NoBackend(String),
    /// The queue or cache store (Redis) does not answer.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::QueueFull(_) => (StatusCode::TOO_MANY_REQUESTS, "queue_full"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NoBackend(_) => (StatusCode::SERVICE_UNAVAILABLE, "no_backend"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        Self::Invalid {
            field: Some(e.field),
            message: e.message,
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::NotFound(id) => Self::NotFound(format!("no job {id}")),
            QueueError::InvalidTransition { .. } => Self::Conflict(e.to_string()),
            QueueError::Invalid(m) => Self::Invalid {
                field: None,
                message: m,
            },
            QueueError::Redis(_) | QueueError::Unacknowledged { .. } | QueueError::Contention(_) => {
                Self::Unavailable(format!("job queue: {e}"))
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<crate::cache::CacheError> for ApiError {
    fn from(e: crate::cache::CacheError) -> Self {
        match e {
            crate::cache::CacheError::Redis(_) => Self::Unavailable(format!("cache: {e}")),
            other => Self::Internal(format!("cache: {other}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let field = match &self {
            Self::Invalid { field, .. } => field.clone(),
            _ => None,
        };
        if let Self::Internal(cause) = &self {
            tracing::error!(error = %cause, "api: internal error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: self.to_string(),
                field,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if matches!(self, Self::Unauthorized) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The field a serde_json error is about, when its message says (`unknown field
/// `x``, `missing field `y``); the message itself is kept as it is.
pub fn json_error(e: &serde_json::Error) -> ApiError {
    let text = e.to_string();
    let field = ["unknown field `", "missing field `"].iter().find_map(|p| {
        let rest = text.split_once(p)?.1;
        Some(rest.split_once('`')?.0.to_owned())
    });
    ApiError::Invalid {
        field: field.or_else(|| Some("body".into())),
        message: format!("the body is not a valid job request: {text}"),
    }
}
