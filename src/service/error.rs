//! What a service call can end with, for every front end alike: the API maps each
//! variant to an HTTP status and code ([`crate::api::ApiError`]), the dashboard
//! shows its text, the CLI prints it. Errors of the modules below (queue, cache,
//! request checks) become these in one place, here.

use crate::cache::CacheError;
use crate::dispatch::RequestError;
use crate::queue::QueueError;

/// A refused or failed service call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The request is wrong; `field` names the part at fault.
    #[error("{message}")]
    Invalid { field: Option<String>, message: String },
    #[error("{0}")]
    NotFound(String),
    /// The caller's role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// The thing is not in a state that allows it (cancel a finished job).
    #[error("{0}")]
    Conflict(String),
    /// Admission: too many jobs are waiting.
    #[error("{0}")]
    QueueFull(String),
    /// The caller is over one of their quotas (which, how far, when it resets).
    #[error("{}", .0.message)]
    QuotaExceeded(Box<crate::quotas::Exceeded>),
    /// No backend has or can hold the model the request needs.
    #[error("{0}")]
    ModelUnavailable(String),
    /// Nothing could ever serve it (no ComfyUI backend, the S3 server off).
    #[error("{0}")]
    NoBackend(String),
    /// The queue or cache store (Redis) does not answer.
    #[error("{0}")]
    Unavailable(String),
    /// An operation the caller asked for (a backup) failed; the text says why and
    /// is for the caller.
    #[error("{0}")]
    Failed(String),
    /// A fault inside darkroom; the text is for logs, not for clients.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// A refusal naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The stable, machine-readable name of the kind of failure, the same for
    /// every front end: `invalid_request`, `not_found`, `conflict`, `queue_full`,
    /// `model_unavailable`, `no_backend`, `store_unavailable`, `failed`, `internal`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "invalid_request",
            Self::NotFound(_) => "not_found",
            Self::Forbidden(_) => "forbidden",
            Self::Conflict(_) => "conflict",
            Self::QueueFull(_) => "queue_full",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::ModelUnavailable(_) => "model_unavailable",
            Self::NoBackend(_) => "no_backend",
            Self::Unavailable(_) => "store_unavailable",
            Self::Failed(_) => "failed",
            Self::Internal(_) => "internal",
        }
    }

    /// The field at fault, if the error names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => field.as_deref(),
            Self::QuotaExceeded(x) => x.field.as_deref(),
            _ => None,
        }
    }
}

impl From<RequestError> for ServiceError {
    fn from(e: RequestError) -> Self {
        Self::Invalid {
            field: Some(e.field),
            message: e.message,
        }
    }
}

impl From<QueueError> for ServiceError {
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

impl From<CacheError> for ServiceError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Redis(_) => Self::Unavailable(format!("cache: {e}")),
            other => Self::Internal(format!("cache: {other}")),
        }
    }
}
