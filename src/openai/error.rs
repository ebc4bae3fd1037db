//! Errors in OpenAI's shape — `{"error": {"message", "type", "param", "code"}}`
//! with the status codes OpenAI uses — so the `openai` SDKs raise their usual
//! exceptions (`BadRequestError`, `AuthenticationError`, `RateLimitError`, ...).
//! The one place a [`ServiceError`] becomes an OpenAI error.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::service::ServiceError;

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAiErrorBody {
    pub error: OpenAiErrorDetail,
}

/// What went wrong; `param` and `code` are `null` when there is nothing to say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAiErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// A refused or failed OpenAI-style request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiError {
    pub status: StatusCode,
    pub detail: OpenAiErrorDetail,
}

impl OpenAiError {
    fn new(status: StatusCode, kind: &str, code: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            status,
            detail: OpenAiErrorDetail {
                message: message.into(),
                kind: kind.to_owned(),
                param: None,
                code: code.map(str::to_owned),
            },
        }
    }

    /// A 400 naming the request field at fault.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", None, message);
        e.detail.param = Some(param.to_owned());
        e
    }

    /// A 401: no key, or not the right one.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            "a valid `Authorization: Bearer <key>` header is required (darkroom's api.token)",
        )
    }

    /// A 429 that OpenAI's SDKs back off from.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "requests",
            Some("rate_limit_exceeded"),
            message,
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("not_found"),
            message,
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            None,
            format!("the request body is larger than {limit} bytes (api.max_body_bytes)"),
        )
    }

    /// A generation that ran and failed.
    pub fn generation_failed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            Some("generation_failed"),
            message,
        )
    }

    /// The images did not finish within `openai.wait_seconds`.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            Some("timeout"),
            message,
        )
    }

    /// A fault inside darkroom: logged, answered generically.
    pub fn internal(cause: &str) -> Self {
        tracing::error!(error = %cause, "openai: internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            None,
            "internal error",
        )
    }
}

/// Where a job request's field comes from in an OpenAI request.
fn param_of(field: &str) -> &str {
    match field {
        "params.width" | "params.height" => "size",
        "params.prompt" => "prompt",
        "template" => "model",
        other => other,
    }
}

impl From<ServiceError> for OpenAiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid { field, message } => {
                let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", None, message);
                e.detail.param = field.as_deref().map(|f| param_of(f).to_owned());
                e
            }
            ServiceError::NotFound(m) => Self::not_found(m),
            ServiceError::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, "invalid_request_error", None, m),
            ServiceError::Conflict(m) => Self::new(StatusCode::CONFLICT, "invalid_request_error", None, m),
            ServiceError::ModelUnavailable(m) => Self::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                Some("model_unavailable"),
                m,
            ),
            ServiceError::QueueFull(m) => Self::rate_limited(m),
            // OpenAI's own answer to an account over its quota.
            ServiceError::QuotaExceeded(x) => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                Some("insufficient_quota"),
                x.message,
            ),
            ServiceError::NoBackend(m) | ServiceError::Unavailable(m) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("service_unavailable"),
                m,
            ),
            ServiceError::Failed(cause) | ServiceError::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        (self.status, Json(OpenAiErrorBody { error: self.detail })).into_response()
    }
}
