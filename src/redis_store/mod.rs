//! The connection to a shared Redis server: the `queue.backend = "redis"` and
//! `cache.backend = "redis"` engine, as redb is the embedded one.
//!
//! [`RedisStore::connect`] checks the server before anything is built on it: that it
//! answers, that it is Redis 7 or later, and that its `maxmemory-policy` is
//! `noeviction` — any other policy lets Redis drop keys under memory pressure, and a
//! queued job is a key (the failure RQ and BullMQ users meet in production). It
//! refuses unless told to allow eviction.
//!
//! Connections are the blocking client's, kept in a small pool: the queue's
//! transitions run on blocking threads (as redb's do), and a blocking `XREAD` for
//! events gets a [`dedicated`](RedisStore::dedicated) connection of its own.

use crate::sync::lock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::{Client, Connection, ConnectionLike, RedisError};

mod settings;

pub use settings::{Backend, RedisSettings};

/// Why darkroom cannot use the Redis server.
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    #[error("cannot reach Redis at {endpoint} (redis.url): {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: RedisError,
    },
    #[error(
        "Redis at {endpoint} has maxmemory-policy `{policy}`: under memory pressure it may \
         evict keys, and a queued job is a key. Set `maxmemory-policy noeviction` in \
         redis.conf (or CONFIG SET maxmemory-policy noeviction), or start darkroom with \
         redis.allow_eviction = true (DARKROOM_REDIS__ALLOW_EVICTION=true) to accept the risk"
    )]
    Eviction { endpoint: String, policy: String },
    #[error("Redis at {endpoint} is version {version}; darkroom needs Redis 7.0 or later")]
    TooOld { endpoint: String, version: String },
    #[error("redis.ca_file {path}: {source}")]
    CaFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Redis at {endpoint}: {source}")]
    Command {
        endpoint: String,
        #[source]
        source: RedisError,
    },
}

/// An error that may leave a connection unusable.
pub trait Failure {
    fn breaks_connection(&self) -> bool;
}

impl Failure for RedisError {
    fn breaks_connection(&self) -> bool {
        self.is_io_error()
            || self.is_connection_dropped()
            || self.is_timeout()
            || self.is_unrecoverable_error()
    }
}

/// `url` with its password replaced by `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparsable URL>".into(),
    }
}

/// Cheap `Clone` handle on a Redis server.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    pool: Mutex<Vec<Connection>>,
    prefix: String,
    endpoint: String,
    timeout: Duration,
}

/// How many idle connections the pool keeps.
const POOL_SIZE: usize = 8;

/// Redis's answer to a PING, timed.
#[derive(Debug, Clone)]
pub struct Ping {
    pub latency: Duration,
}

impl RedisStore {
    /// Connects, checks the eviction policy and the persistence, and returns the
    /// store. Blocking: call it from a blocking context.
    pub fn connect(settings: &RedisSettings) -> Result<Self, RedisStoreError> {
        let endpoint = redact(&settings.url);
        let connect_error = |source| RedisStoreError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        let client = if let Some(path) = &settings.ca_file {
            let root = std::fs::read(path).map_err(|source| RedisStoreError::CaFile {
                path: path.display().to_string(),
                source,
            })?;
            install_crypto_provider();
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root),
            };
            Client::build_with_tls(settings.url.as_str(), certs).map_err(connect_error)?
        } else {
            if settings.url.starts_with("rediss:") {
                install_crypto_provider();
            }
            Client::open(settings.url.as_str()).map_err(connect_error)?
        };
        let store = Self {
            inner: Arc::new(Inner {
                client,
                pool: Mutex::new(Vec::new()),
                prefix: settings.key_prefix.clone(),
                endpoint: endpoint.clone(),
                timeout: Duration::from_millis(settings.timeout_ms),
            }),
        };
        let version = store
            .with_conn(|c| {
                let info: redis::InfoDict = redis::cmd("INFO").arg("server").query(c)?;
                Ok(info.get::<String>("redis_version"))
            })
            .map_err(connect_error)?
            .unwrap_or_default();
        if !supported(&version) {
            return Err(RedisStoreError::TooOld { endpoint, version });
        }
        let policy = store
            .with_conn(|c| {
                let info: redis::InfoDict = redis::cmd("INFO").arg("memory").query(c)?;
                Ok(info.get::<String>("maxmemory_policy"))
            })
            .map_err(connect_error)?
            .unwrap_or_else(|| "noeviction".into());
        if policy != "noeviction" {
            if !settings.allow_eviction {
                return Err(RedisStoreError::Eviction { endpoint, policy });
            }
            tracing::warn!(%endpoint, %policy, "Redis may evict keys (redis.allow_eviction = true): queued jobs can be lost");
        }
        store.warn_without_persistence();
        Ok(store)
    }

    /// Logs a warning when Redis keeps nothing on disk: a restart would lose every job.
    fn warn_without_persistence(&self) {
        let info = self.with_conn(|c| redis::cmd("INFO").arg("persistence").query::<redis::InfoDict>(c));
        if let Ok(info) = info {
            let aof = info.get::<i64>("aof_enabled").unwrap_or(0) == 1;
            let rdb_saves = self
                .with_conn(|c| {
                    redis::cmd("CONFIG")
                        .arg("GET")
                        .arg("save")
                        .query::<Vec<String>>(c)
                })
                .ok()
                .and_then(|v| v.get(1).cloned())
                .unwrap_or_default();
            if !aof && rdb_saves.trim().is_empty() {
                tracing::warn!(
                    endpoint = %self.inner.endpoint,
                    "Redis has neither AOF nor RDB snapshots: a Redis restart loses every job (run it with --appendonly yes)"
                );
            } else if !aof {
                tracing::info!(
                    endpoint = %self.inner.endpoint,
                    "Redis persists by RDB snapshots only: jobs acknowledged since the last snapshot are lost if Redis dies (--appendonly yes keeps them)"
                );
            }
        }
    }

    /// The server, password hidden.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// `{prefix}:{suffix}`: the name of one of darkroom's keys.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.inner.prefix)
    }

    /// Runs `f` on a pooled connection. A connection that saw an I/O error or a
    /// timeout (its replies may be out of step) is dropped, not returned to the
    /// pool — and the pool is emptied, since a server that restarted broke them all.
    pub fn with_conn<T, E>(&self, f: impl FnOnce(&mut Connection) -> Result<T, E>) -> Result<T, E>
    where
        E: Failure + From<RedisError>,
    {
        let pooled = lock(&self.inner.pool).pop();
        let mut conn = match pooled {
            Some(conn) if conn.is_open() => conn,
            _ => self.open(Some(self.inner.timeout))?,
        };
        let result = f(&mut conn);
        let broken = result.as_ref().err().is_some_and(Failure::breaks_connection);
        let mut pool = lock(&self.inner.pool);
        if broken {
            // The others were opened to the same server: most likely as dead.
            pool.clear();
        } else if conn.is_open() && pool.len() < POOL_SIZE {
            pool.push(conn);
        }
        drop(pool);
        result
    }

    /// Runs `f` with `keys` on a pooled connection, on a blocking thread.
    pub async fn run<K, T, E, F>(&self, keys: K, f: F) -> Result<T, E>
    where
        K: Send + 'static,
        T: Send + 'static,
        E: Failure + From<RedisError> + From<tokio::task::JoinError> + Send + 'static,
        F: FnOnce(&mut Connection, &K) -> Result<T, E> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.with_conn(|c| f(c, &keys))).await?
    }

    /// How long a command may wait for its answer (`redis.timeout_ms`).
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// A connection of its own, for blocking reads; `read_timeout` must exceed any
    /// `BLOCK` it is used with.
    pub fn dedicated(&self, read_timeout: Duration) -> Result<Connection, RedisError> {
        self.open(Some(read_timeout))
    }

    fn open(&self, read_timeout: Option<Duration>) -> Result<Connection, RedisError> {
        let conn = self
            .inner
            .client
            .get_connection_with_timeout(self.inner.timeout)?;
        conn.set_read_timeout(read_timeout)?;
        conn.set_write_timeout(Some(self.inner.timeout))?;
        Ok(conn)
    }

    /// PINGs the server and times the answer.
    pub async fn ping(&self) -> Result<Ping, RedisError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            store.with_conn(|c| redis::cmd("PING").query::<String>(c))?;
            Ok(Ping {
                latency: started.elapsed(),
            })
        })
        .await
        .unwrap_or_else(|e| Err(RedisError::from(std::io::Error::other(e.to_string()))))
    }
}

/// Whether a server reporting `redis_version` can run darkroom's commands (`SET ...
/// NX GET` and `ZRANGE ... BYLEX` are Redis 7's). An unreadable version is let
/// through: Redis-compatible servers report theirs in their own ways.
fn supported(version: &str) -> bool {
    version
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok())
        .is_none_or(|major| major >= 7)
}

/// rustls needs one process-wide crypto provider when more than one is compiled in
/// (reqwest's ring and the AWS SDK's aws-lc are); Redis's TLS uses ring.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_7_and_later_are_supported() {
        for version in ["7.0.15", "7.2.4", "8.0.0", "10.1", ""] {
            assert!(supported(version), "{version}");
        }
        for version in ["6.2.14", "5.0.7"] {
            assert!(!supported(version), "{version}");
        }
    }
}
