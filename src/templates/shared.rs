//! Templates on the shared Redis server, so every node of a cluster serves the
//! same set: one hash `{prefix}:templates` (name -> the two texts, as JSON) and a
//! revision counter `{prefix}:templates:rev` bumped in the same transaction as
//! every change. A node reads the counter every second and the hash only when the
//! counter moved. Blocking calls, like the rest of the Redis client's.

use std::collections::BTreeMap;

use redis::RedisError;
use serde::{Deserialize, Serialize};

use crate::redis_store::RedisStore;

/// How one template is kept on Redis: its two texts, exactly as in the folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub workflow: String,
    pub manifest: String,
}

/// The shared templates of one key prefix; cheap to clone.
#[derive(Clone)]
pub struct SharedTemplates {
    store: RedisStore,
    hash: String,
    rev: String,
}

impl SharedTemplates {
    pub fn new(store: RedisStore) -> Self {
        Self {
            hash: store.key("templates"),
            rev: store.key("templates:rev"),
            store,
        }
    }

    /// The revision counter (0 before the first change).
    pub fn revision(&self) -> Result<u64, RedisError> {
        self.store.with_conn(|c| {
            let v: Option<u64> = redis::cmd("GET").arg(&self.rev).query(c)?;
            Ok(v.unwrap_or(0))
        })
    }

    /// The revision and every template, read together. An entry that is not
    /// this shape is reported by name (`Err`), not dropped silently.
    #[allow(clippy::type_complexity)]
    pub fn all(&self) -> Result<(u64, BTreeMap<String, Result<Stored, String>>), RedisError> {
        let (rev, raw): (Option<u64>, BTreeMap<String, String>) = self.store.with_conn(|c| {
            redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(&self.rev)
                .cmd("HGETALL")
                .arg(&self.hash)
                .query(c)
        })?;
        let entries = raw
            .into_iter()
            .map(|(name, json)| {
                let parsed = serde_json::from_str::<Stored>(&json)
                    .map_err(|e| format!("the shared copy on Redis is unreadable: {e}"));
                (name, parsed)
            })
            .collect();
        Ok((rev.unwrap_or(0), entries))
    }

    /// Stores `name` (replacing any), or only when absent with `only_new`;
    /// true when it was written.
    pub fn put(&self, name: &str, t: &Stored, only_new: bool) -> Result<bool, RedisError> {
        let json = serde_json::to_string(t).map_err(|e| RedisError::from(std::io::Error::other(e)))?;
        self.store.with_conn(|c| {
            if only_new {
                let (written,): (bool,) = redis::pipe()
                    .atomic()
                    .cmd("HSETNX")
                    .arg(&self.hash)
                    .arg(name)
                    .arg(&json)
                    .query(c)?;
                if written {
                    redis::cmd("INCR").arg(&self.rev).query::<u64>(c)?;
                }
                return Ok(written);
            }
            redis::pipe()
                .atomic()
                .cmd("HSET")
                .arg(&self.hash)
                .arg(name)
                .arg(&json)
                .ignore()
                .cmd("INCR")
                .arg(&self.rev)
                .ignore()
                .query::<()>(c)?;
            Ok(true)
        })
    }

    /// Removes `name`; true if it was there.
    pub fn delete(&self, name: &str) -> Result<bool, RedisError> {
        self.store.with_conn(|c| {
            let (removed, _): (u64, u64) = redis::pipe()
                .atomic()
                .cmd("HDEL")
                .arg(&self.hash)
                .arg(name)
                .cmd("INCR")
                .arg(&self.rev)
                .query(c)?;
            Ok(removed > 0)
        })
    }

    /// The server, for errors.
    pub fn endpoint(&self) -> &str {
        self.store.endpoint()
    }
}
