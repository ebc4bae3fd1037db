//! A small key-value cache with per-key TTL for short-lived data (rate-limit counters,
//! sessions) — the part of Redis the seed used besides the queue.
//!
//! Values are bytes; a key may carry an expiry. An expired key reads as absent at
//! once and is removed by the background sweep (or by the next write to it).
//!
//! | table             | key                 | value                               |
//! |-------------------|---------------------|-------------------------------------|
//! | `cache_kv`        | key                 | expires_ms (8 bytes LE) + value     |
//! | `cache_kv_expiry` | (expires_ms, key)   | ()                                  |
//!
//! With `cache.backend = "redis"` the same data lives on Redis (`on_redis`).

use std::sync::Arc;
use std::time::Duration;

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::CacheError;
use super::on_redis::RedisKv;
use crate::clock::{Millis, SharedClock};
use crate::redb_store::Store;
use crate::redis_store::RedisStore;

const VALUES: TableDefinition<&str, &[u8]> = TableDefinition::new("cache_kv");
const EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("cache_kv_expiry");
const NEVER: Millis = Millis::MAX;
const SWEEP_BATCH: usize = 512;

/// Cheap `Clone` handle on the key-value cache.
#[derive(Clone)]
pub struct KvCache {
    inner: Arc<Inner>,
}

/// Where the values live.
enum Backend {
    Embedded(Store),
    Redis(RedisKv),
}

struct Inner {
    backend: Backend,
    clock: SharedClock,
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

fn encode(expires_ms: Millis, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires_ms.to_le_bytes());
    out.extend_from_slice(value);
    out
}

fn decode(raw: &[u8]) -> (Millis, &[u8]) {
    let mut head = [0u8; 8];
    let split = raw.len().min(8);
    head[..split].copy_from_slice(&raw[..split]);
    (Millis::from_le_bytes(head), &raw[split..])
}

impl KvCache {
    /// A key-value cache in `store` (tables are created if missing).
    pub fn new(store: Store, clock: SharedClock) -> Result<Self, CacheError> {
        store.write_blocking(|txn| Tables::open(txn).map(drop))?;
        Ok(Self::assemble(Backend::Embedded(store), clock))
    }

    /// A key-value cache on a Redis server, shared by every node using it.
    pub fn new_redis(store: RedisStore, clock: SharedClock) -> Self {
        Self::assemble(Backend::Redis(RedisKv::new(store)), clock)
    }

    fn assemble(backend: Backend, clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(Inner { backend, clock }),
        }
    }

    fn store(&self) -> Result<&Store, &RedisKv> {
        match &self.inner.backend {
            Backend::Embedded(store) => Ok(store),
            Backend::Redis(redis) => Err(redis),
        }
    }

    /// The value of `key` unless it is absent or expired.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let now = self.inner.clock.now_ms();
        let key = key.to_owned();
        let store = match self.store() {
            Ok(store) => store.clone(),
            Err(redis) => return redis.get(key, now).await,
        };
        tokio::task::spawn_blocking(move || -> Result<Option<Vec<u8>>, CacheError> {
            let txn = store.read()?;
            let values = txn.open_table(VALUES)?;
            let Some(raw) = values.get(key.as_str())? else {
                return Ok(None);
            };
            let (expires_ms, value) = decode(raw.value());
            Ok((expires_ms > now).then(|| value.to_vec()))
        })
        .await?
    }

    /// Sets `key` to `value`, expiring after `ttl` (never if `None`).
    pub async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
        let now = self.inner.clock.now_ms();
        let expires_ms = ttl.map_or(NEVER, |ttl| now.saturating_add(ttl_ms(ttl)));
        let (key, value) = (key.to_owned(), value.to_vec());
        match self.store() {
            Ok(store) => {
                store
                    .write(move |txn| Tables::open(txn)?.put(&key, expires_ms, &value))
                    .await
            }
            Err(redis) => {
                redis
                    .set(key, value, (expires_ms != NEVER).then_some(expires_ms))
                    .await
            }
        }
    }

    /// Removes `key`; true if it was present and not expired.
    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let now = self.inner.clock.now_ms();
        let key = key.to_owned();
        let store = match self.store() {
            Ok(store) => store,
            Err(redis) => return redis.delete(key, now).await,
        };
        store
            .write(move |txn| {
                let removed = Tables::open(txn)?.remove(&key)?;
                Ok::<_, CacheError>(removed.is_some_and(|expires_ms| expires_ms > now))
            })
            .await
    }

    /// Gives a live `key` a new TTL counted from now; false if it is absent or expired.
    pub async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let now = self.inner.clock.now_ms();
        let key = key.to_owned();
        let store = match self.store() {
            Ok(store) => store,
            Err(redis) => return redis.expire(key, now, now.saturating_add(ttl_ms(ttl))).await,
        };
        store
            .write(move |txn| {
                let mut t = Tables::open(txn)?;
                let Some((expires_ms, value)) = t.load(&key)? else {
                    return Ok::<_, CacheError>(false);
                };
                if expires_ms <= now {
                    return Ok(false);
                }
                t.put(&key, now.saturating_add(ttl_ms(ttl)), &value)?;
                Ok(true)
            })
            .await
    }

    /// Adds `by` to the integer in `key` (absent or expired counts as 0, and then gets
    /// `ttl_if_new`) and returns the new value — a fixed-window rate limiter in one call.
    pub async fn incr(&self, key: &str, by: i64, ttl_if_new: Option<Duration>) -> Result<i64, CacheError> {
        let now = self.inner.clock.now_ms();
        let key = key.to_owned();
        let store = match self.store() {
            Ok(store) => store,
            Err(redis) => {
                let expires = ttl_if_new.map(|ttl| now.saturating_add(ttl_ms(ttl)));
                return redis.incr(key, by, now, expires).await;
            }
        };
        store
            .write(move |txn| {
                let mut t = Tables::open(txn)?;
                let live = t.load(&key)?.filter(|(expires_ms, _)| *expires_ms > now);
                let (expires_ms, current) = match live {
                    Some((expires_ms, value)) => {
                        let text = String::from_utf8(value).ok();
                        let current = text
                            .and_then(|t| t.parse::<i64>().ok())
                            .ok_or_else(|| CacheError::NotAnInteger(key.clone()))?;
                        (expires_ms, current)
                    }
                    None => (ttl_if_new.map_or(NEVER, |ttl| now.saturating_add(ttl_ms(ttl))), 0),
                };
                let next = current.saturating_add(by);
                t.put(&key, expires_ms, next.to_string().as_bytes())?;
                Ok(next)
            })
            .await
    }

    /// Removes keys expired by `now`; returns how many.
    pub async fn sweep_expired(&self, now: Millis) -> Result<usize, CacheError> {
        let store = match self.store() {
            Ok(store) => store,
            Err(redis) => {
                let mut total = 0;
                loop {
                    let swept = redis.sweep(now, SWEEP_BATCH).await?;
                    total += swept;
                    if swept < SWEEP_BATCH {
                        return Ok(total);
                    }
                }
            }
        };
        let mut total = 0;
        loop {
            let swept = store
                .write(move |txn| {
                    let mut t = Tables::open(txn)?;
                    let mut due = Vec::new();
                    for entry in t.expiry.range((Millis::MIN, "")..(now.saturating_add(1), ""))? {
                        due.push(entry?.0.value().1.to_owned());
                        if due.len() == SWEEP_BATCH {
                            break;
                        }
                    }
                    for key in &due {
                        t.remove(key)?;
                    }
                    Ok::<_, CacheError>(due.len())
                })
                .await?;
            total += swept;
            if swept < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }
}

struct Tables<'t> {
    values: Table<'t, &'static str, &'static [u8]>,
    expiry: Table<'t, (i64, &'static str), ()>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, CacheError> {
        Ok(Self {
            values: txn.open_table(VALUES)?,
            expiry: txn.open_table(EXPIRY)?,
        })
    }

    fn load(&self, key: &str) -> Result<Option<(Millis, Vec<u8>)>, CacheError> {
        Ok(self.values.get(key)?.map(|raw| {
            let (expires_ms, value) = decode(raw.value());
            (expires_ms, value.to_vec())
        }))
    }

    fn put(&mut self, key: &str, expires_ms: Millis, value: &[u8]) -> Result<(), CacheError> {
        self.remove(key)?;
        self.values.insert(key, encode(expires_ms, value).as_slice())?;
        if expires_ms != NEVER {
            self.expiry.insert((expires_ms, key), ())?;
        }
        Ok(())
    }

    /// Removes `key` and its expiry entry; returns the expiry it had.
    fn remove(&mut self, key: &str) -> Result<Option<Millis>, CacheError> {
        let Some(expires_ms) = self.values.remove(key)?.map(|raw| decode(raw.value()).0) else {
            return Ok(None);
        };
        if expires_ms != NEVER {
            self.expiry.remove((expires_ms, key))?;
        }
        Ok(Some(expires_ms))
    }
}
