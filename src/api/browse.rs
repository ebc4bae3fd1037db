//! What the dashboard's storage and log panels read, for either mode: a bucket's
//! keys one folder at a time (`GET /api/v1/buckets/{bucket}/objects`), a presigned
//! URL for one of them (`GET /api/v1/buckets/{bucket}/presign`), and the daemon's
//! recent log lines (`GET /api/v1/logs`). Scripts that want more use S3 itself.

use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::query::Params;
use crate::clock::Millis;
use crate::storage::{ListQuery, StorageError};
use crate::telemetry::LogLine;

/// One folder of a bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectPage {
    pub bucket: String,
    pub prefix: String,
    /// The sub-folders (common prefixes ending in `/`).
    pub prefixes: Vec<String>,
    pub objects: Vec<ObjectEntry>,
    /// More keys follow; pass `after` = the last key or prefix for them.
    pub truncated: bool,
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectEntry {
    pub key: String,
    pub size: u64,
    pub last_modified_ms: Millis,
    pub content_type: String,
}

/// A presigned GET URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PresignedUrl {
    pub url: String,
    pub expires_ms: Millis,
}

/// Recent log lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
}

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
    let limit = params.u64("limit")?.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1..=1000"));
    }
    let prefix = params.get("prefix").unwrap_or("").to_owned();
    let query = ListQuery {
        prefix: prefix.clone(),
        delimiter: Some("/".into()),
        start_after: params.get("after").map(str::to_owned),
        max_keys: usize::try_from(limit).unwrap_or(1000),
    };
    let page = s
        .storage
        .list(&bucket, query)
        .await
        .map_err(|e| storage_error(&bucket, e))?;
    Ok(Json(ObjectPage {
        bucket,
        prefix,
        prefixes: page.common_prefixes,
        objects: page
            .objects
            .into_iter()
            .map(|(key, m)| ObjectEntry {
                key,
                size: m.size,
                last_modified_ms: m.last_modified_ms,
                content_type: m.attrs.content_type.unwrap_or_default(),
            })
            .collect(),
        truncated: page.truncated,
    }))
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
    let key = params
        .get("key")
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::invalid("key", "the object's key is required"))?;
    let presigner = s.presigner.as_ref().ok_or_else(|| {
        ApiError::NoBackend(
            "darkroom's S3 server is off (s3.enabled = false), so there is nothing to presign for".into(),
        )
    })?;
    s.storage
        .head_object(&bucket, key)
        .await
        .map_err(|e| storage_error(&bucket, e))?;
    let url = presigner
        .get_url(&bucket, key, s.url_expiry, SystemTime::now())
        .map_err(|e| ApiError::Internal(format!("presign: {e}")))?;
    let expiry_ms = i64::try_from(s.url_expiry.as_millis()).unwrap_or(i64::MAX);
    Ok(Json(PresignedUrl {
        url,
        expires_ms: s.queue.now_ms().saturating_add(expiry_ms),
    }))
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
    let limit = params.u64("limit")?.unwrap_or(500);
    if !(1..=2000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1..=2000"));
    }
    let after = params.u64("after")?.unwrap_or(0);
    Ok(Json(LogPage {
        lines: s.logs.after(after, usize::try_from(limit).unwrap_or(2000)),
    }))
}

fn storage_error(bucket: &str, e: StorageError) -> ApiError {
    match e {
        StorageError::NoSuchBucket(_) => ApiError::NotFound(format!("no bucket {bucket:?}")),
        StorageError::NoSuchKey { key, .. } => ApiError::NotFound(format!("no object {key:?} in {bucket:?}")),
        other => ApiError::Internal(format!("storage: {other}")),
    }
}
