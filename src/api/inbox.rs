//! `GET /api/v1/inbox`: the drop-folder rules with their pending, processed and
//! failed counts ([`crate::service::inbox`]).

use axum::Json;
use axum::extract::State;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use crate::inbox::RuleStatus;

/// Every `[[inbox]]` rule with what its folders hold.
#[utoipa::path(
    get, path = "/api/v1/inbox", tag = "inbox",
    responses((status = 200, body = Vec<RuleStatus>), (status = 401, body = ErrorBody))
)]
pub async fn list(State(s): State<ApiState>) -> Result<Json<Vec<RuleStatus>>, ApiError> {
    Ok(Json(s.svc.inbox().await?))
}
