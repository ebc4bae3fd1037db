//! The `[backup]` section: where the daemon's scheduled backups go, how often, and
//! how many snapshots are kept. Without a `dest` nothing is scheduled (backups
//! can still be taken with `darkroom backup`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::dispatch::ExternalS3;

/// The section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// A directory or `s3://bucket/prefix`; empty: no scheduled backups.
    pub dest: String,
    /// Time between backups: `30m`, `6h`, `24h`, `7d` (default `24h`).
    pub interval: String,
    /// Instead of an interval, a time of day in UTC (`HH:MM`): one backup a day.
    pub daily_at: String,
    /// Snapshots kept (the newest ones; 0 keeps all; default 7). Blobs a kept
    /// snapshot references are never deleted.
    pub keep: usize,
    /// Endpoint and keys for an `s3://` destination; empty fields fall back to
    /// `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`.
    pub s3: ExternalS3,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            dest: String::new(),
            interval: "24h".into(),
            daily_at: String::new(),
            keep: 7,
            s3: ExternalS3::default(),
        }
    }
}

/// When scheduled backups run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    Every(Duration),
    /// Once a day at this many seconds after midnight UTC.
    DailyAt(u32),
}

impl Schedule {
    /// The time between two backups.
    pub fn period(self) -> Duration {
        match self {
            Self::Every(d) => d,
            Self::DailyAt(_) => Duration::from_hours(24),
        }
    }

    /// When the next backup is due, given the last good one (ms) and now.
    pub fn next_after(self, last_ms: Option<i64>, now_ms: i64) -> i64 {
        match self {
            Self::Every(d) => {
                let period = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                last_ms.map_or(now_ms, |last| last.saturating_add(period))
            }
            Self::DailyAt(secs) => {
                const DAY: i64 = 86_400_000;
                // The first slot after the last good backup (overdue: at once),
                // or from now on when there was none.
                let from = last_ms.unwrap_or(now_ms);
                let at = from - from.rem_euclid(DAY) + i64::from(secs) * 1000;
                if at > from || (last_ms.is_none() && at == from) {
                    at
                } else {
                    at + DAY
                }
            }
        }
    }
}

impl BackupConfig {
    /// The schedule, or `None` when no destination is set.
    pub fn schedule(&self) -> Option<Schedule> {
        if self.dest.is_empty() {
            return None;
        }
        if !self.daily_at.is_empty() {
            return parse_time_of_day(&self.daily_at).ok().map(Schedule::DailyAt);
        }
        parse_interval(&self.interval).ok().map(Schedule::Every)
    }

    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| Err(ConfigError::Invalid { key, message });
        if let Err(message) = parse_interval(&self.interval) {
            return invalid("backup.interval", message);
        }
        if !self.daily_at.is_empty()
            && let Err(message) = parse_time_of_day(&self.daily_at)
        {
            return invalid("backup.daily_at", message);
        }
        if let Some(rest) = self.dest.strip_prefix("s3://")
            && rest.split('/').next().is_none_or(str::is_empty)
        {
            return invalid(
                "backup.dest",
                format!("{:?}: expected s3://bucket/prefix", self.dest),
            );
        }
        Ok(())
    }
}

/// `90s`, `30m`, `6h`, `1d` (a number and one unit; at least one second).
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit (90s, 30m, 6h, 1d)"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3_600,
        "d" => n * 86_400,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    if seconds == 0 {
        return Err(format!("{text:?}: must be at least 1s"));
    }
    Ok(Duration::from_secs(seconds))
}

/// `HH:MM` (UTC) as seconds after midnight.
pub fn parse_time_of_day(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?}: expected HH:MM in UTC, e.g. 03:30");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 3_600 + m * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_bad_ones_name_the_problem() {
        assert_eq!(parse_interval("24h"), Ok(Duration::from_hours(24)));
        assert_eq!(parse_interval("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_interval("7d"), Ok(Duration::from_hours(168)));
        assert!(parse_interval("0s").unwrap_err().contains("at least"));
        assert!(parse_interval("5w").unwrap_err().contains("unknown unit"));
        assert!(parse_interval("soon").unwrap_err().contains("number"));
        let config = BackupConfig {
            interval: "daily".into(),
            ..BackupConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("backup.interval")
        );
    }

    #[test]
    fn the_next_backup_follows_the_last_good_one() {
        let every = Schedule::Every(Duration::from_hours(1));
        assert_eq!(every.next_after(None, 5_000), 5_000);
        assert_eq!(every.next_after(Some(1_000), 5_000), 3_601_000);
        // 03:30 UTC daily: from 01:00 it is today, from 04:00 tomorrow.
        let daily = Schedule::DailyAt(parse_time_of_day("03:30").unwrap());
        let day = 86_400_000;
        let at = |h: i64, m: i64| (h * 3_600 + m * 60) * 1000;
        assert_eq!(daily.next_after(None, at(1, 0)), at(3, 30));
        assert_eq!(daily.next_after(None, at(4, 0)), day + at(3, 30));
        // Done today at 03:30: next is tomorrow's.
        assert_eq!(daily.next_after(Some(at(3, 30)), at(3, 31)), day + at(3, 30));
        assert!(parse_time_of_day("25:00").is_err());
    }
}
