//! The manifest of a snapshot (`snapshots/{id}/manifest.json`) and what a
//! destination holds: its complete snapshots (with a manifest) and partial ones
//! (a backup that died before writing it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dest::Dest;
use super::error::BackupError;
use crate::clock::Millis;

/// The manifest format this darkroom writes and reads.
pub const FORMAT: u32 = 1;

/// Where snapshots live under a destination.
pub const SNAPSHOTS: &str = "snapshots";
/// Where blob files live under a destination.
pub const BLOBS: &str = "blobs";
/// The manifest's file name inside a snapshot.
pub const MANIFEST: &str = "manifest.json";

/// One snapshot: what it holds and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    pub format: u32,
    /// The snapshot id: its UTC time, `2026-12-07T15-33-41.123Z` (sorts by time).
    pub id: String,
    pub darkroom_version: String,
    /// When the databases were snapshotted (RFC 3339), and as milliseconds.
    pub created_at: String,
    pub created_ms: Millis,
    /// The database and other files, under `snapshots/{id}/`.
    pub files: Vec<FileEntry>,
    /// The blob files the snapshot's index references, under `blobs/`.
    pub blobs: Vec<FileEntry>,
}

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileEntry {
    /// The path relative to the destination (`blobs/ab/ab12...`).
    pub path: String,
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
}

impl Manifest {
    /// Bytes of every file the snapshot needs.
    pub fn bytes(&self) -> u64 {
        self.files.iter().chain(&self.blobs).map(|f| f.size).sum()
    }

    /// Where this manifest lives under the destination.
    pub fn path(id: &str) -> String {
        format!("{SNAPSHOTS}/{id}/{MANIFEST}")
    }
}

/// The snapshot id for a time: UTC, sortable, safe in paths and S3 keys.
pub fn snapshot_id(ms: Millis) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// A snapshot at a destination, as `backup --list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotInfo {
    pub id: String,
    /// Has its manifest: it can be restored. A partial one is what a backup left
    /// when it died.
    pub complete: bool,
    /// Files and bytes the snapshot needs (0 for a partial one).
    pub files: u64,
    pub bytes: u64,
}

/// What a destination holds: complete snapshots with their manifests (oldest
/// first) and the ids of partial ones.
pub struct Inventory {
    pub complete: Vec<Manifest>,
    pub partial: Vec<String>,
}

impl Inventory {
    /// Reads every snapshot's manifest at `dest`.
    pub async fn read(dest: &Dest) -> Result<Self, BackupError> {
        let mut ids: BTreeMap<String, bool> = BTreeMap::new();
        for path in dest.list(SNAPSHOTS).await? {
            let mut parts = path.splitn(3, '/');
            let (_, Some(id), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let complete = ids.entry(id.to_owned()).or_default();
            *complete |= name == MANIFEST;
        }
        let mut inventory = Self {
            complete: Vec::new(),
            partial: Vec::new(),
        };
        for (id, complete) in ids {
            if !complete {
                inventory.partial.push(id);
                continue;
            }
            let path = Manifest::path(&id);
            let bytes = dest.get_bytes(&path).await?;
            let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| BackupError::Corrupt {
                snapshot: id.clone(),
                file: path.clone(),
                why: format!("not a darkroom manifest: {e}"),
            })?;
            if manifest.format != FORMAT {
                return Err(BackupError::Corrupt {
                    snapshot: id,
                    file: path,
                    why: format!(
                        "manifest format {} (this darkroom reads {FORMAT})",
                        manifest.format
                    ),
                });
            }
            inventory.complete.push(manifest);
        }
        Ok(inventory)
    }

    /// Every snapshot, oldest first.
    pub fn list(&self) -> Vec<SnapshotInfo> {
        let mut out: Vec<SnapshotInfo> = self
            .complete
            .iter()
            .map(|m| SnapshotInfo {
                id: m.id.clone(),
                complete: true,
                files: (m.files.len() + m.blobs.len()) as u64,
                bytes: m.bytes(),
            })
            .chain(self.partial.iter().map(|id| SnapshotInfo {
                id: id.clone(),
                complete: false,
                files: 0,
                bytes: 0,
            }))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The newest complete snapshot.
    pub fn latest(&self) -> Option<&Manifest> {
        self.complete.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_are_safe_in_paths() {
        let a = snapshot_id(1_796_658_821_123);
        let b = snapshot_id(1_796_658_821_124);
        assert_eq!(a, "2026-12-07T15-53-41.123Z");
        assert!(a < b);
        assert!(!a.contains(':') && !a.contains('/'));
    }
}
