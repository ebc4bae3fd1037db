//! `GET /api/v1/status`: the [`StatusSnapshot`] the status collector
//! ([`crate::service::status`]) gathers.

use axum::Json;
use axum::extract::State;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use crate::status::StatusSnapshot;

/// Everything the dashboard shows, in one answer.
#[utoipa::path(
    get, path = "/api/v1/status", tag = "status",
    responses((status = 200, description = "The snapshot; while Redis does not answer, `queue.unavailable` / `cache.unavailable` say so", body = StatusSnapshot), (status = 401, body = ErrorBody))
)]
pub async fn status(State(s): State<ApiState>) -> Result<Json<StatusSnapshot>, ApiError> {
    Ok(Json(s.svc.status().await?))
}
