//! What the dashboard's storage, log and submit form read, in either mode: a
//! bucket's keys one folder at a time, a presigned URL for one of them and the
//! daemon's recent log lines (the templates are [`super::templates`]'). Scripts
//! that want more use S3 itself.

use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{ServiceError, Services};
use crate::clock::Millis;
use crate::dispatch::SinkError;
use crate::object_store::{ListQuery, StorageError};
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

/// Which keys of a bucket to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// `jobs/` or empty for the top.
    pub prefix: String,
    /// Start after this key or prefix (the next page).
    pub after: Option<String>,
    /// 1..=1000.
    pub limit: usize,
}

impl Folder {
    /// The first 200 entries under `prefix`.
    pub fn at(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            after: None,
            limit: 200,
        }
    }
}

impl Services {
    /// The keys and sub-folders directly under `folder.prefix`.
    pub async fn objects(&self, bucket: &str, folder: Folder) -> Result<ObjectPage, ServiceError> {
        if !(1..=1000).contains(&folder.limit) {
            return Err(ServiceError::invalid("limit", "must be 1..=1000"));
        }
        let query = ListQuery {
            prefix: folder.prefix.clone(),
            delimiter: Some("/".into()),
            start_after: folder.after,
            max_keys: folder.limit,
        };
        let page = self
            .storage
            .list(bucket, query)
            .await
            .map_err(|e| storage_error(bucket, e))?;
        Ok(ObjectPage {
            bucket: bucket.to_owned(),
            prefix: folder.prefix,
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
        })
    }

    /// A presigned GET URL for one object, valid for `comfyui.url_expiry_seconds`.
    pub async fn presign(&self, bucket: &str, key: &str) -> Result<PresignedUrl, ServiceError> {
        if key.is_empty() {
            return Err(ServiceError::invalid("key", "the object's key is required"));
        }
        let presigner = self.presigner.as_ref().ok_or_else(|| {
            ServiceError::NoBackend(
                "darkroom's S3 server is off (s3.enabled = false), so there is nothing to presign for".into(),
            )
        })?;
        self.storage
            .head_object(bucket, key)
            .await
            .map_err(|e| storage_error(bucket, e))?;
        let url = presigner
            .get_url(bucket, key, self.url_expiry, SystemTime::now())
            .map_err(|e| ServiceError::Internal(format!("presign: {e}")))?;
        let expiry_ms = i64::try_from(self.url_expiry.as_millis()).unwrap_or(i64::MAX);
        Ok(PresignedUrl {
            url,
            expires_ms: self.queue.now_ms().saturating_add(expiry_ms),
        })
    }

    /// An output's bytes, read whole from where outputs are stored (darkroom's
    /// object store or the external S3), refused when larger than `limit`.
    pub async fn read_output(&self, bucket: &str, key: &str, limit: u64) -> Result<Bytes, ServiceError> {
        if key.is_empty() {
            return Err(ServiceError::invalid("key", "the object's key is required"));
        }
        let bytes = self
            .dispatcher
            .read_output(bucket, key)
            .await
            .map_err(|e| match e {
                SinkError::Storage(e) => storage_error(bucket, e),
                SinkError::Remote { .. } => ServiceError::Unavailable(e.to_string()),
            })?;
        if bytes.len() as u64 > limit {
            return Err(ServiceError::invalid(
                "key",
                format!(
                    "{bucket}/{key} is {} bytes, more than the {limit} read inline; download its URL",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes)
    }

    /// Up to `limit` (1..=2000) of the daemon's log lines after `after`, oldest first.
    pub fn logs(&self, after: u64, limit: usize) -> Result<LogPage, ServiceError> {
        if !(1..=2000).contains(&limit) {
            return Err(ServiceError::invalid("limit", "must be 1..=2000"));
        }
        Ok(LogPage {
            lines: self.logs.after(after, limit),
        })
    }
}

fn storage_error(bucket: &str, e: StorageError) -> ServiceError {
    match e {
        StorageError::NoSuchBucket(_) => ServiceError::NotFound(format!("no bucket {bucket:?}")),
        StorageError::NoSuchKey { key, .. } => {
            ServiceError::NotFound(format!("no object {key:?} in {bucket:?}"))
        }
        other => ServiceError::Internal(format!("storage: {other}")),
    }
}
