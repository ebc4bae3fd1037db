//! Shared setup for the queue tests: a queue on a manual clock, on either backend —
//! a redb file in a temp dir, or a real redis-server under a fresh key prefix.
//!
//! [`on_both_backends!`] runs each listed test once per backend (`embedded::name`
//! and `redis::name`), so the one suite pins down both.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use darkroom::clock::ManualClock;
use darkroom::queue::{Claimed, NewJob, Queue, QueueConfig};
use darkroom::redis_store::RedisStore;
use serde_json::json;

use crate::redis_server::RedisServer;

/// 2026-01-01T00:00:00Z: tests start here and move time by hand.
pub const T0: i64 = 1_767_225_600_000;

/// Which engine a test queue runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Embedded,
    Redis,
}

/// Generates `mod embedded` and `mod redis`, each with one `#[tokio::test]` per
/// listed `async fn name(kind: Kind)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::queue_support::Kind::Embedded).await;
            })*
        }
        mod redis {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::queue_support::Kind::Redis).await;
            })*
        }
    };
}
pub(crate) use on_both_backends;

pub struct TestQueue {
    pub queue: Queue,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
    config: QueueConfig,
    redis: Option<RedisStore>,
}

impl TestQueue {
    pub fn new(kind: Kind) -> Self {
        Self::with_config(kind, QueueConfig::default())
    }

    pub fn with_config(kind: Kind, config: QueueConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let shared = Arc::new(clock.clone());
        let (queue, redis) = match kind {
            Kind::Embedded => (
                Queue::open(&dir.path().join("queue.redb"), shared, config.clone()).unwrap(),
                None,
            ),
            Kind::Redis => {
                let store = RedisServer::shared().store();
                (
                    Queue::open_redis(store.clone(), shared, config.clone()).unwrap(),
                    Some(store),
                )
            }
        };
        Self {
            queue,
            clock,
            dir,
            config,
            redis,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("queue.redb")
    }

    /// What a restarted process (or another node) finds: the redb file as it is on
    /// disk now, copied and opened afresh, or a new queue on the same Redis keys.
    pub fn reopened(&self) -> (Queue, Option<tempfile::TempDir>) {
        let clock = Arc::new(self.clock.clone());
        match &self.redis {
            None => {
                let (dir, copy) = disk_copy(&self.path());
                (Queue::open(&copy, clock, self.config.clone()).unwrap(), Some(dir))
            }
            Some(store) => (
                Queue::open_redis(store.clone(), clock, self.config.clone()).unwrap(),
                None,
            ),
        }
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance_ms(i64::try_from(d.as_millis()).unwrap());
    }

    pub fn now(&self) -> i64 {
        self.queue.now_ms()
    }

    /// Enqueues a job on queue `q` with a payload naming it.
    pub async fn put(&self, q: &str, name: &str) -> ulid::Ulid {
        self.add(NewJob::new(q, json!({ "name": name }))).await
    }

    /// Enqueues `job`; its id.
    pub async fn add(&self, job: NewJob) -> ulid::Ulid {
        self.queue.enqueue(job).await.unwrap().job.id
    }

    pub async fn claim(&self, q: &str) -> Option<Claimed> {
        self.queue.claim(q, "worker-1").await.unwrap()
    }
}

/// The name stored in a payload made by [`TestQueue::put`].
pub fn name_of(claimed: &Claimed) -> String {
    claimed.job.payload["name"].as_str().unwrap().to_owned()
}

/// Copies a redb file, as it is on disk now, into a fresh temp dir: what a restarted
/// process would find. (Reopening the same file in this process could race the old
/// handle's writer thread for the file lock.)
pub fn disk_copy(path: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("queue.redb");
    std::fs::copy(path, &copy).unwrap();
    (dir, copy)
}
