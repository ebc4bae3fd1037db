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

use redis::Connection;

mod events;
mod keys;
mod read;
mod txn;

pub(crate) use events::{ReaderGuard, Sinks};
use keys::Keys;
use txn::RedisTxn;

use super::backend::JobTables;
use super::error::QueueError;
use super::job::Job;
use super::read::{Counts, ListQuery, Page};
use super::txn::{Ctx, Outcome};
use crate::clock::Millis;
use crate::redis_store::RedisStore;

/// How often a transition is run again after losing a race before giving up.
const MAX_CONFLICTS: usize = 1000;

/// Cheap `Clone` handle on the Redis side of a queue.
#[derive(Clone)]
pub(crate) struct RedisQueue {
    store: RedisStore,
    keys: Arc<Keys>,
}

impl RedisQueue {
    /// The queue under `store`'s prefix, with its event reader started. Blocking.
    pub(crate) fn open(store: RedisStore, sinks: Sinks) -> Result<(Self, ReaderGuard), QueueError> {
        let keys = Arc::new(Keys::new(&store));
        let from = store.with_conn(|c| events::last_id(c, &keys.events))?;
        let guard = events::spawn_reader(store.clone(), keys.events.clone(), from, sinks);
        Ok((Self { store, keys }, guard))
    }

    pub(crate) fn store(&self) -> &RedisStore {
        &self.store
    }

    /// Runs a transition until it commits without a conflict. Its events reach
    /// subscribers through the stream, on every node.
    pub(crate) async fn apply<T, F>(&self, parts: CtxParts, op: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: Fn(&mut dyn JobTables, &Ctx) -> Outcome<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let ctx = parts.ctx();
            for _ in 0..MAX_CONFLICTS {
                let committed = this.store.with_conn(|conn| -> Result<Option<T>, QueueError> {
                    let mut txn = RedisTxn::new(conn, &this.keys);
                    let (value, events) = op(&mut txn, &ctx)?;
                    Ok(txn.commit(&events)?.then_some(value))
                })?;
                if let Some(value) = committed {
                    return Ok(value);
                }
            }
            Err(QueueError::Contention(MAX_CONFLICTS))
        })
        .await?
    }

    /// Runs a query on a pooled connection, off the async threads.
    async fn query<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Keys) -> Result<T, QueueError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.store.with_conn(|conn| f(conn, &this.keys))).await?
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
