//! Bucket operations: create (validated names), delete (only when empty), list,
//! and the per-bucket settings (public read, lifecycle rules).

use std::fmt::Write as _;

use redb::ReadableTable;

use serde::{Deserialize, Serialize};

use super::meta::{self, BucketMeta, LifecycleRule, UploadMeta};
use super::{ObjectStore, StorageError, require_bucket, validate_bucket_name};
use crate::clock::Millis;

impl ObjectStore {
    /// Creates a bucket; fails if the name is invalid or the bucket exists.
    pub async fn create_bucket(&self, name: &str) -> Result<(), StorageError> {
        checked_name(name)?;
        let name = name.to_string();
        let now = self.now();
        self.inner
            .db
            .write(move |txn| {
                let mut buckets = txn.open_table(meta::BUCKETS)?;
                if buckets.get(name.as_str())?.is_some() {
                    return Err(StorageError::BucketAlreadyExists(name));
                }
                let record = BucketMeta {
                    created_ms: now,
                    ..BucketMeta::default()
                };
                buckets.insert(name.as_str(), meta::encode(&record)?.as_slice())?;
                Ok(())
            })
            .await
    }

    /// Creates the bucket if missing and sets its public flag and lifecycle rules
    /// (buckets declared in config).
    pub async fn ensure_bucket(
        &self,
        name: &str,
        public_read: bool,
        lifecycle: Vec<LifecycleRule>,
    ) -> Result<(), StorageError> {
        checked_name(name)?;
        let name = name.to_string();
        let now = self.now();
        self.inner
            .db
            .write(move |txn| {
                let mut buckets = txn.open_table(meta::BUCKETS)?;
                let mut record = match buckets.get(name.as_str())? {
                    Some(v) => meta::decode(v.value())?,
                    None => BucketMeta {
                        created_ms: now,
                        ..BucketMeta::default()
                    },
                };
                record.public_read = public_read;
                record.lifecycle = lifecycle;
                buckets.insert(name.as_str(), meta::encode(&record)?.as_slice())?;
                Ok(())
            })
            .await
    }

    /// Deletes an empty bucket (pending multipart uploads in it are aborted).
    pub async fn delete_bucket(&self, name: &str) -> Result<(), StorageError> {
        let name = name.to_string();
        let doomed = self
            .inner
            .db
            .write(move |txn| {
                let mut buckets = txn.open_table(meta::BUCKETS)?;
                require_bucket(&buckets, &name)?;
                let objects = txn.open_table(meta::OBJECTS)?;
                if let Some(row) = objects.range((name.as_str(), "")..)?.next() {
                    let (k, _) = row?;
                    if k.value().0 == name {
                        return Err(StorageError::BucketNotEmpty(name));
                    }
                }
                let mut uploads = txn.open_table(meta::UPLOADS)?;
                let mut upload_ids = Vec::new();
                for row in uploads.iter()? {
                    let (k, v) = row?;
                    let u: UploadMeta = meta::decode(v.value())?;
                    if u.bucket == name {
                        upload_ids.push(k.value().to_string());
                    }
                }
                let mut parts = txn.open_table(meta::PARTS)?;
                let mut blobs = Vec::new();
                for id in &upload_ids {
                    uploads.remove(id.as_str())?;
                    blobs.extend(super::multipart::remove_parts(&mut parts, id)?);
                }
                buckets.remove(name.as_str())?;
                Ok(blobs)
            })
            .await?;
        self.remove_blobs(doomed).await;
        Ok(())
    }

    /// The bucket's record, or `NoSuchBucket`.
    pub async fn head_bucket(&self, name: &str) -> Result<BucketMeta, StorageError> {
        let name = name.to_string();
        self.read(move |txn| require_bucket(&txn.open_table(meta::BUCKETS)?, &name))
            .await
    }

    /// All buckets, in name order.
    pub async fn list_buckets(&self) -> Result<Vec<(String, BucketMeta)>, StorageError> {
        self.read(|txn| {
            let mut out = Vec::new();
            for row in txn.open_table(meta::BUCKETS)?.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_string(), meta::decode(v.value())?));
            }
            Ok(out)
        })
        .await
    }

    /// Object count and bytes of every bucket, in name order (a scan of the object
    /// index on a read snapshot: for status pages and metrics, not hot paths).
    pub async fn usage(&self) -> Result<Vec<BucketUsage>, StorageError> {
        self.read(|txn| {
            let mut out: Vec<BucketUsage> = Vec::new();
            for row in txn.open_table(meta::BUCKETS)?.iter()? {
                let (k, v) = row?;
                let record: meta::BucketMeta = meta::decode(v.value())?;
                out.push(BucketUsage {
                    name: k.value().to_string(),
                    lifecycle: record.lifecycle.iter().map(describe_rule).collect(),
                    ..BucketUsage::default()
                });
            }
            let objects = txn.open_table(meta::OBJECTS)?;
            for b in &mut out {
                for row in objects.range((b.name.as_str(), "")..)? {
                    let (k, v) = row?;
                    if k.value().0 != b.name {
                        break;
                    }
                    let o: meta::ObjectMeta = meta::decode(v.value())?;
                    b.objects += 1;
                    b.bytes += o.size;
                }
            }
            Ok(out)
        })
        .await
        .map(|mut out| {
            let recent = self.recent_expirations();
            for b in &mut out {
                b.recent_expirations = recent.iter().filter(|e| e.bucket == b.name).cloned().collect();
            }
            out
        })
    }

    /// Replaces the bucket's lifecycle rules (an empty list deletes them).
    pub async fn set_lifecycle(&self, name: &str, rules: Vec<LifecycleRule>) -> Result<(), StorageError> {
        self.update_bucket(name, move |record| record.lifecycle = rules)
            .await
    }

    /// Changes one existing bucket's record in one write transaction.
    pub(crate) async fn update_bucket(
        &self,
        name: &str,
        change: impl FnOnce(&mut meta::BucketMeta) + Send + 'static,
    ) -> Result<(), StorageError> {
        let name = name.to_string();
        self.inner
            .db
            .write(move |txn| {
                let mut buckets = txn.open_table(meta::BUCKETS)?;
                let mut record = require_bucket(&buckets, &name)?;
                change(&mut record);
                buckets.insert(name.as_str(), meta::encode(&record)?.as_slice())?;
                Ok(())
            })
            .await
    }
}

fn checked_name(name: &str) -> Result<(), StorageError> {
    validate_bucket_name(name).map_err(|reason| StorageError::InvalidBucketName {
        name: name.to_string(),
        reason,
    })
}

/// How much one bucket holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BucketUsage {
    pub name: String,
    pub objects: u64,
    pub bytes: u64,
    /// Its lifecycle rules, one line each ("expire `tmp/` after 1 day").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<String>,
    /// The last objects lifecycle rules expired here since start, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_expirations: Vec<Expiration>,
}

/// One object a lifecycle rule deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Expiration {
    pub bucket: String,
    pub key: String,
    pub at_ms: Millis,
}

/// The UTC date of a moment, `2026-12-02`.
fn date_of(ms: Millis) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map_or_else(|_| ms.to_string(), |t| t.date().to_string())
}

/// A rule as one line of text.
fn describe_rule(rule: &LifecycleRule) -> String {
    let scope = if rule.prefix.is_empty() {
        "every object".to_owned()
    } else {
        format!("`{}`", rule.prefix)
    };
    let mut parts = Vec::new();
    if let Some(d) = rule.expiration_days {
        parts.push(format!(
            "expire {scope} after {d} day{}",
            if d == 1 { "" } else { "s" }
        ));
    }
    if let Some(at) = rule.expiration_date_ms {
        parts.push(format!("expire {scope} from {}", date_of(at)));
    }
    if let Some(d) = rule.abort_incomplete_days {
        parts.push(format!(
            "abort uploads after {d} day{}",
            if d == 1 { "" } else { "s" }
        ));
    }
    let mut line = if parts.is_empty() {
        format!("rule for {scope}")
    } else {
        parts.join(", ")
    };
    if !rule.tags.is_empty() {
        let tags: Vec<String> = rule.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(line, " (tags {})", tags.join(","));
    }
    if let Some(id) = &rule.id {
        let _ = write!(line, " [{id}]");
    }
    if !rule.enabled {
        line.push_str(" (disabled)");
    }
    line
}
