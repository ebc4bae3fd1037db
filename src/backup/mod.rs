//! Backups that restore: consistent point-in-time snapshots of a data directory,
//! copied to a local directory or an S3 bucket, incrementally, with a manifest of
//! SHA-256 hashes that `restore` checks file by file.
//!
//! A destination holds `blobs/{shard}/{id}` — blob files are immutable and named
//! by a random id, so one copy serves every snapshot that references it — and
//! `snapshots/{id}/` with the database files and `manifest.json`. The manifest is
//! written last: a snapshot without one is partial (a backup that died), never
//! restored, and removed by the next pruning.
//!
//! - [`take`]: taking a snapshot ([`Source`] is a live daemon's stores or a data
//!   directory no daemon holds) and shipping it;
//! - [`restore`]: rebuilding a data directory from a snapshot;
//! - [`dest`]: the two kinds of destination behind one interface;
//! - [`manifest`]: the manifest and the listing of a destination's snapshots;
//! - [`config`]: the `[backup]` section (the daemon's schedule);
//! - [`schedule`]: the scheduled backups and the state status, metrics and alerts
//!   read.

pub mod config;
pub mod dest;
mod error;
pub mod manifest;
pub mod restore;
pub mod schedule;
pub mod take;

pub use config::BackupConfig;
pub use dest::Dest;
pub use error::BackupError;
pub use manifest::{Inventory, Manifest, SnapshotInfo};
pub use restore::{RestoreReport, restore};
pub use schedule::{BackupState, BackupStatus, Backups};
pub use take::{BackupReport, Source, backup};

/// The database files of a data directory, in the order they are snapshotted:
/// the queue before the index, so every finished job's outputs are in the
/// snapshot of the index.
pub const DATABASES: [&str; 3] = ["queue.redb", "cache.redb", "objects.redb"];

/// Other files of a data directory a restore needs (the generated S3 credentials:
/// presigned URLs made before keep verifying).
pub const OTHER_FILES: [&str; 1] = ["credentials.toml"];
