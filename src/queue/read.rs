//! Queries that only read: one job, a page of jobs in a status, the count per status.
//!
//! They run on a read snapshot (never blocking the writer); the async wrappers in
//! `mod.rs` put them on `spawn_blocking`.

use redb::{ReadTransaction, ReadableTable};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ulid::Ulid;

use super::error::QueueError;
use super::job::{Job, JobStatus};
use super::tables::{BY_STATUS, COUNTS, JOBS, PAYLOADS};

/// A page request: jobs in `status`, oldest first, after the cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    pub status: JobStatus,
    /// Only jobs of this queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// The `next` of the previous page.
    #[serde(default)]
    pub after: Option<Ulid>,
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
    /// Cursor for the next page; `None` on the last one.
    pub next: Option<Ulid>,
}

/// How many jobs are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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

pub(crate) fn list(txn: &ReadTransaction, query: &ListQuery) -> Result<Page, QueueError> {
    let by_status = txn.open_table(BY_STATUS)?;
    let jobs = txn.open_table(JOBS)?;
    let code = query.status.code();
    let start = query.after.map_or(0, |after| after.0.saturating_add(1));
    let limit = query.limit.max(1);
    let mut page = Vec::with_capacity(limit.min(1024));
    let mut next = None;
    for entry in by_status.range((code, start)..=(code, u128::MAX))? {
        let id = entry?.0.value().1;
        let Some(bytes) = jobs.get(id)? else { continue };
        let job: Job = serde_json::from_slice(bytes.value())?;
        if query.queue.as_ref().is_some_and(|q| *q != job.queue) {
            continue;
        }
        if page.len() == limit {
            next = page.last().map(|j: &Job| j.id);
            break;
        }
        page.push(job);
    }
    Ok(Page { jobs: page, next })
}

pub(crate) fn counts(txn: &ReadTransaction) -> Result<Counts, QueueError> {
    let table = txn.open_table(COUNTS)?;
    let mut counts = Counts::default();
    for entry in table.iter()? {
        let (code, count) = entry?;
        if let Some(status) = JobStatus::from_code(code.value()) {
            *counts.slot(status) = count.value();
        }
    }
    Ok(counts)
}
