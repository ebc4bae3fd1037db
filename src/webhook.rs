//! Job webhooks: when a job that was submitted with a `webhook` URL finishes
//! (succeeded, failed or cancelled), its record is POSTed there as JSON — the
//! seeds' "callback to n8n" — retried with doubling backoff, and signed with
//! `X-Darkroom-Signature: sha256=<hex HMAC-SHA256 of the body>` when
//! `api.webhook_secret` is set.
//!
//! Delivery is at least once: a delivered (or given-up) webhook is marked in the
//! key-value cache, and at start every finished job with a webhook and no mark is
//! delivered again — so a restart, even a crash, between a job's end and its
//! webhook loses nothing. Receivers dedupe on `X-Darkroom-Delivery` (the job id).
//!
//! Also the one retrying POST ([`post_with_retries`]) that alert notifications use.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::deliver::backoff_ms;
use crate::alerts::sign;
use crate::cache::KvCache;
use crate::dispatch::JobSpec;
use crate::queue::{Job, JobStatus, ListQuery, Queue};
use crate::sync::lock;
use ulid::Ulid;

/// How long one attempt may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How a delivery is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_ms: u64,
    /// Shutdown also abandons a request in flight (job webhooks: they are sent
    /// again at start); otherwise it is let finish (alert notifications).
    pub stop_in_flight: bool,
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
    /// Counts a delivery given up on before any attempt (dropped, not encodable).
    pub fn add_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

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
        let sent = tokio::select! {
            biased;
            () = shutdown.cancelled(), if policy.stop_in_flight => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                return Err((attempt, PostError::Shutdown));
            }
            r = request.send() => r,
        };
        let error = match sent {
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
    /// Marks of delivered webhooks (`webhook:{job id}`), when kept.
    marks: Option<KvCache>,
    /// Jobs whose webhook is being delivered now (the start-up catch-up and the
    /// live events can both find one).
    sending: Mutex<HashSet<Ulid>>,
    /// Where webhooks may point: a URL naming an internal address literally is
    /// refused here (names are checked by the client's resolver).
    targets: crate::outbound::TargetPolicy,
}

/// How long a delivery mark is kept: longer than any job's result is.
const MARK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl Webhooks {
    /// Webhooks signed with `secret` (none when empty); with `marks`, deliveries
    /// are remembered so they survive restarts.
    pub fn new(http: reqwest::Client, secret: String, policy: RetryPolicy, marks: Option<KvCache>) -> Self {
        Self {
            inner: Arc::new(Inner {
                http,
                secret,
                policy,
                counts: Counters::default(),
                marks,
                sending: Mutex::new(HashSet::new()),
                targets: crate::outbound::TargetPolicy::open(),
            }),
        }
    }

    /// Refuses webhook URLs with an address `targets` forbids (the client should
    /// be [`crate::outbound::TargetPolicy::guard`]ed by the same policy).
    #[must_use]
    pub fn with_targets(self, targets: crate::outbound::TargetPolicy) -> Self {
        let mut inner = Arc::into_inner(self.inner).expect("with_targets before the webhooks are shared");
        inner.targets = targets;
        Self {
            inner: Arc::new(inner),
        }
    }

    fn mark_key(id: Ulid) -> String {
        format!("webhook:{id}")
    }

    async fn is_marked(&self, id: Ulid) -> bool {
        match &self.inner.marks {
            Some(kv) => kv.get(&Self::mark_key(id)).await.ok().flatten().is_some(),
            None => false,
        }
    }

    /// Delivers, once at a time per job, unless already delivered.
    async fn deliver_once(&self, url: String, job: Job, shutdown: CancellationToken) {
        let id = job.id;
        let fresh = lock(&self.inner.sending).insert(id);
        if !fresh {
            return;
        }
        if !self.is_marked(id).await {
            let finished = self.deliver(&url, job, &shutdown).await;
            if finished
                && let Some(kv) = &self.inner.marks
                && let Err(e) = kv.set(&Self::mark_key(id), b"1", Some(MARK_TTL)).await
            {
                tracing::warn!(job = %id, error = %e, "webhooks: cannot mark a delivery");
            }
        }
        {
            let mut s = lock(&self.inner.sending);
            s.remove(&id);
        }
    }

    /// Finished jobs with a webhook and no delivery mark: left over by a restart.
    async fn catch_up(&self, queue: &Queue, tasks: &TaskTracker, shutdown: &CancellationToken) {
        if self.inner.marks.is_none() {
            return;
        }
        for status in [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Cancelled] {
            let mut after = None;
            loop {
                let mut q = ListQuery::new(status, 500);
                q.after = after.take();
                let page = match queue.list(q).await {
                    Ok(p) => p,
                    Err(e) => return tracing::warn!(error = %e, "webhooks: cannot list finished jobs"),
                };
                for listed in page.jobs {
                    if self.is_marked(listed.id).await {
                        continue;
                    }
                    let Ok(Some(job)) = queue.get(listed.id).await else {
                        continue;
                    };
                    if let Some(url) = webhook_of(&job.payload) {
                        let (this, shutdown) = (self.clone(), shutdown.clone());
                        tasks.spawn(async move { this.deliver_once(url, job, shutdown).await });
                    }
                }
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
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
            // Subscribed before the catch-up, so no job falls between the two.
            let mut events = queue.subscribe();
            this.catch_up(&queue, &tasks, &shutdown).await;
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
                tasks.spawn(async move { this.deliver_once(url, job, shutdown).await });
            }
            tasks.close();
            tasks.wait().await;
        })
    }

    /// Posts the webhook; true when it is done with (delivered, or out of
    /// attempts), false when shutdown interrupted it (it is sent again at start).
    async fn deliver(&self, url: &str, mut job: Job, shutdown: &CancellationToken) -> bool {
        let i = &self.inner;
        strip_workflow(&mut job.payload);
        let event = format!("job.{}", job.status);
        let body = match serde_json::to_vec(&JobWebhook {
            event: event.clone(),
            job: &job,
        }) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(job = %job.id, error = %e, "webhooks: cannot encode");
                return true;
            }
        };
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("x-darkroom-event", event),
            ("x-darkroom-delivery", job.id.to_string()),
        ];
        if !i.secret.is_empty() {
            headers.push(("x-darkroom-signature", sign(&i.secret, &body)));
        }
        if let Err(why) = i.targets.check_literal(url) {
            tracing::warn!(job = %job.id, url, "webhook not sent: {why}");
            i.counts.add_failed();
            return true;
        }
        match post_with_retries(&i.http, url, &body, &headers, i.policy, &i.counts, shutdown).await {
            Ok(attempts) => {
                tracing::debug!(job = %job.id, url, attempts, "webhook delivered");
                true
            }
            Err((_, PostError::Shutdown)) => false,
            Err((attempts, error)) => {
                tracing::warn!(job = %job.id, url, attempts, %error, "webhook not delivered");
                true
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
