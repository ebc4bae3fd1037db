//! Where a job's images go: the [`OutputSink`] interface (put, copy, exists,
//! presigned URL), implemented over darkroom's own object store without an HTTP round trip
//! ([`StoreSink`]) and over an external S3 endpoint ([`super::s3_sink::S3Sink`]). Also the
//! shape of what a finished job returns ([`JobResult`]) and the key layout
//! `jobs/{job_id}/{n}-{filename}` + `jobs/{job_id}/metadata.json`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cache::{CachedObject, CachedResult};
use crate::object_store::{ObjectAttrs, ObjectStore, StorageError};
use crate::s3::presign::Presigner;
use crate::stores::StoreHealth;

/// Storing an output failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The external S3 endpoint refused or did not answer.
    #[error("S3 endpoint {endpoint}: {message}")]
    Remote { endpoint: String, message: String },
}

/// Somewhere outputs can be written and later downloaded from.
#[async_trait]
pub trait OutputSink: Send + Sync + 'static {
    /// Stores `bytes` at `bucket/key`; returns the stored size.
    async fn put(&self, bucket: &str, key: &str, bytes: Bytes, content_type: &str) -> Result<u64, SinkError>;
    /// Copies `src_bucket/src_key` to `dst_bucket/dst_key` where the bytes are (a
    /// cache hit's outputs under its own job): by reference on the embedded store,
    /// a server-side CopyObject on S3. Never downloads the bytes.
    async fn copy(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
    ) -> Result<(), SinkError>;
    /// Reads `bucket/key` whole (an output handed back inline, as OpenAI's
    /// `b64_json` wants).
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, SinkError>;
    /// Whether `bucket/key` is still there (a cached result may have expired).
    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, SinkError>;
    /// A download URL valid for `expires`, when the store can make one.
    async fn url(&self, bucket: &str, key: &str, expires: Duration) -> Option<String>;
    /// Makes `bucket` if it is missing (at start, so a bad name or endpoint shows).
    async fn ensure_bucket(&self, bucket: &str) -> Result<(), SinkError>;
    /// What holds the outputs and whether it answers (checked on `bucket`), for
    /// status and the dashboard.
    async fn health(&self, bucket: &str) -> StoreHealth;
}

/// Outputs into darkroom's own object store, with URLs from its presigner.
pub struct StoreSink {
    pub storage: ObjectStore,
    pub presigner: Option<Presigner>,
}

#[async_trait]
impl OutputSink for StoreSink {
    async fn put(&self, bucket: &str, key: &str, bytes: Bytes, content_type: &str) -> Result<u64, SinkError> {
        let attrs = ObjectAttrs {
            content_type: Some(content_type.to_owned()),
            ..ObjectAttrs::default()
        };
        let body = |b: &Bytes| futures::stream::iter([Ok::<_, std::convert::Infallible>(b.clone())]);
        let meta = match self.storage.put(bucket, key, body(&bytes), attrs.clone()).await {
            // Someone deleted the output bucket: make it again rather than lose the images.
            Err(StorageError::NoSuchBucket(_)) => {
                match self.storage.create_bucket(bucket).await {
                    Ok(()) | Err(StorageError::BucketAlreadyExists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                self.storage.put(bucket, key, body(&bytes), attrs).await?
            }
            r => r?,
        };
        Ok(meta.size)
    }

    async fn copy(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
    ) -> Result<(), SinkError> {
        let copy = || {
            self.storage
                .copy_object((src_bucket, src_key), (dst_bucket, dst_key), None)
        };
        match copy().await {
            // The destination bucket was deleted: make it again (as `put` does).
            Err(StorageError::NoSuchBucket(b)) if b == dst_bucket && b != src_bucket => {
                self.ensure_bucket(dst_bucket).await?;
                copy().await?;
            }
            r => {
                r?;
            }
        }
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, SinkError> {
        // Through `read_span`, so an object sealed at rest comes back in the clear.
        let open = self.storage.open_object(bucket, key).await?;
        let size = open.meta.size;
        let mut stream = self.storage.read_span(&open.meta, open.body, 0..size, None)?;
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let chunk = chunk.map_err(|e| StorageError::io(format!("{bucket}/{key}"), e))?;
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes.into())
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, SinkError> {
        match self.storage.head_object(bucket, key).await {
            Ok(_) => Ok(true),
            Err(StorageError::NoSuchKey { .. } | StorageError::NoSuchBucket(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn ensure_bucket(&self, bucket: &str) -> Result<(), SinkError> {
        match self.storage.create_bucket(bucket).await {
            Ok(()) | Err(StorageError::BucketAlreadyExists(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn health(&self, _bucket: &str) -> StoreHealth {
        StoreHealth::embedded()
    }

    async fn url(&self, bucket: &str, key: &str, expires: Duration) -> Option<String> {
        let presigner = self.presigner.as_ref()?;
        match presigner.get_url(bucket, key, expires, SystemTime::now()) {
            Ok(url) => Some(url),
            Err(e) => {
                tracing::warn!(bucket, key, error = %e, "cannot presign an output URL");
                None
            }
        }
    }
}

/// A shared sink.
pub type SharedSink = Arc<dyn OutputSink>;

/// One stored output of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputObject {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub content_type: String,
    /// A presigned GET URL (absent when darkroom's S3 server is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The outputs a job's result lists (none while it has no result).
pub fn outputs_of(job: &crate::queue::Job) -> Vec<OutputObject> {
    job.result
        .as_ref()
        .and_then(|r| r.get("outputs"))
        .and_then(|o| serde_json::from_value(o.clone()).ok())
        .unwrap_or_default()
}

/// What a succeeded job's `result` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    pub outputs: Vec<OutputObject>,
    /// True when the outputs came from the prompt cache and no GPU ran.
    pub cache_hit: bool,
    /// The backend that ran it (absent for a cache hit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<String>,
    /// `jobs/{id}/metadata.json` in the output bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_key: Option<String>,
    /// Time from submit to ComfyUI until the outputs were stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_ms: Option<i64>,
    /// When the URLs stop working (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls_expire_ms: Option<i64>,
}

impl JobResult {
    /// The cache entry for this result.
    pub fn to_cached(&self) -> CachedResult {
        CachedResult {
            objects: self
                .outputs
                .iter()
                .map(|o| CachedObject {
                    bucket: o.bucket.clone(),
                    key: o.key.clone(),
                    size: o.size,
                    content_type: o.content_type.clone(),
                })
                .collect(),
        }
    }

    /// Fresh presigned URLs for every output.
    pub async fn presign(&mut self, sink: &dyn OutputSink, expires: Duration, now_ms: i64) {
        for o in &mut self.outputs {
            o.url = sink.url(&o.bucket, &o.key, expires).await;
        }
        self.urls_expire_ms = self
            .outputs
            .iter()
            .any(|o| o.url.is_some())
            .then(|| now_ms.saturating_add(i64::try_from(expires.as_millis()).unwrap_or(i64::MAX)));
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The key of output `n` (1-based) of a job.
pub fn output_key(job_id: &str, n: usize, filename: &str) -> String {
    let name = filename.rsplit('/').next().unwrap_or(filename);
    format!("jobs/{job_id}/{n}-{name}")
}

/// The job whose output `key` is (`jobs/{job_id}/...`), if it follows that layout.
pub fn job_of_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("jobs/")?;
    let (job, name) = rest.split_once('/')?;
    (!job.is_empty() && !name.is_empty()).then_some(job)
}

/// The key a cache hit of job `job_id` gets for the cached output `key`: the same
/// `{n}-{filename}` name, under its own job's prefix.
pub fn copied_key(job_id: &str, key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    format!("jobs/{job_id}/{name}")
}

/// The key of a job's metadata document.
pub fn metadata_key(job_id: &str) -> String {
    format!("jobs/{job_id}/metadata.json")
}

/// The content type of a file ComfyUI wrote, from its extension.
pub fn content_type_of(filename: &str) -> &'static str {
    let ext = filename.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        Some("json") => "application/json",
        Some("txt") => "text/plain",
        Some("flac") => "audio/flac",
        Some("wav") => "audio/wav",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_types() {
        assert_eq!(
            output_key("01J", 1, "darkroom/noop_00001_.png"),
            "jobs/01J/1-noop_00001_.png"
        );
        assert_eq!(metadata_key("01J"), "jobs/01J/metadata.json");
        assert_eq!(job_of_key("jobs/01J/1-a.png"), Some("01J"));
        assert_eq!(job_of_key("other/01J/1-a.png"), None);
        assert_eq!(job_of_key("jobs/01J"), None);
        assert_eq!(copied_key("01K", "jobs/01J/2-a.png"), "jobs/01K/2-a.png");
        assert_eq!(content_type_of("a.PNG"), "image/png");
        assert_eq!(content_type_of("a.jpeg"), "image/jpeg");
        assert_eq!(content_type_of("noext"), "application/octet-stream");
    }
}
