//! What each rule kind measures. A rule turns an [`Observation`] (and the recently
//! finished generations) into one sample per instance — the value, whether the
//! condition holds, and the human summary — for the state machine in
//! [`super::state`].
//!
//! VRAM, backend and store rules are per instance (a backend URL, a GPU id, the
//! store's role); the others are global and use the empty instance. No data means no
//! condition: a VRAM reading with no total, an empty generation window or a missing
//! disk reading never fires (and an alert that was firing resolves).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::config::RuleConfig;
use crate::clock::Millis;

/// How bad a firing alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

named_enum!(Severity, "severity", {
    Warning => "warning",
    Critical => "critical",
});

impl Severity {
    /// Sort key: critical first.
    pub fn rank(self) -> u8 {
        match self {
            Self::Critical => 0,
            Self::Warning => 1,
        }
    }
}

/// What a rule compares with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Used / total VRAM of one instance, above the threshold (a ratio).
    VramUsageAbove,
    /// Jobs waiting in the queue, above the threshold.
    QueueSizeAbove,
    /// Failed / finished generations over the window, above the threshold (a ratio).
    FailureRateAbove,
    /// Mean duration of the generations finished in the window (failed ones
    /// included), above the threshold in seconds.
    MeanGenerationSecondsAbove,
    /// A backend failing its health check (the threshold is unused).
    BackendDown,
    /// Free / total bytes of the data volume, below the threshold (a ratio).
    DiskFreeBelow,
    /// A shared store (the queue's or the cache's Redis, the outputs' S3) not
    /// answering its check (the threshold is unused).
    StoreDown,
    /// The last good backup is older than the threshold times the backup
    /// interval (`[backup]`; no schedule, no sample).
    BackupAgeAbove,
}

named_enum!(RuleKind, "rule kind", {
    VramUsageAbove => "vram_usage_above",
    QueueSizeAbove => "queue_size_above",
    FailureRateAbove => "failure_rate_above",
    MeanGenerationSecondsAbove => "mean_generation_seconds_above",
    BackendDown => "backend_down",
    DiskFreeBelow => "disk_free_below",
    StoreDown => "store_down",
    BackupAgeAbove => "backup_age_above",
});

impl RuleKind {
    /// The threshold is a ratio in 0..=1.
    pub fn is_ratio(self) -> bool {
        matches!(
            self,
            Self::VramUsageAbove | Self::FailureRateAbove | Self::DiskFreeBelow
        )
    }

    /// The rule looks back over `window_seconds` of finished generations.
    pub fn uses_window(self) -> bool {
        matches!(self, Self::FailureRateAbove | Self::MeanGenerationSecondsAbove)
    }
}

/// VRAM of one backend or GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VramReading {
    /// The backend URL or GPU id the alert is about.
    pub instance: String,
    pub used_bytes: u64,
    pub total_bytes: u64,
}

/// The last health check of one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendHealth {
    /// The backend URL.
    pub instance: String,
    pub healthy: bool,
}

/// The last check of one shared store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreCheck {
    /// What it holds: `queue`, `cache` or `outputs`.
    pub instance: String,
    /// `redis redis://host:6379/0`, `s3 http://minio:9000`.
    pub store: String,
    pub up: bool,
    /// Why the check failed.
    pub error: Option<String>,
}

/// Space on the data volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskReading {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// How old the last good backup is, when backups are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BackupReading {
    /// Seconds since the last good backup (since the daemon started, if none).
    pub age_seconds: f64,
    /// Seconds between scheduled backups.
    pub interval_seconds: f64,
    /// There was a good backup at all.
    pub ever: bool,
}

/// What one evaluation looks at, filled in by the daemon.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub vram: Vec<VramReading>,
    /// Jobs queued (waiting to be claimed).
    pub queue_size: u64,
    pub backends: Vec<BackendHealth>,
    pub disk: Option<DiskReading>,
    /// Shared stores only: an embedded one cannot be unreachable.
    pub stores: Vec<StoreCheck>,
    /// Scheduled backups only.
    pub backup: Option<BackupReading>,
}

/// One rule's reading of one instance.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sample {
    pub(super) instance: String,
    pub(super) value: f64,
    /// The rule's condition holds.
    pub(super) active: bool,
    pub(super) summary: String,
}

impl Sample {
    fn global(value: f64, active: bool, summary: String) -> Self {
        Self {
            instance: String::new(),
            value,
            active,
            summary,
        }
    }
}

/// The samples of `rule` for this observation, at `now`.
pub(super) fn samples(rule: &RuleConfig, obs: &Observation, history: &History, now: Millis) -> Vec<Sample> {
    let threshold = rule.threshold;
    match rule.kind {
        RuleKind::VramUsageAbove => obs
            .vram
            .iter()
            .filter(|reading| reading.total_bytes > 0)
            .map(|reading| {
                let used = ratio(reading.used_bytes, reading.total_bytes);
                Sample {
                    instance: reading.instance.clone(),
                    value: used,
                    active: used > threshold,
                    summary: format!(
                        "VRAM {} used on {} (threshold {})",
                        percent(used),
                        reading.instance,
                        percent(threshold)
                    ),
                }
            })
            .collect(),
        RuleKind::QueueSizeAbove => {
            let queued = as_f64(obs.queue_size);
            let summary = format!("{} jobs queued (threshold {threshold})", obs.queue_size);
            vec![Sample::global(queued, queued > threshold, summary)]
        }
        RuleKind::FailureRateAbove => history
            .window(now, seconds_to_ms(rule.window_seconds))
            .map(|stats| {
                let rate = as_f64(stats.failures) / as_f64(stats.total);
                let summary = format!(
                    "{} of {} generations failed over the last {} (threshold {})",
                    percent(rate),
                    stats.total,
                    span(rule.window_seconds),
                    percent(threshold)
                );
                Sample::global(rate, rate > threshold, summary)
            })
            .into_iter()
            .collect(),
        RuleKind::MeanGenerationSecondsAbove => history
            .window(now, seconds_to_ms(rule.window_seconds))
            .map(|stats| {
                let mean = stats.seconds_sum / as_f64(stats.total);
                let summary = format!(
                    "mean generation time {mean:.1}s over {} generations in the last {} (threshold {threshold}s)",
                    stats.total,
                    span(rule.window_seconds)
                );
                Sample::global(mean, mean > threshold, summary)
            })
            .into_iter()
            .collect(),
        RuleKind::BackendDown => obs
            .backends
            .iter()
            .map(|backend| Sample {
                instance: backend.instance.clone(),
                // Like `darkroom_backend_up`: 1 up, 0 down.
                value: f64::from(u8::from(backend.healthy)),
                active: !backend.healthy,
                summary: if backend.healthy {
                    format!("backend {} is reachable", backend.instance)
                } else {
                    format!("backend {} is unreachable", backend.instance)
                },
            })
            .collect(),
        RuleKind::StoreDown => obs
            .stores
            .iter()
            .map(|check| {
                let state = match (&check.error, check.up) {
                    (_, true) => "answers".to_owned(),
                    (Some(why), false) => format!("does not answer: {why}"),
                    (None, false) => "does not answer".to_owned(),
                };
                Sample {
                    instance: check.instance.clone(),
                    // Like `darkroom_store_up`: 1 up, 0 down.
                    value: f64::from(u8::from(check.up)),
                    active: !check.up,
                    summary: format!("{} store {} {state}", check.instance, check.store),
                }
            })
            .collect(),
        RuleKind::DiskFreeBelow => obs
            .disk
            .filter(|disk| disk.total_bytes > 0)
            .map(|disk| {
                let free = ratio(disk.free_bytes, disk.total_bytes);
                let summary = format!("data volume {} free (threshold {})", percent(free), percent(threshold));
                Sample::global(free, free < threshold, summary)
            })
            .into_iter()
            .collect(),
        RuleKind::BackupAgeAbove => backup_samples(obs.backup, threshold),
    }
}

/// The backup rule: the age of the last good backup in backup intervals.
fn backup_samples(backup: Option<BackupReading>, threshold: f64) -> Vec<Sample> {
    backup
        .filter(|b| b.interval_seconds > 0.0)
        .map(|b| {
            let intervals = b.age_seconds / b.interval_seconds;
            let age = rough_span(b.age_seconds);
            let summary = if b.ever {
                format!("the last good backup is {age} old ({intervals:.1} intervals; threshold {threshold})")
            } else {
                format!("no good backup in the {age} since start ({intervals:.1} intervals; threshold {threshold})")
            };
            Sample::global(intervals, intervals > threshold, summary)
        })
        .into_iter()
        .collect()
}

/// A finished generation.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Finished {
    at_ms: Millis,
    success: bool,
    seconds: f64,
}

/// Totals over a window with at least one finished generation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct WindowStats {
    pub(super) total: u64,
    pub(super) failures: u64,
    pub(super) seconds_sum: f64,
}

/// Recently finished generations, oldest first, kept for the longest window of any
/// rule and never more than `capacity`.
#[derive(Debug)]
pub(super) struct History {
    entries: VecDeque<Finished>,
    keep_ms: Millis,
    capacity: usize,
}

impl History {
    pub(super) fn new(keep_ms: Millis, capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            keep_ms,
            capacity: capacity.max(1),
        }
    }

    /// Adds one; a negative or non-finite duration counts as 0 s.
    pub(super) fn record(&mut self, at_ms: Millis, success: bool, seconds: f64) {
        let seconds = if seconds.is_finite() && seconds > 0.0 {
            seconds
        } else {
            0.0
        };
        self.entries.push_back(Finished {
            at_ms,
            success,
            seconds,
        });
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
        }
    }

    /// Drops the generations older than the longest window at `now`.
    pub(super) fn prune(&mut self, now: Millis) {
        let oldest = now.saturating_sub(self.keep_ms);
        while self.entries.front().is_some_and(|f| f.at_ms < oldest) {
            self.entries.pop_front();
        }
    }

    /// The generations finished in `[now - window_ms, now]`, or `None` when there
    /// are none (no data, no alert).
    pub(super) fn window(&self, now: Millis, window_ms: Millis) -> Option<WindowStats> {
        let from = now.saturating_sub(window_ms);
        let stats = self
            .entries
            .iter()
            .filter(|f| (from..=now).contains(&f.at_ms))
            .fold(WindowStats::default(), |mut stats, f| {
                stats.total += 1;
                stats.failures += u64::from(!f.success);
                stats.seconds_sum += f.seconds;
                stats
            });
        (stats.total > 0).then_some(stats)
    }

    #[cfg(test)]
    pub(super) fn recorded(&self) -> usize {
        self.entries.len()
    }
}

/// Seconds from config as clock milliseconds (saturating).
pub(super) fn seconds_to_ms(seconds: u64) -> Millis {
    Millis::try_from(seconds.saturating_mul(1_000)).unwrap_or(Millis::MAX)
}

#[allow(clippy::cast_precision_loss)] // counts and byte sizes far below 2^52 in practice
fn as_f64(n: u64) -> f64 {
    n as f64
}

fn ratio(part: u64, whole: u64) -> f64 {
    as_f64(part) / as_f64(whole)
}

/// `0.96` -> "96%", `0.925` -> "92.5%".
fn percent(ratio: f64) -> String {
    let p = ratio * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// 900 -> "15m", 7200 -> "2h", 45 -> "45s".
fn span(seconds: u64) -> String {
    match seconds {
        0 => "0s".to_owned(),
        s if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// An age to the largest whole unit: 45s, 12m, 3h, 2d.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped at 0; whole seconds
fn rough_span(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_and_span_read_well() {
        assert_eq!(percent(0.96), "96%");
        assert_eq!(percent(0.95), "95%");
        assert_eq!(percent(0.925), "92.5%");
        assert_eq!(percent(0.1), "10%");
        assert_eq!(span(900), "15m");
        assert_eq!(span(7_200), "2h");
        assert_eq!(span(45), "45s");
        assert_eq!(span(0), "0s");
    }

    #[test]
    fn window_is_inclusive_and_empty_means_none() {
        let mut history = History::new(10_000, 100);
        assert_eq!(history.window(1_000, 1_000), None);
        history.record(0, false, 2.0);
        history.record(500, true, 4.0);
        let stats = history.window(1_000, 1_000).unwrap();
        assert_eq!((stats.total, stats.failures), (2, 1));
        assert!((stats.seconds_sum - 6.0).abs() < 1e-12);
        let later = history.window(1_001, 1_000).unwrap();
        assert_eq!((later.total, later.failures), (1, 0));
    }

    #[test]
    fn history_is_bounded_by_age_and_count() {
        let mut history = History::new(1_000, 3);
        for at in 0..5 {
            history.record(at, true, f64::NAN);
        }
        assert_eq!(history.recorded(), 3);
        assert_eq!(
            history.window(10, 100).unwrap().seconds_sum.to_bits(),
            0.0_f64.to_bits()
        );
        history.prune(1_003);
        assert_eq!(history.recorded(), 2);
        history.prune(5_000);
        assert_eq!(history.recorded(), 0);
    }

    #[test]
    fn names_parse_case_insensitively() {
        assert_eq!("Critical".parse::<Severity>().unwrap(), Severity::Critical);
        assert_eq!(
            " backend_down ".parse::<RuleKind>().unwrap(),
            RuleKind::BackendDown
        );
        assert_eq!(
            RuleKind::MeanGenerationSecondsAbove.to_string(),
            "mean_generation_seconds_above"
        );
        let err = "info".parse::<Severity>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown severity `info` (valid: warning, critical)"
        );
    }

    #[test]
    fn serde_names_match_display() {
        for kind in RuleKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for severity in Severity::ALL {
            assert_eq!(serde_json::to_value(severity).unwrap(), severity.as_str());
        }
    }
}
