//! What notifiers receive: one pure renderer per [`NotifierKind`], so payload shapes
//! are unit-tested without a network, plus the webhook signature.
//!
//! - Webhook: darkroom's JSON, `{"version":"1","status":"firing"|"resolved","alert":
//!   {...},"resolved_at"?:..,"sent_at":..}` with `X-Darkroom-Event: alert` and, when
//!   a secret is set, `X-Darkroom-Signature: sha256=<hex HMAC-SHA256 of the body>`.
//! - Slack: an incoming-webhook `{"text": "[FIRING] name (severity) — summary"}`.
//! - Alertmanager: the v2 API's JSON array of one alert (labels, annotations,
//!   `startsAt`, and `endsAt` once resolved).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::config::{NotifierConfig, NotifierKind};
use super::state::{Alert, AlertChange};
use crate::clock::Millis;

/// The webhook signature header (`sha256=<hex>`).
pub const SIGNATURE_HEADER: &str = "x-darkroom-signature";
/// The webhook event header; always `alert`.
pub const EVENT_HEADER: &str = "x-darkroom-event";

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot encode the payload: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
}

/// Something to tell the notifiers: an alert that fired, one that resolved, or
/// (Alertmanager only) a still-firing alert being repeated.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub alert: Alert,
    /// Set when the alert resolved.
    pub resolved_ms: Option<Millis>,
    /// A re-send of a still-firing alert, for Alertmanager only.
    pub repeat: bool,
}

impl Notification {
    /// The notification a change calls for: firing and resolved ones only.
    pub fn from_change(change: &AlertChange) -> Option<Self> {
        let (alert, resolved_ms) = match change {
            AlertChange::Firing { alert } => (alert, None),
            AlertChange::Resolved { alert, resolved_ms } => (alert, Some(*resolved_ms)),
            AlertChange::Pending { .. } | AlertChange::Cleared { .. } => return None,
        };
        Some(Self {
            alert: alert.clone(),
            resolved_ms,
            repeat: false,
        })
    }

    /// A repeat of a still-firing alert.
    pub fn repeat(alert: Alert) -> Self {
        Self {
            alert,
            resolved_ms: None,
            repeat: true,
        }
    }

    /// "firing" or "resolved".
    pub fn status(&self) -> &'static str {
        if self.resolved_ms.is_some() {
            "resolved"
        } else {
            "firing"
        }
    }

    /// One line for chat: `[FIRING] ComfyUIVRAMCritical (critical) — VRAM 96% used on ...`.
    pub fn headline(&self) -> String {
        format!(
            "[{}] {} ({}) — {}",
            self.status().to_ascii_uppercase(),
            self.alert.name,
            self.alert.severity,
            self.alert.summary
        )
    }
}

/// A rendered request: the body and the headers to send with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// The request `notifier` sends for `notification`, stamped `sent_ms`.
pub fn render(
    notifier: &NotifierConfig,
    notification: &Notification,
    sent_ms: Millis,
) -> Result<Rendered, NotifyError> {
    let body = match notifier.kind {
        NotifierKind::Webhook => webhook_body(notification, sent_ms)?,
        NotifierKind::Slack => slack_body(notification)?,
        NotifierKind::Alertmanager => alertmanager_body(notification)?,
    };
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if notifier.kind == NotifierKind::Webhook {
        headers.push((EVENT_HEADER, "alert".to_owned()));
        if let Some(secret) = &notifier.secret {
            headers.push((SIGNATURE_HEADER, sign(secret, &body)));
        }
    }
    Ok(Rendered { body, headers })
}

/// darkroom's webhook JSON.
pub fn webhook_body(notification: &Notification, sent_ms: Millis) -> Result<Vec<u8>, NotifyError> {
    #[derive(Serialize)]
    struct Body<'a> {
        version: &'static str,
        status: &'static str,
        alert: &'a Alert,
        #[serde(skip_serializing_if = "Option::is_none")]
        resolved_at: Option<String>,
        sent_at: String,
    }
    Ok(serde_json::to_vec(&Body {
        version: "1",
        status: notification.status(),
        alert: &notification.alert,
        resolved_at: notification.resolved_ms.map(rfc3339),
        sent_at: rfc3339(sent_ms),
    })?)
}

/// A Slack-compatible incoming-webhook message.
pub fn slack_body(notification: &Notification) -> Result<Vec<u8>, NotifyError> {
    #[derive(Serialize)]
    struct Body {
        text: String,
    }
    Ok(serde_json::to_vec(&Body {
        text: notification.headline(),
    })?)
}

/// Alertmanager's v2 `POST /api/v2/alerts` body: an array of one alert.
pub fn alertmanager_body(notification: &Notification) -> Result<Vec<u8>, NotifyError> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct PostableAlert<'a> {
        labels: BTreeMap<&'static str, &'a str>,
        annotations: BTreeMap<&'static str, &'a str>,
        starts_at: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        ends_at: Option<String>,
    }
    let alert = &notification.alert;
    let mut labels = BTreeMap::from([
        ("alertname", alert.name.as_str()),
        ("severity", alert.severity.as_str()),
        ("service", "darkroom"),
    ]);
    if !alert.instance.is_empty() {
        labels.insert("instance", alert.instance.as_str());
    }
    let posted = PostableAlert {
        labels,
        annotations: BTreeMap::from([("summary", alert.summary.as_str())]),
        starts_at: rfc3339(alert.firing_since_ms.unwrap_or(alert.active_since_ms)),
        ends_at: notification.resolved_ms.map(rfc3339),
    };
    Ok(serde_json::to_vec(&[posted])?)
}

/// The webhook signature of `body`: `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Clock milliseconds as RFC 3339 in UTC (`2023-11-14T22:13:20.5Z`).
pub fn rfc3339(ms: Millis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::alerts::{AlertState, Severity};

    const T0: Millis = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    fn firing() -> Notification {
        Notification {
            alert: Alert {
                name: "ComfyUIVRAMCritical".to_owned(),
                instance: "http://127.0.0.1:8188".to_owned(),
                severity: Severity::Critical,
                state: AlertState::Firing,
                value: 0.96,
                threshold: 0.95,
                active_since_ms: T0,
                firing_since_ms: Some(T0 + 120_000),
                summary: "VRAM 96% used on http://127.0.0.1:8188 (threshold 95%)".to_owned(),
            },
            resolved_ms: None,
            repeat: false,
        }
    }

    fn resolved() -> Notification {
        let mut n = firing();
        n.alert.state = AlertState::Inactive;
        n.resolved_ms = Some(T0 + 600_000);
        n
    }

    fn notifier(kind: NotifierKind, secret: Option<&str>) -> NotifierConfig {
        NotifierConfig {
            kind,
            url: "http://127.0.0.1:1/".to_owned(),
            secret: secret.map(str::to_owned),
            max_attempts: 1,
            backoff_ms: 1,
        }
    }

    fn parse(body: &[u8]) -> Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn sign_matches_rfc_4231_case_2() {
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(T0), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(T0 + 1_500), "2023-11-14T22:13:21.5Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn webhook_payload_and_headers() {
        let rendered = render(
            &notifier(NotifierKind::Webhook, Some("s3cret")),
            &firing(),
            T0 + 121_000,
        )
        .unwrap();
        let body = parse(&rendered.body);
        assert_eq!(body["version"], "1");
        assert_eq!(body["status"], "firing");
        assert_eq!(body["alert"]["name"], "ComfyUIVRAMCritical");
        assert_eq!(body["alert"]["state"], "firing");
        assert_eq!(body["alert"]["firing_since_ms"], json!(T0 + 120_000));
        assert_eq!(body["sent_at"], "2023-11-14T22:15:21Z");
        assert!(body.get("resolved_at").is_none());
        assert_eq!(
            rendered.headers,
            vec![
                ("content-type", "application/json".to_owned()),
                (EVENT_HEADER, "alert".to_owned()),
                (SIGNATURE_HEADER, sign("s3cret", &rendered.body)),
            ]
        );

        let rendered = render(&notifier(NotifierKind::Webhook, None), &resolved(), T0 + 601_000).unwrap();
        let body = parse(&rendered.body);
        assert_eq!(body["status"], "resolved");
        assert_eq!(body["resolved_at"], "2023-11-14T22:23:20Z");
        assert_eq!(body["alert"]["state"], "inactive");
        assert!(rendered.headers.iter().all(|(name, _)| *name != SIGNATURE_HEADER));
    }

    #[test]
    fn slack_payload_is_one_line_of_text() {
        let rendered = render(&notifier(NotifierKind::Slack, None), &firing(), T0).unwrap();
        assert_eq!(
            parse(&rendered.body),
            json!({"text": "[FIRING] ComfyUIVRAMCritical (critical) — VRAM 96% used on http://127.0.0.1:8188 (threshold 95%)"})
        );
        assert_eq!(
            rendered.headers,
            vec![("content-type", "application/json".to_owned())]
        );
        let body = parse(&slack_body(&resolved()).unwrap());
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .starts_with("[RESOLVED] ComfyUIVRAMCritical (critical) — ")
        );
    }

    #[test]
    fn alertmanager_payload_is_a_v2_alert_array() {
        let rendered = render(&notifier(NotifierKind::Alertmanager, None), &firing(), T0).unwrap();
        assert_eq!(
            parse(&rendered.body),
            json!([{
                "labels": {
                    "alertname": "ComfyUIVRAMCritical",
                    "severity": "critical",
                    "instance": "http://127.0.0.1:8188",
                    "service": "darkroom",
                },
                "annotations": {"summary": "VRAM 96% used on http://127.0.0.1:8188 (threshold 95%)"},
                "startsAt": "2023-11-14T22:15:20Z",
            }])
        );
        let body = parse(&alertmanager_body(&resolved()).unwrap());
        assert_eq!(body[0]["endsAt"], "2023-11-14T22:23:20Z");

        let mut global = firing();
        global.alert.instance = String::new();
        global.alert.firing_since_ms = None;
        let body = parse(&alertmanager_body(&global).unwrap());
        assert!(body[0]["labels"].get("instance").is_none());
        assert_eq!(body[0]["startsAt"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn only_firing_and_resolved_changes_notify() {
        let alert = firing().alert;
        assert_eq!(
            Notification::from_change(&AlertChange::Firing { alert: alert.clone() }),
            Some(firing())
        );
        assert_eq!(
            Notification::from_change(&AlertChange::Resolved {
                alert: alert.clone(),
                resolved_ms: T0 + 600_000,
            })
            .map(|n| n.resolved_ms),
            Some(Some(T0 + 600_000))
        );
        assert_eq!(
            Notification::from_change(&AlertChange::Pending { alert: alert.clone() }),
            None
        );
        assert_eq!(Notification::from_change(&AlertChange::Cleared { alert }), None);
    }
}
