//! Every job transition, as a function over the tables of one write transaction.
//!
//! They are written against [`JobTables`], so the same rules run in a redb write
//! transaction (on the store's writer thread, batched with other operations) and in
//! a Redis transaction committed by one Lua script. Each checks
//! its preconditions before it writes, so a refused operation leaves nothing behind.
//! Each returns the events it caused; the caller broadcasts them once the batch is
//! durably committed.

use serde_json::Value;
use ulid::Ulid;

use super::backend::{JobTables, Position, job_at};
use super::config::QueueConfig;
use super::error::QueueError;
use super::ids::IdSource;
use super::job::{
    AttemptError, Claimed, Directive, Enqueued, FailureKind, Job, JobEvent, JobStatus, Lease, Progress,
    StopReason,
};
use crate::clock::Millis;

/// What one operation did: its answer and the changes to announce.
pub(crate) type Outcome<T> = Result<(T, Vec<JobEvent>), QueueError>;

/// How many jobs one maintenance call moves at most (keeps a transaction short).
pub(crate) const MAINTENANCE_BATCH: usize = 512;

/// Inputs every transition needs.
pub(crate) struct Ctx<'a> {
    pub now: Millis,
    pub config: &'a QueueConfig,
    pub ids: &'a IdSource,
}

impl Ctx<'_> {
    /// A fresh place at the back of the ready order.
    fn fresh_order(&self) -> Ulid {
        self.ids.next(self.now)
    }

    fn ms(d: std::time::Duration) -> i64 {
        super::job::duration_ms(d)
    }

    fn lease_until(&self, job: &Job) -> Millis {
        let lease = self.now.saturating_add(Self::ms(self.config.lease));
        job.attempt_deadline_ms()
            .map_or(lease, |deadline| lease.min(deadline))
    }

    fn expiry(&self, job: &Job) -> Millis {
        let ttl = match job.status {
            JobStatus::Failed => Self::ms(self.config.failed_ttl),
            _ => job
                .result_ttl_ms
                .unwrap_or_else(|| Self::ms(self.config.result_ttl)),
        };
        self.now.saturating_add(ttl)
    }

    /// Puts `job` into a terminal status with its finish time and purge time.
    fn finish(&self, job: &mut Job, status: JobStatus) {
        job.status = status;
        job.finished_ms = Some(self.now);
        job.lease_owner = None;
        job.lease_until_ms = None;
        job.not_before_ms = None;
        job.expires_ms = Some(self.expiry(job));
    }
}

/// Stores a new job (prepared by the caller, payload already encoded) unless its
/// idempotency key already names one, which is returned instead.
pub(crate) fn enqueue(t: &mut dyn JobTables, ctx: &Ctx, mut job: Job, payload: &[u8]) -> Outcome<Enqueued> {
    // The job is there already only if this very enqueue committed before (on Redis,
    // run again after its answer was lost): it is not written twice.
    if let Some(mut found) = t.load(job.id)? {
        found.payload = t.payload(job.id)?;
        return Ok((
            Enqueued {
                job: found,
                created: true,
            },
            Vec::new(),
        ));
    }
    if let Some(key) = job.idempotency_key.as_deref()
        && let Some(id) = t.idempotent_job(key)?
        && let Some(mut found) = t.load(id)?
    {
        found.payload = t.payload(id)?;
        let enqueued = Enqueued {
            job: found,
            created: false,
        };
        return Ok((enqueued, Vec::new()));
    }
    t.put(None, &mut job)?;
    t.insert_payload(job.id, payload)?;
    if let Some(key) = job.idempotency_key.as_deref() {
        t.set_idempotent(key, job.id)?;
    }
    let event = JobEvent::of(&job, None, ctx.now);
    Ok((Enqueued { job, created: true }, vec![event]))
}

/// Leases up to `max` of the highest-priority ready jobs of `queue` to `worker`,
/// after promoting up to `max` scheduled jobs that are due (the maintenance pass moves
/// the rest; a claim stays small, so claims on several nodes rarely collide).
pub(crate) fn claim(
    t: &mut dyn JobTables,
    ctx: &Ctx,
    queue: &str,
    worker: &str,
    max: usize,
) -> Outcome<Vec<Claimed>> {
    let (_, mut events) = promote(t, ctx, max)?;
    let ready = t.first_ready(queue, max)?;
    let mut claimed = Vec::with_capacity(ready.len());
    for (position, id) in ready {
        let Some(job) = job_at(t, id, &position)? else {
            continue;
        };
        claimed.push(lease_to(t, ctx, job, worker, &mut events)?);
    }
    Ok((claimed, events))
}

/// A ready job as a [`Picker`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: Ulid,
    pub priority: i32,
    pub affinity: Option<String>,
    pub created_ms: Millis,
    /// Who submitted it (see [`Job::owner`]).
    pub owner: Option<String>,
}

/// Owners whose best ready job a claim adds to its window (fair share).
const MAX_OWNER_HEADS: usize = 256;

/// Chooses which of the first ready jobs (best first) to lease, each with a tag
/// the caller gets back (where it will run). Called inside the claim's transaction,
/// and again if the transaction reruns (Redis), so it must only read.
pub type Picker<T> = std::sync::Arc<dyn Fn(&[Candidate]) -> Vec<(usize, T)> + Send + Sync>;

/// Like [`claim`], but leases the jobs `pick` chooses among the first `window`.
pub(crate) fn claim_picked<T: Clone>(
    t: &mut dyn JobTables,
    ctx: &Ctx,
    queue: &str,
    worker: &str,
    window: usize,
    pick: &Picker<T>,
) -> Outcome<Vec<(Claimed, T)>> {
    let (_, mut events) = promote(t, ctx, window)?;
    let mut jobs = Vec::new();
    for (position, id) in t.first_ready(queue, window)? {
        if let Some(job) = job_at(t, id, &position)? {
            jobs.push(job);
        }
    }
    // Each owner's best job too, however far behind the window it waits; in
    // claim order, so the candidates stay best first.
    let mut heads = Vec::new();
    for (position, id) in t.owner_heads(queue, MAX_OWNER_HEADS)? {
        if jobs.iter().any(|j| j.id == id) {
            continue;
        }
        // A stale owner entry (Redis) is passed over, not raced on.
        if let Some(job) = t.load(id)?
            && Position::of(&job) == position
        {
            heads.push((position, job));
        }
    }
    if !heads.is_empty() {
        let mut all: Vec<(Position, Job)> = jobs.into_iter().map(|j| (Position::of(&j), j)).collect();
        all.extend(heads);
        all.sort_by_key(|(p, _)| ready_order(p));
        jobs = all.into_iter().map(|(_, j)| j).collect();
    }
    let candidates: Vec<Candidate> = jobs
        .iter()
        .map(|j| Candidate {
            id: j.id,
            priority: j.priority,
            affinity: j.affinity.clone(),
            created_ms: j.created_ms,
            owner: j.owner.clone(),
        })
        .collect();
    let mut claimed = Vec::new();
    let mut taken = vec![false; jobs.len()];
    for (i, tag) in pick(&candidates) {
        if i >= jobs.len() || std::mem::replace(&mut taken[i], true) {
            continue;
        }
        let leased = lease_to(t, ctx, jobs[i].clone(), worker, &mut events)?;
        claimed.push((leased, tag));
    }
    Ok((claimed, events))
}

/// Where a ready position sorts in its queue: by priority, then order.
fn ready_order(p: &Position) -> (i64, u128) {
    match p {
        Position::Ready {
            neg_priority, order, ..
        } => (*neg_priority, *order),
        Position::Timed(..) => (i64::MAX, u128::MAX),
    }
}

/// Moves a ready `job` to running under a new lease of `worker`.
fn lease_to(
    t: &mut dyn JobTables,
    ctx: &Ctx,
    mut job: Job,
    worker: &str,
    events: &mut Vec<JobEvent>,
) -> Result<Claimed, QueueError> {
    let id = job.id;
    let before = Position::of(&job);
    job.status = JobStatus::Running;
    job.attempts += 1;
    job.claims = job.claims.saturating_add(1);
    job.started_ms = Some(ctx.now);
    job.lease_owner = Some(worker.to_owned());
    job.lease_until_ms = Some(ctx.lease_until(&job));
    job.backend = None;
    job.routing = None;
    job.cancel_requested = false;
    job.progress = None;
    job.not_before_ms = None;
    t.put(Some(&before), &mut job)?;
    events.push(JobEvent::of(&job, Some(JobStatus::Queued), ctx.now));
    job.payload = t.payload(id)?;
    let lease = Lease {
        id,
        worker: worker.to_owned(),
        attempt: job.attempts,
        claim: job.claims,
    };
    Ok(Claimed { job, lease })
}

/// True when `lease` is the live lease of `job` — from its latest claim, so a worker
/// that lost its lease before an operator's retry cannot report on the new attempt.
fn holds(job: &Job, lease: &Lease) -> bool {
    job.status == JobStatus::Running
        && job.claims == lease.claim
        && job.attempts == lease.attempt
        && job.lease_owner.as_deref() == Some(lease.worker.as_str())
}

/// Why the holder of a stale `lease` lost it, judged from what happened to the job.
fn stop_reason(job: &Job, lease: &Lease) -> StopReason {
    let ended = job.errors.iter().rev().find(|e| e.attempt == lease.attempt);
    match ended.map(|e| e.kind) {
        Some(FailureKind::TimedOut) => StopReason::TimedOut,
        _ if job.status == JobStatus::Cancelled && job.attempts == lease.attempt => StopReason::Cancelled,
        _ => StopReason::LeaseLost,
    }
}

/// Extends the lease (never past the attempt's timeout), records progress and the
/// backend running the attempt, and tells the worker whether to go on. An attempt
/// found past its timeout is ended here.
pub(crate) fn heartbeat(
    t: &mut dyn JobTables,
    ctx: &Ctx,
    lease: &Lease,
    progress: Option<(f32, Option<String>)>,
    placed: Option<(&str, &Value)>,
) -> Outcome<Directive> {
    let Some(mut job) = t.load(lease.id)? else {
        return Ok((Directive::Stop(StopReason::LeaseLost), Vec::new()));
    };
    if !holds(&job, lease) {
        return Ok((Directive::Stop(stop_reason(&job, lease)), Vec::new()));
    }
    if job
        .attempt_deadline_ms()
        .is_some_and(|deadline| ctx.now >= deadline)
    {
        let message = timeout_message(job.attempts);
        let (_, event) = end_attempt(t, ctx, job, FailureKind::TimedOut, message, true)?;
        return Ok((Directive::Stop(StopReason::TimedOut), vec![event]));
    }
    let before = Position::of(&job);
    let until = ctx.lease_until(&job);
    job.lease_until_ms = Some(until);
    let mut events = Vec::new();
    if let Some((fraction, message)) = progress {
        job.progress = Some(Progress {
            fraction: fraction.clamp(0.0, 1.0),
            message,
            at_ms: ctx.now,
        });
        events.push(JobEvent::of(&job, Some(JobStatus::Running), ctx.now));
    }
    if let Some((backend, routing)) = placed {
        job.backend = Some(backend.to_owned());
        job.routing = (!routing.is_null()).then(|| routing.clone());
        if events.is_empty() {
            events.push(JobEvent::of(&job, Some(JobStatus::Running), ctx.now));
        }
    }
    t.put(Some(&before), &mut job)?;
    let directive = if job.cancel_requested {
        Directive::Stop(StopReason::Cancelled)
    } else {
        Directive::Continue {
            lease_until_ms: until,
        }
    };
    Ok((directive, events))
}

fn timeout_message(attempt: u32) -> String {
    format!("attempt {attempt} timed out")
}

/// Loads the job a worker reports on, refusing finished jobs and stale leases.
fn leased_job(t: &mut dyn JobTables, lease: &Lease, action: &'static str) -> Result<Job, QueueError> {
    let job = t.load(lease.id)?.ok_or(QueueError::NotFound(lease.id))?;
    if job.status.is_terminal() {
        return Err(QueueError::InvalidTransition {
            id: job.id,
            status: job.status,
            action,
        });
    }
    if !holds(&job, lease) {
        return Err(QueueError::LeaseLost {
            id: lease.id,
            worker: lease.worker.clone(),
            attempt: lease.attempt,
        });
    }
    Ok(job)
}

/// Records the result of a running job: `succeeded`, for good, its progress full
/// (not the last step its worker happened to report).
pub(crate) fn complete(t: &mut dyn JobTables, ctx: &Ctx, lease: &Lease, result: Value) -> Outcome<Job> {
    let mut job = leased_job(t, lease, "complete")?;
    let before = Position::of(&job);
    job.result = Some(result);
    job.progress = Some(Progress {
        fraction: 1.0,
        message: None,
        at_ms: ctx.now,
    });
    ctx.finish(&mut job, JobStatus::Succeeded);
    t.put(Some(&before), &mut job)?;
    let event = JobEvent::of(&job, Some(JobStatus::Running), ctx.now);
    Ok((job, vec![event]))
}

/// Records a failed attempt reported by its worker; `retry: false` dead-letters at once.
pub(crate) fn fail(
    t: &mut dyn JobTables,
    ctx: &Ctx,
    lease: &Lease,
    message: String,
    retry: bool,
) -> Outcome<Job> {
    let job = leased_job(t, lease, "fail")?;
    let (job, event) = end_attempt(t, ctx, job, FailureKind::Error, message, retry)?;
    Ok((job, vec![event]))
}

/// Hands a running job back without counting the attempt (a worker shutting down
/// before it could finish): it is `queued` again at its old place in line.
pub(crate) fn release(t: &mut dyn JobTables, ctx: &Ctx, lease: &Lease) -> Outcome<Job> {
    let mut job = leased_job(t, lease, "release")?;
    let before = Position::of(&job);
    job.attempts = job.attempts.saturating_sub(1);
    job.lease_owner = None;
    job.lease_until_ms = None;
    job.progress = None;
    job.backend = None;
    job.started_ms = None;
    if job.cancel_requested {
        ctx.finish(&mut job, JobStatus::Cancelled);
    } else {
        job.status = JobStatus::Queued;
    }
    t.put(Some(&before), &mut job)?;
    let event = JobEvent::of(&job, Some(JobStatus::Running), ctx.now);
    Ok((job, vec![event]))
}

/// Ends the running attempt of `job` without a result: cancelled if a cancel was
/// requested, dead-lettered if it was the last attempt, otherwise back to the queue —
/// at once after a lost lease (the work was not at fault), after a backoff otherwise.
/// `retry: false` dead-letters even with attempts left.
fn end_attempt(
    t: &mut dyn JobTables,
    ctx: &Ctx,
    mut job: Job,
    kind: FailureKind,
    message: String,
    retry: bool,
) -> Result<(Job, JobEvent), QueueError> {
    let before = Position::of(&job);
    job.errors.push(AttemptError {
        attempt: job.attempts,
        at_ms: ctx.now,
        kind,
        message,
    });
    job.lease_owner = None;
    job.lease_until_ms = None;
    job.progress = None;
    if job.cancel_requested {
        ctx.finish(&mut job, JobStatus::Cancelled);
    } else if !retry || job.attempts >= job.max_attempts {
        ctx.finish(&mut job, JobStatus::Failed);
    } else if kind == FailureKind::LeaseExpired {
        job.status = JobStatus::Queued;
    } else {
        job.status = JobStatus::Scheduled;
        let delay = ctx.config.backoff.delay_ms(job.attempts, rand::random::<f64>());
        job.not_before_ms = Some(ctx.now.saturating_add(delay));
    }
    t.put(Some(&before), &mut job)?;
    let event = JobEvent::of(&job, Some(JobStatus::Running), ctx.now);
    Ok((job, event))
}

/// Cancels a waiting job at once, or flags a running one for its worker to stop.
pub(crate) fn cancel(t: &mut dyn JobTables, ctx: &Ctx, id: Ulid) -> Outcome<Job> {
    let mut job = t.load(id)?.ok_or(QueueError::NotFound(id))?;
    let before = Position::of(&job);
    let from = job.status;
    match job.status {
        JobStatus::Queued | JobStatus::Scheduled => ctx.finish(&mut job, JobStatus::Cancelled),
        JobStatus::Running if job.cancel_requested => return Ok((job, Vec::new())),
        JobStatus::Running => job.cancel_requested = true,
        status => {
            return Err(QueueError::InvalidTransition {
                id,
                status,
                action: "cancel",
            });
        }
    }
    t.put(Some(&before), &mut job)?;
    let event = JobEvent::of(&job, Some(from), ctx.now);
    Ok((job, vec![event]))
}

/// Puts a dead-lettered or cancelled job back in its queue with fresh attempts; its
/// error history stays.
pub(crate) fn retry(t: &mut dyn JobTables, ctx: &Ctx, id: Ulid) -> Outcome<Job> {
    let mut job = t.load(id)?.ok_or(QueueError::NotFound(id))?;
    if !matches!(job.status, JobStatus::Failed | JobStatus::Cancelled) {
        return Err(QueueError::InvalidTransition {
            id,
            status: job.status,
            action: "retry",
        });
    }
    let before = Position::of(&job);
    let from = job.status;
    job.status = JobStatus::Queued;
    job.attempts = 0;
    job.order = ctx.fresh_order();
    job.cancel_requested = false;
    job.finished_ms = None;
    job.expires_ms = None;
    job.result = None;
    job.progress = None;
    t.put(Some(&before), &mut job)?;
    let event = JobEvent::of(&job, Some(from), ctx.now);
    Ok((job, vec![event]))
}

/// Moves scheduled jobs whose time has come to the back of their ready queue.
pub(crate) fn promote_due(t: &mut dyn JobTables, ctx: &Ctx) -> Outcome<usize> {
    promote(t, ctx, MAINTENANCE_BATCH)
}

/// Moves the first `limit` scheduled jobs whose time has come to the ready queues.
fn promote(t: &mut dyn JobTables, ctx: &Ctx, limit: usize) -> Outcome<usize> {
    let keys = t.due(JobStatus::Scheduled, ctx.now, limit)?;
    let mut events = Vec::with_capacity(keys.len());
    for &(at, id) in &keys {
        let Some(mut job) = job_at(t, id, &Position::Timed(JobStatus::Scheduled, at))? else {
            continue;
        };
        let before = Position::of(&job);
        job.status = JobStatus::Queued;
        job.not_before_ms = None;
        job.order = ctx.fresh_order();
        t.put(Some(&before), &mut job)?;
        events.push(JobEvent::of(&job, Some(JobStatus::Scheduled), ctx.now));
    }
    Ok((keys.len(), events))
}

/// Ends every running attempt whose lease lapsed or whose timeout passed.
pub(crate) fn reap_expired(t: &mut dyn JobTables, ctx: &Ctx) -> Outcome<usize> {
    let keys = t.due(JobStatus::Running, ctx.now, MAINTENANCE_BATCH)?;
    let mut events = Vec::with_capacity(keys.len());
    for &(at, id) in &keys {
        let Some(job) = job_at(t, id, &Position::Timed(JobStatus::Running, at))? else {
            continue;
        };
        let timed_out = job.attempt_deadline_ms().is_some_and(|d| ctx.now >= d);
        let (kind, message) = if timed_out {
            (FailureKind::TimedOut, timeout_message(job.attempts))
        } else {
            let owner = job.lease_owner.clone().unwrap_or_default();
            let message = format!("lease of worker `{owner}` expired on attempt {}", job.attempts);
            (FailureKind::LeaseExpired, message)
        };
        let (_, event) = end_attempt(t, ctx, job, kind, message, true)?;
        events.push(event);
    }
    Ok((keys.len(), events))
}

/// Gives back every running job without counting the attempt, as
/// [`release`] does: for a queue restored from a backup, whose workers are gone.
pub(crate) fn release_all_running(t: &mut dyn JobTables, ctx: &Ctx) -> Outcome<usize> {
    let keys = t.due(JobStatus::Running, Millis::MAX, MAINTENANCE_BATCH)?;
    let mut events = Vec::with_capacity(keys.len());
    for &(at, id) in &keys {
        let Some(job) = job_at(t, id, &Position::Timed(JobStatus::Running, at))? else {
            continue;
        };
        let lease = Lease {
            id: job.id,
            worker: job.lease_owner.clone().unwrap_or_default(),
            attempt: job.attempts,
            claim: job.claims,
        };
        events.extend(release(t, ctx, &lease)?.1);
    }
    Ok((keys.len(), events))
}

/// Deletes finished jobs whose TTL has passed.
pub(crate) fn purge_expired(t: &mut dyn JobTables, ctx: &Ctx) -> Outcome<usize> {
    let mut purged = 0;
    for status in [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Cancelled] {
        let keys = t.due(status, ctx.now, MAINTENANCE_BATCH)?;
        for &(at, id) in &keys {
            if let Some(job) = job_at(t, id, &Position::Timed(status, at))? {
                t.delete(&job)?;
            }
        }
        purged += keys.len();
    }
    Ok((purged, Vec::new()))
}
