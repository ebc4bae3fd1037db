//! The durable job queue: what the daemon has been asked to generate, who is working
//! on it, and what came of it — replacing Redis + RQ on one box.
//!
//! Jobs live in their own redb file, written through the store's group-commit writer:
//! [`Queue::enqueue`] returns only once the job is on disk, yet concurrent callers
//! share one fsync. A worker [`claim`](Queue::claim_batch)s jobs (highest priority
//! first, FIFO within a priority), which leases them for [`QueueConfig::lease`];
//! [`heartbeat`](Queue::heartbeat) extends the lease (never past the job's timeout)
//! and answers whether to go on. [`complete`](Queue::complete) and
//! [`fail`](Queue::fail) need the live [`Lease`], so a worker that timed out or lost
//! its lease can never overwrite the outcome, and a completed job is never run again.
//! Failures retry with exponential backoff and jitter until `max_attempts`, then stay
//! `failed` (the dead-letter set) with every attempt's error.
//!
//! The reaper ([`Queue::tick`], or [`Queue::spawn_reaper`] in the background) returns
//! jobs whose lease lapsed (worker died, daemon killed) to the queue, ends attempts
//! past their timeout, promotes delayed jobs and purges finished ones after their TTL.
//! It reads the injectable clock, so tests move time instead of sleeping. Every
//! transition is broadcast as a [`JobEvent`] after it is committed.
//!
//! Layout: `job` (the data), `ids` (ULIDs), `tables` (redb tables and indexes), `txn`
//! (transitions inside a write transaction), `read` (queries), `config`, `error`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redb::ReadTransaction;
use serde_json::Value;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

mod backend;
mod config;
mod error;
mod ids;
mod job;
mod read;
mod redis_backend;
mod tables;
mod txn;

pub use config::{Backoff, QueueConfig, QueueSettings};
pub use error::QueueError;
pub use job::{
    AttemptError, Claimed, Directive, Enqueued, FailureKind, Job, JobEvent, JobStatus, Lease, NewJob,
    ParseStatusError, Progress, StopReason,
};
pub use read::{Counts, ListQuery, Page};
pub use txn::{Candidate, Picker};

use crate::clock::{Millis, SharedClock};
use crate::redb_store::Store;
use crate::redis_store::RedisStore;
use backend::JobTables;
use ids::IdSource;
use job::duration_ms;
use redis_backend::{CtxParts, ReaderGuard, RedisQueue, Sinks};
use tables::Tables;
use txn::{Ctx, Outcome};

/// Cheap `Clone` handle on the queue.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    clock: SharedClock,
    config: Arc<QueueConfig>,
    events: broadcast::Sender<JobEvent>,
    /// Woken whenever a job becomes ready, for [`Queue::claim_wait`].
    ready: Arc<Notify>,
    ids: Arc<IdSource>,
    /// Stops the Redis event reader with the queue.
    _reader: Option<ReaderGuard>,
}

/// Where the jobs live.
enum Backend {
    Embedded(Store),
    Redis(RedisQueue),
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Running attempts ended (lease lapsed or timed out).
    pub reaped: usize,
    /// Scheduled jobs that became ready.
    pub promoted: usize,
    /// Finished jobs deleted after their TTL.
    pub purged: usize,
}

impl Queue {
    /// Opens (compacting first) or creates the queue file at `path`.
    pub fn open(path: &Path, clock: SharedClock, config: QueueConfig) -> Result<Self, QueueError> {
        Self::with_store(Store::open_compacted(path)?, clock, config)
    }

    /// A queue on an already open store; creates its tables if they are missing.
    pub fn with_store(store: Store, clock: SharedClock, config: QueueConfig) -> Result<Self, QueueError> {
        store.write_blocking(|txn| Tables::create_all(txn))?;
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        Ok(Self::assemble(
            Backend::Embedded(store),
            None,
            events,
            Arc::new(Notify::new()),
            clock,
            config,
        ))
    }

    /// The queue on a Redis server, shared with every node using the same server
    /// and key prefix. Blocking (it reads where the event stream stands).
    pub fn open_redis(
        store: RedisStore,
        clock: SharedClock,
        config: QueueConfig,
    ) -> Result<Self, QueueError> {
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let ready = Arc::new(Notify::new());
        let sinks = Sinks {
            events: events.clone(),
            ready: ready.clone(),
        };
        let (redis, reader) = RedisQueue::open(store, sinks)?;
        Ok(Self::assemble(
            Backend::Redis(redis),
            Some(reader),
            events,
            ready,
            clock,
            config,
        ))
    }

    fn assemble(
        backend: Backend,
        reader: Option<ReaderGuard>,
        events: broadcast::Sender<JobEvent>,
        ready: Arc<Notify>,
        clock: SharedClock,
        config: QueueConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                clock,
                config: Arc::new(config),
                events,
                ready,
                ids: Arc::new(IdSource::default()),
                _reader: reader,
            }),
        }
    }

    /// Where the queue lives: `embedded` or `redis`.
    pub fn kind(&self) -> crate::stores::StoreKind {
        match self.inner.backend {
            Backend::Embedded(_) => crate::stores::StoreKind::Embedded,
            Backend::Redis(_) => crate::stores::StoreKind::Redis,
        }
    }

    /// The embedded database the entries live in (for backups), or `None` on Redis.
    pub fn redb(&self) -> Option<&Store> {
        match &self.inner.backend {
            Backend::Embedded(store) => Some(store),
            Backend::Redis(_) => None,
        }
    }

    /// The Redis server the queue lives on, if it does.
    pub fn redis(&self) -> Option<&RedisStore> {
        match &self.inner.backend {
            Backend::Embedded(_) => None,
            Backend::Redis(r) => Some(r.store()),
        }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// The current time on the queue's clock.
    pub fn now_ms(&self) -> Millis {
        self.inner.clock.now_ms()
    }

    /// Every committed change from now on. A receiver that falls more than
    /// `event_capacity` behind gets `Lagged` and should re-read what it shows.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.inner.events.subscribe()
    }

    /// Runs a transition — in the group-commit writer, or as a Redis commit — and, once
    /// it is durable, announces its events (on Redis, through the shared stream).
    async fn apply<T, F>(&self, op: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: Fn(&mut dyn JobTables, &Ctx) -> Outcome<T> + Send + 'static,
    {
        self.apply_at(self.now_ms(), op).await
    }

    /// [`Queue::apply`] with `now` given instead of read from the clock.
    async fn apply_at<T, F>(&self, now: Millis, op: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: Fn(&mut dyn JobTables, &Ctx) -> Outcome<T> + Send + 'static,
    {
        let config = self.inner.config.clone();
        let ids = self.inner.ids.clone();
        let store = match &self.inner.backend {
            Backend::Embedded(store) => store,
            Backend::Redis(redis) => {
                return redis.apply(CtxParts { now, config, ids }, op).await;
            }
        };
        let (value, events) = store
            .write(move |txn| {
                let mut tables = Tables::open(txn)?;
                let ctx = Ctx {
                    now,
                    config: &config,
                    ids: &ids,
                };
                op(&mut tables, &ctx)
            })
            .await?;
        let mut woke = false;
        for event in events {
            if event.to == JobStatus::Queued && !woke {
                self.inner.ready.notify_waiters();
                woke = true;
            }
            let _ = self.inner.events.send(event);
        }
        Ok(value)
    }

    async fn read<T, F>(store: &Store, query: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, QueueError> + Send + 'static,
    {
        let store = store.clone();
        tokio::task::spawn_blocking(move || query(&store.read()?)).await?
    }

    /// Stores a new job and returns once it is durable. If its idempotency key names a
    /// job the queue still holds, that job is returned instead (`created: false`).
    pub async fn enqueue(&self, new: NewJob) -> Result<Enqueued, QueueError> {
        let job = self.prepare(new)?;
        let payload = serde_json::to_vec(&job.payload)?;
        self.apply(move |t, ctx| txn::enqueue(t, ctx, job.clone(), &payload))
            .await
    }

    /// Validates a request and turns it into a job record (not yet stored).
    fn prepare(&self, new: NewJob) -> Result<Job, QueueError> {
        let config = &self.inner.config;
        if new.queue.is_empty() || new.queue.len() > 200 {
            return Err(QueueError::Invalid("queue name must be 1..=200 bytes".into()));
        }
        let max_attempts = new.max_attempts.unwrap_or(config.default_max_attempts);
        if max_attempts == 0 {
            return Err(QueueError::Invalid("max_attempts must be at least 1".into()));
        }
        let timeout_ms = new
            .timeout_ms
            .unwrap_or_else(|| duration_ms(config.default_timeout));
        if timeout_ms <= 0 {
            return Err(QueueError::Invalid("timeout must be positive".into()));
        }
        if new.idempotency_key.as_deref().is_some_and(str::is_empty) {
            return Err(QueueError::Invalid("idempotency key must not be empty".into()));
        }
        let now = self.now_ms();
        let not_before = [new.not_before_ms, new.delay_ms.map(|d| now.saturating_add(d))]
            .into_iter()
            .flatten()
            .max()
            .filter(|at| *at > now);
        let id = self.inner.ids.next(now);
        Ok(Job {
            id,
            queue: new.queue,
            priority: new.priority,
            status: if not_before.is_some() {
                JobStatus::Scheduled
            } else {
                JobStatus::Queued
            },
            payload: new.payload,
            attempts: 0,
            max_attempts,
            timeout_ms,
            not_before_ms: not_before,
            idempotency_key: new.idempotency_key,
            result_ttl_ms: new.result_ttl_ms,
            created_ms: now,
            claims: 0,
            started_ms: None,
            finished_ms: None,
            lease_owner: None,
            lease_until_ms: None,
            backend: None,
            routing: None,
            affinity: new.affinity,
            owner: new.owner,
            eta: None,
            cancel_requested: false,
            progress: None,
            result: None,
            errors: Vec::new(),
            expires_ms: None,
            order: id,
        })
    }

    /// Leases the highest-priority ready job of `queue` to `worker`, if any.
    pub async fn claim(&self, queue: &str, worker: &str) -> Result<Option<Claimed>, QueueError> {
        Ok(self.claim_batch(queue, worker, 1).await?.pop())
    }

    /// Leases up to `max` ready jobs of `queue` to `worker`, best first, in one step.
    pub async fn claim_batch(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
    ) -> Result<Vec<Claimed>, QueueError> {
        if max == 0 || !self.may_have_work(queue).await? {
            return Ok(Vec::new());
        }
        let (queue, worker) = (queue.to_owned(), worker.to_owned());
        self.apply(move |t, ctx| txn::claim(t, ctx, &queue, &worker, max))
            .await
    }

    /// Leases the jobs `pick` chooses among the first `window` ready jobs of
    /// `queue` (best first), each returned with the tag the picker gave it.
    pub async fn claim_picked<T: Clone + Send + 'static>(
        &self,
        queue: &str,
        worker: &str,
        window: usize,
        pick: Picker<T>,
    ) -> Result<Vec<(Claimed, T)>, QueueError> {
        if window == 0 || !self.may_have_work(queue).await? {
            return Ok(Vec::new());
        }
        let (queue, worker) = (queue.to_owned(), worker.to_owned());
        self.apply(move |t, ctx| txn::claim_picked(t, ctx, &queue, &worker, window, &pick))
            .await
    }

    /// Resolves when a job may have become ready (an enqueue, a retry, a
    /// release). Pin it and call `enable` before looking at the queue, so a change
    /// between the look and the wait is not missed.
    pub fn ready_notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.ready.notified()
    }

    /// Like [`Queue::claim_batch`], but waits up to `wait` for a job to become ready.
    pub async fn claim_wait(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Claimed>, QueueError> {
        self.claim_wait_or_stop(queue, worker, max, wait, &CancellationToken::new())
            .await
    }

    /// [`Queue::claim_wait`] that also gives up (with nothing) when `stop` is
    /// cancelled. A claim already under way is never cut short, so no job is left
    /// leased to a worker that stopped listening.
    pub async fn claim_wait_or_stop(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
        wait: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<Claimed>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.inner.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let claimed = self.claim_batch(queue, worker, max).await?;
            if !claimed.is_empty() || stop.is_cancelled() {
                return Ok(claimed);
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(claimed),
                woke = tokio::time::timeout_at(deadline, notified) => {
                    if woke.is_err() {
                        return Ok(claimed);
                    }
                }
            }
        }
    }

    /// A cheap read that spares the writer (and an fsync) when nothing can be claimed.
    async fn may_have_work(&self, queue: &str) -> Result<bool, QueueError> {
        let now = self.now_ms();
        let store = match &self.inner.backend {
            Backend::Embedded(store) => store,
            Backend::Redis(redis) => return redis.may_have_work(queue, now).await,
        };
        let queue = queue.to_owned();
        Self::read(store, move |txn| {
            use redb::ReadableTable;
            let ready = txn.open_table(tables::READY)?;
            if ready
                .range((queue.as_str(), i64::MIN, 0u128)..=(queue.as_str(), i64::MAX, u128::MAX))?
                .next()
                .is_some()
            {
                return Ok(true);
            }
            let scheduled = txn.open_table(tables::SCHEDULED)?;
            Ok(scheduled.first()?.is_some_and(|(key, _)| key.value().0 <= now))
        })
        .await
    }

    /// Extends the lease and answers whether the worker should go on.
    pub async fn heartbeat(&self, lease: &Lease) -> Result<Directive, QueueError> {
        let lease = lease.clone();
        self.apply(move |t, ctx| txn::heartbeat(t, ctx, &lease, None, None))
            .await
    }

    /// A heartbeat that also records which server runs the attempt (a ComfyUI
    /// URL), so the job shows it while running ([`Job::backend`]).
    pub async fn running_on(&self, lease: &Lease, backend: &str) -> Result<Directive, QueueError> {
        self.placed_on(lease, backend, Value::Null).await
    }

    /// [`Queue::running_on`] that also records why the attempt runs there
    /// ([`Job::routing`]; `null` records nothing).
    pub async fn placed_on(
        &self,
        lease: &Lease,
        backend: &str,
        routing: Value,
    ) -> Result<Directive, QueueError> {
        let lease = lease.clone();
        let backend = backend.to_owned();
        self.apply(move |t, ctx| txn::heartbeat(t, ctx, &lease, None, Some((&backend, &routing))))
            .await
    }

    /// A heartbeat that also records progress (`fraction` in 0..=1) for subscribers.
    pub async fn progress(
        &self,
        lease: &Lease,
        fraction: f32,
        message: Option<String>,
    ) -> Result<Directive, QueueError> {
        let lease = lease.clone();
        self.apply(move |t, ctx| txn::heartbeat(t, ctx, &lease, Some((fraction, message.clone())), None))
            .await
    }

    /// Records the result; the job is `succeeded` (progress 1.0) and will never run
    /// again.
    pub async fn complete(&self, lease: &Lease, result: Value) -> Result<Job, QueueError> {
        let lease = lease.clone();
        self.apply(move |t, ctx| txn::complete(t, ctx, &lease, result.clone()))
            .await
    }

    /// Records a failed attempt: retried after a backoff while attempts remain, then
    /// `failed`. A job whose cancel was requested becomes `cancelled` instead.
    pub async fn fail(&self, lease: &Lease, error: impl Into<String>) -> Result<Job, QueueError> {
        self.fail_with(lease, error.into(), true).await
    }

    /// Records a failure that retrying cannot fix: the job is `failed` at once.
    pub async fn fail_permanently(&self, lease: &Lease, error: impl Into<String>) -> Result<Job, QueueError> {
        self.fail_with(lease, error.into(), false).await
    }

    async fn fail_with(&self, lease: &Lease, error: String, retry: bool) -> Result<Job, QueueError> {
        let lease = lease.clone();
        self.apply(move |t, ctx| txn::fail(t, ctx, &lease, error.clone(), retry))
            .await
    }

    /// Gives a running job back without counting the attempt, for a worker that
    /// stops before finishing (graceful shutdown): it runs again, first in line.
    /// A job whose cancel was requested becomes `cancelled` instead.
    pub async fn release(&self, lease: &Lease) -> Result<Job, QueueError> {
        let lease = lease.clone();
        self.apply(move |t, ctx| txn::release(t, ctx, &lease)).await
    }

    /// Cancels a queued or scheduled job at once; flags a running one so its
    /// worker's next heartbeat says stop.
    pub async fn cancel(&self, id: Ulid) -> Result<Job, QueueError> {
        self.apply(move |t, ctx| txn::cancel(t, ctx, id)).await
    }

    /// Puts a failed or cancelled job back in its queue with fresh attempts.
    pub async fn retry(&self, id: Ulid) -> Result<Job, QueueError> {
        self.apply(move |t, ctx| txn::retry(t, ctx, id)).await
    }

    /// One job with its payload.
    pub async fn get(&self, id: Ulid) -> Result<Option<Job>, QueueError> {
        match &self.inner.backend {
            Backend::Embedded(store) => Self::read(store, move |txn| read::get(txn, id)).await,
            Backend::Redis(redis) => redis.get(id).await,
        }
    }

    /// A page of jobs in a status, oldest first.
    pub async fn list(&self, query: ListQuery) -> Result<Page, QueueError> {
        match &self.inner.backend {
            Backend::Embedded(store) => Self::read(store, move |txn| read::list(txn, &query)).await,
            Backend::Redis(redis) => redis.list(query).await,
        }
    }

    pub async fn counts(&self) -> Result<Counts, QueueError> {
        match &self.inner.backend {
            Backend::Embedded(store) => Self::read(store, read::counts).await,
            Backend::Redis(redis) => redis.counts().await,
        }
    }

    /// Ends running attempts whose lease lapsed or whose timeout passed by `now`.
    pub async fn reap_expired(&self, now: Millis) -> Result<usize, QueueError> {
        self.maintain(now, txn::reap_expired).await
    }

    /// Gives back every running job without counting its attempt: they run
    /// again. For a queue restored from a backup, whose workers are gone.
    pub async fn release_all_running(&self) -> Result<usize, QueueError> {
        self.maintain(self.now_ms(), txn::release_all_running).await
    }

    /// Makes scheduled jobs due by `now` ready.
    pub async fn promote_due(&self, now: Millis) -> Result<usize, QueueError> {
        self.maintain(now, txn::promote_due).await
    }

    /// Deletes finished jobs whose TTL ran out by `now`.
    pub async fn purge_expired(&self, now: Millis) -> Result<usize, QueueError> {
        self.maintain(now, txn::purge_expired).await
    }

    /// Runs one maintenance step at `now` (instead of the clock) until it runs dry.
    async fn maintain(
        &self,
        now: Millis,
        step: fn(&mut dyn JobTables, &Ctx) -> Outcome<usize>,
    ) -> Result<usize, QueueError> {
        let mut total = 0;
        loop {
            let done = self.apply_at(now, step).await?;
            total += done;
            if done < txn::MAINTENANCE_BATCH {
                return Ok(total);
            }
        }
    }

    /// One full maintenance pass at `now`: reap, promote, purge.
    pub async fn tick(&self, now: Millis) -> Result<TickReport, QueueError> {
        Ok(TickReport {
            reaped: self.reap_expired(now).await?,
            promoted: self.promote_due(now).await?,
            purged: self.purge_expired(now).await?,
        })
    }

    /// Runs [`Queue::tick`] on the queue's clock every `every` until `shutdown`.
    pub fn spawn_reaper(&self, every: Duration, shutdown: CancellationToken) -> JoinHandle<()> {
        let queue = self.clone();
        tokio::spawn(crate::clock::run_every(every, shutdown, move || {
            let queue = queue.clone();
            async move {
                if let Err(e) = queue.tick(queue.now_ms()).await {
                    tracing::warn!(error = %e, "queue reaper pass failed");
                }
            }
        }))
    }
}
