//! The backup series: `darkroom_backup_last_success_timestamp_seconds`,
//! `darkroom_backup_duration_seconds` and `darkroom_backup_bytes` (of the last good
//! backup), `darkroom_backup_copied_bytes` (what it had to copy),
//! `darkroom_backup_interval_seconds` (the schedule) and `darkroom_backup_running`.
//! Each is absent while there is nothing to say (no schedule, no good backup yet),
//! so `assets/monitoring`'s `DarkroomBackupStale` rule never fires on a daemon
//! that takes no backups.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::backup::BackupStatus;

type F = Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>;

pub(super) struct BackupMetrics {
    last_success: F,
    duration: F,
    bytes: F,
    copied: F,
    interval: F,
    running: F,
}

impl BackupMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let mut f = |name: &str, help: &str| {
            let m = F::default();
            r.register(name, help, m.clone());
            m
        };
        Self {
            last_success: f(
                "darkroom_backup_last_success_timestamp_seconds",
                "Unix time of the last good backup's snapshot",
            ),
            duration: f(
                "darkroom_backup_duration_seconds",
                "How long the last good backup by this daemon took",
            ),
            bytes: f(
                "darkroom_backup_bytes",
                "Bytes the last good backup's snapshot holds",
            ),
            copied: f(
                "darkroom_backup_copied_bytes",
                "Bytes the last good backup copied (the rest were in earlier snapshots)",
            ),
            interval: f(
                "darkroom_backup_interval_seconds",
                "Seconds between scheduled backups",
            ),
            running: f("darkroom_backup_running", "1 while a backup is being taken"),
        }
    }

    #[allow(clippy::cast_precision_loss)] // gauges of times and byte counts
    pub(super) fn set(&self, status: Option<&BackupStatus>) {
        for f in [
            &self.last_success,
            &self.duration,
            &self.bytes,
            &self.copied,
            &self.interval,
            &self.running,
        ] {
            f.clear();
        }
        let Some(status) = status else {
            return;
        };
        let put = |f: &F, v: f64| {
            f.get_or_create(&Vec::new()).set(v);
        };
        let state = &status.state;
        put(&self.running, f64::from(u8::from(state.running)));
        if let Some(interval) = status.interval_seconds {
            put(&self.interval, interval as f64);
        }
        if let Some(ms) = state.last_success_ms {
            put(&self.last_success, ms as f64 / 1000.0);
        }
        if let Some(last) = &state.last {
            put(&self.duration, last.seconds);
            put(&self.bytes, last.bytes as f64);
            put(&self.copied, last.bytes_copied as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::backup::{BackupState, BackupStatus};
    use crate::metrics::{Metrics, Scrape};

    fn series(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn backup_series_appear_only_with_something_to_say() {
        let metrics = Metrics::new();
        let none = metrics.render(&Scrape::default());
        assert_eq!(series(&none, "darkroom_backup_interval_seconds"), None);
        let status = BackupStatus {
            dest: Some("/backups".into()),
            interval_seconds: Some(86_400),
            state: BackupState {
                last_success_ms: Some(1_700_000_000_500),
                ..BackupState::default()
            },
            ..BackupStatus::default()
        };
        let text = metrics.render(&Scrape {
            backup: Some(status),
            ..Scrape::default()
        });
        assert_eq!(series(&text, "darkroom_backup_interval_seconds"), Some(86_400.0));
        assert_eq!(
            series(&text, "darkroom_backup_last_success_timestamp_seconds"),
            Some(1_700_000_000.5)
        );
        assert_eq!(series(&text, "darkroom_backup_running"), Some(0.0));
        assert_eq!(
            series(&text, "darkroom_backup_duration_seconds"),
            None,
            "no backup by this daemon yet"
        );
    }
}
