//! Both caches on a shared Redis server (`cache.backend = "redis"`): one node's
//! cached generation serves every node, and a rate-limit counter counts for all.
//!
//! Each operation is one Lua script, so it is atomic across nodes like a redb write
//! transaction is within one. The layout mirrors the embedded tables; expiry is kept
//! in sorted sets scored by the darkroom clock (not Redis's own TTLs), so both
//! backends expire, evict and sweep the same way and tests can move time:
//!
//! | key                  | type   | holds                                   |
//! |----------------------|--------|-----------------------------------------|
//! | `P:prompt:e:{sha}`   | string | entry (JSON, with its `size`)           |
//! | `P:prompt:lru`       | zset   | sha scored by last-use sequence         |
//! | `P:prompt:exp`       | zset   | sha scored by expiry time               |
//! | `P:prompt:bytes`     | string | total weight                            |
//! | `P:prompt:seq`       | string | last-use sequence                       |
//! | `P:kv:v:{key}`       | hash   | `v` value, `e` expiry (absent: never)   |
//! | `P:kv:exp`           | zset   | key scored by expiry time               |

use std::sync::LazyLock;

use redis::{Connection, Script};

use super::CacheError;
use crate::clock::Millis;
use crate::redis_store::RedisStore;

/// Deletes one prompt entry with its index entries and weight; the entry or nil.
/// KEYS: entry, lru, exp, bytes. ARGV: sha.
const PROMPT_UNLINK: &str = r"
local function unlink(entry_key, lru, exp, bytes, sha)
  local raw = redis.call('GET', entry_key)
  if not raw then return nil end
  redis.call('DEL', entry_key)
  redis.call('ZREM', lru, sha)
  redis.call('ZREM', exp, sha)
  local size = tonumber(cjson.decode(raw).size) or 0
  local total = tonumber(redis.call('GET', bytes) or '0') - size
  if total < 0 then total = 0 end
  redis.call('SET', bytes, total)
  return raw
end
";

/// KEYS: entry, lru, exp, bytes, seq. ARGV: sha, entry JSON, size, expires, max,
/// entry key prefix. Returns the evicted `{sha, entry}` pairs, flattened.
static PROMPT_PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PROMPT_UNLINK}
unlink(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('INCRBY', KEYS[4], ARGV[3])
local evicted = {{}}
while tonumber(redis.call('GET', KEYS[4]) or '0') > tonumber(ARGV[5]) do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not oldest then break end
  local raw = unlink(ARGV[6] .. oldest, KEYS[2], KEYS[3], KEYS[4], oldest)
  if raw then
    table.insert(evicted, oldest)
    table.insert(evicted, raw)
  else
    redis.call('ZREM', KEYS[2], oldest)
  end
end
return evicted
"
    ))
});

/// KEYS: entry, lru, seq. ARGV: sha, now. The live entry (made most recent) or nil.
static PROMPT_GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local raw = redis.call('GET', KEYS[1])
if not raw then return nil end
if tonumber(cjson.decode(raw).expires_ms) <= tonumber(ARGV[2]) then return nil end
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
return raw
",
    )
});

/// KEYS: entry, lru, exp, bytes. ARGV: sha. 1 if there was an entry.
static PROMPT_REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PROMPT_UNLINK}
if unlink(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1]) then return 1 end
return 0
"
    ))
});

/// KEYS: lru, exp, bytes. ARGV: now, batch, entry key prefix. Expired `{sha, entry}` pairs.
static PROMPT_SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PROMPT_UNLINK}
local gone = {{}}
for _, sha in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
  local raw = unlink(ARGV[3] .. sha, KEYS[1], KEYS[2], KEYS[3], sha)
  if raw then
    table.insert(gone, sha)
    table.insert(gone, raw)
  else
    redis.call('ZREM', KEYS[2], sha)
  end
end
return gone
"
    ))
});

/// The prompt cache's keys under one prefix.
#[derive(Clone)]
pub(crate) struct RedisPrompts {
    store: RedisStore,
    entry_prefix: String,
    lru: String,
    exp: String,
    bytes: String,
    seq: String,
}

fn pairs(flat: Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(sha), Some(raw)) = (it.next(), it.next()) {
        out.push((sha, raw));
    }
    out
}

impl RedisPrompts {
    pub(crate) fn new(store: RedisStore) -> Self {
        Self {
            entry_prefix: store.key("prompt:e:"),
            lru: store.key("prompt:lru"),
            exp: store.key("prompt:exp"),
            bytes: store.key("prompt:bytes"),
            seq: store.key("prompt:seq"),
            store,
        }
    }

    async fn run<T, F>(&self, f: F) -> Result<T, CacheError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Self) -> Result<T, CacheError> + Send + 'static,
    {
        self.store.run(self.clone(), f).await
    }

    pub(crate) fn store(&self) -> &RedisStore {
        &self.store
    }

    /// The entry JSON of `sha` if live at `now`, made most recently used.
    pub(crate) async fn get(&self, sha: String, now: Millis) -> Result<Option<String>, CacheError> {
        self.run(move |c, k| {
            Ok(PROMPT_GET
                .key(format!("{}{sha}", k.entry_prefix))
                .key(&k.lru)
                .key(&k.seq)
                .arg(&sha)
                .arg(now)
                .invoke(c)?)
        })
        .await
    }

    /// Stores an entry and evicts while over `max`; the evicted `(sha, entry JSON)`.
    pub(crate) async fn put(
        &self,
        sha: String,
        entry: String,
        size: u64,
        expires_ms: Millis,
        max: u64,
    ) -> Result<Vec<(String, String)>, CacheError> {
        self.run(move |c, k| {
            let flat: Vec<String> = PROMPT_PUT
                .key(format!("{}{sha}", k.entry_prefix))
                .key(&k.lru)
                .key(&k.exp)
                .key(&k.bytes)
                .key(&k.seq)
                .arg(&sha)
                .arg(entry)
                .arg(size)
                .arg(expires_ms)
                .arg(max)
                .arg(&k.entry_prefix)
                .invoke(c)?;
            Ok(pairs(flat))
        })
        .await
    }

    pub(crate) async fn remove(&self, sha: String) -> Result<bool, CacheError> {
        self.run(move |c, k| {
            let removed: i64 = PROMPT_REMOVE
                .key(format!("{}{sha}", k.entry_prefix))
                .key(&k.lru)
                .key(&k.exp)
                .key(&k.bytes)
                .arg(&sha)
                .invoke(c)?;
            Ok(removed == 1)
        })
        .await
    }

    /// Removes up to `batch` entries expired by `now`; `(sha, entry JSON)` of each.
    pub(crate) async fn sweep(&self, now: Millis, batch: usize) -> Result<Vec<(String, String)>, CacheError> {
        self.run(move |c, k| {
            let flat: Vec<String> = PROMPT_SWEEP
                .key(&k.lru)
                .key(&k.exp)
                .key(&k.bytes)
                .arg(now)
                .arg(batch)
                .arg(&k.entry_prefix)
                .invoke(c)?;
            Ok(pairs(flat))
        })
        .await
    }

    /// `(entries, bytes)`.
    pub(crate) async fn usage(&self) -> Result<(u64, u64), CacheError> {
        self.run(|c, k| {
            let (entries, bytes): (u64, Option<u64>) = redis::pipe()
                .cmd("ZCARD")
                .arg(&k.lru)
                .cmd("GET")
                .arg(&k.bytes)
                .query(c)?;
            Ok((entries, bytes.unwrap_or(0)))
        })
        .await
    }
}

/// KEYS: value hash. ARGV: now. The live value or nil.
static KV_GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'v', 'e')
if not v[1] then return nil end
if v[2] and tonumber(v[2]) <= tonumber(ARGV[1]) then return nil end
return v[1]
",
    )
});

/// KEYS: value hash, exp. ARGV: key, value, expires ('' for never).
static KV_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[2])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'e', ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
return 1
",
    )
});

/// KEYS: value hash, exp. ARGV: key, now. 1 if a live value was removed.
static KV_DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'v', 'e')
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if not v[1] then return 0 end
if v[2] and tonumber(v[2]) <= tonumber(ARGV[2]) then return 0 end
return 1
",
    )
});

/// KEYS: value hash, exp. ARGV: key, now, new expiry. 1 if the key was live.
static KV_EXPIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'v', 'e')
if not v[1] then return 0 end
if v[2] and tonumber(v[2]) <= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'e', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
",
    )
});

/// KEYS: value hash, exp. ARGV: key, by, now, expiry if new ('' for never).
/// The new value as text, or the error `NOTINT`. The sum is Redis's own `HINCRBY`
/// (exact 64-bit integers, where Lua numbers are doubles); at the ends of the range
/// it saturates, as the embedded cache does.
static KV_INCR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'v', 'e')
local live = v[1] and not (v[2] and tonumber(v[2]) <= tonumber(ARGV[3]))
if not live then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'v', '0')
  if ARGV[4] == '' then
    redis.call('ZREM', KEYS[2], ARGV[1])
  else
    redis.call('HSET', KEYS[1], 'e', ARGV[4])
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  end
end
local ok, err = pcall(redis.call, 'HINCRBY', KEYS[1], 'v', ARGV[2])
if not ok then
  if not string.find(tostring(err.err or err), 'overflow') then
    return redis.error_reply('NOTINT')
  end
  local limit = '9223372036854775807'
  if string.sub(ARGV[2], 1, 1) == '-' then limit = '-9223372036854775808' end
  redis.call('HSET', KEYS[1], 'v', limit)
end
return redis.call('HGET', KEYS[1], 'v')
",
    )
});

/// KEYS: exp. ARGV: now, batch, value key prefix. How many keys went.
static KV_SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, key in ipairs(due) do
  redis.call('DEL', ARGV[3] .. key)
  redis.call('ZREM', KEYS[1], key)
end
return #due
",
    )
});

/// The key-value cache's keys under one prefix.
#[derive(Clone)]
pub(crate) struct RedisKv {
    store: RedisStore,
    value_prefix: String,
    exp: String,
}

impl RedisKv {
    pub(crate) fn new(store: RedisStore) -> Self {
        Self {
            value_prefix: store.key("kv:v:"),
            exp: store.key("kv:exp"),
            store,
        }
    }

    async fn run<T, F>(&self, f: F) -> Result<T, CacheError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Self) -> Result<T, CacheError> + Send + 'static,
    {
        self.store.run(self.clone(), f).await
    }

    fn hash(&self, key: &str) -> String {
        format!("{}{key}", self.value_prefix)
    }

    pub(crate) async fn get(&self, key: String, now: Millis) -> Result<Option<Vec<u8>>, CacheError> {
        self.run(move |c, k| Ok(KV_GET.key(k.hash(&key)).arg(now).invoke(c)?))
            .await
    }

    pub(crate) async fn set(
        &self,
        key: String,
        value: Vec<u8>,
        expires_ms: Option<Millis>,
    ) -> Result<(), CacheError> {
        self.run(move |c, k| {
            let expires = expires_ms.map(|e| e.to_string()).unwrap_or_default();
            let _: i64 = KV_SET
                .key(k.hash(&key))
                .key(&k.exp)
                .arg(&key)
                .arg(value)
                .arg(expires)
                .invoke(c)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn delete(&self, key: String, now: Millis) -> Result<bool, CacheError> {
        self.run(move |c, k| {
            let live: i64 = KV_DELETE
                .key(k.hash(&key))
                .key(&k.exp)
                .arg(&key)
                .arg(now)
                .invoke(c)?;
            Ok(live == 1)
        })
        .await
    }

    pub(crate) async fn expire(
        &self,
        key: String,
        now: Millis,
        expires_ms: Millis,
    ) -> Result<bool, CacheError> {
        self.run(move |c, k| {
            let live: i64 = KV_EXPIRE
                .key(k.hash(&key))
                .key(&k.exp)
                .arg(&key)
                .arg(now)
                .arg(expires_ms)
                .invoke(c)?;
            Ok(live == 1)
        })
        .await
    }

    pub(crate) async fn incr(
        &self,
        key: String,
        by: i64,
        now: Millis,
        expires_if_new: Option<Millis>,
    ) -> Result<i64, CacheError> {
        self.run(move |c, k| {
            let expires = expires_if_new.map(|e| e.to_string()).unwrap_or_default();
            let result: Result<i64, redis::RedisError> = KV_INCR
                .key(k.hash(&key))
                .key(&k.exp)
                .arg(&key)
                .arg(by)
                .arg(now)
                .arg(expires)
                .invoke(c);
            match result {
                Err(e) if e.to_string().contains("NOTINT") => Err(CacheError::NotAnInteger(key)),
                other => Ok(other?),
            }
        })
        .await
    }

    pub(crate) async fn sweep(&self, now: Millis, batch: usize) -> Result<usize, CacheError> {
        self.run(move |c, k| {
            Ok(KV_SWEEP
                .key(&k.exp)
                .arg(now)
                .arg(batch)
                .arg(&k.value_prefix)
                .invoke(c)?)
        })
        .await
    }
}
