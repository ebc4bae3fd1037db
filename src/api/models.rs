//! `GET /api/v1/models`: the model catalog, where each model is available and
//! loaded, what was learned about its timings, and each backend's swaps.

use axum::Json;
use axum::extract::State;

use super::ApiState;
use super::error::ErrorBody;
use crate::service::models::ModelsReport;

/// The model catalog with availability, loaded models, learned timings and swaps.
#[utoipa::path(
    get, path = "/api/v1/models", tag = "models",
    responses((status = 200, body = ModelsReport), (status = 401, body = ErrorBody))
)]
pub async fn models(State(s): State<ApiState>) -> Json<ModelsReport> {
    Json(crate::service::models::report(&s.svc.dispatcher).await)
}
