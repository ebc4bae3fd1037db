//! The alert state machine, with Prometheus' semantics, per (rule name, instance).
//!
//! When a rule's condition starts to hold the alert is `pending` from that moment;
//! once it has held for the rule's `for` it is `firing` (with `for = 0` in the same
//! evaluation, without a separate pending change). A pending alert whose condition
//! stops holding is `cleared` back to inactive without anyone being told, so
//! flapping never notifies; a firing one is `resolved` (notified) and forgotten. An
//! instance missing from the observation counts as the condition not holding.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::config::RuleConfig;
use super::rules::{Sample, Severity, seconds_to_ms};
use crate::clock::Millis;

/// Where one (rule, instance) pair is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition does not hold (what resolved and cleared alerts become).
    Inactive,
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    /// The condition has held for the rule's `for`.
    Firing,
}

named_enum!(AlertState, "alert state", {
    Inactive => "inactive",
    Pending => "pending",
    Firing => "firing",
});

/// One alert as the API, the event stream and the notifiers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    /// The rule name.
    pub name: String,
    /// The backend URL or GPU id for per-instance rules, empty for global ones.
    pub instance: String,
    pub severity: Severity,
    pub state: AlertState,
    /// The observed value at the last evaluation that had one.
    pub value: f64,
    pub threshold: f64,
    /// When it became pending.
    pub active_since_ms: Millis,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub firing_since_ms: Option<Millis>,
    /// Human text, e.g. "VRAM 96% used on http://127.0.0.1:8188 (threshold 95%)".
    pub summary: String,
}

/// One transition, as returned by [`super::Alerts::evaluate`] and broadcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum AlertChange {
    /// Inactive -> pending.
    Pending { alert: Alert },
    /// -> firing (notified).
    Firing { alert: Alert },
    /// Firing -> inactive (notified); the alert's state is `inactive`.
    Resolved { alert: Alert, resolved_ms: Millis },
    /// Pending -> inactive without ever firing (not notified).
    Cleared { alert: Alert },
}

impl AlertChange {
    /// The alert as it is after the change.
    pub fn alert(&self) -> &Alert {
        match self {
            Self::Pending { alert }
            | Self::Firing { alert }
            | Self::Resolved { alert, .. }
            | Self::Cleared { alert } => alert,
        }
    }

    /// The change's name in JSON ("pending", "firing", "resolved", "cleared"), handy
    /// as an SSE event name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending { .. } => "pending",
            Self::Firing { .. } => "firing",
            Self::Resolved { .. } => "resolved",
            Self::Cleared { .. } => "cleared",
        }
    }
}

/// Every pending or firing alert, keyed by (rule name, instance).
#[derive(Debug, Default)]
pub(super) struct Tracker {
    alerts: BTreeMap<(String, String), Alert>,
}

impl Tracker {
    /// Applies one evaluation of `rule` at `now` and returns its changes.
    pub(super) fn step(&mut self, rule: &RuleConfig, samples: Vec<Sample>, now: Millis) -> Vec<AlertChange> {
        let mut holding = BTreeSet::new();
        let mut fresh = BTreeSet::new();
        for Sample {
            instance,
            value,
            active,
            summary,
        } in samples
        {
            let key = (rule.name.clone(), instance.clone());
            if let Some(alert) = self.alerts.get_mut(&key) {
                alert.value = value;
                alert.summary = summary;
            } else if active {
                fresh.insert(instance.clone());
                self.alerts
                    .insert(key, pending(rule, instance.clone(), value, summary, now));
            }
            if active {
                holding.insert(instance);
            }
        }

        let for_ms = seconds_to_ms(rule.for_seconds);
        let mut changes = Vec::new();
        let mut gone = Vec::new();
        for (key, alert) in self.alerts.iter_mut().filter(|(key, _)| key.0 == rule.name) {
            if holding.contains(&key.1) {
                changes.extend(advance(alert, fresh.contains(&key.1), for_ms, now));
            } else {
                gone.push(key.clone());
            }
        }
        for key in gone {
            if let Some(mut alert) = self.alerts.remove(&key) {
                let was = alert.state;
                alert.state = AlertState::Inactive;
                changes.push(if was == AlertState::Firing {
                    AlertChange::Resolved {
                        alert,
                        resolved_ms: now,
                    }
                } else {
                    AlertChange::Cleared { alert }
                });
            }
        }
        changes
    }

    /// Pending and firing alerts, by (name, instance).
    pub(super) fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// How many instances of rule `name` are firing.
    pub(super) fn firing(&self, name: &str) -> u64 {
        let count = self
            .alerts
            .values()
            .filter(|alert| alert.name == name && alert.state == AlertState::Firing)
            .count();
        u64::try_from(count).unwrap_or(u64::MAX)
    }
}

/// A new pending alert of `rule`.
fn pending(rule: &RuleConfig, instance: String, value: f64, summary: String, now: Millis) -> Alert {
    Alert {
        name: rule.name.clone(),
        instance,
        severity: rule.severity,
        state: AlertState::Pending,
        value,
        threshold: rule.threshold,
        active_since_ms: now,
        firing_since_ms: None,
        summary,
    }
}

/// Moves an alert whose condition still holds: pending -> firing once it has held
/// for `for_ms`. A fresh alert that does not fire yet reports itself pending.
fn advance(alert: &mut Alert, fresh: bool, for_ms: Millis, now: Millis) -> Option<AlertChange> {
    if alert.state == AlertState::Pending && now.saturating_sub(alert.active_since_ms) >= for_ms {
        alert.state = AlertState::Firing;
        alert.firing_since_ms = Some(now);
        return Some(AlertChange::Firing { alert: alert.clone() });
    }
    fresh.then(|| AlertChange::Pending { alert: alert.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_print_and_serialize_alike() {
        for state in &AlertState::ALL {
            assert_eq!(state.to_string().parse::<AlertState>().unwrap(), *state);
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        let err = "resolved".parse::<AlertState>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown alert state `resolved` (valid: inactive, pending, firing)"
        );
    }

    #[test]
    fn changes_are_tagged_and_round_trip() {
        let alert = Alert {
            name: "ComfyUIBackendDown".to_owned(),
            instance: "http://127.0.0.1:8188".to_owned(),
            severity: Severity::Critical,
            state: AlertState::Inactive,
            value: 1.0,
            threshold: 0.0,
            active_since_ms: 1_000,
            firing_since_ms: Some(61_000),
            summary: "backend http://127.0.0.1:8188 is reachable".to_owned(),
        };
        let change = AlertChange::Resolved {
            alert: alert.clone(),
            resolved_ms: 90_000,
        };
        let json = serde_json::to_value(&change).unwrap();
        assert_eq!(json["change"], "resolved");
        assert_eq!(json["resolved_ms"], 90_000);
        assert_eq!(json["alert"]["severity"], "critical");
        assert_eq!(json["alert"]["firing_since_ms"], 61_000);
        assert_eq!(serde_json::from_value::<AlertChange>(json).unwrap(), change);
        assert_eq!(change.as_str(), "resolved");
        assert_eq!(change.alert(), &alert);

        let pending = AlertChange::Pending {
            alert: Alert {
                firing_since_ms: None,
                ..alert
            },
        };
        let json = serde_json::to_value(&pending).unwrap();
        assert!(json["alert"].get("firing_since_ms").is_none());
        assert_eq!(serde_json::from_value::<AlertChange>(json).unwrap(), pending);
    }
}
