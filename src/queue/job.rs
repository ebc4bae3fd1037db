//! What a job is: its typed status, the request that creates one, the record the
//! queue keeps, and the lease a worker holds while it runs one.
//!
//! These are plain data with serde so the API can send them as they are; every rule
//! about how they change lives in the queue's operations, not here.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ulid::Ulid;

use crate::clock::Millis;

/// Where a job is in its life.
///
/// `queued` and `scheduled` wait, `running` holds a lease, and the last three are
/// terminal (`failed` is the dead-letter set; [`crate::queue::Queue::retry`] revives it).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Ready to be claimed.
    Queued,
    /// Waiting for its not-before time (delayed enqueue or retry backoff).
    Scheduled,
    /// Leased to a worker.
    Running,
    /// Completed with a result.
    Succeeded,
    /// Out of attempts, or failed without retry: the dead-letter set.
    Failed,
    /// Cancelled before or while running.
    Cancelled,
}

named_enum!(JobStatus, "job status", {
    Queued => "queued",
    Scheduled => "scheduled",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
});

/// A string that names no [`JobStatus`].
pub type ParseStatusError = crate::names::ParseNameError;

impl JobStatus {
    /// True for `succeeded`, `failed` and `cancelled`: nothing runs it any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// Why an attempt ended without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The worker reported an error.
    Error,
    /// The attempt ran past the job's timeout and was stopped.
    TimedOut,
    /// The worker stopped heartbeating (died, or the daemon was killed).
    LeaseExpired,
}

/// One failed attempt; a job keeps all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptError {
    /// Which attempt (1-based) failed.
    pub attempt: u32,
    pub at_ms: Millis,
    pub kind: FailureKind,
    pub message: String,
}

/// How far a running job has got, as its worker last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    /// 0.0 ..= 1.0.
    pub fraction: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub at_ms: Millis,
}

/// A job as the queue stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    /// Sortable id: creation order.
    #[schema(value_type = String)]
    pub id: Ulid,
    pub queue: String,
    /// Higher runs first; FIFO within a priority.
    pub priority: i32,
    pub status: JobStatus,
    /// The work itself (a ComfyUI request); opaque to the queue.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Attempts started so far (the running one included).
    pub attempts: u32,
    /// Times the job has been leased, over its whole life: attempts start again from
    /// zero on a retry, this does not, so a lease names the one claim it came from.
    #[serde(default)]
    pub claims: u32,
    pub max_attempts: u32,
    /// How long one attempt may run before it is stopped and counted as failed.
    pub timeout_ms: i64,
    /// While `scheduled`: when it becomes `queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Overrides the queue's result TTL for this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_ttl_ms: Option<i64>,
    pub created_ms: Millis,
    /// When the current (or last) attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<Millis>,
    /// While `running`: the worker holding the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
    /// While `running`: when the lease lapses unless extended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until_ms: Option<Millis>,
    /// The server (a ComfyUI URL) running the current attempt, as its worker
    /// reported once it chose one ([`crate::queue::Queue::running_on`]); kept after
    /// the attempt ends, so a finished or failed job names where it last ran.
    /// Cleared by the next claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Why the current (or last) attempt runs where it does, as its worker
    /// recorded it with the backend (darkroom: model, file, reason, rejected
    /// backends). Cleared by the next claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub routing: Option<Value>,
    /// Jobs with the same affinity run best one after another on one worker
    /// resource (darkroom: the model file they load); opaque to the queue, read by
    /// [`crate::queue::Queue::claim_picked`]'s picker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// Who submitted it (darkroom: the user of the API key); opaque to the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Set by a cancel while running; the worker sees it in its heartbeat answer.
    #[serde(default)]
    pub cancel_requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Every failed attempt, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<AttemptError>,
    /// Once terminal: when the purge removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<Millis>,
    /// When it is expected to start and finish: computed by the service layer when
    /// the job is read (with a model catalog), never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<crate::service::models::Eta>,
    /// Place in the ready order within its priority: a ULID taken when it became ready.
    #[serde(default)]
    #[schema(value_type = String)]
    pub(crate) order: Ulid,
}

impl Job {
    /// When the current attempt must be over: started + timeout.
    pub fn attempt_deadline_ms(&self) -> Option<Millis> {
        self.started_ms
            .map(|started| started.saturating_add(self.timeout_ms))
    }

    /// The lease a worker holds on this job while it is running.
    pub fn lease(&self) -> Option<Lease> {
        match (&self.status, &self.lease_owner) {
            (JobStatus::Running, Some(owner)) => Some(Lease {
                id: self.id,
                worker: owner.clone(),
                attempt: self.attempts,
                claim: self.claims,
            }),
            _ => None,
        }
    }
}

/// Proof that a worker runs a given attempt of a job. Completing, failing or
/// heartbeating with a lease that no longer matches (the job timed out, the lease was
/// reaped, another worker took it) is refused, so a stale worker can never overwrite
/// the job's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: Ulid,
    pub worker: String,
    pub attempt: u32,
    /// The job's claim count when this lease was taken ([`Job::claims`]).
    pub claim: u32,
}

/// A job just leased to a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub job: Job,
    pub lease: Lease,
}

/// What a heartbeat tells the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// Keep going; the lease now lasts until this time.
    Continue { lease_until_ms: Millis },
    /// Stop working on the job and report nothing more for this attempt.
    Stop(StopReason),
}

/// Why a worker must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Someone cancelled the job: call [`crate::queue::Queue::fail`] or just stop.
    Cancelled,
    /// The attempt ran past its timeout; the queue has already failed or rescheduled it.
    TimedOut,
    /// The lease is gone (expired and reaped, or the job was handed elsewhere).
    LeaseLost,
}

/// A request to enqueue a job. Unset options take the queue's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    pub queue: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub priority: i32,
    /// Do not run before this time.
    #[serde(default)]
    pub not_before_ms: Option<Millis>,
    /// Do not run before now + this.
    #[serde(default)]
    pub delay_ms: Option<i64>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub timeout_ms: Option<i64>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub result_ttl_ms: Option<i64>,
    /// See [`Job::affinity`].
    #[serde(default)]
    pub affinity: Option<String>,
    /// See [`Job::owner`].
    #[serde(default)]
    pub owner: Option<String>,
}

impl NewJob {
    /// A job for `queue` with default options.
    pub fn new(queue: impl Into<String>, payload: Value) -> Self {
        Self {
            queue: queue.into(),
            payload,
            priority: 0,
            not_before_ms: None,
            delay_ms: None,
            max_attempts: None,
            timeout_ms: None,
            idempotency_key: None,
            result_ttl_ms: None,
            affinity: None,
            owner: None,
        }
    }

    #[must_use]
    pub fn owner(mut self, user: impl Into<String>) -> Self {
        self.owner = Some(user.into());
        self
    }

    #[must_use]
    pub fn affinity(mut self, key: impl Into<String>) -> Self {
        self.affinity = Some(key.into());
        self
    }

    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay_ms = Some(duration_ms(delay));
        self
    }

    #[must_use]
    pub fn not_before(mut self, at_ms: Millis) -> Self {
        self.not_before_ms = Some(at_ms);
        self
    }

    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(duration_ms(timeout));
        self
    }

    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    #[must_use]
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl_ms = Some(duration_ms(ttl));
        self
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The result of an enqueue.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub job: Job,
    /// False when the idempotency key matched an existing job, which is returned.
    pub created: bool,
}

/// A change to one job, as broadcast to subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobEvent {
    #[schema(value_type = String)]
    pub id: Ulid,
    pub queue: String,
    /// `None` when the job was just created.
    pub from: Option<JobStatus>,
    pub to: JobStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The ComfyUI backend running (or last running) it, once one is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    pub cancel_requested: bool,
    pub at_ms: Millis,
}

impl JobEvent {
    pub(crate) fn of(job: &Job, from: Option<JobStatus>, at_ms: Millis) -> Self {
        Self {
            id: job.id,
            queue: job.queue.clone(),
            from,
            to: job.status,
            progress: job.progress.clone(),
            backend: job.backend.clone(),
            cancel_requested: job.cancel_requested,
            at_ms,
        }
    }
}
