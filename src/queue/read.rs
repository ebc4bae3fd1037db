//! Queries that only read: one job, a page of jobs in a status, the count per status.
//!
//! They run on a read snapshot (never blocking the writer); the async wrappers in
//! `mod.rs` put them on `spawn_blocking`.

use std::ops::Bound;

use redb::{ReadTransaction, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ulid::Ulid;

use super::error::QueueError;
use super::job::{Job, JobStatus};
use super::tables::{JOBS, PAYLOADS, READY, time_index};

/// A page request: jobs in `status`, in that status's index order — claim order for
/// `queued` (priority, then FIFO), due time for `scheduled`, lease deadline for
/// `running`, purge time (which follows finish time) for the finished ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    pub status: JobStatus,
    /// Only jobs of this queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// The `next` cursor of the previous page.
    #[serde(default)]
    pub after: Option<String>,
    pub limit: usize,
}

impl ListQuery {
    /// The first `limit` jobs in `status`.
    pub fn new(status: JobStatus, limit: usize) -> Self {
        Self {
            status,
            queue: None,
            after: None,
            limit,
        }
    }
}

/// One page of a listing. Jobs come without their payload; `get` has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub jobs: Vec<Job>,
    /// Opaque cursor for the next page; `None` on the last one.
    pub next: Option<String>,
}

/// How many jobs are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    pub queued: u64,
    pub scheduled: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl Counts {
    pub fn get(&self, status: JobStatus) -> u64 {
        match status {
            JobStatus::Queued => self.queued,
            JobStatus::Scheduled => self.scheduled,
            JobStatus::Running => self.running,
            JobStatus::Succeeded => self.succeeded,
            JobStatus::Failed => self.failed,
            JobStatus::Cancelled => self.cancelled,
        }
    }

    fn slot(&mut self, status: JobStatus) -> &mut u64 {
        match status {
            JobStatus::Queued => &mut self.queued,
            JobStatus::Scheduled => &mut self.scheduled,
            JobStatus::Running => &mut self.running,
            JobStatus::Succeeded => &mut self.succeeded,
            JobStatus::Failed => &mut self.failed,
            JobStatus::Cancelled => &mut self.cancelled,
        }
    }

    /// All jobs the queue holds.
    pub fn total(&self) -> u64 {
        JobStatus::ALL.into_iter().map(|s| self.get(s)).sum()
    }
}

pub(crate) fn get(txn: &ReadTransaction, id: Ulid) -> Result<Option<Job>, QueueError> {
    let jobs = txn.open_table(JOBS)?;
    let Some(bytes) = jobs.get(id.0)? else {
        return Ok(None);
    };
    let mut job: Job = serde_json::from_slice(bytes.value())?;
    let payloads = txn.open_table(PAYLOADS)?;
    if let Some(payload) = payloads.get(id.0)? {
        job.payload = serde_json::from_slice::<Value>(payload.value())?;
    }
    Ok(Some(job))
}

type Entries<'a> = Box<dyn Iterator<Item = Result<(String, u128), QueueError>> + 'a>;

pub(crate) fn bad_cursor(cursor: &str) -> QueueError {
    QueueError::Invalid(format!("not a listing cursor: `{cursor}`"))
}

/// A `queued` cursor: `r:{neg_priority}:{order}:{queue}`.
pub(crate) fn parse_ready_cursor(cursor: &str) -> Result<(i64, u128, &str), QueueError> {
    let mut parts = cursor.splitn(4, ':');
    let (Some("r"), Some(np), Some(order), Some(queue)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_cursor(cursor));
    };
    let np = np.parse().map_err(|_| bad_cursor(cursor))?;
    let order = order.parse().map_err(|_| bad_cursor(cursor))?;
    Ok((np, order, queue))
}

/// A cursor in a time index: `t:{at}:{id}`.
pub(crate) fn parse_time_cursor(cursor: &str) -> Result<(i64, u128), QueueError> {
    let mut parts = cursor.splitn(3, ':');
    let (Some("t"), Some(at), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad_cursor(cursor));
    };
    let at = at.parse().map_err(|_| bad_cursor(cursor))?;
    let id = id.parse().map_err(|_| bad_cursor(cursor))?;
    Ok((at, id))
}

pub(crate) fn list(txn: &ReadTransaction, query: &ListQuery) -> Result<Page, QueueError> {
    let jobs = txn.open_table(JOBS)?;
    let limit = query.limit.max(1);
    let queue = query.queue.as_deref();
    let ready;
    let timed;
    let entries: Entries = match time_index(query.status) {
        None => {
            ready = txn.open_table(READY)?;
            let start = match query.after.as_deref().map(parse_ready_cursor).transpose()? {
                Some((np, order, q)) => Bound::Excluded((q, np, order)),
                None => queue.map_or(Bound::Unbounded, |q| Bound::Included((q, i64::MIN, 0))),
            };
            let end = queue.map_or(Bound::Unbounded, |q| Bound::Included((q, i64::MAX, u128::MAX)));
            Box::new(ready.range::<(&str, i64, u128)>((start, end))?.map(|entry| {
                let (key, id) = entry?;
                let (q, np, order) = key.value();
                Ok((format!("r:{np}:{order}:{q}"), id.value()))
            }))
        }
        Some(index) => {
            timed = txn.open_table(index)?;
            let start = match query.after.as_deref().map(parse_time_cursor).transpose()? {
                Some(key) => Bound::Excluded(key),
                None => Bound::Unbounded,
            };
            Box::new(
                timed
                    .range::<(i64, u128)>((start, Bound::Unbounded))?
                    .map(|entry| {
                        let (at, id) = entry?.0.value();
                        Ok((format!("t:{at}:{id}"), id))
                    }),
            )
        }
    };
    let mut page: Vec<Job> = Vec::with_capacity(limit.min(1024));
    let mut last = None;
    let mut next = None;
    for entry in entries {
        let (cursor, id) = entry?;
        let Some(bytes) = jobs.get(id)? else { continue };
        let job: Job = serde_json::from_slice(bytes.value())?;
        if queue.is_some_and(|q| q != job.queue) {
            continue;
        }
        if page.len() == limit {
            next = last.take();
            break;
        }
        page.push(job);
        last = Some(cursor);
    }
    Ok(Page { jobs: page, next })
}

pub(crate) fn counts(txn: &ReadTransaction) -> Result<Counts, QueueError> {
    let mut counts = Counts {
        queued: txn.open_table(READY)?.len()?,
        ..Counts::default()
    };
    for status in JobStatus::ALL {
        if let Some(index) = time_index(status) {
            *counts.slot(status) = txn.open_table(index)?.len()?;
        }
    }
    Ok(counts)
}
