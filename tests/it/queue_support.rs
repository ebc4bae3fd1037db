//! Shared setup for the queue tests: a queue in a temp dir on a manual clock.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use darkroom::clock::ManualClock;
use darkroom::queue::{Claimed, NewJob, Queue, QueueConfig};
use serde_json::json;

/// 2026-01-01T00:00:00Z: tests start here and move time by hand.
pub const T0: i64 = 1_767_225_600_000;

pub struct TestQueue {
    pub queue: Queue,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
}

impl TestQueue {
    pub fn new() -> Self {
        Self::with_config(QueueConfig::default())
    }

    pub fn with_config(config: QueueConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let queue = Queue::open(&dir.path().join("queue.redb"), Arc::new(clock.clone()), config).unwrap();
        Self { queue, clock, dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("queue.redb")
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance_ms(i64::try_from(d.as_millis()).unwrap());
    }

    pub fn now(&self) -> i64 {
        self.queue.now_ms()
    }

    /// Enqueues a job on queue `q` with a payload naming it.
    pub async fn put(&self, q: &str, name: &str) -> ulid::Ulid {
        self.queue
            .enqueue(NewJob::new(q, json!({ "name": name })))
            .await
            .unwrap()
            .job
            .id
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
