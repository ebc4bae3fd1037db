//! Errors of the job queue: storage failures, and the logical refusals (unknown job,
//! a transition the job's status does not allow, a stale lease) that the API maps to
//! 404 / 409.

use crate::redb_store::from_redb;
use ulid::Ulid;

use super::job::JobStatus;
use crate::redb_store::StoreError;

/// What can go wrong with a queue operation.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("job record is corrupt: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("no job {0}")]
    NotFound(Ulid),
    #[error("job {id} is {status}; cannot {action} it")]
    InvalidTransition {
        id: Ulid,
        status: JobStatus,
        action: &'static str,
    },
    #[error("job {id}: the lease of worker `{worker}` on attempt {attempt} is no longer held")]
    LeaseLost { id: Ulid, worker: String, attempt: u32 },
    #[error("invalid job: {0}")]
    Invalid(String),
    #[error("a background read failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A commit's answer was lost on the way back and Redis could not be asked what
    /// became of it; the operation may or may not have been applied.
    #[error(
        "Redis: a job change was sent but its answer was lost, and Redis could not be asked whether it was applied: {source}"
    )]
    Unacknowledged {
        marker: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("the job changed under {0} consecutive attempts by other nodes; try again")]
    Contention(usize),
    /// Another node moved job `0` while this operation was reading it; the Redis
    /// backend runs the operation again, so callers do not see this.
    #[error("job {0} changed while it was being read")]
    Raced(Ulid),
}

impl QueueError {
    /// The store did not answer (or answered too late); the same call may succeed
    /// once it does.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Redis(_) | Self::Unacknowledged { .. } | Self::Contention(_)
        )
    }
}

impl crate::redis_store::Failure for QueueError {
    fn breaks_connection(&self) -> bool {
        match self {
            Self::Redis(e) => e.breaks_connection(),
            Self::Unacknowledged { .. } => true,
            _ => false,
        }
    }
}

from_redb!(QueueError);
