//! The seam between the queue's rules and where jobs are kept.
//!
//! Every transition in `txn` is written once, against [`JobTables`]: the records and
//! the one *position* index entry that places each job by its status. redb's
//! `Tables` (one write transaction) and Redis's `RedisTxn` (reads now, writes
//! committed atomically by a Lua script that first checks nothing it read changed)
//! both implement it, so the two backends cannot drift apart in behaviour.

use serde_json::Value;
use ulid::Ulid;

use super::error::QueueError;
use super::job::{Job, JobStatus};
use crate::clock::Millis;

/// The index entry that places a job, derived from its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    Ready {
        queue: String,
        neg_priority: i64,
        order: u128,
    },
    /// In the time index of the status, at this time.
    Timed(JobStatus, Millis),
}

impl Position {
    pub(crate) fn of(job: &Job) -> Self {
        match job.status {
            JobStatus::Queued => Self::Ready {
                queue: job.queue.clone(),
                neg_priority: -i64::from(job.priority),
                order: job.order.0,
            },
            JobStatus::Scheduled => Self::Timed(job.status, job.not_before_ms.unwrap_or(0)),
            JobStatus::Running => Self::Timed(job.status, running_deadline(job)),
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled => {
                Self::Timed(job.status, job.expires_ms.unwrap_or(Millis::MAX))
            }
        }
    }
}

/// When the reaper must look at a running job: the lease lapsing or the attempt timing
/// out, whichever comes first.
pub(crate) fn running_deadline(job: &Job) -> Millis {
    let lease = job.lease_until_ms.unwrap_or(Millis::MAX);
    job.attempt_deadline_ms()
        .map_or(lease, |deadline| lease.min(deadline))
}

/// The job records and their indexes as one transition sees them: its own writes
/// included, nothing made visible to others until the transition commits.
pub(crate) trait JobTables {
    /// The job record without its payload.
    fn load(&mut self, id: Ulid) -> Result<Option<Job>, QueueError>;

    /// The payload of a job (`null` if it has none).
    fn payload(&mut self, id: Ulid) -> Result<Value, QueueError>;

    /// Stores the payload of a new job; payloads are written once.
    fn insert_payload(&mut self, id: Ulid, payload: &[u8]) -> Result<(), QueueError>;

    /// Stores `job` and moves its index entry from `before` (None: a new job) to where
    /// its fields now place it. The payload is not written here.
    fn put(&mut self, before: Option<&Position>, job: &mut Job) -> Result<(), QueueError>;

    /// Removes a job, its payload, its index entry and its idempotency key.
    fn delete(&mut self, job: &Job) -> Result<(), QueueError>;

    /// The job an idempotency key names, if any.
    fn idempotent_job(&mut self, key: &str) -> Result<Option<Ulid>, QueueError>;

    fn set_idempotent(&mut self, key: &str, id: Ulid) -> Result<(), QueueError>;

    /// The first `max` entries of `queue`'s ready index, best first.
    fn first_ready(&mut self, queue: &str, max: usize) -> Result<Vec<(Position, Ulid)>, QueueError>;

    /// The best ready entry of each owner with ready jobs in `queue` (up to
    /// `max_owners` owners), from the owner index; an entry may be stale on Redis.
    fn owner_heads(&mut self, queue: &str, max_owners: usize) -> Result<Vec<(Position, Ulid)>, QueueError>;

    /// Entries of the time index of `status` whose time is at most `now`, oldest first.
    fn due(
        &mut self,
        status: JobStatus,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, Ulid)>, QueueError>;

    /// Removes one index entry without touching a record.
    fn drop_position(&mut self, id: Ulid, position: &Position) -> Result<(), QueueError>;

    /// True when every read sees one snapshot (redb); false when other nodes'
    /// commits may land between reads (Redis, where the commit checks instead).
    fn snapshot_reads(&self) -> bool;
}

/// The job an index entry names, checked against the record.
///
/// In redb the index and the records are read from one snapshot, so they always
/// agree. On Redis another node may move the job between this transition's read of
/// the index and its read of the record: acting on it then (claiming a job another
/// node just claimed) is how a job would run twice, and skipping it would make a
/// claim come back empty while other jobs wait. So it is [`QueueError::Raced`],
/// and the Redis backend runs the transition again on fresh reads.
/// An entry whose record is missing is dropped, so it cannot block the index.
pub(crate) fn job_at(
    t: &mut dyn JobTables,
    id: Ulid,
    position: &Position,
) -> Result<Option<Job>, QueueError> {
    let Some(job) = t.load(id)? else {
        if t.snapshot_reads() {
            tracing::error!(%id, ?position, "queue index names a missing job; entry dropped");
        } else {
            tracing::debug!(%id, ?position, "a job was removed by another node meanwhile");
        }
        t.drop_position(id, position)?;
        return Ok(None);
    };
    if Position::of(&job) != *position {
        return Err(QueueError::Raced(id));
    }
    Ok(Some(job))
}
