//! Built-in alerting: the seed stack's Prometheus rules and Alertmanager, inside the
//! daemon.
//!
//! Every `evaluate_interval_ms` the daemon hands [`Alerts::evaluate`] an
//! [`Observation`] (VRAM per backend, queue size, backend health, free disk);
//! finished generations arrive as they happen through [`Alerts::record_generation`].
//! Each configured rule ([`rules`]) turns that into one condition per instance, and
//! the state machine ([`state`]) moves every (rule, instance) pair through
//! `inactive -> pending -> firing` with Prometheus' `for` semantics. Firing and
//! resolved alerts go to an outbox that [`Alerts::run_notifier`] drains into one
//! worker per notifier ([`notify`] renders the webhook, Slack and Alertmanager
//! payloads; [`deliver`] posts them with retries), and every change is broadcast for
//! the API's event stream. Time comes from the injected [`crate::clock::Clock`], so
//! tests step through `for` windows instead of sleeping.
//!
//! This module owns the alert state, the recent generations and the outbox; it
//! observes nothing itself and has no timer of its own.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::{Millis, SharedClock};
use crate::sync::lock;

pub mod config;
pub mod deliver;
pub mod notify;
pub mod rules;
pub mod state;

pub use config::{AlertsConfig, NotifierConfig, NotifierKind, RuleConfig};
pub use deliver::DeliveryCounts;
pub use notify::{Notification, NotifyError, sign};
pub use rules::{
    BackendHealth, BackupReading, DiskReading, Observation, RuleKind, Severity, StoreCheck, VramReading,
};
pub use state::{Alert, AlertChange, AlertState};

pub use crate::names::ParseNameError;

/// Changes a slow [`Alerts::subscribe`] receiver may fall behind by before it lags.
pub const EVENT_CAPACITY: usize = 256;
/// Notifications waiting for [`Alerts::run_notifier`]; beyond this the oldest is dropped.
const OUTBOX_CAPACITY: usize = 1024;
/// Finished generations kept for the window rules, whatever their windows say.
const HISTORY_CAPACITY: usize = 100_000;
/// How often still-firing alerts are re-sent to Alertmanager notifiers. Alertmanager
/// resolves an alert nobody re-sends within its `resolve_timeout` (5 min by default),
/// so darkroom repeats them like Prometheus does; webhook and Slack only hear changes.
pub const ALERTMANAGER_RESEND_MS: Millis = 60_000;

/// The alerting engine: a cheap `Clone` handle shared by the daemon's evaluation
/// task, the generation recorder, the API and the notifier task.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    config: AlertsConfig,
    clock: SharedClock,
    http: reqwest::Client,
    engine: Mutex<Engine>,
    events: broadcast::Sender<AlertChange>,
    outbox: Mutex<VecDeque<Notification>>,
    wake: Notify,
    counts: Arc<deliver::Counters>,
}

/// Everything one evaluation reads and writes, behind one lock.
struct Engine {
    tracker: state::Tracker,
    history: rules::History,
    last_resend_ms: Option<Millis>,
}

impl fmt::Debug for Alerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerts")
            .field("enabled", &self.inner.config.enabled)
            .field("rules", &self.inner.config.rules.len())
            .field("notifiers", &self.inner.config.notifiers.len())
            .finish_non_exhaustive()
    }
}

impl Alerts {
    /// An engine for `config` (validate it first with [`AlertsConfig::validate`]).
    /// `http` posts the notifications; nothing is sent until [`Self::run_notifier`] runs.
    pub fn new(config: AlertsConfig, clock: SharedClock, http: reqwest::Client) -> Self {
        let keep_ms = config
            .rules
            .iter()
            .filter(|rule| rule.kind.uses_window())
            .map(|rule| rules::seconds_to_ms(rule.window_seconds))
            .max()
            .unwrap_or(0);
        let engine = Engine {
            tracker: state::Tracker::default(),
            history: rules::History::new(keep_ms, HISTORY_CAPACITY),
            last_resend_ms: None,
        };
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                config,
                clock,
                http,
                engine: Mutex::new(engine),
                events,
                outbox: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
                counts: Arc::default(),
            }),
        }
    }

    /// The configuration this engine runs.
    pub fn config(&self) -> &AlertsConfig {
        &self.inner.config
    }

    /// Records a finished generation for the failure-rate and mean-duration rules.
    /// Both count every finished generation, failed ones included; a negative or
    /// non-finite `seconds` counts as 0.
    pub fn record_generation(&self, at_ms: Millis, success: bool, seconds: f64) {
        let now = self.inner.clock.now_ms();
        let mut engine = lock(&self.inner.engine);
        engine.history.record(at_ms, success, seconds);
        engine.history.prune(now);
    }

    /// Evaluates every rule against `obs` and the recorded generations at the clock's
    /// current time, and returns this round's changes. Each change is also broadcast
    /// (see [`Self::subscribe`]); firing and resolved ones are queued for the notifiers.
    /// With `enabled = false` nothing is evaluated.
    pub fn evaluate(&self, obs: &Observation) -> Vec<AlertChange> {
        let inner = &*self.inner;
        if !inner.config.enabled {
            return Vec::new();
        }
        let now = inner.clock.now_ms();
        let mut guard = lock(&inner.engine);
        let engine = &mut *guard;
        engine.history.prune(now);
        let mut changes = Vec::new();
        for rule in &inner.config.rules {
            let samples = rules::samples(rule, obs, &engine.history, now);
            changes.extend(engine.tracker.step(rule, samples, now));
        }
        let mut outgoing: Vec<Notification> = changes.iter().filter_map(Notification::from_change).collect();
        if inner.resend_due(engine.last_resend_ms, now) {
            engine.last_resend_ms = Some(now);
            let repeats = engine
                .tracker
                .alerts()
                .filter(|alert| alert.state == AlertState::Firing && !just_fired(&changes, alert))
                .cloned()
                .map(Notification::repeat);
            outgoing.extend(repeats);
        }
        for change in &changes {
            // No subscribers is fine: the stream is optional.
            let _ = inner.events.send(change.clone());
        }
        inner.enqueue(outgoing);
        drop(guard);
        changes
    }

    /// Pending and firing alerts: critical first, then by name and instance.
    pub fn active(&self) -> Vec<Alert> {
        let mut alerts: Vec<Alert> = lock(&self.inner.engine).tracker.alerts().cloned().collect();
        alerts.sort_by(|a, b| {
            a.severity
                .rank()
                .cmp(&b.severity.rank())
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.instance.cmp(&b.instance))
        });
        alerts
    }

    /// One row per configured rule — name, severity, instances firing (0 when none) —
    /// for the `darkroom_alerts_firing{alertname,severity}` gauge.
    pub fn firing_count(&self) -> Vec<(String, Severity, u64)> {
        let engine = lock(&self.inner.engine);
        self.inner
            .config
            .rules
            .iter()
            .map(|rule| {
                (
                    rule.name.clone(),
                    rule.severity,
                    engine.tracker.firing(&rule.name),
                )
            })
            .collect()
    }

    /// Every future change, as it happens (capacity [`EVENT_CAPACITY`]).
    pub fn subscribe(&self) -> broadcast::Receiver<AlertChange> {
        self.inner.events.subscribe()
    }

    /// Notification outcomes so far, over all notifiers.
    pub fn deliveries(&self) -> DeliveryCounts {
        let (delivered, failed, retried) = self.inner.counts.snapshot();
        DeliveryCounts {
            delivered,
            failed,
            retried,
        }
    }

    /// Delivers queued notifications until `shutdown` is cancelled: one worker per
    /// configured notifier, each in order and with its own retries, so a slow or dead
    /// receiver delays nobody else. Notifications still waiting at shutdown are dropped.
    pub async fn run_notifier(self, shutdown: CancellationToken) {
        let inner = &*self.inner;
        let mut workers = JoinSet::new();
        let mut queues = Vec::with_capacity(inner.config.notifiers.len());
        for notifier in &inner.config.notifiers {
            let (tx, rx) = mpsc::channel(deliver::QUEUE_CAPACITY);
            let worker = deliver::Worker {
                http: inner.http.clone(),
                notifier: notifier.clone(),
                clock: Arc::clone(&inner.clock),
                counts: Arc::clone(&inner.counts),
                shutdown: shutdown.clone(),
            };
            workers.spawn(worker.run(rx));
            queues.push((notifier, tx));
        }
        loop {
            let batch: Vec<Notification> = lock(&inner.outbox).drain(..).collect();
            for notification in batch {
                let wanted = queues.iter().filter(|(notifier, _)| {
                    !notification.repeat || notifier.kind == NotifierKind::Alertmanager
                });
                for (notifier, tx) in wanted {
                    if tx.try_send(notification.clone()).is_err() {
                        tracing::warn!(
                            url = %notifier.url,
                            alert = %notification.alert.name,
                            "alert notifier is falling behind; dropping a notification"
                        );
                        inner.counts.add_failed();
                    }
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = inner.wake.notified() => {}
            }
        }
        drop(queues);
        while workers.join_next().await.is_some() {}
    }
}

impl Inner {
    fn resend_due(&self, last_resend_ms: Option<Millis>, now: Millis) -> bool {
        self.config
            .notifiers
            .iter()
            .any(|notifier| notifier.kind == NotifierKind::Alertmanager)
            && last_resend_ms.is_none_or(|last| now.saturating_sub(last) >= ALERTMANAGER_RESEND_MS)
    }

    fn enqueue(&self, notifications: Vec<Notification>) {
        if notifications.is_empty() || self.config.notifiers.is_empty() {
            return;
        }
        let mut outbox = lock(&self.outbox);
        for notification in notifications {
            if outbox.len() >= OUTBOX_CAPACITY
                && let Some(dropped) = outbox.pop_front()
            {
                tracing::warn!(
                    alert = %dropped.alert.name,
                    "alert outbox is full (is the notifier task running?); dropping the oldest"
                );
                self.counts.add_failed();
            }
            outbox.push_back(notification);
        }
        drop(outbox);
        self.wake.notify_one();
    }
}

/// True when `alert` went to firing in `changes` (it is being sent already).
fn just_fired(changes: &[AlertChange], alert: &Alert) -> bool {
    changes.iter().any(|change| {
        matches!(change, AlertChange::Firing { alert: fired }
            if fired.name == alert.name && fired.instance == alert.instance)
    })
}

#[cfg(test)]
impl Alerts {
    /// The notifications waiting for the notifier task.
    fn queued(&self) -> Vec<Notification> {
        lock(&self.inner.outbox).iter().cloned().collect()
    }

    /// How many finished generations are kept.
    fn recorded(&self) -> usize {
        lock(&self.inner.engine).history.recorded()
    }
}

#[cfg(test)]
mod tests;
