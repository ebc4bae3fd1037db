//! The inbox's running loop: a catch-up over every watched prefix at start (and
//! whenever an event stream fell behind), then the store's `Written` events (a
//! picture arrived: submit its job) and the queue's job events (an inbox job
//! ended: [`super::finish`]). One loop, one thing at a time, so two sightings of
//! one upload (the catch-up and its event) never race: the second submit finds
//! the first job by its idempotency key. A submit refused for a passing reason
//! (queue full) is tried again by a catch-up when the next job ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{InboxRule, Rules, job_key, keys_under, rule_for, stem};
use crate::dispatch::{Dispatcher, JobRequest};
use crate::object_store::{ObjectStore, StorageError, StorageEvent};
use crate::queue::JobEvent;
use crate::service::{Jobs, ServiceError};

/// Largest sidecar read, in bytes.
const MAX_SIDECAR: u64 = 64 * 1024;

/// What the inbox works with.
pub(super) struct Ingest {
    pub rules: Rules,
    pub storage: ObjectStore,
    pub jobs: Jobs,
    pub dispatcher: Dispatcher,
    /// A submit failed for a passing reason (queue full, a store down): the next
    /// job to end triggers a catch-up that submits it again.
    pub deferred: AtomicBool,
}

/// Creates the rules' buckets and starts the loop (and the local directories'
/// watches); nothing to do without rules.
pub async fn start(
    rules: Rules,
    (storage, jobs, dispatcher): (ObjectStore, Jobs, Dispatcher),
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    if rules.is_empty() {
        return Ok(());
    }
    for rule in rules.iter() {
        match storage.create_bucket(&rule.bucket).await {
            Ok(()) | Err(StorageError::BucketAlreadyExists(_)) => {}
            Err(e) => anyhow::bail!("inbox bucket {}: {e}", rule.bucket),
        }
    }
    // Subscribed before the catch-up lists anything, so nothing falls between.
    let writes = storage.subscribe();
    let ends = jobs.queue().subscribe();
    for rule in rules.iter() {
        if let Some(dir) = &rule.dir {
            super::dir::spawn(rule.clone(), dir, storage.clone(), shutdown.clone(), tasks)?;
        }
    }
    let ingest = Arc::new(Ingest {
        rules,
        storage,
        jobs,
        dispatcher,
        deferred: AtomicBool::new(false),
    });
    tasks.spawn(ingest.run(writes, ends, shutdown));
    Ok(())
}

impl Ingest {
    async fn run(
        self: Arc<Self>,
        mut writes: broadcast::Receiver<StorageEvent>,
        mut ends: broadcast::Receiver<JobEvent>,
        shutdown: CancellationToken,
    ) {
        self.catch_up().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                w = writes.recv() => match w {
                    Ok(StorageEvent::Written { bucket, key, etag }) => self.ingest(&bucket, &key, &etag).await,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.catch_up().await,
                    Err(RecvError::Closed) => return,
                },
                e = ends.recv() => match e {
                    Ok(e) if e.to.is_terminal() => {
                        self.ended(e.id).await;
                        if self.deferred.swap(false, Ordering::Relaxed) {
                            self.catch_up().await;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.catch_up().await,
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }

    /// Submits every picture still under a watched prefix: new ones get their
    /// job, the others find theirs (and an ended one is finished).
    async fn catch_up(&self) {
        for rule in self.rules.iter() {
            match keys_under(&self.storage, &rule.bucket, &rule.prefix()).await {
                Ok(keys) => {
                    for (key, etag) in keys {
                        self.ingest(&rule.bucket, &key, &etag).await;
                    }
                }
                Err(e) => tracing::warn!(inbox = %rule.name(), error = %e, "inbox catch-up cannot list"),
            }
        }
    }

    /// A version of `bucket/key` was written: its job, if it is an inbox picture.
    async fn ingest(&self, bucket: &str, key: &str, etag: &str) {
        let Some((rule, name)) = rule_for(&self.rules, bucket, key) else {
            return;
        };
        let request = match self.request(rule, key, &name, etag).await {
            Ok(Some(r)) => r,
            Ok(None) => return, // replaced or gone meanwhile: its own event follows
            Err(message) => {
                let error = serde_json::json!({ "source": format!("s3://{bucket}/{key}"), "error": message });
                super::finish::give_up(self, rule, &name, &error).await;
                return;
            }
        };
        match self.jobs.submit(request, None).await {
            Ok(s) if s.job.status.is_terminal() => super::finish::finish(self, &s.job).await,
            Ok(s) => {
                if s.created {
                    tracing::info!(inbox = %rule.name(), %key, job = %s.job.id, "inbox picture queued");
                }
            }
            Err(ServiceError::Invalid { field, message }) => {
                let error = serde_json::json!({
                    "source": format!("s3://{bucket}/{key}"),
                    "field": field,
                    "error": message,
                });
                super::finish::give_up(self, rule, &name, &error).await;
            }
            // Queue full, a store down: the picture stays; the next job to end (or
            // the next start) catches it up.
            Err(e) => {
                self.deferred.store(true, Ordering::Relaxed);
                tracing::warn!(inbox = %rule.name(), %key, error = %e, "cannot submit an inbox picture");
            }
        }
    }

    /// The job request of picture `name` (`key`, version `etag`): the rule's
    /// parameters, then its sidecar's, then its `darkroom-*` metadata. `None`
    /// when the object is no longer that version.
    async fn request(
        &self,
        rule: &InboxRule,
        key: &str,
        name: &str,
        etag: &str,
    ) -> Result<Option<JobRequest>, String> {
        let meta = match self.storage.head_object(&rule.bucket, key).await {
            Ok(m) if m.etag == etag => m,
            Ok(_) | Err(StorageError::NoSuchKey { .. }) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let mut params = rule.params.clone();
        let sidecar = format!("{}{}.json", rule.prefix(), stem(name));
        if let Some(over) = self.sidecar(&rule.bucket, &sidecar).await? {
            params.extend(over);
        }
        for (k, v) in &meta.attrs.user_metadata {
            if let Some(param) = k.to_ascii_lowercase().strip_prefix("darkroom-") {
                let value = serde_json::from_str(v).unwrap_or_else(|_| Value::from(v.clone()));
                params.insert(param.replace('-', "_"), value);
            }
        }
        params.insert(
            rule.param.clone(),
            Value::from(format!("s3://{}/{key}", rule.bucket)),
        );
        let mut request = JobRequest::template(rule.template.clone(), params);
        request.owner.clone_from(&rule.owner);
        request.idempotency_key = Some(job_key(&rule.bucket, key, etag));
        Ok(Some(request))
    }

    /// The parameters of sidecar `key`, if there is one.
    async fn sidecar(&self, bucket: &str, key: &str) -> Result<Option<Map<String, Value>>, String> {
        let bytes = match crate::service::inputs::read_object(&self.storage, bucket, key, MAX_SIDECAR).await {
            Ok(b) => b,
            Err(m) if m == "no such object" => return Ok(None),
            Err(m) => return Err(format!("sidecar {key}: {m}")),
        };
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(params)) => Ok(Some(params)),
            Ok(_) => Err(format!("sidecar {key}: must be a JSON object of parameters")),
            Err(e) => Err(format!("sidecar {key}: {e}")),
        }
    }

    /// Job `id` ended: finished here if it is an inbox job.
    async fn ended(&self, id: ulid::Ulid) {
        match self.jobs.queue().get(id).await {
            Ok(Some(job))
                if job
                    .idempotency_key
                    .as_deref()
                    .is_some_and(|k| k.starts_with(super::KEY_PREFIX)) =>
            {
                super::finish::finish(self, &job).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(job = %id, error = %e, "inbox cannot read an ended job"),
        }
    }
}
