//! `POST /api/v1/backups` (take a backup now; answers when it is complete) and
//! `GET /api/v1/backups` (the schedule and how backups have gone).

use axum::Json;
use axum::extract::State;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use crate::backup::{BackupReport, BackupStatus};
use crate::service::{BackupRequest, ServiceError};

/// Takes a consistent snapshot of the data directory while serving.
#[utoipa::path(
    post, path = "/api/v1/backups", tag = "backups", request_body = BackupRequest,
    responses(
        (status = 200, description = "The snapshot is complete", body = BackupReport),
        (status = 400, description = "No destination given or configured", body = ErrorBody),
        (status = 403, description = "Only admins take backups", body = ErrorBody),
        (status = 409, description = "A backup is already running", body = ErrorBody),
        (status = 500, description = "The backup failed; the message says why", body = ErrorBody),
        (status = 503, description = "The destination does not answer", body = ErrorBody),
    )
)]
pub async fn create(
    State(s): State<ApiState>,
    axum::Extension(who): axum::Extension<crate::users::Principal>,
    body: Option<Json<BackupRequest>>,
) -> Result<Json<BackupReport>, ApiError> {
    crate::service::users::require_admin(&who, "taking a backup")?;
    let request = body.map(|Json(r)| r).unwrap_or_default();
    Ok(Json(s.svc.backup(&request).await?))
}

/// The backup schedule and the last backup's outcome.
#[utoipa::path(
    get, path = "/api/v1/backups", tag = "backups",
    responses((status = 200, body = BackupStatus), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn status(State(s): State<ApiState>) -> Result<Json<BackupStatus>, ApiError> {
    let status = s
        .svc
        .backup_status()
        .ok_or_else(|| ServiceError::NoBackend("this daemon takes no backups".into()))?;
    Ok(Json(status))
}
