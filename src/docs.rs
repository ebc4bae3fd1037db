//! Where small shared records live (the prompt library, users and their keys):
//! groups of named JSON documents in the queue's store — a redb table beside the
//! queue's tables, or Redis hashes when the queue is on Redis, so every node shares
//! them. Edits go through [`Docs::update`], a read-modify-write that is atomic on
//! both (one redb write transaction; `WATCH`/`MULTI` on Redis, retried when another
//! node wrote first), so two editors never lose a version, a campaign never hands
//! out a slot twice, and a revoked key is gone for every node at once.
//!
//! | redb table     | key              | value |
//! |----------------|------------------|-------|
//! | `library_docs` | (group, name)    | JSON  |
//!
//! On Redis a group is the hash `{prefix}:lib:{group}`.

use redb::{ReadableTable, TableDefinition};
use redis::Connection;

use crate::queue::Queue;
use crate::redb_store::{Store, from_redb};
use crate::redis_store::RedisStore;

/// What a call on records can end with: the caller's own refusals (invalid,
/// not found, conflict) and the store's failures.
#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] crate::redb_store::StoreError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("a stored record is corrupt: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("a background read failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("other nodes kept writing {0}; try again")]
    Contention(String),
    #[error("{0}")]
    Internal(String),
}

impl DocsError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl crate::redis_store::Failure for DocsError {
    fn breaks_connection(&self) -> bool {
        matches!(self, Self::Redis(e) if e.breaks_connection())
    }
}

from_redb!(DocsError);

const DOCS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("library_docs");

/// How many times an update is tried again when other nodes keep writing first.
const REDIS_RETRIES: usize = 64;

/// What an update does with the document it read.
pub enum Write {
    Keep,
    Put(Vec<u8>),
    Delete,
}

/// Cheap `Clone` handle on the documents.
#[derive(Clone)]
pub enum Docs {
    Embedded(Store),
    Redis(RedisStore),
}

impl Docs {
    /// The documents in the queue's store (the table is created if missing).
    pub async fn of_queue(queue: &Queue) -> Result<Self, DocsError> {
        if let Some(store) = queue.redis() {
            return Ok(Self::Redis(store.clone()));
        }
        let store = queue
            .redb()
            .ok_or_else(|| DocsError::Internal("the queue has no store".into()))?
            .clone();
        Self::embedded(store).await
    }

    /// The documents in a redb store (the table is created if missing).
    pub async fn embedded(store: Store) -> Result<Self, DocsError> {
        store
            .write(|txn| txn.open_table(DOCS).map(drop).map_err(DocsError::from))
            .await?;
        Ok(Self::Embedded(store))
    }

    fn hash(store: &RedisStore, group: &str) -> String {
        store.key(&format!("lib:{group}"))
    }

    /// Document `name` of `group`.
    pub async fn get(&self, group: &str, name: &str) -> Result<Option<Vec<u8>>, DocsError> {
        let (group, name) = (group.to_owned(), name.to_owned());
        match self {
            Self::Embedded(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || {
                    let txn = store.read()?;
                    let t = txn.open_table(DOCS)?;
                    Ok(t.get((group.as_str(), name.as_str()))?
                        .map(|v| v.value().to_vec()))
                })
                .await?
            }
            Self::Redis(store) => {
                let key = Self::hash(store, &group);
                store
                    .run((key, name), |c, (key, name)| {
                        Ok(redis::cmd("HGET").arg(key).arg(name).query(c)?)
                    })
                    .await
            }
        }
    }

    /// Every document of `group`, by name.
    pub async fn list(&self, group: &str) -> Result<Vec<(String, Vec<u8>)>, DocsError> {
        let group = group.to_owned();
        match self {
            Self::Embedded(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || {
                    let txn = store.read()?;
                    let t = txn.open_table(DOCS)?;
                    let mut out = Vec::new();
                    for entry in t.range((group.as_str(), "")..)? {
                        let (k, v) = entry?;
                        let (g, name) = k.value();
                        if g != group {
                            break;
                        }
                        out.push((name.to_owned(), v.value().to_vec()));
                    }
                    Ok(out)
                })
                .await?
            }
            Self::Redis(store) => {
                let key = Self::hash(store, &group);
                let mut all: Vec<(String, Vec<u8>)> = store
                    .run(key, |c, key| {
                        Ok::<_, DocsError>(redis::cmd("HGETALL").arg(key).query(c)?)
                    })
                    .await?;
                all.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(all)
            }
        }
    }

    /// Sets document `name` of `group`.
    pub async fn put(&self, group: &str, name: &str, value: Vec<u8>) -> Result<(), DocsError> {
        self.update(group, name, move |_| Ok((Write::Put(value.clone()), ())))
            .await
    }

    /// Removes every document of `group`.
    pub async fn delete_group(&self, group: &str) -> Result<(), DocsError> {
        let group = group.to_owned();
        match self {
            Self::Embedded(store) => {
                store
                    .write(move |txn| {
                        let mut t = txn.open_table(DOCS)?;
                        let names: Vec<String> = t
                            .range((group.as_str(), "")..)?
                            .map_while(|e| {
                                let (k, _) = e.ok()?;
                                let (g, name) = k.value();
                                (g == group).then(|| name.to_owned())
                            })
                            .collect();
                        for name in names {
                            t.remove((group.as_str(), name.as_str()))?;
                        }
                        Ok(())
                    })
                    .await
            }
            Self::Redis(store) => {
                let key = Self::hash(store, &group);
                store
                    .run(key, |c, key| Ok(redis::cmd("DEL").arg(key).query::<()>(c)?))
                    .await
            }
        }
    }

    /// Reads document `name` of `group`, lets `f` decide what to write, writes it,
    /// and returns what `f` returned — atomically. `f` may run more than once (on
    /// Redis, when another node wrote between the read and the write); an `Err` from
    /// it writes nothing.
    pub async fn update<T, F>(&self, group: &str, name: &str, f: F) -> Result<T, DocsError>
    where
        T: Send + 'static,
        F: Fn(Option<&[u8]>) -> Result<(Write, T), DocsError> + Send + 'static,
    {
        let (group, name) = (group.to_owned(), name.to_owned());
        match self {
            Self::Embedded(store) => {
                store
                    .write(move |txn| {
                        let mut t = txn.open_table(DOCS)?;
                        let old = t
                            .get((group.as_str(), name.as_str()))?
                            .map(|v| v.value().to_vec());
                        let (write, out) = f(old.as_deref())?;
                        match write {
                            Write::Keep => {}
                            Write::Put(v) => {
                                t.insert((group.as_str(), name.as_str()), v.as_slice())?;
                            }
                            Write::Delete => {
                                t.remove((group.as_str(), name.as_str()))?;
                            }
                        }
                        Ok(out)
                    })
                    .await
            }
            Self::Redis(store) => {
                let key = Self::hash(store, &group);
                store
                    .run((key, name), move |c, (key, name)| redis_update(c, key, name, &f))
                    .await
            }
        }
    }
}

/// [`Docs::update`] on Redis: `WATCH`, read, `MULTI` write `EXEC`, again if the
/// hash changed meanwhile.
fn redis_update<T, F>(c: &mut Connection, key: &str, name: &str, f: &F) -> Result<T, DocsError>
where
    F: Fn(Option<&[u8]>) -> Result<(Write, T), DocsError>,
{
    for attempt in 0..REDIS_RETRIES {
        if attempt >= 4 {
            // Many writers on one group: step aside a little, a random while, so
            // they stop colliding in lockstep.
            let ms = rand::random_range(0..=(attempt as u64).min(20));
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        redis::cmd("WATCH").arg(key).query::<()>(c)?;
        let old: Option<Vec<u8>> = redis::cmd("HGET").arg(key).arg(name).query(c)?;
        let (write, out) = match f(old.as_deref()) {
            Ok(x) => x,
            Err(e) => {
                redis::cmd("UNWATCH").query::<()>(c)?;
                return Err(e);
            }
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        match write {
            Write::Keep => {
                redis::cmd("UNWATCH").query::<()>(c)?;
                return Ok(out);
            }
            Write::Put(v) => pipe.cmd("HSET").arg(key).arg(name).arg(v).ignore(),
            Write::Delete => pipe.cmd("HDEL").arg(key).arg(name).ignore(),
        };
        // EXEC answers nil when a watched key changed: nothing was written.
        let done: Option<()> = pipe.query(c)?;
        if done.is_some() {
            return Ok(out);
        }
    }
    Err(DocsError::Contention(format!("{key} {name}")))
}
