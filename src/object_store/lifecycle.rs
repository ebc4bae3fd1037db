//! Lifecycle rules: expiry of objects by age or date and abort of stale multipart
//! uploads, filtered by prefix and tags. A sweeper task applies them periodically;
//! [`ObjectStore::sweep_lifecycle`] takes the current time so tests drive it with a
//! manual clock. How long a "day" lasts is configurable (tests shorten it).

use std::sync::atomic::Ordering;
use std::time::Duration;

use redb::ReadableTable;
use tokio_util::sync::CancellationToken;

use super::meta::{self, LifecycleRule, ObjectMeta, UploadMeta};
use super::{ObjectStore, StorageError, StorageEvent};
use crate::clock::Millis;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: Vec<(String, String)>,
    pub aborted_uploads: Vec<(String, String)>,
}

impl LifecycleRule {
    fn matches(&self, key: &str, tags: &[(String, String)]) -> bool {
        self.enabled && key.starts_with(&self.prefix) && self.tags.iter().all(|t| tags.contains(t))
    }

    fn expires(&self, obj: &ObjectMeta, now: Millis, day_ms: i64) -> bool {
        let by_days = self
            .expiration_days
            .is_some_and(|d| now >= obj.last_modified_ms + i64::from(d) * day_ms);
        let by_date = self.expiration_date_ms.is_some_and(|d| now >= d);
        by_days || by_date
    }
}

impl ObjectStore {
    /// Applies every bucket's lifecycle rules as of `now`.
    pub async fn sweep_lifecycle(&self, now: Millis) -> Result<SweepReport, StorageError> {
        let day_ms = self.inner.opts.lifecycle_day_ms;
        let (expired, aborted) = self
            .read(move |txn| {
                let mut expired = Vec::new();
                let mut aborted = Vec::new();
                let objects = txn.open_table(meta::OBJECTS)?;
                let uploads = txn.open_table(meta::UPLOADS)?;
                for row in txn.open_table(meta::BUCKETS)?.iter()? {
                    let (name, v) = row?;
                    let bucket = name.value().to_string();
                    let rules = meta::decode::<meta::BucketMeta>(v.value())?.lifecycle;
                    if rules.is_empty() {
                        continue;
                    }
                    for obj in objects.range((bucket.as_str(), "")..)? {
                        let (k, v) = obj?;
                        let (b, key) = k.value();
                        if b != bucket {
                            break;
                        }
                        let o: ObjectMeta = meta::decode(v.value())?;
                        if rules
                            .iter()
                            .any(|r| r.matches(key, &o.attrs.tags) && r.expires(&o, now, day_ms))
                        {
                            expired.push((bucket.clone(), key.to_string(), o.blob));
                        }
                    }
                    for up in uploads.iter()? {
                        let (id, v) = up?;
                        let u: UploadMeta = meta::decode(v.value())?;
                        let stale = |r: &LifecycleRule| {
                            r.enabled
                                && u.key.starts_with(&r.prefix)
                                && r.abort_incomplete_days
                                    .is_some_and(|d| now >= u.initiated_ms + i64::from(d) * day_ms)
                        };
                        if u.bucket == bucket && rules.iter().any(stale) {
                            aborted.push((bucket.clone(), u.key.clone(), id.value().to_string()));
                        }
                    }
                }
                Ok((expired, aborted))
            })
            .await?;
        let mut report = SweepReport::default();
        for (bucket, key, blob) in expired {
            // Only delete the version that was judged expired, not a newer overwrite.
            match self.delete_if_blob(&bucket, &key, &blob).await {
                Ok(true) => {
                    tracing::info!(bucket, key, "lifecycle: object expired");
                    self.record_expiration(&bucket, &key);
                    self.inner
                        .counters
                        .lifecycle_expired
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = self.inner.events.send(StorageEvent::Expired {
                        bucket: bucket.clone(),
                        key: key.clone(),
                    });
                    report.expired.push((bucket, key));
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(bucket, key, error = %e, "lifecycle: could not expire object"),
            }
        }
        for (bucket, key, id) in aborted {
            if self.abort_upload(&bucket, &key, &id).await.is_ok() {
                tracing::info!(
                    bucket,
                    key,
                    upload_id = id,
                    "lifecycle: incomplete multipart upload aborted"
                );
                self.inner
                    .counters
                    .lifecycle_aborted_uploads
                    .fetch_add(1, Ordering::Relaxed);
                let _ = self.inner.events.send(StorageEvent::UploadAborted {
                    bucket: bucket.clone(),
                    upload_id: id,
                });
                report.aborted_uploads.push((bucket, key));
            }
        }
        self.forget_completed(now - day_ms).await?;
        Ok(report)
    }

    async fn delete_if_blob(&self, bucket: &str, key: &str, blob: &str) -> Result<bool, StorageError> {
        let (b, k, e) = (bucket.to_string(), key.to_string(), blob.to_string());
        let old = self
            .inner
            .db
            .write(move |txn| {
                let mut objects = txn.open_table(meta::OBJECTS)?;
                let current: Option<ObjectMeta> = match objects.get((b.as_str(), k.as_str()))? {
                    Some(v) => Some(meta::decode(v.value())?),
                    None => None,
                };
                match current {
                    Some(o) if o.blob == e => {
                        objects.remove((b.as_str(), k.as_str()))?;
                        Ok::<_, StorageError>(Some(super::objects::release(txn, &o)?))
                    }
                    _ => Ok(None),
                }
            })
            .await?;
        let deleted = old.is_some();
        self.remove_blobs(old.flatten().into_iter().collect()).await;
        Ok(deleted)
    }

    /// Runs the sweeper every `interval` until `shutdown` is cancelled.
    pub async fn run_lifecycle(self, interval: Duration, shutdown: CancellationToken) {
        crate::clock::run_every(interval, shutdown, || async {
            if let Err(e) = self.sweep_lifecycle(self.now()).await {
                tracing::warn!(error = %e, "lifecycle sweep failed");
            }
        })
        .await;
    }
}
