//! The storage and log endpoints the dashboard's remote mode reads: a bucket's
//! keys one folder at a time (`GET /api/v1/buckets/{bucket}/objects`), a presigned
//! URL for one of them (`GET /api/v1/buckets/{bucket}/presign`), and the daemon's
//! recent log lines (`GET /api/v1/logs`). The work is the service layer's
//! ([`crate::service::browse`]); these only read the query.

use axum::Json;
use axum::extract::{Path, RawQuery, State};

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::query::Params;
use crate::service::browse::Folder;
pub use crate::service::browse::{LogPage, ObjectEntry, ObjectPage, PresignedUrl};

/// The keys and sub-folders directly under `prefix`.
#[utoipa::path(
    get, path = "/api/v1/buckets/{bucket}/objects", tag = "storage",
    params(
        ("bucket" = String, Path, description = "The bucket"),
        ("prefix" = Option<String>, Query, description = "The folder, e.g. `jobs/` (default: the top)"),
        ("after" = Option<String>, Query, description = "Start after this key or prefix (the next page)"),
        ("limit" = Option<usize>, Query, description = "1..=1000, default 200"),
    ),
    responses((status = 200, body = ObjectPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn objects(
    State(s): State<ApiState>,
    Path(bucket): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<ObjectPage>, ApiError> {
    let params = Params::parse(query.as_deref());
    let folder = Folder {
        prefix: params.get("prefix").unwrap_or("").to_owned(),
        after: params.get("after").map(str::to_owned),
        limit: usize::try_from(params.u64("limit")?.unwrap_or(200)).unwrap_or(usize::MAX),
    };
    Ok(Json(s.svc.objects(&bucket, folder).await?))
}

/// A presigned GET URL for one object, valid for `comfyui.url_expiry_seconds`.
#[utoipa::path(
    get, path = "/api/v1/buckets/{bucket}/presign", tag = "storage",
    params(
        ("bucket" = String, Path, description = "The bucket"),
        ("key" = String, Query, description = "The object's key"),
    ),
    responses(
        (status = 200, body = PresignedUrl), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, description = "darkroom's S3 server is off", body = ErrorBody),
    )
)]
pub async fn presign(
    State(s): State<ApiState>,
    Path(bucket): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<PresignedUrl>, ApiError> {
    let params = Params::parse(query.as_deref());
    let key = params.get("key").unwrap_or("");
    Ok(Json(s.svc.presign(&bucket, key).await?))
}

/// The daemon's recent log lines, oldest first.
#[utoipa::path(
    get, path = "/api/v1/logs", tag = "status",
    params(
        ("after" = Option<u64>, Query, description = "Only lines after this `seq`"),
        ("limit" = Option<usize>, Query, description = "1..=2000, default 500 (the newest ones)"),
    ),
    responses((status = 200, body = LogPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody))
)]
pub async fn logs(State(s): State<ApiState>, RawQuery(query): RawQuery) -> Result<Json<LogPage>, ApiError> {
    let params = Params::parse(query.as_deref());
    let limit = usize::try_from(params.u64("limit")?.unwrap_or(500)).unwrap_or(usize::MAX);
    let after = params.u64("after")?.unwrap_or(0);
    Ok(Json(s.svc.logs(after, limit)?))
}
