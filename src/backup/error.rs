//! What can go wrong taking, shipping, listing or restoring a backup; every
//! message names the file, snapshot or destination at fault.

use std::path::PathBuf;

/// A backup or restore error.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} holds no objects.redb: not a darkroom data directory")]
    NotADataDir(PathBuf),
    #[error(
        "{path} is open in another process (a running daemon?): back up through the daemon with --url, or stop it first"
    )]
    InUse { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Database { path: String, message: String },
    #[error("backup destination {dest}: {message}")]
    Dest { dest: String, message: String },
    #[error("{dest}: no snapshot {id} (darkroom backup {dest} --list shows them)")]
    NoSnapshot { dest: String, id: String },
    #[error("{dest}: no complete snapshot to restore")]
    NoSnapshots { dest: String },
    #[error("snapshot {snapshot}: {file} is corrupt: {why}")]
    Corrupt {
        snapshot: String,
        file: String,
        why: String,
    },
    #[error("{0} is not empty: pass --force to replace its databases and blobs")]
    NotEmpty(PathBuf),
    #[error("blob {id} of {owner} is missing from the data directory: run darkroom verify")]
    MissingBlob { id: String, owner: String },
    #[error("a backup is already running")]
    Busy,
    #[error("no destination: give one, or set backup.dest")]
    NoDest,
}

impl BackupError {
    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn db(path: impl std::fmt::Display, message: impl std::fmt::Display) -> Self {
        Self::Database {
            path: path.to_string(),
            message: message.to_string(),
        }
    }
}
