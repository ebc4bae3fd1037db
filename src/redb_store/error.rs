//! Errors of the embedded database layer, with the file they concern.

use std::path::{Path, PathBuf};

/// What can go wrong opening or writing the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("database: {0}")]
    Redb(#[from] redb::Error),
    #[error("the database commit failed; the write was not stored")]
    CommitFailed,
    #[error("the database is closed")]
    Closed,
}

impl StoreError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `From` every redb error type for an error enum that wraps [`StoreError`] (or
/// for `StoreError` itself), so `?` works on redb calls in any store-backed module.
macro_rules! from_redb {
    ($target:ty) => {
        from_redb!(@one $target, redb::TransactionError);
        from_redb!(@one $target, redb::TableError);
        from_redb!(@one $target, redb::StorageError);
        from_redb!(@one $target, redb::CommitError);
    };
    (@one $target:ty, $source:ty) => {
        impl From<$source> for $target {
            fn from(e: $source) -> Self {
                Self::from($crate::redb_store::StoreError::from(redb::Error::from(e)))
            }
        }
    };
}
pub(crate) use from_redb;

from_redb!(StoreError);
