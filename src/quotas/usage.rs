//! Usage per user per UTC day — jobs by status, GPU seconds, images, bytes stored —
//! for `GET /api/v1/usage`, `darkroom usage` and the per-role metrics.
//!
//! Each day is one record per user (group `usage:{user}`, name `YYYY-MM-DD`, the
//! day the job was submitted) holding one entry per job. Writing a job's entry
//! again with the same facts changes nothing, so every node may record every job
//! event it sees (and a reader may settle entries whose event was missed) without
//! counting anything twice.

// GPU ms as f64 seconds: exact far beyond any real total.
#![allow(clippy::cast_precision_loss)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::calendar;
use crate::clock::Millis;
use crate::docs::{Docs, DocsError, Write};
use crate::queue::{Job, JobStatus};

/// One job as usage counts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub status: JobStatus,
    #[serde(default)]
    pub gpu_ms: i64,
    #[serde(default)]
    pub images: u64,
    #[serde(default)]
    pub bytes: u64,
}

impl Entry {
    /// What `job` counts for now.
    pub fn of(job: &Job) -> Self {
        let outputs = crate::dispatch::outputs_of(job);
        let gpu_ms = match (job.status.is_terminal(), job.started_ms, job.finished_ms) {
            (true, Some(s), Some(f)) => (f - s).max(0),
            _ => 0,
        };
        let succeeded = job.status == JobStatus::Succeeded;
        Self {
            status: job.status,
            gpu_ms,
            images: if succeeded { outputs.len() as u64 } else { 0 },
            bytes: if succeeded {
                outputs.iter().map(|o| o.size).sum()
            } else {
                0
            },
        }
    }
}

/// What recording a job changed in its entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub before: Option<Entry>,
    pub now: Entry,
}

impl Change {
    /// Bytes the entry gained (negative: lost).
    pub fn bytes(&self) -> i64 {
        let of = |e: &Entry| i64::try_from(e.bytes).unwrap_or(i64::MAX);
        of(&self.now) - self.before.as_ref().map_or(0, of)
    }

    /// GPU seconds the entry gained.
    pub fn gpu_seconds(&self) -> f64 {
        let before = self.before.as_ref().map_or(0, |e| e.gpu_ms);
        (self.now.gpu_ms - before).max(0) as f64 / 1000.0
    }

    /// Images the entry gained.
    pub fn images(&self) -> u64 {
        self.now
            .images
            .saturating_sub(self.before.as_ref().map_or(0, |e| e.images))
    }

    /// Whether this is the job's end (not a step back, not the same end again).
    pub fn ended(&self) -> bool {
        self.now.status.is_terminal() && self.before.as_ref().is_none_or(|b| b.status != self.now.status)
    }
}

/// One user's day, summed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageDay {
    pub user: String,
    /// `YYYY-MM-DD` (UTC), the day the jobs were submitted.
    pub day: String,
    /// Jobs by status (`queued`, `running`, `succeeded`, ...).
    pub jobs: BTreeMap<String, u64>,
    /// Jobs submitted that day.
    pub submitted: u64,
    /// Time their attempts ran on a GPU, in seconds.
    pub gpu_seconds: f64,
    /// Images their jobs made.
    pub images: u64,
    /// Bytes of those images.
    pub bytes: u64,
}

impl UsageDay {
    pub fn of(user: &str, day: &str, entries: &BTreeMap<String, Entry>) -> Self {
        let mut d = Self {
            user: user.to_owned(),
            day: day.to_owned(),
            ..Self::default()
        };
        for e in entries.values() {
            *d.jobs.entry(e.status.to_string()).or_default() += 1;
            d.submitted += 1;
            d.gpu_seconds += e.gpu_ms as f64 / 1000.0;
            d.images += e.images;
            d.bytes += e.bytes;
        }
        d
    }
}

fn group(user: &str) -> String {
    format!("usage:{user}")
}

/// Cheap `Clone` handle on the usage records.
#[derive(Clone)]
pub struct UsageBook {
    docs: Docs,
}

impl UsageBook {
    pub fn new(docs: Docs) -> Self {
        Self { docs }
    }

    /// Records `job` (which must have an owner) as it is now. Answers the change,
    /// or `None` when the entry already said so (another node recorded it).
    pub async fn record(&self, job: &Job) -> Result<Option<Change>, DocsError> {
        let Some(owner) = job.owner.as_deref() else {
            return Ok(None);
        };
        let day = calendar::day(Millis::try_from(job.id.timestamp_ms()).unwrap_or(job.created_ms));
        let (id, entry) = (job.id.to_string(), Entry::of(job));
        self.docs
            .update(&group(owner), &day, move |old| {
                let mut entries: BTreeMap<String, Entry> =
                    old.map(serde_json::from_slice).transpose()?.unwrap_or_default();
                let before = entries.get(&id);
                // Never step back: a late event must not undo a later one.
                if before
                    .is_some_and(|b| b == &entry || (b.status.is_terminal() && !entry.status.is_terminal()))
                {
                    return Ok((Write::Keep, None));
                }
                let change = Change {
                    before: before.cloned(),
                    now: entry.clone(),
                };
                entries.insert(id.clone(), entry.clone());
                Ok((Write::Put(serde_json::to_vec(&entries)?), Some(change)))
            })
            .await
    }

    /// `user`'s days from `from` to `to` (`YYYY-MM-DD`, both included), oldest
    /// first, with every job entry.
    pub async fn days(
        &self,
        user: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, BTreeMap<String, Entry>)>, DocsError> {
        let mut days = Vec::new();
        for (day, raw) in self.docs.list(&group(user)).await? {
            if day.as_str() >= from && day.as_str() <= to {
                days.push((day, serde_json::from_slice(&raw)?));
            }
        }
        days.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(days)
    }
}
