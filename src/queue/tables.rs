//! The queue's redb tables and the one place that keeps their secondary indexes in
//! step with the job records.
//!
//! A job lives in `queue_jobs` (its record, without the payload) and `queue_payloads`
//! (the payload, written once). Exactly one *position* index holds it, chosen by its
//! status, so every scheduling question is an ordered range scan:
//!
//! | table              | key                               | answers                         |
//! |--------------------|-----------------------------------|---------------------------------|
//! | `queue_ready`      | (queue, -priority, seq) -> id     | claim: first key of the queue   |
//! | `queue_scheduled`  | (not_before_ms, id)               | promotion: keys up to now       |
//! | `queue_running`    | (min(lease, timeout) deadline, id)| reaper: keys up to now          |
//! | `queue_finished`   | (expires_ms, id)                  | purge: keys up to now           |
//!
//! Beside them `queue_by_status` ((status, id)) pages listings, `queue_counts` keeps a
//! count per status, `queue_idempotency` maps keys to job ids and `queue_meta` holds the
//! ready-order sequence. [`Tables::put`] diffs a job's index keys before and after a
//! change and touches only what moved.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde_json::Value;
use ulid::Ulid;

use super::error::QueueError;
use super::job::{Job, JobStatus};
use crate::clock::Millis;

pub(crate) const JOBS: TableDefinition<u128, &[u8]> = TableDefinition::new("queue_jobs");
pub(crate) const PAYLOADS: TableDefinition<u128, &[u8]> = TableDefinition::new("queue_payloads");
pub(crate) const READY: TableDefinition<(&str, i64, u64), u128> = TableDefinition::new("queue_ready");
pub(crate) const SCHEDULED: TableDefinition<(i64, u128), ()> = TableDefinition::new("queue_scheduled");
pub(crate) const RUNNING: TableDefinition<(i64, u128), ()> = TableDefinition::new("queue_running");
pub(crate) const FINISHED: TableDefinition<(i64, u128), ()> = TableDefinition::new("queue_finished");
pub(crate) const BY_STATUS: TableDefinition<(u8, u128), ()> = TableDefinition::new("queue_by_status");
pub(crate) const COUNTS: TableDefinition<u8, u64> = TableDefinition::new("queue_counts");
pub(crate) const IDEMPOTENCY: TableDefinition<&str, u128> = TableDefinition::new("queue_idempotency");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("queue_meta");

const SEQ_KEY: &str = "next_seq";

/// The index entry that places a job, derived from its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    Ready {
        queue: String,
        neg_priority: i64,
        seq: u64,
    },
    Scheduled(Millis),
    Running(Millis),
    Finished(Millis),
}

/// Everything a job contributes to the indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexKeys {
    status: JobStatus,
    position: Position,
}

impl IndexKeys {
    pub(crate) fn of(job: &Job) -> Self {
        let position = match job.status {
            JobStatus::Queued => Position::Ready {
                queue: job.queue.clone(),
                neg_priority: -i64::from(job.priority),
                seq: job.seq,
            },
            JobStatus::Scheduled => Position::Scheduled(job.not_before_ms.unwrap_or(0)),
            JobStatus::Running => Position::Running(running_deadline(job)),
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled => {
                Position::Finished(job.expires_ms.unwrap_or(Millis::MAX))
            }
        };
        Self {
            status: job.status,
            position,
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

/// All queue tables opened in one write transaction.
pub(crate) struct Tables<'t> {
    pub jobs: Table<'t, u128, &'static [u8]>,
    pub payloads: Table<'t, u128, &'static [u8]>,
    pub ready: Table<'t, (&'static str, i64, u64), u128>,
    pub scheduled: Table<'t, (i64, u128), ()>,
    pub running: Table<'t, (i64, u128), ()>,
    pub finished: Table<'t, (i64, u128), ()>,
    by_status: Table<'t, (u8, u128), ()>,
    counts: Table<'t, u8, u64>,
    pub idempotency: Table<'t, &'static str, u128>,
    meta: Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, QueueError> {
        Ok(Self {
            jobs: txn.open_table(JOBS)?,
            payloads: txn.open_table(PAYLOADS)?,
            ready: txn.open_table(READY)?,
            scheduled: txn.open_table(SCHEDULED)?,
            running: txn.open_table(RUNNING)?,
            finished: txn.open_table(FINISHED)?,
            by_status: txn.open_table(BY_STATUS)?,
            counts: txn.open_table(COUNTS)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            meta: txn.open_table(META)?,
        })
    }

    /// The job record without its payload.
    pub(crate) fn load(&self, id: Ulid) -> Result<Option<Job>, QueueError> {
        match self.jobs.get(id.0)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(bytes.value())?)),
            None => Ok(None),
        }
    }

    pub(crate) fn payload(&self, id: Ulid) -> Result<Value, QueueError> {
        match self.payloads.get(id.0)? {
            Some(bytes) => Ok(serde_json::from_slice(bytes.value())?),
            None => Ok(Value::Null),
        }
    }

    /// Takes the next value of the ready-order sequence.
    pub(crate) fn next_seq(&mut self) -> Result<u64, QueueError> {
        let seq = self.meta.get(SEQ_KEY)?.map_or(0, |v| v.value());
        self.meta.insert(SEQ_KEY, seq + 1)?;
        Ok(seq)
    }

    /// Stores `job` and moves its index entries from `before` (None: a new job) to
    /// where its fields now place it. The payload is not written here.
    pub(crate) fn put(&mut self, before: Option<&IndexKeys>, job: &mut Job) -> Result<(), QueueError> {
        let after = IndexKeys::of(job);
        self.reindex(job.id, before, Some(&after))?;
        let payload = std::mem::take(&mut job.payload);
        let encoded = serde_json::to_vec(&*job);
        job.payload = payload;
        self.jobs.insert(job.id.0, encoded?.as_slice())?;
        Ok(())
    }

    /// Removes a job and everything that points at it.
    pub(crate) fn delete(&mut self, job: &Job) -> Result<(), QueueError> {
        self.reindex(job.id, Some(&IndexKeys::of(job)), None)?;
        self.jobs.remove(job.id.0)?;
        self.payloads.remove(job.id.0)?;
        if let Some(key) = job.idempotency_key.as_deref() {
            let owned = self.idempotency.get(key)?.map(|v| v.value());
            if owned == Some(job.id.0) {
                self.idempotency.remove(key)?;
            }
        }
        Ok(())
    }

    fn reindex(
        &mut self,
        id: Ulid,
        before: Option<&IndexKeys>,
        after: Option<&IndexKeys>,
    ) -> Result<(), QueueError> {
        if before.map(|k| k.status) != after.map(|k| k.status) {
            if let Some(old) = before {
                self.by_status.remove((old.status.code(), id.0))?;
                self.add_count(old.status, -1)?;
            }
            if let Some(new) = after {
                self.by_status.insert((new.status.code(), id.0), ())?;
                self.add_count(new.status, 1)?;
            }
        }
        if before.map(|k| &k.position) != after.map(|k| &k.position) {
            if let Some(old) = before {
                self.remove_position(id, &old.position)?;
            }
            if let Some(new) = after {
                self.insert_position(id, &new.position)?;
            }
        }
        Ok(())
    }

    fn add_count(&mut self, status: JobStatus, delta: i64) -> Result<(), QueueError> {
        let current = self.counts.get(status.code())?.map_or(0, |v| v.value());
        let next = current.saturating_add_signed(delta);
        self.counts.insert(status.code(), next)?;
        Ok(())
    }

    fn insert_position(&mut self, id: Ulid, position: &Position) -> Result<(), QueueError> {
        match position {
            Position::Ready {
                queue,
                neg_priority,
                seq,
            } => {
                self.ready.insert((queue.as_str(), *neg_priority, *seq), id.0)?;
            }
            Position::Scheduled(at) => {
                self.scheduled.insert((*at, id.0), ())?;
            }
            Position::Running(at) => {
                self.running.insert((*at, id.0), ())?;
            }
            Position::Finished(at) => {
                self.finished.insert((*at, id.0), ())?;
            }
        }
        Ok(())
    }

    fn remove_position(&mut self, id: Ulid, position: &Position) -> Result<(), QueueError> {
        match position {
            Position::Ready {
                queue,
                neg_priority,
                seq,
            } => {
                self.ready.remove((queue.as_str(), *neg_priority, *seq))?;
            }
            Position::Scheduled(at) => {
                self.scheduled.remove((*at, id.0))?;
            }
            Position::Running(at) => {
                self.running.remove((*at, id.0))?;
            }
            Position::Finished(at) => {
                self.finished.remove((*at, id.0))?;
            }
        }
        Ok(())
    }
}

/// Ids in a `(time, id)` index whose time is at most `now`, oldest first.
pub(crate) fn due(
    table: &Table<'_, (i64, u128), ()>,
    now: Millis,
    limit: usize,
) -> Result<Vec<Ulid>, QueueError> {
    let mut ids = Vec::new();
    for entry in table.range((Millis::MIN, 0u128)..=(now, u128::MAX))?.take(limit) {
        let (key, _) = entry?;
        ids.push(Ulid(key.value().1));
    }
    Ok(ids)
}
