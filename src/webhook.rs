//! Job webhooks: when a job that was submitted with a `webhook` URL finishes
//! (succeeded, failed or cancelled), its record is POSTed there as JSON — the
//! seeds' "callback to n8n" — retried with doubling backoff, and signed with
//! `X-Darkroom-Signature: sha256=<hex HMAC-SHA256 of the body>` when
//! `api.webhook_secret` is set.
//!
//! Also the one retrying POST ([`post_with_retries`]) that alert notifications use.
//! Deliveries live in memory: a restart forgets the ones still being retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::deliver::backoff_ms;
use crate::alerts::sign;
use crate::dispatch::JobSpec;
use crate::queue::{Job, Queue};

/// How long one attempt may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How a delivery is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_ms: u64,
}

/// Why a POST did not go through.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("HTTP {0}")]
    Status(u16),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("shutting down")]
    Shutdown,
}

/// Delivery outcomes, as counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
}

impl Counters {
    /// (delivered, failed, retried).
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.retried.load(Ordering::Relaxed),
        )
    }
}

/// POSTs `body` to `url` until a 2xx answer, at most `policy.max_attempts` times,
/// waiting `backoff_ms * 2^(n-1)` (capped at 60 s) between tries; counts each
/// outcome in `counts`. Returns the attempts made, or the last error.
pub async fn post_with_retries(
    http: &reqwest::Client,
    url: &str,
    body: &[u8],
    headers: &[(&str, String)],
    policy: RetryPolicy,
    counts: &Counters,
    shutdown: &CancellationToken,
) -> Result<u32, (u32, PostError)> {
    let attempts = policy.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        let mut request = http.post(url).timeout(REQUEST_TIMEOUT).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let error = match request.send().await {
            Ok(r) if r.status().is_success() => {
                counts.delivered.fetch_add(1, Ordering::Relaxed);
                return Ok(attempt);
            }
            Ok(r) => PostError::Status(r.status().as_u16()),
            Err(e) => PostError::Http(e),
        };
        if attempt >= attempts {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            return Err((attempt, error));
        }
        counts.retried.fetch_add(1, Ordering::Relaxed);
        let delay = Duration::from_millis(backoff_ms(policy.backoff_ms, attempt));
        tracing::debug!(url, attempt, %error, ?delay, "POST failed; retrying");
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                return Err((attempt, PostError::Shutdown));
            }
            () = tokio::time::sleep(delay) => {}
        }
        attempt += 1;
    }
}

/// What a job webhook receives.
#[derive(Debug, Clone, Serialize)]
pub struct JobWebhook<'a> {
    /// `job.succeeded`, `job.failed` or `job.cancelled`.
    pub event: String,
    /// The job as `GET /api/v1/jobs/{id}` returns it, without the workflow.
    pub job: &'a Job,
}

/// Sends job webhooks; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    secret: String,
    policy: RetryPolicy,
    counts: Counters,
}

impl Webhooks {
    pub fn new(http: reqwest::Client, secret: String, policy: RetryPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                http,
                secret,
                policy,
                counts: Counters::default(),
            }),
        }
    }

    /// (delivered, failed, retried) since start.
    pub fn counts(&self) -> (u64, u64, u64) {
        self.inner.counts.snapshot()
    }

    /// Follows the queue and delivers the webhook of every job that finishes.
    pub fn spawn(&self, queue: Queue, shutdown: CancellationToken) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let tasks = TaskTracker::new();
            let mut events = queue.subscribe();
            loop {
                let event = tokio::select! {
                    () = shutdown.cancelled() => break,
                    e = events.recv() => e,
                };
                let id = match event {
                    Ok(e) if e.to.is_terminal() && e.from != Some(e.to) => e.id,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "webhooks: fell behind the queue's events; some webhooks are not sent"
                        );
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                let job = match queue.get(id).await {
                    Ok(Some(job)) => job,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(job = %id, error = %e, "webhooks: cannot read the job");
                        continue;
                    }
                };
                let Some(url) = webhook_of(&job.payload) else {
                    continue;
                };
                let (this, shutdown) = (this.clone(), shutdown.clone());
                tasks.spawn(async move { this.deliver(&url, job, &shutdown).await });
            }
            tasks.close();
            tasks.wait().await;
        })
    }

    async fn deliver(&self, url: &str, mut job: Job, shutdown: &CancellationToken) {
        let i = &self.inner;
        strip_workflow(&mut job.payload);
        let event = format!("job.{}", job.status);
        let body = match serde_json::to_vec(&JobWebhook {
            event: event.clone(),
            job: &job,
        }) {
            Ok(b) => b,
            Err(e) => return tracing::error!(job = %job.id, error = %e, "webhooks: cannot encode"),
        };
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("x-darkroom-event", event),
            ("x-darkroom-delivery", job.id.to_string()),
        ];
        if !i.secret.is_empty() {
            headers.push(("x-darkroom-signature", sign(&i.secret, &body)));
        }
        match post_with_retries(&i.http, url, &body, &headers, i.policy, &i.counts, shutdown).await {
            Ok(attempts) => tracing::debug!(job = %job.id, url, attempts, "webhook delivered"),
            Err((attempts, error)) => {
                tracing::warn!(job = %job.id, url, attempts, %error, "webhook not delivered");
            }
        }
    }
}

/// The `webhook` of a darkroom job payload.
fn webhook_of(payload: &Value) -> Option<String> {
    serde_json::from_value::<JobSpec>(payload.clone())
        .ok()
        .and_then(|spec| spec.webhook)
}

/// Keeps the request's template and parameters, drops the (large) workflow.
fn strip_workflow(payload: &mut Value) {
    if let Some(map) = payload.as_object_mut() {
        map.remove("workflow");
    }
}
