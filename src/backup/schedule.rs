//! The daemon's backups: one at a time (a scheduled one and one asked for through
//! the API never overlap), on the `[backup]` schedule, remembering how the last one
//! went for the status, `/metrics` and the `DarkroomBackupStale` alert; and the
//! retention that prunes old snapshots afterwards.
//!
//! At start the schedule reads the destination's newest complete snapshot, so a
//! restart neither forgets the last good backup nor takes an extra one.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::config::BackupConfig;
use super::dest::Dest;
use super::error::BackupError;
use super::manifest::{BLOBS, Inventory, Manifest, SNAPSHOTS};
use super::take::{BackupReport, Source, backup};
use crate::alerts::BackupReading;
use crate::clock::{Millis, SharedClock};
use crate::sync::lock;
use crate::tls::Trust;

/// How soon a failed scheduled backup is tried again (at most the interval).
const RETRY_AFTER: Duration = Duration::from_mins(15);

/// How the daemon's backups have gone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupState {
    /// A backup is being taken now.
    pub running: bool,
    /// When the last good backup was taken (its snapshot time).
    pub last_success_ms: Option<Millis>,
    /// When the last backup, good or not, started.
    pub last_attempt_ms: Option<Millis>,
    /// Why the last backup failed, if it did.
    pub last_error: Option<String>,
    /// What the last good backup by this daemon did.
    pub last: Option<BackupReport>,
}

/// The backups part of the status: the schedule and how it has gone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupStatus {
    /// Where scheduled backups go (absent: none are scheduled).
    pub dest: Option<String>,
    /// Seconds between scheduled backups.
    pub interval_seconds: Option<u64>,
    /// When the next scheduled backup is due.
    pub next_ms: Option<Millis>,
    /// Snapshots kept (0: all).
    pub keep: usize,
    pub state: BackupState,
}

/// The daemon's backup service; cheap to clone.
#[derive(Clone)]
pub struct Backups {
    inner: Arc<Inner>,
}

struct Inner {
    source: Source,
    config: BackupConfig,
    /// The CAs an `s3://` destination over https is trusted by (`tls.ca_file`).
    trust: Trust,
    clock: SharedClock,
    started_ms: Millis,
    /// Held while a backup runs: one at a time.
    running: tokio::sync::Mutex<()>,
    /// How backups have gone; every change is sent to subscribers.
    state: tokio::sync::watch::Sender<BackupState>,
    next_ms: Mutex<Option<Millis>>,
}

impl Backups {
    pub fn new(source: Source, config: BackupConfig, trust: Trust, clock: SharedClock) -> Self {
        let started_ms = clock.now_ms();
        Self {
            inner: Arc::new(Inner {
                source,
                config,
                trust,
                clock,
                started_ms,
                running: tokio::sync::Mutex::new(()),
                state: tokio::sync::watch::Sender::new(BackupState::default()),
                next_ms: Mutex::default(),
            }),
        }
    }

    /// Takes a backup now into `dest` (default `backup.dest`), keeping `keep`
    /// snapshots (default `backup.keep`). Fails with [`BackupError::Busy`] while
    /// another one runs.
    pub async fn run(&self, dest: Option<&str>, keep: Option<usize>) -> Result<BackupReport, BackupError> {
        let inner = &self.inner;
        let _running = inner.running.try_lock().map_err(|_| BackupError::Busy)?;
        let spec = dest.unwrap_or(&inner.config.dest);
        let dest = Dest::parse(spec, &inner.config.s3, &inner.trust)?;
        let now = inner.clock.now_ms();
        inner.state.send_modify(|state| {
            state.running = true;
            state.last_attempt_ms = Some(now);
        });
        let result = backup(&inner.source, &dest, keep.unwrap_or(inner.config.keep), now).await;
        if let Err(e) = &result {
            tracing::error!(dest = %dest.describe(), error = %e, "backup failed");
        }
        inner.state.send_modify(|state| {
            state.running = false;
            match &result {
                Ok(report) => {
                    state.last_success_ms = Some(now);
                    state.last_error = None;
                    state.last = Some(report.clone());
                }
                Err(e) => state.last_error = Some(e.to_string()),
            }
        });
        result
    }

    /// Every change of how backups have gone (a backup starts, ends, fails).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<BackupState> {
        self.inner.state.subscribe()
    }

    /// The schedule and how backups have gone.
    pub fn status(&self) -> BackupStatus {
        let schedule = self.inner.config.schedule();
        BackupStatus {
            dest: schedule.map(|_| self.inner.config.dest.clone()),
            interval_seconds: schedule.map(|s| s.period().as_secs()),
            next_ms: *lock(&self.inner.next_ms),
            keep: self.inner.config.keep,
            state: self.inner.state.borrow().clone(),
        }
    }

    /// For the `DarkroomBackupStale` alert: `None` when nothing is scheduled.
    pub fn reading(&self) -> Option<BackupReading> {
        let schedule = self.inner.config.schedule()?;
        let state = self.inner.state.borrow();
        let since = state.last_success_ms.unwrap_or(self.inner.started_ms);
        let age_ms = self.inner.clock.now_ms().saturating_sub(since).max(0);
        #[allow(clippy::cast_precision_loss)] // milliseconds of an age
        Some(BackupReading {
            age_seconds: age_ms as f64 / 1000.0,
            interval_seconds: schedule.period().as_secs_f64(),
            ever: state.last_success_ms.is_some(),
        })
    }

    /// Runs the `[backup]` schedule until `shutdown` (nothing without a `dest`).
    pub async fn run_schedule(self, shutdown: CancellationToken) {
        let Some(schedule) = self.inner.config.schedule() else {
            return;
        };
        self.learn_last_success().await;
        loop {
            let now = self.inner.clock.now_ms();
            let (last, failed_at) = {
                let state = self.inner.state.borrow();
                (
                    state.last_success_ms,
                    state.last_error.as_ref().and(state.last_attempt_ms),
                )
            };
            let mut due = schedule.next_after(last, now);
            if let Some(failed) = failed_at {
                let retry = i64::try_from(RETRY_AFTER.min(schedule.period()).as_millis()).unwrap_or(i64::MAX);
                due = due.max(failed + retry);
            }
            *lock(&self.inner.next_ms) = Some(due);
            let wait = Duration::from_millis(u64::try_from(due - now).unwrap_or(0));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            // A failure is recorded in the state and logged by `run`.
            let _ = self.run(None, None).await;
        }
    }

    /// Reads the destination's newest complete snapshot as the last good backup.
    async fn learn_last_success(&self) {
        let inner = &self.inner;
        let found = match Dest::parse(&inner.config.dest, &inner.config.s3, &inner.trust) {
            Ok(dest) => Inventory::read(&dest)
                .await
                .map(|i| i.latest().map(|m| m.created_ms)),
            Err(e) => Err(e),
        };
        match found {
            Ok(Some(ms)) => inner.state.send_modify(|state| state.last_success_ms = Some(ms)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(dest = %inner.config.dest, error = %e, "backup: cannot read the destination's snapshots");
            }
        }
    }
}

/// Keeps the newest `keep` complete snapshots (0: all), removes partial ones older
/// than `current` (left by backups that died) and every blob no kept snapshot
/// references. Returns the ids removed. Assumes one backup at a time per
/// destination.
pub async fn prune(dest: &Dest, keep: usize, current: &str) -> Result<Vec<String>, BackupError> {
    let inventory = Inventory::read(dest).await?;
    let complete = &inventory.complete;
    let drop_count = if keep == 0 {
        0
    } else {
        complete.len().saturating_sub(keep)
    };
    let (old, kept) = complete.split_at(drop_count);
    let mut removed = Vec::new();
    for manifest in old {
        // The manifest first: from then on the snapshot is partial, never half
        // restorable.
        dest.delete(&[Manifest::path(&manifest.id)]).await?;
        let files: Vec<String> = manifest.files.iter().map(|f| f.path.clone()).collect();
        dest.delete(&files).await?;
        removed.push(manifest.id.clone());
    }
    for id in inventory.partial.iter().filter(|id| id.as_str() < current) {
        let files = dest.list(&format!("{SNAPSHOTS}/{id}")).await?;
        dest.delete(&files).await?;
        removed.push(id.clone());
    }
    let needed: HashSet<&str> = kept
        .iter()
        .flat_map(|m| m.blobs.iter().map(|b| b.path.as_str()))
        .collect();
    let unneeded: Vec<String> = dest
        .list(BLOBS)
        .await?
        .into_iter()
        .filter(|path| !needed.contains(path.as_str()))
        .collect();
    dest.delete(&unneeded).await?;
    Ok(removed)
}
