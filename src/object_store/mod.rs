//! darkroom's object store: S3 semantics over local disk, independent of the S3
//! wire protocol (the `s3` module adapts it; the dispatcher writes outputs through it
//! directly).
//!
//! Metadata lives in redb (see [`meta`]); bytes live in blob files (see [`blobs`]).
//! A write streams into a new blob, fsyncs it, then commits metadata through the
//! group-commit writer; an overwrite swaps the metadata atomically and deletes the
//! old blob afterwards, unless another object still shares it (a copy refers to
//! its source's blob file instead of copying the bytes; [`meta::BLOB_REFS`] counts
//! the extra owners). A reader opens the blob file before it streams, so an
//! overwrite or delete never cuts a download short.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::ReadableTable;
use tokio::sync::broadcast;

use crate::clock::{Millis, SharedClock};
use crate::redb_store::Store;
use crate::sync::lock;

pub mod access;
pub mod blobs;
mod buckets;
pub mod error;
pub mod lifecycle;
mod list;
pub mod meta;
mod multipart;
mod names;
mod objects;
pub mod sealing;
pub mod verify;

pub use access::{Acl, Grant, Grantee, ObjectOwnership, Permission, PublicAccessBlock};
pub use blobs::{BlobHold, StagedBlob};
pub use buckets::{BucketUsage, Expiration};

/// How many recent lifecycle expirations the store remembers for the dashboard.
pub const RECENT_EXPIRATIONS: usize = 50;
pub use error::StorageError;
pub use list::{ListPage, ListQuery};
pub use meta::{BucketMeta, Checksums, LifecycleRule, ObjectAttrs, ObjectMeta, PartMeta, UploadMeta};
pub use multipart::UploadSummary;
pub use names::validate_bucket_name;
pub use objects::{ObjectBody, OpenObject, PutConditions};
pub use sealing::{Encryption, PlainStream};

/// Options of the object store.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// fsync blobs and their directories before acknowledging a write.
    pub fsync: bool,
    /// Largest object (or part) accepted, in bytes.
    pub max_object_size: u64,
    /// How many milliseconds a lifecycle "day" lasts.
    pub lifecycle_day_ms: i64,
    /// Objects up to this many bytes are stored inside the database, not as files.
    pub inline_max: usize,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            max_object_size: 5 * 1024 * 1024 * 1024,
            lifecycle_day_ms: 86_400_000,
            inline_max: 32 * 1024,
        }
    }
}

/// Something that happened in the store that others may want to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageEvent {
    /// A lifecycle rule expired an object.
    Expired { bucket: String, key: String },
    /// A lifecycle rule aborted an incomplete multipart upload.
    UploadAborted { bucket: String, upload_id: String },
    /// A new version of an object was committed (a put, a completed multipart
    /// upload, a copy); sent after the commit is durable.
    Written {
        bucket: String,
        key: String,
        etag: String,
    },
    /// An object was deleted (not by lifecycle: that is `Expired`).
    Removed { bucket: String, key: String },
}

/// Running totals the metrics endpoint exports.
#[derive(Debug, Default)]
pub struct StorageCounters {
    /// Objects deleted by lifecycle expiration.
    pub lifecycle_expired: std::sync::atomic::AtomicU64,
    /// Multipart uploads aborted by lifecycle rules.
    pub lifecycle_aborted_uploads: std::sync::atomic::AtomicU64,
}

/// Cheap `Clone` handle on the object store.
#[derive(Clone)]
pub struct ObjectStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Store,
    blobs: blobs::Blobs,
    clock: SharedClock,
    opts: StorageOptions,
    events: broadcast::Sender<StorageEvent>,
    counters: StorageCounters,
    /// The last objects lifecycle rules expired, for the dashboard.
    expirations: std::sync::Mutex<std::collections::VecDeque<Expiration>>,
    root: PathBuf,
    /// Encryption at rest, once the daemon turned it on (`sealing`).
    encryption: std::sync::OnceLock<sealing::Encryption>,
}

impl ObjectStore {
    /// Opens the store under `root` (`objects.redb` and `blobs/`), then deletes blob
    /// files a crash left unreferenced.
    pub fn open(root: &Path, opts: StorageOptions, clock: SharedClock) -> Result<Self, StorageError> {
        let db = Store::open(&root.join("objects.redb"))?;
        let blobs = blobs::Blobs::open(&root.join("blobs"), opts.fsync)?;
        let (events, _) = broadcast::channel(1024);
        let store = Self {
            inner: Arc::new(Inner {
                db,
                blobs,
                clock,
                opts,
                events,
                counters: StorageCounters::default(),
                expirations: std::sync::Mutex::default(),
                root: root.to_path_buf(),
                encryption: std::sync::OnceLock::new(),
            }),
        };
        store.init_tables()?;
        let removed = store.reconcile()?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed blob files left unreferenced by an earlier crash"
            );
        }
        Ok(store)
    }

    /// The last objects lifecycle rules expired since start (at most
    /// [`RECENT_EXPIRATIONS`]), oldest first.
    pub fn recent_expirations(&self) -> Vec<Expiration> {
        lock(&self.inner.expirations).iter().cloned().collect()
    }

    pub(crate) fn record_expiration(&self, bucket: &str, key: &str) {
        {
            let mut q = lock(&self.inner.expirations);
            if q.len() == RECENT_EXPIRATIONS {
                q.pop_front();
            }
            q.push_back(Expiration {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                at_ms: self.now(),
            });
        }
    }

    /// The directory holding the database and blobs.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &StorageOptions {
        &self.inner.opts
    }

    /// Running totals (lifecycle expirations) for metrics.
    pub fn counters(&self) -> &StorageCounters {
        &self.inner.counters
    }

    /// Subscribes to store events (writes, lifecycle expirations).
    pub fn subscribe(&self) -> broadcast::Receiver<StorageEvent> {
        self.inner.events.subscribe()
    }

    /// Tells subscribers `bucket/key` has a new version.
    fn written(&self, bucket: &str, key: &str, etag: &str) {
        let _ = self.inner.events.send(StorageEvent::Written {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag: etag.to_owned(),
        });
    }

    fn now(&self) -> Millis {
        self.inner.clock.now_ms()
    }

    fn init_tables(&self) -> Result<(), StorageError> {
        self.inner.db.write_blocking(|txn| {
            txn.open_table(meta::BUCKETS)?;
            txn.open_table(meta::OBJECTS)?;
            txn.open_table(meta::UPLOADS)?;
            txn.open_table(meta::PARTS)?;
            txn.open_table(meta::COMPLETED)?;
            txn.open_table(meta::INLINE)?;
            txn.open_table(meta::BLOB_REFS)?;
            Ok::<_, StorageError>(())
        })
    }

    fn reconcile(&self) -> Result<usize, StorageError> {
        let txn = self.inner.db.read()?;
        let referenced: HashSet<String> = referenced_blobs(&txn)?.into_iter().map(|b| b.id).collect();
        self.inner.blobs.reconcile(&referenced)
    }

    /// The database engine under the index (for backups, which pause its writer).
    pub fn redb(&self) -> &Store {
        &self.inner.db
    }

    /// The blob files (for backups, which copy them and hold their deletion).
    pub fn blobs(&self) -> &blobs::Blobs {
        &self.inner.blobs
    }

    /// Deletes blobs after the metadata that referenced them is gone.
    async fn remove_blobs(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let blobs = self.inner.blobs.clone();
        let _ = tokio::task::spawn_blocking(move || blobs.remove(&ids)).await;
    }

    /// Runs a read-only closure over a snapshot on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T, StorageError> + Send + 'static,
    {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || f(&db.read()?))
            .await
            .map_err(|e| StorageError::io("(reader task)", std::io::Error::other(e)))?
    }
}

/// A blob file the index refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub id: String,
    /// Its recorded size in bytes.
    pub size: u64,
    /// Whom it belongs to, for messages: `bucket/key`, or `bucket/key (upload
    /// UPLOAD part N)` for a part of an unfinished multipart upload.
    pub owner: String,
}

/// Every blob file the index in `txn` refers to — objects' (not inline, not marked
/// damaged) and the parts of unfinished multipart uploads — once each.
pub fn referenced_blobs(txn: &redb::ReadTransaction) -> Result<Vec<BlobRef>, StorageError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for row in txn.open_table(meta::OBJECTS)?.iter()? {
        let (k, v) = row?;
        let o: ObjectMeta = meta::decode(v.value())?;
        if !o.inline && o.damaged.is_none() && seen.insert(o.blob.clone()) {
            let (bucket, key) = k.value();
            out.push(BlobRef {
                size: o.stored_len(),
                id: o.blob,
                owner: format!("{bucket}/{key}"),
            });
        }
    }
    for row in txn.open_table(meta::PARTS)?.iter()? {
        let (_, v) = row?;
        let p: PartMeta = meta::decode(v.value())?;
        if seen.insert(p.blob.clone()) {
            out.push(BlobRef {
                size: p.stored_size.unwrap_or(p.size),
                id: p.blob,
                owner: "a part of an unfinished multipart upload".into(),
            });
        }
    }
    Ok(out)
}

/// Fails with `NoSuchBucket` unless `bucket` exists in the transaction's view.
fn require_bucket(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    bucket: &str,
) -> Result<BucketMeta, StorageError> {
    match table.get(bucket)? {
        Some(v) => Ok(meta::decode(v.value())?),
        None => Err(StorageError::NoSuchBucket(bucket.to_string())),
    }
}

/// Free and total bytes of the file system holding `path` (`None` if it cannot
/// be read), for the disk-space alert and metrics.
pub fn disk_space(path: &Path) -> Option<(u64, u64)> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}
