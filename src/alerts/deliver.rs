//! Posting notifications: one worker per configured notifier, delivering in order,
//! each notification with its own retries through the same retrying POST as job
//! webhooks ([`post_with_retries`]: up to `max_attempts`, the delay doubling from
//! `backoff_ms` and capped at [`MAX_BACKOFF_MS`]; a 2xx answer is delivered, any
//! other answer or a connection error is retried; shutdown stops it at once).
//!
//! Counters of the outcomes are shared with [`super::Alerts::deliveries`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::NotifierConfig;
use super::notify::{self, Notification};
use crate::clock::SharedClock;
pub(super) use crate::webhook::Counters;
use crate::webhook::{RetryPolicy, post_with_retries};

/// The longest wait between two attempts.
pub const MAX_BACKOFF_MS: u64 = 60_000;
/// Notifications one notifier may fall behind by before new ones are dropped.
pub(super) const QUEUE_CAPACITY: usize = 256;

/// Notification outcomes over all notifiers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCounts {
    /// Accepted with a 2xx answer.
    pub delivered: u64,
    /// Given up on: out of attempts, interrupted by shutdown, or dropped from a full queue.
    pub failed: u64,
    /// Attempts that failed and were tried again.
    pub retried: u64,
}

/// The wait after failed attempt `attempt` (1-based): `base_ms * 2^(attempt-1)`,
/// at most [`MAX_BACKOFF_MS`].
pub fn backoff_ms(base_ms: u64, attempt: u32) -> u64 {
    let shift = attempt.saturating_sub(1).min(32);
    base_ms.saturating_mul(1_u64 << shift).min(MAX_BACKOFF_MS)
}

/// Delivers one notifier's notifications.
pub(super) struct Worker {
    pub(super) http: reqwest::Client,
    pub(super) notifier: NotifierConfig,
    pub(super) clock: SharedClock,
    pub(super) counts: Arc<Counters>,
    pub(super) shutdown: CancellationToken,
}

impl Worker {
    /// Delivers from `queue` until it closes or shutdown.
    pub(super) async fn run(self, mut queue: mpsc::Receiver<Notification>) {
        loop {
            let next = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => None,
                next = queue.recv() => next,
            };
            let Some(notification) = next else {
                break;
            };
            self.deliver(&notification).await;
        }
    }

    async fn deliver(&self, notification: &Notification) {
        let rendered = match notify::render(&self.notifier, notification, self.clock.now_ms()) {
            Ok(rendered) => rendered,
            Err(error) => {
                self.counts.add_failed();
                return self.gave_up(notification, 0, &error);
            }
        };
        let policy = RetryPolicy {
            max_attempts: self.notifier.max_attempts,
            backoff_ms: self.notifier.backoff_ms,
            stop_in_flight: false,
        };
        let sent = post_with_retries(
            &self.http,
            &self.notifier.url,
            &rendered.body,
            &rendered.headers,
            policy,
            &self.counts,
            &self.shutdown,
        )
        .await;
        match sent {
            Ok(attempt) => tracing::debug!(
                url = %self.notifier.url,
                alert = %notification.alert.name,
                status = notification.status(),
                attempt,
                "alert notification delivered"
            ),
            Err((attempts, error)) => self.gave_up(notification, attempts, &error),
        }
    }

    fn gave_up(&self, notification: &Notification, attempts: u32, error: &dyn std::fmt::Display) {
        tracing::warn!(
            url = %self.notifier.url,
            notifier = %self.notifier.kind,
            alert = %notification.alert.name,
            instance = %notification.alert.instance,
            status = notification.status(),
            attempts,
            %error,
            "alert notification not delivered"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};

    use super::*;
    use crate::alerts::{
        AlertChange, Alerts, AlertsConfig, NotifierKind, Observation, RuleConfig, RuleKind, Severity, sign,
    };
    use crate::clock::ManualClock;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(1_000, 1), 1_000);
        assert_eq!(backoff_ms(1_000, 2), 2_000);
        assert_eq!(backoff_ms(1_000, 3), 4_000);
        assert_eq!(backoff_ms(1_000, 7), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(1_000, u32::MAX), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(u64::MAX, 3), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(1, 0), 1);
    }

    /// A receiver that answers 500 to the first request and 200 after, and hands
    /// every request it gets to the test.
    async fn flaky_receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let hits = Arc::new(AtomicUsize::new(0));
        let handler = move |headers: HeaderMap, body: Bytes| {
            let first = hits.fetch_add(1, Ordering::SeqCst) == 0;
            let _ = seen_tx.send((headers, body));
            async move {
                if first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn webhook_is_retried_until_accepted_and_signed_each_time() {
        let (url, mut seen) = flaky_receiver().await;
        let config = AlertsConfig {
            rules: vec![RuleConfig {
                name: "QueueFull".to_owned(),
                kind: RuleKind::QueueSizeAbove,
                threshold: 10.0,
                for_seconds: 0,
                window_seconds: 0,
                severity: Severity::Critical,
            }],
            notifiers: vec![NotifierConfig {
                kind: NotifierKind::Webhook,
                url,
                secret: Some("s3cret".to_owned()),
                max_attempts: 3,
                backoff_ms: 1,
            }],
            ..AlertsConfig::default()
        };
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let alerts = Alerts::new(config, Arc::new(ManualClock::new(1_700_000_000_000)), http);
        let shutdown = CancellationToken::new();
        let notifier = tokio::spawn(alerts.clone().run_notifier(shutdown.clone()));

        let changes = alerts.evaluate(&Observation {
            queue_size: 50,
            ..Observation::default()
        });
        assert!(
            matches!(changes.as_slice(), [AlertChange::Firing { .. }]),
            "{changes:?}"
        );

        for _ in 0..2 {
            let (headers, body) = seen.recv().await.unwrap();
            assert_eq!(headers["x-darkroom-signature"], sign("s3cret", &body).as_str());
            assert_eq!(headers["x-darkroom-event"], "alert");
            assert_eq!(headers["content-type"], "application/json");
            let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(payload["status"], "firing");
            assert_eq!(payload["alert"]["name"], "QueueFull");
        }
        // The second answer is in flight; shutdown lets the worker finish it.
        shutdown.cancel();
        notifier.await.unwrap();
        assert_eq!(
            alerts.deliveries(),
            DeliveryCounts {
                delivered: 1,
                failed: 0,
                retried: 1,
            }
        );
        assert!(seen.try_recv().is_err());
    }
}
