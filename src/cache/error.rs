//! Errors of the prompt cache and the key-value cache.

use crate::redb_store::StoreError;
use crate::redb_store::from_redb;

/// What can go wrong with a cache operation.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cache entry is corrupt: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("value of key `{0}` is not an integer")]
    NotAnInteger(String),
    #[error("a background read failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl crate::redis_store::Failure for CacheError {
    fn breaks_connection(&self) -> bool {
        matches!(self, Self::Redis(e) if e.breaks_connection())
    }
}

from_redb!(CacheError);
