//! The queue on a shared Redis server (`queue.backend = "redis"`), so several nodes
//! take jobs from one queue.
//!
//! The rules are the embedded queue's own (`queue::txn`, run against [`RedisTxn`]);
//! what differs is only where records and indexes live (`keys`), how a transition
//! commits (one Lua script, after checking nothing it read has changed — retried on
//! a conflict), how queries read (`read`) and how events travel (a Redis stream every
//! node follows, `events`). Durability is Redis's: run it with `--appendonly yes`.
//!
//! Nodes compare lease deadlines written by other nodes with their own clock, so
//! their clocks must agree (NTP) to well within the lease length.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::Connection;
use tokio::sync::watch;

mod events;
mod keys;
mod read;
mod txn;

pub(crate) use events::{ReaderGuard, Sinks};
use keys::Keys;
use txn::{Commit, RedisTxn, StreamId};

use super::backend::JobTables;
use super::error::QueueError;
use super::job::Job;
use super::read::{Counts, ListQuery, Page};
use super::txn::{Ctx, Outcome};
use crate::clock::Millis;
use crate::redis_store::{Failure, RedisStore};

/// How often a transition is run again after losing a race before giving up
/// (with [`backoff`], some seconds).
const MAX_CONFLICTS: usize = 200;

/// Waits a little, at random, before running a transition again after its `n`th
/// conflict, so nodes that keep colliding on the same jobs fall out of step.
fn backoff(n: usize) {
    if n > 0 {
        let ceiling = 1u64 << n.min(5);
        std::thread::sleep(Duration::from_micros(rand::random_range(0..ceiling * 1000)));
    }
}

/// Cheap `Clone` handle on the Redis side of a queue.
#[derive(Clone)]
pub(crate) struct RedisQueue {
    store: RedisStore,
    keys: Arc<Keys>,
    /// The last stream entry this node's reader has broadcast.
    delivered: watch::Receiver<StreamId>,
    /// Whether the reader is connected, so an echo can be expected.
    following: Arc<AtomicBool>,
}

/// How long a transition waits for its own events to come back through the stream.
const ECHO_WAIT: Duration = Duration::from_secs(5);

impl RedisQueue {
    /// The queue under `store`'s prefix, with its event reader started. Blocking.
    pub(crate) fn open(store: RedisStore, sinks: Sinks) -> Result<(Self, ReaderGuard), QueueError> {
        let keys = Arc::new(Keys::new(&store));
        let from = store.with_conn(|c| events::last_id(c, &keys.events))?;
        let start = txn::parse_stream_id(&from).unwrap_or((0, 0));
        let (delivered_tx, delivered) = watch::channel(start);
        let following = Arc::new(AtomicBool::new(true));
        let progress = events::Progress {
            delivered: delivered_tx,
            following: following.clone(),
        };
        let guard = events::spawn_reader(store.clone(), keys.events.clone(), from, sinks, progress);
        Ok((
            Self {
                store,
                keys,
                delivered,
                following,
            },
            guard,
        ))
    }

    pub(crate) fn store(&self) -> &RedisStore {
        &self.store
    }

    /// Runs a transition until it commits without a conflict. Its events reach
    /// subscribers through the stream, on every node; it returns once this node's
    /// subscribers have them, as the embedded queue does.
    pub(crate) async fn apply<T, F>(&self, parts: CtxParts, op: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: Fn(&mut dyn JobTables, &Ctx) -> Outcome<T> + Send + 'static,
    {
        let this = self.clone();
        let (value, last_event) = tokio::task::spawn_blocking(move || {
            let ctx = parts.ctx();
            let mut reconnected = false;
            for conflicts in 0..MAX_CONFLICTS {
                let mut pending = None;
                let sent = Instant::now();
                let attempt = this.store.with_conn(|conn| -> Result<Commit, QueueError> {
                    let mut txn = RedisTxn::new(conn, &this.keys);
                    let (value, events) = match op(&mut txn, &ctx) {
                        Err(QueueError::Raced(_)) => return Ok(Commit::Conflict),
                        outcome => outcome?,
                    };
                    pending = Some(value);
                    txn.commit(&events)
                });
                let commit = match attempt {
                    Err(QueueError::Unacknowledged { marker, source }) => {
                        this.settle(&marker, sent, source)?
                    }
                    // A pooled connection found dead before anything was committed
                    // (Redis restarted, say): once more, on a fresh one.
                    Err(QueueError::Redis(e)) if e.breaks_connection() && !reconnected => {
                        reconnected = true;
                        continue;
                    }
                    other => other?,
                };
                match (commit, pending) {
                    (Commit::Done(last_event), Some(value)) => return Ok((value, last_event)),
                    _ => backoff(conflicts),
                }
            }
            Err(QueueError::Contention(MAX_CONFLICTS))
        })
        .await??;
        if let Some(id) = last_event
            && self.following.load(Ordering::Relaxed)
        {
            let mut delivered = self.delivered.clone();
            let echoed = tokio::time::timeout(ECHO_WAIT, delivered.wait_for(|d| *d >= id)).await;
            if !matches!(echoed, Ok(Ok(_))) {
                tracing::warn!(
                    endpoint = self.store.endpoint(),
                    "a job change was committed but its event has not come back from Redis"
                );
            }
        }
        Ok(value)
    }

    /// What became of a commit whose answer was lost, sent at `sent`: asked on
    /// fresh connections (pooled ones may be as dead as the one that failed) while
    /// Redis comes back, for about a second, and never once the marker could have
    /// expired.
    fn settle(&self, marker: &str, sent: Instant, lost: redis::RedisError) -> Result<Commit, QueueError> {
        tracing::warn!(endpoint = self.store.endpoint(), error = %lost, "the answer to a job change was lost; asking Redis whether it was applied");
        let mut last = lost;
        for wait_ms in [0, 50, 250, 1000] {
            std::thread::sleep(Duration::from_millis(wait_ms));
            if sent.elapsed() >= txn::SETTLE_WITHIN {
                break;
            }
            let asked = self
                .store
                .dedicated(self.store.timeout())
                .and_then(|mut conn| txn::settle(&mut conn, marker));
            match asked {
                Ok(commit) => return Ok(commit),
                Err(e) => last = e,
            }
        }
        Err(QueueError::Unacknowledged {
            marker: marker.to_owned(),
            source: last,
        })
    }

    /// Runs a query on a pooled connection, off the async threads; once more on a
    /// fresh connection if the pooled one turns out dead (a read can be repeated).
    async fn query<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: Fn(&mut Connection, &Keys) -> Result<T, QueueError> + Send + 'static,
    {
        let (store, keys) = (self.store.clone(), self.keys.clone());
        tokio::task::spawn_blocking(move || match store.with_conn(|c| f(c, &keys)) {
            Err(e) if e.breaks_connection() => store.with_conn(|c| f(c, &keys)),
            other => other,
        })
        .await?
    }

    pub(crate) async fn get(&self, id: ulid::Ulid) -> Result<Option<Job>, QueueError> {
        self.query(move |c, k| read::get(c, k, id)).await
    }

    pub(crate) async fn list(&self, query: ListQuery) -> Result<Page, QueueError> {
        self.query(move |c, k| read::list(c, k, &query)).await
    }

    pub(crate) async fn counts(&self) -> Result<Counts, QueueError> {
        self.query(read::counts).await
    }

    pub(crate) async fn may_have_work(&self, queue: &str, now: Millis) -> Result<bool, QueueError> {
        let queue = queue.to_owned();
        self.query(move |c, k| read::may_have_work(c, k, &queue, now))
            .await
    }
}

/// What a [`Ctx`] borrows, owned, so it can move to a blocking thread.
pub(crate) struct CtxParts {
    pub now: Millis,
    pub config: Arc<super::QueueConfig>,
    pub ids: Arc<super::ids::IdSource>,
}

impl CtxParts {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            now: self.now,
            config: &self.config,
            ids: &self.ids,
        }
    }
}
