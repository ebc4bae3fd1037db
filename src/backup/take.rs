//! Taking a snapshot and shipping it.
//!
//! 1. Blob deletions are put off ([`crate::object_store::BlobHold`]), so every
//!    blob the snapshot will reference stays on disk until it is copied.
//! 2. Every database's writer is paused at a commit boundary
//!    ([`crate::redb_store::Store::pause`]) — all at once, so the snapshot is one
//!    point in time — and its file copied into a staging folder (in the data
//!    directory; for a local destination, the snapshot's own folder); then writes
//!    go on. The pause lasts as long as copying the
//!    database files (not the blobs); reads never stop.
//! 3. Each staged copy is opened with redb (which recovers it as after a crash at
//!    that commit) and integrity-checked; the index copy lists the blobs it needs.
//! 4. The database files are copied (the snapshot shows at the destination, as
//!    partial), then the blobs the destination does not hold yet — the ones it
//!    holds, and a complete manifest vouches for, are not copied again — and,
//!    after everything is durable, the manifest, which makes the snapshot
//!    complete.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::dest::Dest;
use super::error::BackupError;
use super::manifest::{BLOBS, FORMAT, FileEntry, Inventory, Manifest, SNAPSHOTS, snapshot_id};
use super::{DATABASES, OTHER_FILES};
use crate::cache::PromptCache;
use crate::clock::Millis;
use crate::object_store::blobs::Blobs;
use crate::object_store::{BlobRef, ObjectStore, referenced_blobs};
use crate::queue::Queue;
use crate::redb_store::{Store, StoreError};

/// Where the database copies wait inside the data directory before they ship.
pub const STAGING: &str = ".backup-staging";

/// How many blob files are copied at once.
const PARALLEL_COPIES: usize = 4;

/// What a backup reads: the databases (with their writers) and the blob files of
/// one data directory.
#[derive(Clone)]
pub struct Source {
    data_dir: PathBuf,
    databases: Vec<(&'static str, Store)>,
    blobs: Blobs,
}

impl Source {
    /// A live daemon's stores. A queue or cache on Redis is not part of the
    /// snapshot (Redis is backed up by its own means).
    pub fn live(storage: &ObjectStore, queue: &Queue, prompts: &PromptCache) -> Self {
        let mut databases = Vec::new();
        for name in DATABASES {
            let store = match name {
                "queue.redb" => queue.redb(),
                "cache.redb" => prompts.redb(),
                _ => Some(storage.redb()),
            };
            if let Some(store) = store {
                databases.push((name, store.clone()));
            }
        }
        Self {
            data_dir: storage.root().to_path_buf(),
            databases,
            blobs: storage.blobs().clone(),
        }
    }

    /// The data directory at `data_dir`, which no daemon may hold (its database
    /// files are opened, and so locked, for the time of the backup).
    pub fn open(data_dir: &Path) -> Result<Self, BackupError> {
        if !data_dir.join("objects.redb").is_file() {
            return Err(BackupError::NotADataDir(data_dir.to_path_buf()));
        }
        let mut databases = Vec::new();
        for name in DATABASES {
            let path = data_dir.join(name);
            if !path.is_file() {
                continue;
            }
            let store = Store::open(&path).map_err(|e| match e {
                StoreError::Open {
                    source: redb::DatabaseError::DatabaseAlreadyOpen,
                    ..
                } => BackupError::InUse { path: path.clone() },
                other => BackupError::db(path.display(), other),
            })?;
            databases.push((name, store));
        }
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            databases,
            blobs: Blobs::existing(&data_dir.join("blobs")),
        })
    }

    /// The data directory this source reads.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Steps 2 and 3: the staged database copies, and the blobs they reference.
    fn snapshot(&self, staging: &Path) -> Result<Staged, BackupError> {
        std::fs::create_dir_all(staging).map_err(|e| BackupError::io(staging.display(), e))?;
        let mut files = Vec::new();
        let paused_for = {
            let mut paused = Vec::new();
            for (name, store) in &self.databases {
                paused.push(store.pause().map_err(|e| BackupError::db(name, e))?);
            }
            let started = Instant::now();
            for guard in &paused {
                let name = guard
                    .path()
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let copy = staging.join(&name);
                std::fs::copy(guard.path(), &copy).map_err(|e| BackupError::io(guard.path().display(), e))?;
                files.push((name, copy));
            }
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
        };
        for name in OTHER_FILES {
            let path = self.data_dir.join(name);
            if path.is_file() {
                let copy = staging.join(name);
                std::fs::copy(&path, &copy).map_err(|e| BackupError::io(path.display(), e))?;
                files.push((name.to_owned(), copy));
            }
        }
        let mut blobs = Vec::new();
        for (name, path) in &files {
            if !DATABASES.contains(&name.as_str()) {
                continue;
            }
            let mut db = redb::Database::create(path).map_err(|e| BackupError::db(path.display(), e))?;
            if db
                .check_integrity()
                .map_err(|e| BackupError::db(path.display(), e))?
            {
                tracing::debug!(file = %name, "snapshot copy passed redb's integrity check");
            } else {
                tracing::warn!(file = %name, "snapshot copy was repaired by redb's integrity check");
            }
            if name == "objects.redb" {
                let txn = redb::ReadableDatabase::begin_read(&db)
                    .map_err(|e| BackupError::db(path.display(), e))?;
                blobs = referenced_blobs(&txn).map_err(|e| BackupError::db(path.display(), e))?;
            }
        }
        Ok(Staged {
            files,
            blobs,
            writes_paused_ms: paused_for,
        })
    }
}

/// A snapshot staged in the data directory, ready to ship.
struct Staged {
    /// (name, staged copy) of each database and other file.
    files: Vec<(String, PathBuf)>,
    /// The blobs the staged index references.
    blobs: Vec<BlobRef>,
    writes_paused_ms: u64,
}

/// What one backup did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupReport {
    /// The snapshot id.
    pub id: String,
    /// Where it went.
    pub dest: String,
    pub created_at: String,
    /// Database and other files in the snapshot.
    pub files: u64,
    /// Blob files the snapshot references, and how many were copied this time
    /// (the rest were there from earlier snapshots).
    pub blobs: u64,
    pub blobs_copied: u64,
    /// Bytes the snapshot needs, and bytes copied this time.
    pub bytes: u64,
    pub bytes_copied: u64,
    /// How long the whole backup took.
    pub seconds: f64,
    /// How long database writes were paused (the copy of the database files).
    pub writes_paused_ms: u64,
    /// Snapshots removed by retention (and partial ones left by failed backups).
    pub pruned: Vec<String>,
}

/// Takes a snapshot of `source` at `now_ms` into `dest`, then keeps the newest
/// `keep` snapshots (0: keep all).
pub async fn backup(
    source: &Source,
    dest: &Dest,
    keep: usize,
    now_ms: Millis,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let id = snapshot_id(now_ms);
    let inventory = Inventory::read(dest).await?;
    let hold = source.blobs.hold();
    let staging_root = source.data_dir.join(STAGING);
    let _ = std::fs::remove_dir_all(&staging_root);
    // A local destination is staged into in place (its snapshot folder, partial
    // until the manifest): the database files are not copied twice.
    let staging = match dest {
        Dest::Local(root) => root.join(SNAPSHOTS).join(&id),
        Dest::S3(_) => staging_root.join(&id),
    };
    let snapshotter = source.clone();
    let staged_dir = staging.clone();
    let staged = tokio::task::spawn_blocking(move || snapshotter.snapshot(&staged_dir))
        .await
        .map_err(|e| BackupError::io("(backup worker)", std::io::Error::other(e)))??;
    let writes_paused_ms = staged.writes_paused_ms;
    let result = ship(
        source,
        dest,
        (&id, now_ms),
        &inventory,
        staged.files,
        staged.blobs,
    )
    .await;
    drop(hold);
    let _ = std::fs::remove_dir_all(&staging_root);
    let (manifest, copied) = result?;
    let pruned = super::schedule::prune(dest, keep, &id).await?;
    let report = BackupReport {
        id,
        dest: dest.describe(),
        created_at: manifest.created_at.clone(),
        files: manifest.files.len() as u64,
        blobs: manifest.blobs.len() as u64,
        blobs_copied: copied.0,
        bytes: manifest.bytes(),
        bytes_copied: copied.1,
        seconds: started.elapsed().as_secs_f64(),
        writes_paused_ms,
        pruned,
    };
    tracing::info!(
        id = %report.id,
        dest = %report.dest,
        blobs_copied = report.blobs_copied,
        bytes_copied = report.bytes_copied,
        seconds = report.seconds,
        "backup complete"
    );
    Ok(report)
}

/// Step 4: copies what the destination lacks and writes the manifest last.
/// Returns the manifest and (blobs, bytes) copied.
async fn ship(
    source: &Source,
    dest: &Dest,
    (id, created_ms): (&str, Millis),
    inventory: &Inventory,
    files: Vec<(String, PathBuf)>,
    blob_refs: Vec<BlobRef>,
) -> Result<(Manifest, (u64, u64)), BackupError> {
    // The database files first: from now on the destination shows this snapshot,
    // partial until its manifest is written.
    let mut copied = (0u64, 0u64);
    let mut entries = Vec::with_capacity(files.len());
    for (name, path) in files {
        let rel = format!("{SNAPSHOTS}/{id}/{name}");
        let hashed = match dest {
            Dest::Local(root) if path == root.join(&rel) => super::dest::hash_in_background(&path).await?,
            _ => dest.put_file(&rel, &path).await?,
        };
        copied.1 += hashed.size;
        entries.push(FileEntry {
            path: rel,
            size: hashed.size,
            sha256: hashed.sha256,
        });
    }
    // Blobs a complete snapshot vouches for and the destination still holds.
    let present: HashSet<String> = dest.list(BLOBS).await?.into_iter().collect();
    let mut known: HashMap<&str, &FileEntry> = HashMap::new();
    for manifest in &inventory.complete {
        for entry in &manifest.blobs {
            if present.contains(&entry.path) {
                known.insert(entry.path.as_str(), entry);
            }
        }
    }
    let copies = futures::stream::iter(blob_refs.into_iter().map(|blob| {
        let rel = blob_path(&blob.id);
        let reuse = known.get(rel.as_str()).map(|e| (*e).clone());
        async move {
            if let Some(entry) = reuse {
                return Ok::<_, BackupError>((entry, false));
            }
            let path = source.blobs.path(&blob.id);
            if !path.is_file() {
                return Err(BackupError::MissingBlob {
                    id: blob.id,
                    owner: blob.owner,
                });
            }
            let hashed = dest.put_file(&rel, &path).await?;
            if hashed.size != blob.size {
                return Err(BackupError::db(
                    path.display(),
                    format!(
                        "{} bytes where the index records {} for {} (darkroom verify --repair marks it damaged)",
                        hashed.size, blob.size, blob.owner
                    ),
                ));
            }
            Ok((
                FileEntry {
                    path: rel,
                    size: hashed.size,
                    sha256: hashed.sha256,
                },
                true,
            ))
        }
    }))
    .buffer_unordered(PARALLEL_COPIES)
    .try_collect::<Vec<_>>()
    .await?;
    let mut blobs = Vec::with_capacity(copies.len());
    for (entry, new) in copies {
        if new {
            copied.0 += 1;
            copied.1 += entry.size;
        }
        blobs.push(entry);
    }
    blobs.sort_by(|a, b| a.path.cmp(&b.path));
    dest.sync().await?;
    let manifest = Manifest {
        format: FORMAT,
        id: id.to_owned(),
        darkroom_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: crate::alerts::notify::rfc3339(created_ms),
        created_ms,
        files: entries,
        blobs,
    };
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::io(id, std::io::Error::other(e)))?;
    dest.put_bytes(&Manifest::path(id), json).await?;
    Ok((manifest, copied))
}

/// Where blob `id` lives under a destination (the same sharding as the data
/// directory's).
pub fn blob_path(id: &str) -> String {
    format!("{BLOBS}/{}/{id}", id.get(..2).unwrap_or("00"))
}
