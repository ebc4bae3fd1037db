//! The daemon's own background loops that tie services together: the event hub
//! fed from the queue and the alerts, the alert evaluation from what the
//! dispatcher, queue and disk report, and the observer every finished generation
//! passes through (metrics, recent statistics, alert windows).

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::alerts::{Alerts, BackendHealth, DiskReading, Observation, VramReading};
use crate::cache::PromptCache;
use crate::clock::SharedClock;
use crate::dispatch::{Dispatcher, Generation, GenerationObserver};
use crate::events::{EventHub, EventKind};
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::status::RecentGenerations;

/// Where each finished generation is recorded.
pub(super) fn observer(metrics: &Metrics, recent: &RecentGenerations, alerts: &Alerts) -> GenerationObserver {
    let (metrics, recent, alerts) = (metrics.clone(), recent.clone(), alerts.clone());
    Arc::new(move |g: &Generation| {
        metrics.generation(g);
        recent.record(g.at_ms, g.seconds, g.end);
        if !g.end.cache_hit() {
            alerts.record_generation(g.at_ms, g.end.succeeded(), g.seconds);
        }
    })
}

/// Event ids start at the start time in microseconds: ids a client kept from an
/// earlier run are older than anything this run sends.
pub(super) fn first_event_id(clock: &SharedClock) -> u64 {
    u64::try_from(clock.now_ms()).unwrap_or(0).saturating_mul(1000)
}

/// Feeds the event hub from the queue's and the alerts' broadcasts.
pub(super) async fn forward_events(queue: Queue, alerts: Alerts, hub: EventHub, shutdown: CancellationToken) {
    use tokio::sync::broadcast::error::RecvError;
    let (mut jobs, mut changes) = (queue.subscribe(), alerts.subscribe());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            e = jobs.recv() => match e {
                Ok(e) => hub.publish(e.at_ms, EventKind::Job(e)),
                Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "events: fell behind the queue"),
                Err(RecvError::Closed) => return,
            },
            c = changes.recv() => match c {
                Ok(c) => hub.publish(queue.now_ms(), EventKind::Alert(c)),
                Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "events: fell behind the alerts"),
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Publishes the GPU monitor's reports as events: at most one a second, and a
/// report without devices only when it changes (no GPU stays one event).
pub(super) async fn forward_gpu(gpu: crate::gpu::GpuMonitor, hub: EventHub, shutdown: CancellationToken) {
    let mut samples = gpu.subscribe();
    let mut last: Option<crate::gpu::GpuReport> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = samples.changed() => if changed.is_err() { return },
        }
        let report = gpu.report();
        let send = match &last {
            None => true,
            Some(prev) if report.devices.is_empty() => {
                (prev.source, &prev.unavailable, prev.devices.len())
                    != (report.source, &report.unavailable, 0)
            }
            Some(prev) => report.at_ms.saturating_sub(prev.at_ms) >= 1000,
        };
        if send {
            hub.publish(report.at_ms, EventKind::Gpu(report.clone()));
            last = Some(report);
        }
    }
}

/// Evaluates the alert rules every `alerts.evaluate_interval_ms`.
pub(super) async fn evaluate_alerts(
    alerts: Alerts,
    dispatcher: Dispatcher,
    (queue, prompts): (Queue, PromptCache),
    (gpu, backups): (crate::gpu::GpuMonitor, crate::backup::Backups),
    data_dir: PathBuf,
    shutdown: CancellationToken,
) {
    if !alerts.config().enabled {
        return;
    }
    let every = alerts.config().evaluate_interval();
    crate::clock::run_every(every, shutdown, move || {
        let (alerts, dispatcher, queue, prompts, gpu, data_dir) = (
            alerts.clone(),
            dispatcher.clone(),
            queue.clone(),
            prompts.clone(),
            gpu.clone(),
            data_dir.clone(),
        );
        let backup = backups.reading();
        async move {
            let stores = crate::stores::StoreChecks::run(&queue, &prompts, &dispatcher).await;
            let backends = dispatcher.backends();
            let gpus = gpu.report();
            let obs = Observation {
                vram: backends
                    .iter()
                    .filter_map(|b| {
                        let (used_bytes, total_bytes) = crate::gpu::backend_vram(&gpus, b)?;
                        Some(VramReading {
                            instance: b.url.clone(),
                            used_bytes,
                            total_bytes,
                        })
                    })
                    .collect(),
                queue_size: queue.counts().await.map_or(0, |c| c.queued),
                // A backend not health-checked yet (down, with no error) is unknown,
                // not down: it must not start a pending alert at every start.
                backends: backends
                    .iter()
                    .filter(|b| b.healthy || b.last_error.is_some())
                    .map(|b| BackendHealth {
                        instance: b.url.clone(),
                        healthy: b.healthy,
                    })
                    .collect(),
                disk: crate::object_store::disk_space(&data_dir).map(|(free_bytes, total_bytes)| {
                    DiskReading {
                        free_bytes,
                        total_bytes,
                    }
                }),
                stores: stores.shared(),
                backup,
            };
            alerts.evaluate(&obs);
        }
    })
    .await;
}

/// Settles the prompt-library run of every job that ends (its status and
/// generation time); what this misses (a crash, a lag) is settled when the
/// prompt's stats are next read.
pub(super) async fn settle_prompt_runs(
    queue: Queue,
    prompts: crate::service::prompts::Prompts,
    shutdown: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut jobs = queue.subscribe();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = jobs.recv() => match e {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "prompt runs: fell behind the queue; stats settle them on read");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        if !event.to.is_terminal() {
            continue;
        }
        let settled = match queue.get(event.id).await {
            Ok(Some(job)) => prompts.settle_job(&job).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = settled {
            tracing::debug!(job = %event.id, error = %e, "prompt run not settled; stats settle it on read");
        }
    }
}

/// Keeps quotas current on this node: records each job in its owner's usage when
/// it is submitted and when it ends (usage settles missed ones on read), and
/// re-reads every user's limits for fair share every few seconds (another node,
/// or an admin, may have changed them).
pub(super) async fn keep_quotas(
    queue: Queue,
    quotas: crate::service::quotas::Quotas,
    shutdown: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut jobs = queue.subscribe();
    let mut refresh = tokio::time::interval(std::time::Duration::from_secs(5));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = refresh.tick() => {
                if let Err(e) = quotas.refresh_shares().await {
                    tracing::debug!(error = %e, "cannot re-read the users' quotas");
                }
                continue;
            }
            e = jobs.recv() => match e {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "usage: fell behind the queue; usage settles them on read");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        if event.from.is_some() && !event.to.is_terminal() {
            continue;
        }
        let recorded = match queue.get(event.id).await {
            Ok(Some(job)) => quotas.record(&job).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = recorded {
            tracing::debug!(job = %event.id, error = %e, "usage not recorded; usage settles it on read");
        }
    }
}
