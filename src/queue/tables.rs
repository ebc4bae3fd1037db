//! The queue's redb tables and the one place that keeps their indexes in step with the
//! job records.
//!
//! A job lives in `queue_jobs` (its record, without the payload) and `queue_payloads`
//! (the payload, written once, so transitions never rewrite it). Exactly one
//! *position* index holds it, chosen by its status, so every scheduling question is an
//! ordered range scan, every count is a table length (O(1) in redb) and every listing
//! walks one index:
//!
//! | table                 | key -> value                        | answers                       |
//! |-----------------------|-------------------------------------|-------------------------------|
//! | `queue_ready`         | (queue, -priority, order) -> id     | claim: first keys of a queue  |
//! | `queue_scheduled`     | (not_before_ms, id)                 | promotion: keys up to now     |
//! | `queue_running`       | (min(lease, timeout) deadline, id)  | reaper: keys up to now        |
//! | `queue_succeeded`, `queue_failed`, `queue_cancelled` | (expires_ms, id) | purge: keys up to now |
//!
//! `order` is a ULID from the queue's monotonic generator taken when the job became
//! ready (its id, at enqueue), so FIFO within a priority needs no shared counter.
//! `queue_ready_owned` repeats the ready entries of jobs that have an owner, keyed
//! `(queue, owner, -priority, order)`, so a claim also sees each owner's best job
//! however many jobs of others are ahead of it (fair share).
//! `queue_idempotency` maps idempotency keys to job ids. An enqueue touches three
//! B-trees (record, payload, ready index): fewer dirty pages per group commit is what
//! makes a durable enqueue cheap. [`Tables::put`] diffs a job's position before and
//! after a change and touches only what moved.

use redb::{Key, ReadableTable, Table, TableDefinition, Value as RedbValue, WriteTransaction};
use serde_json::Value;
use ulid::Ulid;

use super::backend::{JobTables, Position};
use super::error::QueueError;
use super::job::{Job, JobStatus};
use crate::clock::Millis;

pub(crate) type TimeIndex = TableDefinition<'static, (i64, u128), ()>;

pub(crate) const JOBS: TableDefinition<u128, &[u8]> = TableDefinition::new("queue_jobs");
pub(crate) const PAYLOADS: TableDefinition<u128, &[u8]> = TableDefinition::new("queue_payloads");
pub(crate) const READY: TableDefinition<(&str, i64, u128), u128> = TableDefinition::new("queue_ready");
pub(crate) const SCHEDULED: TimeIndex = TableDefinition::new("queue_scheduled");
pub(crate) const RUNNING: TimeIndex = TableDefinition::new("queue_running");
pub(crate) const SUCCEEDED: TimeIndex = TableDefinition::new("queue_succeeded");
pub(crate) const FAILED: TimeIndex = TableDefinition::new("queue_failed");
pub(crate) const CANCELLED: TimeIndex = TableDefinition::new("queue_cancelled");
pub(crate) const IDEMPOTENCY: TableDefinition<&str, u128> = TableDefinition::new("queue_idempotency");
/// `(queue, owner, -priority, order)`, as [`READY`] is keyed with the owner second.
type OwnedKey = (&'static str, &'static str, i64, u128);
pub(crate) const READY_OWNED: TableDefinition<OwnedKey, u128> = TableDefinition::new("queue_ready_owned");

/// The time-keyed index holding jobs in `status` (all but `queued`).
pub(crate) fn time_index(status: JobStatus) -> Option<TimeIndex> {
    match status {
        JobStatus::Queued => None,
        JobStatus::Scheduled => Some(SCHEDULED),
        JobStatus::Running => Some(RUNNING),
        JobStatus::Succeeded => Some(SUCCEEDED),
        JobStatus::Failed => Some(FAILED),
        JobStatus::Cancelled => Some(CANCELLED),
    }
}

/// The queue tables of one write transaction, each opened on first use (an operation
/// touches three or four of the nine; opening costs about half a microsecond each).
pub(crate) struct Tables<'t> {
    txn: &'t WriteTransaction,
    jobs: Table<'t, u128, &'static [u8]>,
    payloads: Option<Table<'t, u128, &'static [u8]>>,
    ready: Option<Table<'t, (&'static str, i64, u128), u128>>,
    /// Time indexes in [`JobStatus::ALL`] order, `queued` excluded.
    timed: [Option<Table<'t, (i64, u128), ()>>; 5],
    idempotency: Option<Table<'t, &'static str, u128>>,
    owned: Option<Table<'t, OwnedKey, u128>>,
}

/// The table in `slot`, opening it first if need be.
fn opened<'a, 't, K: Key + 'static, V: RedbValue + 'static>(
    txn: &'t WriteTransaction,
    slot: &'a mut Option<Table<'t, K, V>>,
    definition: TableDefinition<'static, K, V>,
) -> Result<&'a mut Table<'t, K, V>, QueueError> {
    match slot {
        Some(table) => Ok(table),
        None => Ok(slot.insert(txn.open_table(definition)?)),
    }
}

impl<'t> Tables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, QueueError> {
        Ok(Self {
            txn,
            jobs: txn.open_table(JOBS)?,
            payloads: None,
            ready: None,
            timed: [None, None, None, None, None],
            idempotency: None,
            owned: None,
        })
    }

    /// Opens every table, creating those that do not exist yet.
    pub(crate) fn create_all(txn: &'t WriteTransaction) -> Result<(), QueueError> {
        let mut t = Self::open(txn)?;
        t.payloads()?;
        t.ready()?;
        t.idempotency()?;
        t.owned()?;
        for status in JobStatus::ALL {
            t.timed(status)?;
        }
        Ok(())
    }

    pub(crate) fn payloads(&mut self) -> Result<&mut Table<'t, u128, &'static [u8]>, QueueError> {
        opened(self.txn, &mut self.payloads, PAYLOADS)
    }

    pub(crate) fn ready(&mut self) -> Result<&mut Table<'t, (&'static str, i64, u128), u128>, QueueError> {
        opened(self.txn, &mut self.ready, READY)
    }

    pub(crate) fn owned(&mut self) -> Result<&mut Table<'t, OwnedKey, u128>, QueueError> {
        opened(self.txn, &mut self.owned, READY_OWNED)
    }

    /// Adds or removes the owner index entry of `job` at `position` (only ready
    /// jobs with an owner have one).
    fn own(&mut self, job: &Job, position: &Position, present: bool) -> Result<(), QueueError> {
        if let (
            Some(owner),
            Position::Ready {
                queue,
                neg_priority,
                order,
            },
        ) = (job.owner.as_deref(), position)
        {
            let key = (queue.as_str(), owner, *neg_priority, *order);
            if present {
                self.owned()?.insert(key, job.id.0)?;
            } else {
                self.owned()?.remove(key)?;
            }
        }
        Ok(())
    }

    pub(crate) fn idempotency(&mut self) -> Result<&mut Table<'t, &'static str, u128>, QueueError> {
        opened(self.txn, &mut self.idempotency, IDEMPOTENCY)
    }

    /// The time index of `status`; `queued` has none and maps to `scheduled`'s, which
    /// callers never ask for.
    pub(crate) fn timed(&mut self, status: JobStatus) -> Result<&mut Table<'t, (i64, u128), ()>, QueueError> {
        let (slot, definition) = match status {
            JobStatus::Queued | JobStatus::Scheduled => (0, SCHEDULED),
            JobStatus::Running => (1, RUNNING),
            JobStatus::Succeeded => (2, SUCCEEDED),
            JobStatus::Failed => (3, FAILED),
            JobStatus::Cancelled => (4, CANCELLED),
        };
        opened(self.txn, &mut self.timed[slot], definition)
    }

    fn insert_position(&mut self, id: Ulid, position: &Position) -> Result<(), QueueError> {
        match position {
            Position::Ready {
                queue,
                neg_priority,
                order,
            } => {
                self.ready()?
                    .insert((queue.as_str(), *neg_priority, *order), id.0)?;
            }
            Position::Timed(status, at) => {
                self.timed(*status)?.insert((*at, id.0), ())?;
            }
        }
        Ok(())
    }
}

impl JobTables for Tables<'_> {
    fn load(&mut self, id: Ulid) -> Result<Option<Job>, QueueError> {
        match self.jobs.get(id.0)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(bytes.value())?)),
            None => Ok(None),
        }
    }

    fn payload(&mut self, id: Ulid) -> Result<Value, QueueError> {
        match self.payloads()?.get(id.0)? {
            Some(bytes) => Ok(serde_json::from_slice(bytes.value())?),
            None => Ok(Value::Null),
        }
    }

    fn insert_payload(&mut self, id: Ulid, payload: &[u8]) -> Result<(), QueueError> {
        self.payloads()?.insert(id.0, payload)?;
        Ok(())
    }

    fn put(&mut self, before: Option<&Position>, job: &mut Job) -> Result<(), QueueError> {
        let after = Position::of(job);
        if before != Some(&after) {
            if let Some(old) = before {
                self.drop_position(job.id, old)?;
                self.own(job, old, false)?;
            }
            self.insert_position(job.id, &after)?;
            self.own(job, &after, true)?;
        }
        let payload = std::mem::take(&mut job.payload);
        let encoded = serde_json::to_vec(&*job);
        job.payload = payload;
        self.jobs.insert(job.id.0, encoded?.as_slice())?;
        Ok(())
    }

    fn delete(&mut self, job: &Job) -> Result<(), QueueError> {
        self.drop_position(job.id, &Position::of(job))?;
        self.own(job, &Position::of(job), false)?;
        self.jobs.remove(job.id.0)?;
        self.payloads()?.remove(job.id.0)?;
        if let Some(key) = job.idempotency_key.as_deref() {
            let idempotency = self.idempotency()?;
            let owned = idempotency.get(key)?.map(|v| v.value());
            if owned == Some(job.id.0) {
                idempotency.remove(key)?;
            }
        }
        Ok(())
    }

    fn idempotent_job(&mut self, key: &str) -> Result<Option<Ulid>, QueueError> {
        Ok(self.idempotency()?.get(key)?.map(|v| Ulid(v.value())))
    }

    fn set_idempotent(&mut self, key: &str, id: Ulid) -> Result<(), QueueError> {
        self.idempotency()?.insert(key, id.0)?;
        Ok(())
    }

    fn first_ready(&mut self, queue: &str, max: usize) -> Result<Vec<(Position, Ulid)>, QueueError> {
        let mut entries = Vec::with_capacity(max.min(64));
        for entry in self
            .ready()?
            .range((queue, i64::MIN, 0u128)..=(queue, i64::MAX, u128::MAX))?
            .take(max)
        {
            let (key, id) = entry?;
            let (_, neg_priority, order) = key.value();
            let position = Position::Ready {
                queue: queue.to_owned(),
                neg_priority,
                order,
            };
            entries.push((position, Ulid(id.value())));
        }
        Ok(entries)
    }

    fn owner_heads(&mut self, queue: &str, max_owners: usize) -> Result<Vec<(Position, Ulid)>, QueueError> {
        let mut heads = Vec::new();
        let mut from = String::new();
        let table = self.owned()?;
        while heads.len() < max_owners {
            let first = table
                .range((queue, from.as_str(), i64::MIN, 0u128)..=(queue, "\u{10FFFF}", i64::MAX, u128::MAX))?
                .next();
            let Some(entry) = first else { break };
            let (key, id) = entry?;
            let (_, owner, neg_priority, order) = key.value();
            let position = Position::Ready {
                queue: queue.to_owned(),
                neg_priority,
                order,
            };
            heads.push((position, Ulid(id.value())));
            // The least string above every `owner...` key: the next owner's first.
            from = format!("{owner}\u{0}");
        }
        Ok(heads)
    }

    fn due(
        &mut self,
        status: JobStatus,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, Ulid)>, QueueError> {
        let mut keys = Vec::new();
        for entry in self
            .timed(status)?
            .range((Millis::MIN, 0u128)..=(now, u128::MAX))?
            .take(limit)
        {
            let (at, id) = entry?.0.value();
            keys.push((at, Ulid(id)));
        }
        Ok(keys)
    }

    fn drop_position(&mut self, id: Ulid, position: &Position) -> Result<(), QueueError> {
        match position {
            Position::Ready {
                queue,
                neg_priority,
                order,
            } => {
                self.ready()?.remove((queue.as_str(), *neg_priority, *order))?;
            }
            Position::Timed(status, at) => {
                self.timed(*status)?.remove((*at, id.0))?;
            }
        }
        Ok(())
    }

    fn snapshot_reads(&self) -> bool {
        true
    }
}
