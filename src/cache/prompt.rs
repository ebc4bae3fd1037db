//! The prompt cache: an identical generation request returns the stored result instead
//! of burning GPU time again.
//!
//! Entries map a [`CacheKey`] to a [`CachedResult`] (the objects a job produced) and
//! live for a TTL (default 7 days). The total size is bounded: an entry weighs the
//! bytes of the objects it names plus its own record, and when a put goes over the
//! bound the least recently used entries are evicted and handed back so the caller
//! can delete their objects. Recency is a sequence number bumped on every hit, kept
//! in an index so eviction is a scan from the front.
//!
//! | table                 | key                      | value               |
//! |-----------------------|--------------------------|---------------------|
//! | `cache_prompt`        | sha-256                  | entry (JSON)        |
//! | `cache_prompt_lru`    | (last-use seq, sha-256)  | ()                  |
//! | `cache_prompt_expiry` | (expires_ms, sha-256)    | ()                  |
//! | `cache_meta`          | `prompt_bytes`, `prompt_seq` | u64             |
//!
//! With `cache.backend = "redis"` the same entries live on Redis (`on_redis`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::CacheError;
use super::key::CacheKey;
use super::on_redis::RedisPrompts;
use crate::clock::{Millis, SharedClock};
use crate::redb_store::Store;
use crate::redis_store::RedisStore;

const ENTRIES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("cache_prompt");
const LRU: TableDefinition<(u64, &[u8; 32]), ()> = TableDefinition::new("cache_prompt_lru");
const EXPIRY: TableDefinition<(i64, &[u8; 32]), ()> = TableDefinition::new("cache_prompt_expiry");
const META: TableDefinition<&str, u64> = TableDefinition::new("cache_meta");
const BYTES_KEY: &str = "prompt_bytes";
const SEQ_KEY: &str = "prompt_seq";
const SWEEP_BATCH: usize = 512;

/// Settings of the prompt cache.
#[derive(Debug, Clone, Copy)]
pub struct PromptCacheConfig {
    /// How long an entry lives unless the put says otherwise (default 7 days).
    pub ttl: Duration,
    /// Total weight kept before least recently used entries go (default 2 GiB).
    pub max_bytes: u64,
}

impl Default for PromptCacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_hours(7 * 24),
            max_bytes: 2 << 30,
        }
    }
}

/// One stored object of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedObject {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub content_type: String,
}

/// What a cached request produced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CachedResult {
    pub objects: Vec<CachedObject>,
}

impl CachedResult {
    /// Bytes of all objects named.
    pub fn object_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// An entry pushed out (by the size bound or its TTL); its objects may be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    pub key: CacheKey,
    pub result: CachedResult,
}

/// What a put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// False when the entry alone is heavier than the whole bound.
    pub stored: bool,
    pub evicted: Vec<Evicted>,
}

/// Counters since the cache was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Entries pushed out by the size bound.
    pub evictions: u64,
    /// Entries removed by the TTL sweep.
    pub expired: u64,
}

/// How much the cache holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    result: CachedResult,
    size: u64,
    created_ms: Millis,
    expires_ms: Millis,
    seq: u64,
}

/// Cheap `Clone` handle on the prompt cache.
#[derive(Clone)]
pub struct PromptCache {
    inner: Arc<Inner>,
}

/// Where the entries live.
enum Backend {
    Embedded(Store),
    Redis(RedisPrompts),
}

struct Inner {
    backend: Backend,
    clock: SharedClock,
    config: PromptCacheConfig,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    expired: AtomicU64,
}

impl PromptCache {
    /// A prompt cache in `store` (tables are created if missing).
    pub fn new(store: Store, clock: SharedClock, config: PromptCacheConfig) -> Result<Self, CacheError> {
        store.write_blocking(|txn| Tables::open(txn).map(drop))?;
        Ok(Self::assemble(Backend::Embedded(store), clock, config))
    }

    /// A prompt cache on a Redis server, shared by every node using it.
    pub fn new_redis(store: RedisStore, clock: SharedClock, config: PromptCacheConfig) -> Self {
        Self::assemble(Backend::Redis(RedisPrompts::new(store)), clock, config)
    }

    fn assemble(backend: Backend, clock: SharedClock, config: PromptCacheConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                clock,
                config,
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
                expired: AtomicU64::new(0),
            }),
        }
    }

    /// The entry of `key` if live at `now` (made most recently used), from either backend.
    async fn lookup(&self, key: &CacheKey, now: Millis) -> Result<Option<Entry>, CacheError> {
        let store = match &self.inner.backend {
            Backend::Embedded(store) => store.clone(),
            Backend::Redis(redis) => {
                return match redis.get(key.to_string(), now).await? {
                    Some(raw) => Ok(Some(serde_json::from_str(&raw)?)),
                    None => Ok(None),
                };
            }
        };
        let bytes = key.0;
        let read = store.clone();
        let found = tokio::task::spawn_blocking(move || -> Result<Option<Entry>, CacheError> {
            let txn = read.read()?;
            let entries = txn.open_table(ENTRIES)?;
            let entry = match entries.get(&bytes)? {
                Some(raw) => Some(serde_json::from_slice::<Entry>(raw.value())?),
                None => None,
            };
            Ok(entry.filter(|e| e.expires_ms > now))
        })
        .await??;
        if found.is_some() {
            store.write(move |txn| Tables::open(txn)?.touch(&bytes)).await?;
        }
        Ok(found)
    }

    /// The stored result for `key`, if present and not expired. A hit makes the entry
    /// the most recently used.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<CachedResult>, CacheError> {
        let Some(entry) = self.lookup(key, self.inner.clock.now_ms()).await? else {
            self.inner.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        self.inner.hits.fetch_add(1, Ordering::Relaxed);
        Ok(Some(entry.result))
    }

    /// Stores `result` under `key` for the configured TTL.
    pub async fn put(&self, key: &CacheKey, result: CachedResult) -> Result<PutOutcome, CacheError> {
        self.put_with_ttl(key, result, self.inner.config.ttl).await
    }

    /// Stores `result` under `key` for `ttl`, replacing any entry, and evicts least
    /// recently used entries while the total is over the bound.
    pub async fn put_with_ttl(
        &self,
        key: &CacheKey,
        result: CachedResult,
        ttl: Duration,
    ) -> Result<PutOutcome, CacheError> {
        let now = self.inner.clock.now_ms();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut entry = Entry {
            result,
            size: 0,
            created_ms: now,
            expires_ms: now.saturating_add(ttl_ms),
            seq: 0,
        };
        let record_len = serde_json::to_vec(&entry)?.len() as u64;
        entry.size = entry.result.object_bytes().saturating_add(record_len);
        let max_bytes = self.inner.config.max_bytes;
        if entry.size > max_bytes {
            return Ok(PutOutcome {
                stored: false,
                evicted: Vec::new(),
            });
        }
        let store = match &self.inner.backend {
            Backend::Embedded(store) => store,
            Backend::Redis(redis) => {
                let record = serde_json::to_string(&entry)?;
                let gone = redis
                    .put(key.to_string(), record, entry.size, entry.expires_ms, max_bytes)
                    .await?;
                let evicted = decode_all(gone)?;
                self.inner
                    .evictions
                    .fetch_add(evicted.len() as u64, Ordering::Relaxed);
                return Ok(PutOutcome {
                    stored: true,
                    evicted,
                });
            }
        };
        let bytes = key.0;
        let evicted = store
            .write(move |txn| {
                let mut t = Tables::open(txn)?;
                t.unlink(&bytes)?;
                entry.seq = t.next_seq()?;
                t.link(&bytes, &entry)?;
                let mut evicted = Vec::new();
                while t.total_bytes()? > max_bytes {
                    let Some(oldest) = t.least_recent()? else { break };
                    if let Some(gone) = t.unlink(&oldest)? {
                        evicted.push(Evicted {
                            key: CacheKey(oldest),
                            result: gone.result,
                        });
                    }
                }
                Ok::<_, CacheError>(evicted)
            })
            .await?;
        self.inner
            .evictions
            .fetch_add(evicted.len() as u64, Ordering::Relaxed);
        Ok(PutOutcome {
            stored: true,
            evicted,
        })
    }

    /// Removes the entry for `key`; true if there was one.
    pub async fn remove(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let store = match &self.inner.backend {
            Backend::Embedded(store) => store,
            Backend::Redis(redis) => return redis.remove(key.to_string()).await,
        };
        let bytes = key.0;
        let gone = store.write(move |txn| Tables::open(txn)?.unlink(&bytes)).await?;
        Ok(gone.is_some())
    }

    /// Removes entries whose TTL ran out by `now` and returns them.
    pub async fn sweep_expired(&self, now: Millis) -> Result<Vec<Evicted>, CacheError> {
        let mut all = Vec::new();
        loop {
            let batch = match &self.inner.backend {
                Backend::Redis(redis) => decode_all(redis.sweep(now, SWEEP_BATCH).await?)?,
                Backend::Embedded(store) => {
                    store
                        .write(move |txn| {
                            let mut t = Tables::open(txn)?;
                            let mut due = Vec::new();
                            for entry in t.expiry.range((Millis::MIN, &[0u8; 32])..=(now, &[0xffu8; 32]))? {
                                due.push(*entry?.0.value().1);
                                if due.len() == SWEEP_BATCH {
                                    break;
                                }
                            }
                            let mut gone = Vec::with_capacity(due.len());
                            for key in due {
                                if let Some(entry) = t.unlink(&key)? {
                                    gone.push(Evicted {
                                        key: CacheKey(key),
                                        result: entry.result,
                                    });
                                }
                            }
                            Ok::<_, CacheError>(gone)
                        })
                        .await?
                }
            };
            let done = batch.len() < SWEEP_BATCH;
            all.extend(batch);
            if done {
                break;
            }
        }
        self.inner.expired.fetch_add(all.len() as u64, Ordering::Relaxed);
        Ok(all)
    }

    /// The embedded database the entries live in (for backups), or `None` on Redis.
    pub fn redb(&self) -> Option<&Store> {
        match &self.inner.backend {
            Backend::Embedded(store) => Some(store),
            Backend::Redis(_) => None,
        }
    }

    /// The Redis server the cache lives on, if it does.
    pub fn redis(&self) -> Option<&RedisStore> {
        match &self.inner.backend {
            Backend::Embedded(_) => None,
            Backend::Redis(redis) => Some(redis.store()),
        }
    }

    /// The size bound (`cache.prompt_max_bytes`).
    pub fn max_bytes(&self) -> u64 {
        self.inner.config.max_bytes
    }

    /// Hits, misses, evictions and expirations since open.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
            evictions: self.inner.evictions.load(Ordering::Relaxed),
            expired: self.inner.expired.load(Ordering::Relaxed),
        }
    }

    /// Entries held and their total weight.
    pub async fn usage(&self) -> Result<Usage, CacheError> {
        let store = match &self.inner.backend {
            Backend::Embedded(store) => store.clone(),
            Backend::Redis(redis) => {
                let (entries, bytes) = redis.usage().await?;
                return Ok(Usage { entries, bytes });
            }
        };
        tokio::task::spawn_blocking(move || -> Result<Usage, CacheError> {
            use redb::ReadableTableMetadata;
            let txn = store.read()?;
            let entries = txn.open_table(ENTRIES)?.len()?;
            let bytes = txn.open_table(META)?.get(BYTES_KEY)?.map_or(0, |v| v.value());
            Ok(Usage { entries, bytes })
        })
        .await?
    }
}

/// Entries Redis handed back (evicted or expired), as the embedded cache returns them.
fn decode_all(gone: Vec<(String, String)>) -> Result<Vec<Evicted>, CacheError> {
    let mut out = Vec::with_capacity(gone.len());
    for (sha, raw) in gone {
        let entry: Entry = serde_json::from_str(&raw)?;
        let Ok(key) = sha.parse::<CacheKey>() else {
            tracing::warn!(key = %sha, "prompt cache on Redis: an entry key is not a sha-256; skipped");
            continue;
        };
        out.push(Evicted {
            key,
            result: entry.result,
        });
    }
    Ok(out)
}

/// The prompt cache's tables in one write transaction.
struct Tables<'t> {
    entries: Table<'t, &'static [u8; 32], &'static [u8]>,
    lru: Table<'t, (u64, &'static [u8; 32]), ()>,
    expiry: Table<'t, (i64, &'static [u8; 32]), ()>,
    meta: Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, CacheError> {
        Ok(Self {
            entries: txn.open_table(ENTRIES)?,
            lru: txn.open_table(LRU)?,
            expiry: txn.open_table(EXPIRY)?,
            meta: txn.open_table(META)?,
        })
    }

    fn load(&self, key: &[u8; 32]) -> Result<Option<Entry>, CacheError> {
        match self.entries.get(key)? {
            Some(raw) => Ok(Some(serde_json::from_slice(raw.value())?)),
            None => Ok(None),
        }
    }

    fn meta(&self, name: &str) -> Result<u64, CacheError> {
        Ok(self.meta.get(name)?.map_or(0, |v| v.value()))
    }

    fn total_bytes(&self) -> Result<u64, CacheError> {
        self.meta(BYTES_KEY)
    }

    fn next_seq(&mut self) -> Result<u64, CacheError> {
        let seq = self.meta(SEQ_KEY)?;
        self.meta.insert(SEQ_KEY, seq + 1)?;
        Ok(seq)
    }

    fn least_recent(&self) -> Result<Option<[u8; 32]>, CacheError> {
        Ok(self.lru.first()?.map(|(key, _)| *key.value().1))
    }

    /// Inserts `entry` and its index entries and adds its weight.
    fn link(&mut self, key: &[u8; 32], entry: &Entry) -> Result<(), CacheError> {
        self.entries.insert(key, serde_json::to_vec(entry)?.as_slice())?;
        self.lru.insert((entry.seq, key), ())?;
        self.expiry.insert((entry.expires_ms, key), ())?;
        let total = self.total_bytes()?.saturating_add(entry.size);
        self.meta.insert(BYTES_KEY, total)?;
        Ok(())
    }

    /// Removes the entry under `key` with its index entries and weight.
    fn unlink(&mut self, key: &[u8; 32]) -> Result<Option<Entry>, CacheError> {
        let Some(entry) = self.load(key)? else {
            return Ok(None);
        };
        self.entries.remove(key)?;
        self.lru.remove((entry.seq, key))?;
        self.expiry.remove((entry.expires_ms, key))?;
        let total = self.total_bytes()?.saturating_sub(entry.size);
        self.meta.insert(BYTES_KEY, total)?;
        Ok(Some(entry))
    }

    /// Makes the entry under `key` the most recently used.
    fn touch(&mut self, key: &[u8; 32]) -> Result<(), CacheError> {
        let Some(mut entry) = self.load(key)? else {
            return Ok(());
        };
        self.lru.remove((entry.seq, key))?;
        entry.seq = self.next_seq()?;
        self.lru.insert((entry.seq, key), ())?;
        self.entries.insert(key, serde_json::to_vec(&entry)?.as_slice())?;
        Ok(())
    }
}
