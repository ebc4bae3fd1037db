//! Keeps the dashboard's data flowing from a [`Link`]: on connect, the status
//! snapshot, jobs, templates and log; then the event stream from the snapshot's
//! last event id, with a status refresh every 2 s (counts, rates, buckets), the
//! log every second, and jobs that changed status re-read in full (coalesced, at
//! most five times a second) with the snapshot (at most once a second).
//! When the connection drops it says so and reconnects by itself, resuming with
//! the last event id it saw; a `resync` (events missed, or another run of the
//! daemon) refetches everything, as does the queue's store coming back after it
//! stopped answering (the snapshot says so; the rest of the dashboard stays up).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Msg;
use super::link::{Link, LinkError};
use super::state::Data;
use crate::events::{EventKind, StreamItem};
use crate::service::JobListing;

/// How many jobs the table starts with.
const INITIAL_JOBS: usize = 200;
/// How many of them are read in full at once.
const DETAILED_JOBS: usize = 100;

/// Runs until `stop` or until the dashboard goes away.
pub async fn run(link: Arc<dyn Link>, tx: mpsc::Sender<Msg>, stop: CancellationToken) {
    let mut last_id: Option<u64> = None;
    const FIRST_RETRY: Duration = Duration::from_millis(250);
    let mut backoff = FIRST_RETRY;
    loop {
        let seen = last_id;
        let session = tokio::select! {
            () = stop.cancelled() => return,
            r = session(&*link, &tx, &mut last_id) => r,
        };
        let reason = match session {
            Ok(Ended::Resync) => {
                last_id = None;
                continue;
            }
            Ok(Ended::Closed) => "the daemon closed the event stream".to_owned(),
            Ok(Ended::Gone) => return,
            Err(e) => e.to_string(),
        };
        if tx.send(Msg::Data(Data::Disconnected(reason))).await.is_err() {
            return;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        // A session that got events starts the retries over; failures in a row back off.
        backoff = if last_id == seen {
            (backoff * 2).min(Duration::from_secs(3))
        } else {
            FIRST_RETRY
        };
    }
}

/// How one connected session ended.
enum Ended {
    Resync,
    Closed,
    /// The dashboard is gone.
    Gone,
}

async fn session(
    link: &dyn Link,
    tx: &mpsc::Sender<Msg>,
    last_id: &mut Option<u64>,
) -> Result<Ended, LinkError> {
    let snapshot = link.status().await?;
    // While the queue's Redis is down there are no jobs to list; the rest (GPUs,
    // backends, alerts, log) still shows, and the session starts over once it is back.
    let mut queue_down = snapshot.queue.unavailable.is_some();
    let jobs = match link.jobs(JobListing::newest(INITIAL_JOBS)).await.map(|p| p.jobs) {
        Ok(jobs) => jobs,
        Err(_) if queue_down => Vec::new(),
        Err(e) => return Err(e),
    };
    let templates = link.templates().await?;
    let logs = link.logs(0).await?.lines;
    let resume = last_id.unwrap_or(snapshot.last_event_id);
    let mut stream = link.events(Some(resume)).await?;
    let mut log_after = logs.last().map_or(0, |l| l.seq);
    // A listing leaves the payload out; the newest jobs are read in full so the
    // table can name their template.
    let mut changed: BTreeSet<String> = jobs
        .iter()
        .filter(|j| j.payload.is_null())
        .take(DETAILED_JOBS)
        .map(|j| j.id.to_string())
        .collect();
    let full = Data::Full {
        snapshot: Box::new(snapshot),
        jobs,
        templates,
    };
    for data in [
        full,
        Data::Logs {
            lines: logs,
            reset: true,
        },
    ] {
        if tx.send(Msg::Data(data)).await.is_err() {
            return Ok(Ended::Gone);
        }
    }
    let mut last_status = Instant::now();
    let mut refresh = tokio::time::interval(Duration::from_secs(2));
    let mut poll_logs = tokio::time::interval(Duration::from_secs(1));
    let mut fetch = tokio::time::interval(Duration::from_millis(200));
    // User templates are added and edited while the dashboard runs.
    let mut poll_templates = tokio::time::interval(Duration::from_secs(10));
    for t in [&mut refresh, &mut poll_logs, &mut fetch, &mut poll_templates] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t.reset();
    }
    loop {
        let data = tokio::select! {
            item = stream.next() => match item {
                Some(Ok(StreamItem::Event(e))) => {
                    *last_id = Some(e.id);
                    if let EventKind::Job(job) = &e.kind
                        && job.from != Some(job.to)
                    {
                        changed.insert(job.id.to_string());
                    }
                    vec![Data::Event(e)]
                }
                Some(Ok(StreamItem::Resync(_))) => return Ok(Ended::Resync),
                Some(Err(e)) => return Err(e),
                None => return Ok(Ended::Closed),
            },
            _ = refresh.tick() => {
                last_status = Instant::now();
                let Some(snapshot) = refreshed(link, &mut queue_down).await? else {
                    return Ok(Ended::Resync);
                };
                vec![snapshot]
            }
            _ = poll_templates.tick() => vec![Data::Templates(link.templates().await?)],
            _ = poll_logs.tick() => {
                let lines = link.logs(log_after).await?.lines;
                let Some(last) = lines.last() else { continue };
                log_after = last.seq;
                vec![Data::Logs { lines, reset: false }]
            }
            _ = fetch.tick(), if !changed.is_empty() => {
                let mut jobs = Vec::new();
                for id in std::mem::take(&mut changed) {
                    if let Ok(job) = link.job(&id).await {
                        jobs.push(Data::Job(Box::new(job)));
                    }
                }
                // Statuses changed, so did the counts and rates: refetch them, at
                // most once a second (the snapshot scans the buckets' usage).
                if last_status.elapsed() >= Duration::from_secs(1) {
                    last_status = Instant::now();
                    let Some(snapshot) = refreshed(link, &mut queue_down).await? else {
                        return Ok(Ended::Resync);
                    };
                    jobs.push(snapshot);
                }
                jobs
            }
        };
        for d in data {
            if tx.send(Msg::Data(d)).await.is_err() {
                return Ok(Ended::Gone);
            }
        }
    }
}

/// A fresh snapshot, or `None` when the queue's store has just come back after
/// not answering: the session starts over to list the jobs again.
async fn refreshed(link: &dyn Link, queue_down: &mut bool) -> Result<Option<Data>, LinkError> {
    let snapshot = link.status().await?;
    let was_down = std::mem::replace(queue_down, snapshot.queue.unavailable.is_some());
    if was_down && !*queue_down {
        return Ok(None);
    }
    Ok(Some(Data::Snapshot(Box::new(snapshot))))
}
