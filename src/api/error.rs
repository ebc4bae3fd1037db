//! The one place API failures become HTTP answers: every error is JSON
//! `{"error": {"code", "message", "field"?}}` with the status that says what kind
//! of failure it is — a [`ServiceError`] from the service layer, or one of the few
//! failures only HTTP has. Internal failures are logged with their cause and
//! answered with a generic message; nothing internal leaks to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::service::ServiceError;

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_request`, `not_found`, `conflict`,
    /// `payload_too_large`, `queue_full`, `quota_exceeded`, `unauthorized`, `no_backend`, `internal`.
    pub code: String,
    pub message: String,
    /// The request field at fault (`params.steps`, `status`, `id`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `quota_exceeded`: which limit, the usage, and when it resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<crate::quotas::Exceeded>,
}

/// An API failure: a service's refusal, or one only HTTP has.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the request body is larger than {limit} bytes (api.max_body_bytes)")]
    TooLarge { limit: usize },
    #[error("a valid `Authorization: Bearer <token>` header is required (api.token)")]
    Unauthorized,
    #[error(
        "too many failed authentications from this address (api.max_auth_failures); \
         try again in {retry_after_secs} s"
    )]
    Throttled { retry_after_secs: u64 },
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Service(ServiceError::invalid(field, message))
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        let service = match self {
            Self::TooLarge { .. } => return (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Unauthorized => return (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Throttled { .. } => return (StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures"),
            Self::Service(e) => e,
        };
        let status = match service {
            ServiceError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServiceError::Conflict(_) | ServiceError::ModelUnavailable(_) => StatusCode::CONFLICT,
            ServiceError::QueueFull(_) | ServiceError::QuotaExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            ServiceError::NoBackend(_) | ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Failed(_) | ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, service.code())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let field = match &self {
            Self::Service(e) => e.field().map(str::to_owned),
            _ => None,
        };
        let message = match &self {
            // The cause is logged; the client learns only that it was not its fault.
            Self::Service(ServiceError::Internal(cause)) => {
                tracing::error!(error = %cause, "api: internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let quota = match &self {
            Self::Service(ServiceError::QuotaExceeded(x)) => Some((**x).clone()),
            _ => None,
        };
        let retry_after = quota.as_ref().and_then(|q| q.retry_after_secs);
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message,
                field,
                quota,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if matches!(self, Self::Unauthorized) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Self::Throttled { retry_after_secs } = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
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
    ApiError::Service(ServiceError::Invalid {
        field: field.or_else(|| Some("body".into())),
        message: format!("the body is not a valid job request: {text}"),
    })
}
