//! `darkroom restore`: rebuilds a data directory from a snapshot, checking every
//! file's size and SHA-256 against the manifest on the way.
//!
//! Everything is fetched into `{data_dir}/.restoring/` first; only when every file
//! checks out are the old databases and blobs (with `--force`) replaced by the new
//! ones, so a corrupted snapshot leaves the target as it was. Running jobs of the
//! snapshot are given back to the queue (their workers are gone), so they run
//! again; finished jobs keep their results, and the generated S3 credentials come
//! back with the rest, so presigned URLs made before still verify.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::dest::{Dest, Hashed};
use super::error::BackupError;
use super::manifest::{BLOBS, FileEntry, Inventory, Manifest};
use super::{DATABASES, OTHER_FILES};
use crate::clock::SharedClock;
use crate::queue::{Queue, QueueConfig};

/// Where files wait inside the target until every one has checked out.
const RESTORING: &str = ".restoring";

/// How many files are fetched at once.
const PARALLEL_FETCHES: usize = 4;

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub snapshot: String,
    pub data_dir: PathBuf,
    pub files: u64,
    pub bytes: u64,
    /// Jobs that were running at snapshot time, now queued again.
    pub requeued: usize,
}

/// Restores snapshot `id` (default: the newest complete one) from `src` into
/// `data_dir`, which must be empty unless `force`.
pub async fn restore(
    src: &Dest,
    data_dir: &Path,
    id: Option<&str>,
    force: bool,
    clock: SharedClock,
) -> Result<RestoreReport, BackupError> {
    let inventory = Inventory::read(src).await?;
    let manifest = match id {
        Some(id) => {
            inventory
                .complete
                .iter()
                .find(|m| m.id == id)
                .ok_or_else(|| BackupError::NoSnapshot {
                    dest: src.describe(),
                    id: id.to_owned(),
                })?
        }
        None => inventory
            .latest()
            .ok_or_else(|| BackupError::NoSnapshots { dest: src.describe() })?,
    };
    check_target(data_dir, force)?;
    let staging = data_dir.join(RESTORING);
    let _ = std::fs::remove_dir_all(&staging);
    let fetched = fetch(src, manifest, &staging).await;
    if let Err(e) = fetched {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let staged = staging.clone();
    let target = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || swap_in(&staged, &target))
        .await
        .map_err(|e| BackupError::io("(restore worker)", std::io::Error::other(e)))??;
    let requeued = requeue_running(data_dir, clock).await?;
    Ok(RestoreReport {
        snapshot: manifest.id.clone(),
        data_dir: data_dir.to_path_buf(),
        files: (manifest.files.len() + manifest.blobs.len()) as u64,
        bytes: manifest.bytes(),
        requeued,
    })
}

/// Refuses a target with anything in it (unless `force`) or held by a daemon.
fn check_target(data_dir: &Path, force: bool) -> Result<(), BackupError> {
    let entries = match std::fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BackupError::io(data_dir.display(), e)),
    };
    let occupied = entries.filter_map(Result::ok).any(|e| e.file_name() != RESTORING);
    if occupied && !force {
        return Err(BackupError::NotEmpty(data_dir.to_path_buf()));
    }
    for name in DATABASES {
        let path = data_dir.join(name);
        if path.is_file()
            && let Err(redb::DatabaseError::DatabaseAlreadyOpen) = redb::Database::open(&path)
        {
            return Err(BackupError::InUse { path });
        }
    }
    Ok(())
}

/// Fetches every file of `manifest` into `staging`, checking each.
async fn fetch(src: &Dest, manifest: &Manifest, staging: &Path) -> Result<(), BackupError> {
    let files = manifest.files.iter().map(|f| {
        let name = f.path.rsplit('/').next().unwrap_or_default();
        (f, staging.join(name))
    });
    let blobs = manifest.blobs.iter().map(|b| (b, staging.join(&b.path)));
    // After a failure no new fetch starts, but the ones under way are waited for:
    // a local copy runs on a blocking thread that dropping its future would not
    // stop, and it would write into `staging` after the caller removed it.
    let failed = std::sync::atomic::AtomicBool::new(false);
    let failed = &failed;
    let results: Vec<Result<(), BackupError>> =
        futures::stream::iter(files.chain(blobs).map(|(entry, local)| async move {
            if failed.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(());
            }
            let got = src
                .get_file(&entry.path, &local)
                .await
                .map_err(|e| missing(manifest, entry, e));
            let checked = got.and_then(|got| check(manifest, entry, &got));
            if checked.is_err() {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            checked
        }))
        .buffer_unordered(PARALLEL_FETCHES)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    let root = staging.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let dir = std::fs::File::open(&root).map_err(|e| BackupError::io(root.display(), e))?;
        rustix::fs::syncfs(&dir).map_err(|e| BackupError::io(root.display(), e.into()))
    })
    .await
    .map_err(|e| BackupError::io("(restore worker)", std::io::Error::other(e)))?
}

/// A file the manifest lists but the destination lacks is a corrupt snapshot.
fn missing(manifest: &Manifest, entry: &FileEntry, e: BackupError) -> BackupError {
    match e {
        BackupError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            BackupError::Corrupt {
                snapshot: manifest.id.clone(),
                file: entry.path.clone(),
                why: "missing".into(),
            }
        }
        other => other,
    }
}

fn check(manifest: &Manifest, entry: &FileEntry, got: &Hashed) -> Result<(), BackupError> {
    let why = if got.size != entry.size {
        format!("{} bytes, the manifest says {}", got.size, entry.size)
    } else if got.sha256 != entry.sha256 {
        format!("SHA-256 {}, the manifest says {}", got.sha256, entry.sha256)
    } else {
        return Ok(());
    };
    Err(BackupError::Corrupt {
        snapshot: manifest.id.clone(),
        file: entry.path.clone(),
        why,
    })
}

/// Replaces the target's databases, credentials and blobs with the staged ones.
fn swap_in(staging: &Path, data_dir: &Path) -> Result<(), BackupError> {
    let io = |path: &Path, e| BackupError::io(path.display(), e);
    for name in DATABASES.iter().chain(OTHER_FILES.iter()) {
        let old = data_dir.join(name);
        match std::fs::remove_file(&old) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&old, e)),
        }
        let new = staging.join(name);
        if new.is_file() {
            std::fs::rename(&new, &old).map_err(|e| io(&old, e))?;
        }
    }
    let blobs = data_dir.join(BLOBS);
    if blobs.exists() {
        std::fs::remove_dir_all(&blobs).map_err(|e| io(&blobs, e))?;
    }
    let staged_blobs = staging.join(BLOBS);
    if staged_blobs.exists() {
        std::fs::rename(&staged_blobs, &blobs).map_err(|e| io(&blobs, e))?;
    }
    std::fs::remove_dir_all(staging).map_err(|e| io(staging, e))?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(data_dir, e))
}

/// Gives the restored queue's running jobs back: their workers are gone.
async fn requeue_running(data_dir: &Path, clock: SharedClock) -> Result<usize, BackupError> {
    let path = data_dir.join("queue.redb");
    if !path.is_file() {
        return Ok(0);
    }
    let queue = tokio::task::spawn_blocking({
        let path = path.clone();
        move || Queue::open(&path, clock, QueueConfig::default())
    })
    .await
    .map_err(|e| BackupError::io("(restore worker)", std::io::Error::other(e)))?
    .map_err(|e| BackupError::db(path.display(), e))?;
    let released = queue
        .release_all_running()
        .await
        .map_err(|e| BackupError::db(path.display(), e))?;
    drop(queue);
    Ok(released)
}
