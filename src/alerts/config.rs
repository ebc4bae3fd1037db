//! The `[alerts]` configuration section: which rules run, how often, and who hears
//! about them.
//!
//! The defaults are the seed stack's Prometheus rules
//! (`assets/monitoring/darkroom-rules.yml` carries the same names, thresholds, `for`
//! durations and severities), so a config without an `[alerts]` section alerts like
//! the stack darkroom replaces. Listing any `[[alerts.rules]]` replaces the whole
//! default set. [`AlertsConfig::validate`] rejects values that parse but make no
//! sense, naming the key (`alerts.rules[2].threshold: ...`).

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rules::{RuleKind, Severity};

/// The `[alerts]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Evaluate the rules at all (default true).
    pub enabled: bool,
    /// How often the daemon evaluates the rules, in milliseconds (default 5000).
    pub evaluate_interval_ms: u64,
    /// The rules (default: the seven built-in rules, see [`default_rules`]).
    pub rules: Vec<RuleConfig>,
    /// Where firing and resolved alerts are sent (default: nowhere).
    pub notifiers: Vec<NotifierConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            evaluate_interval_ms: 5_000,
            rules: default_rules(),
            notifiers: Vec::new(),
        }
    }
}

/// One alerting rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The alert name (`alertname` in Alertmanager); unique among the rules.
    pub name: String,
    pub kind: RuleKind,
    /// What the observed value is compared with; a ratio (0..=1) for the VRAM,
    /// failure-rate and disk kinds, unused by `backend_down` and `store_down`.
    pub threshold: f64,
    /// How long the condition must hold before the alert fires (default 0: at once).
    #[serde(default)]
    pub for_seconds: u64,
    /// The look-back window of `failure_rate_above` and
    /// `mean_generation_seconds_above` (default 0; those kinds need at least 1).
    #[serde(default)]
    pub window_seconds: u64,
    pub severity: Severity,
}

/// Where a notifier posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    /// darkroom's own JSON, optionally HMAC-signed.
    Webhook,
    /// A Slack-compatible incoming webhook (`{"text": ...}`; Mattermost and Discord's
    /// `/slack` endpoint take it too).
    Slack,
    /// Alertmanager's v2 API (`.../api/v2/alerts`).
    Alertmanager,
}

named_enum!(NotifierKind, "notifier kind", {
    Webhook => "webhook",
    Slack => "slack",
    Alertmanager => "alertmanager",
});

/// One receiver of firing and resolved alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    pub kind: NotifierKind,
    /// The URL posted to (http:// or https://).
    pub url: String,
    /// Webhook only: signs each body, header `X-Darkroom-Signature: sha256=<hex>`
    /// (HMAC-SHA256 of the body bytes, see [`super::sign`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Tries per notification before giving up (default 5).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The first retry delay in milliseconds, doubling each retry up to 60 s (default 1000).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
}

fn default_max_attempts() -> u32 {
    5
}

fn default_backoff_ms() -> u64 {
    1_000
}

/// The built-in rules, mirroring `assets/monitoring/darkroom-rules.yml`.
pub fn default_rules() -> Vec<RuleConfig> {
    let rule = |name: &str, kind, threshold, for_seconds, window_seconds, severity| RuleConfig {
        name: name.to_owned(),
        kind,
        threshold,
        for_seconds,
        window_seconds,
        severity,
    };
    vec![
        rule(
            "ComfyUIVRAMHigh",
            RuleKind::VramUsageAbove,
            0.90,
            300,
            0,
            Severity::Warning,
        ),
        rule(
            "ComfyUIVRAMCritical",
            RuleKind::VramUsageAbove,
            0.95,
            120,
            0,
            Severity::Critical,
        ),
        rule(
            "ComfyUIQueueBacklog",
            RuleKind::QueueSizeAbove,
            100.0,
            600,
            0,
            Severity::Warning,
        ),
        rule(
            "ComfyUIHighFailureRate",
            RuleKind::FailureRateAbove,
            0.10,
            0,
            900,
            Severity::Critical,
        ),
        rule(
            "ComfyUISlowGenerations",
            RuleKind::MeanGenerationSecondsAbove,
            120.0,
            0,
            300,
            Severity::Warning,
        ),
        rule(
            "ComfyUIBackendDown",
            RuleKind::BackendDown,
            0.0,
            60,
            0,
            Severity::Critical,
        ),
        rule(
            "DarkroomDiskLow",
            RuleKind::DiskFreeBelow,
            0.10,
            300,
            0,
            Severity::Warning,
        ),
        rule(
            "DarkroomStoreDown",
            RuleKind::StoreDown,
            0.0,
            30,
            0,
            Severity::Critical,
        ),
        rule(
            "DarkroomBackupStale",
            RuleKind::BackupAgeAbove,
            2.0,
            0,
            0,
            Severity::Warning,
        ),
    ]
}

impl AlertsConfig {
    /// The evaluation period (at least 1 ms).
    pub fn evaluate_interval(&self) -> Duration {
        Duration::from_millis(self.evaluate_interval_ms.max(1))
    }

    /// Checks the section; the error names the key (`alerts.rules[2].threshold`).
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        self.first_problem().map_err(crate::config::ConfigError::Keyed)
    }

    /// The first value that parses but makes no sense, as `key: why`.
    fn first_problem(&self) -> Result<(), String> {
        if self.evaluate_interval_ms == 0 {
            return Err("alerts.evaluate_interval_ms: must be at least 1".to_owned());
        }
        let mut names = HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            rule.check()
                .map_err(|(field, message)| format!("alerts.rules[{i}].{field}: {message}"))?;
            if !names.insert(rule.name.as_str()) {
                return Err(format!(
                    "alerts.rules[{i}].name: duplicate rule name `{}`",
                    rule.name
                ));
            }
        }
        for (i, notifier) in self.notifiers.iter().enumerate() {
            notifier
                .check()
                .map_err(|(field, message)| format!("alerts.notifiers[{i}].{field}: {message}"))?;
        }
        Ok(())
    }
}

impl RuleConfig {
    /// The first bad field and what is wrong with it.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.name.trim().is_empty() {
            return Err(("name", "must not be empty".to_owned()));
        }
        if !self.threshold.is_finite() {
            return Err(("threshold", format!("{} is not a finite number", self.threshold)));
        }
        if self.kind.is_ratio() && !(0.0..=1.0).contains(&self.threshold) {
            return Err((
                "threshold",
                format!(
                    "{} is a ratio for {} and must be within 0..=1",
                    self.threshold, self.kind
                ),
            ));
        }
        if self.kind.uses_window() && self.window_seconds == 0 {
            return Err(("window_seconds", format!("must be at least 1 for {}", self.kind)));
        }
        Ok(())
    }
}

impl NotifierConfig {
    /// The first bad field and what is wrong with it.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err((
                "url",
                format!("`{}` must start with http:// or https://", self.url),
            ));
        }
        if self.max_attempts == 0 {
            return Err(("max_attempts", "must be at least 1".to_owned()));
        }
        match (&self.secret, self.kind) {
            (Some(secret), NotifierKind::Webhook) if secret.is_empty() => Err((
                "secret",
                "must not be empty (leave it out to send unsigned)".to_owned(),
            )),
            (Some(_), kind) if kind != NotifierKind::Webhook => Err((
                "secret",
                format!("only webhook notifiers sign their bodies, not {kind}"),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier(kind: NotifierKind, url: &str) -> NotifierConfig {
        NotifierConfig {
            kind,
            url: url.to_owned(),
            secret: None,
            max_attempts: 5,
            backoff_ms: 1_000,
        }
    }

    fn error_of(config: &AlertsConfig) -> String {
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_the_seed_rules() {
        let config = AlertsConfig::default();
        assert!(config.enabled);
        assert_eq!(config.evaluate_interval_ms, 5_000);
        assert!(config.notifiers.is_empty());
        let names: Vec<&str> = config.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ComfyUIVRAMHigh",
                "ComfyUIVRAMCritical",
                "ComfyUIQueueBacklog",
                "ComfyUIHighFailureRate",
                "ComfyUISlowGenerations",
                "ComfyUIBackendDown",
                "DarkroomDiskLow",
                "DarkroomStoreDown",
                "DarkroomBackupStale",
            ]
        );
        let critical = &config.rules[1];
        assert_eq!(critical.kind, RuleKind::VramUsageAbove);
        assert!((critical.threshold - 0.95).abs() < 1e-12);
        assert_eq!(
            (critical.for_seconds, critical.severity),
            (120, Severity::Critical)
        );
        let failures = &config.rules[3];
        assert_eq!((failures.for_seconds, failures.window_seconds), (0, 900));
        assert_eq!(config.first_problem(), Ok(()));
    }

    #[test]
    fn omitted_fields_take_their_defaults() {
        let config: AlertsConfig = serde_json::from_str(
            r#"{"rules":[{"name":"Q","kind":"queue_size_above","threshold":5,"severity":"critical"}],
                "notifiers":[{"kind":"slack","url":"https://hooks.example/x"}]}"#,
        )
        .unwrap();
        assert!(config.enabled);
        assert_eq!(config.evaluate_interval_ms, 5_000);
        assert_eq!(
            (config.rules[0].for_seconds, config.rules[0].window_seconds),
            (0, 0)
        );
        assert_eq!(
            config.notifiers[0],
            notifier(NotifierKind::Slack, "https://hooks.example/x")
        );
        assert_eq!(
            serde_json::from_str::<AlertsConfig>("{}").unwrap(),
            AlertsConfig::default()
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let rule = r#"{"rules":[{"name":"Q","kind":"queue_size_above","threshold":5,"severity":"critical","sevrity":"x"}]}"#;
        assert!(serde_json::from_str::<AlertsConfig>(rule).is_err());
        assert!(serde_json::from_str::<AlertsConfig>(r#"{"interval":5}"#).is_err());
        let kind = r#"{"rules":[{"name":"Q","kind":"queue_above","threshold":5,"severity":"critical"}]}"#;
        assert!(serde_json::from_str::<AlertsConfig>(kind).is_err());
    }

    #[test]
    fn validate_names_the_rule_key() {
        let mut config = AlertsConfig::default();
        config.rules[2].kind = RuleKind::DiskFreeBelow;
        config.rules[2].threshold = 1.5;
        assert!(
            error_of(&config).starts_with("alerts.rules[2].threshold: "),
            "{}",
            error_of(&config)
        );

        let mut config = AlertsConfig::default();
        config.rules[0].threshold = f64::NAN;
        assert!(error_of(&config).starts_with("alerts.rules[0].threshold: "));

        let mut config = AlertsConfig::default();
        config.rules[4].name = "ComfyUIVRAMHigh".to_owned();
        assert!(error_of(&config).starts_with("alerts.rules[4].name: duplicate"));

        let mut config = AlertsConfig::default();
        config.rules[6].name = " ".to_owned();
        assert!(error_of(&config).starts_with("alerts.rules[6].name: "));

        let mut config = AlertsConfig::default();
        config.rules[3].window_seconds = 0;
        assert!(error_of(&config).starts_with("alerts.rules[3].window_seconds: "));

        let config = AlertsConfig {
            evaluate_interval_ms: 0,
            ..AlertsConfig::default()
        };
        assert!(error_of(&config).starts_with("alerts.evaluate_interval_ms: "));
    }

    #[test]
    fn validate_names_the_notifier_key() {
        let mut config = AlertsConfig {
            notifiers: vec![
                notifier(NotifierKind::Webhook, "https://example.com/hook"),
                notifier(NotifierKind::Alertmanager, "alertmanager:9093/api/v2/alerts"),
            ],
            ..AlertsConfig::default()
        };
        assert!(error_of(&config).starts_with("alerts.notifiers[1].url: "));

        config.notifiers[1].url = "http://alertmanager:9093/api/v2/alerts".to_owned();
        config.notifiers[1].secret = Some("s3cret".to_owned());
        assert!(error_of(&config).starts_with("alerts.notifiers[1].secret: "));

        config.notifiers[1].secret = None;
        config.notifiers[0].max_attempts = 0;
        assert!(error_of(&config).starts_with("alerts.notifiers[0].max_attempts: "));

        config.notifiers[0].max_attempts = 3;
        config.notifiers[0].secret = Some("s3cret".to_owned());
        assert_eq!(config.first_problem(), Ok(()));
    }

    #[test]
    fn notifier_kinds_parse_and_print() {
        for kind in &NotifierKind::ALL {
            assert_eq!(kind.to_string().parse::<NotifierKind>().unwrap(), *kind);
        }
        let err = "pager".parse::<NotifierKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown notifier kind `pager` (valid: webhook, slack, alertmanager)"
        );
    }
}
