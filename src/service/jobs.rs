//! The jobs service: every rule about admitting, reading, listing, cancelling and
//! retrying a job, in one place, callable without HTTP. The API's handlers, the
//! dashboard's local mode and (through the API) the CLI all go through it.
//!
//! Admission, in order: the webhook URL is checked, the request is validated and
//! rendered ([`JobRequest::into_new_job`]), a ComfyUI backend must be configured
//! (else no job could ever run), and fewer than `api.max_queued` jobs may be
//! waiting; last, a caller's quotas ([`super::quotas`]) reserve the generation,
//! settled once the enqueue made (or did not make) the job. A submit may then wait
//! up to `api.max_wait_seconds` for the job to end.
//! Listings page through every status in [`LIST_ORDER`] with an opaque cursor.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use ulid::Ulid;

use super::ServiceError;
use crate::comfy::Templates;
use crate::dispatch::{Dispatcher, JobRequest, QUEUE};
use crate::queue::{Job, JobStatus, ListQuery, Queue, QueueError};
use crate::templates::TemplateLibrary;
use crate::users::{Principal, Role};

/// Order of the statuses when a listing spans all of them: live work first.
pub const LIST_ORDER: [JobStatus; 6] = [
    JobStatus::Running,
    JobStatus::Queued,
    JobStatus::Scheduled,
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Cancelled,
];

/// The admission limits (from `[api]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Submits are refused while this many jobs are queued.
    pub max_queued: u64,
    /// The longest a submit may wait for its job, in seconds.
    pub max_wait_seconds: u64,
}

/// One page of jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobPage {
    /// Without their payload; `GET /api/v1/jobs/{id}` has it.
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Which jobs to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobListing {
    /// One status, or all of them in [`LIST_ORDER`].
    pub status: Option<JobStatus>,
    /// 1..=500.
    pub limit: usize,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl JobListing {
    /// The first `limit` jobs of every status.
    pub fn newest(limit: usize) -> Self {
        Self {
            status: None,
            limit,
            cursor: None,
        }
    }
}

/// A submitted job.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// As it is now: finished if it ended within the wait.
    pub job: Job,
    /// False when an idempotency key matched an earlier job, which is returned.
    pub created: bool,
}

/// The jobs service; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    queue: Queue,
    dispatcher: Dispatcher,
    templates: TemplateLibrary,
    limits: JobLimits,
    /// Saved prompts and campaigns a request may name (absent: it may not).
    library: Option<crate::prompts::Library>,
    /// Where a job's webhook may point.
    targets: Arc<crate::outbound::TargetPolicy>,
    /// Each submitter's limits (absent: nobody is limited).
    quotas: Option<super::quotas::Quotas>,
    /// Resolves image parameters (absent: they are backend file names).
    inputs: Option<super::inputs::Inputs>,
}

impl Jobs {
    pub fn new(queue: Queue, dispatcher: Dispatcher, templates: TemplateLibrary, limits: JobLimits) -> Self {
        Self {
            queue,
            dispatcher,
            templates,
            limits,
            library: None,
            targets: Arc::default(),
            quotas: None,
            inputs: None,
        }
    }

    /// Holds each submitter to their quotas (`[quotas]`, `users set --quota`).
    #[must_use]
    pub fn with_quotas(mut self, quotas: super::quotas::Quotas) -> Self {
        self.quotas = Some(quotas);
        self
    }

    /// The quotas submits are held to, if any.
    pub fn quotas(&self) -> Option<&super::quotas::Quotas> {
        self.quotas.as_ref()
    }

    /// Resolves image parameters (`s3://`, URLs, base64, files) with `inputs`.
    #[must_use]
    pub fn with_inputs(mut self, inputs: super::inputs::Inputs) -> Self {
        self.inputs = Some(inputs);
        self
    }

    /// Lets webhooks reach what `targets` allows (default: no internal address).
    #[must_use]
    pub fn with_targets(mut self, targets: crate::outbound::TargetPolicy) -> Self {
        self.targets = Arc::new(targets);
        self
    }

    /// Lets requests name a saved prompt or a campaign of `library`.
    #[must_use]
    pub fn with_library(mut self, library: crate::prompts::Library) -> Self {
        self.library = Some(library);
        self
    }

    /// The queue jobs go to.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The workflow templates jobs can name, as they are now.
    pub fn templates(&self) -> Arc<Templates> {
        self.templates.current()
    }

    /// The live template set (reloads, saves, deletes).
    pub fn template_library(&self) -> &TemplateLibrary {
        &self.templates
    }

    /// Admits `request` and queues it; with `wait_seconds`, holds until the job
    /// ends or the wait is over, whichever comes first.
    pub async fn submit(
        &self,
        request: JobRequest,
        wait_seconds: Option<u64>,
    ) -> Result<Submitted, ServiceError> {
        self.submit_by(None, request, wait_seconds).await
    }

    /// [`Jobs::submit`], held to `who`'s quotas when there is a caller.
    async fn submit_by(
        &self,
        who: Option<&Principal>,
        request: JobRequest,
        wait_seconds: Option<u64>,
    ) -> Result<Submitted, ServiceError> {
        if let Some(w) = wait_seconds
            && w > self.limits.max_wait_seconds
        {
            return Err(ServiceError::invalid(
                "wait",
                format!(
                    "at most {} seconds (api.max_wait_seconds)",
                    self.limits.max_wait_seconds
                ),
            ));
        }
        let enqueued = self.admit(who, request).await?;
        if enqueued.created
            && let Some(library) = &self.library
            && let Err(e) = super::prompts::record(library, &enqueued.job).await
        {
            // The job is queued; only the prompt's stats miss it (until it is rated).
            tracing::warn!(job = %enqueued.job.id, error = %e, "cannot record the prompt run");
        }
        let job = match wait_seconds {
            Some(seconds) => {
                self.wait_for(enqueued.job.id, Duration::from_secs(seconds))
                    .await?
            }
            None => enqueued.job,
        };
        Ok(Submitted {
            job,
            created: enqueued.created,
        })
    }

    /// Job `id` once it has ended, or as it is when `wait` is over.
    pub async fn wait_for(&self, id: Ulid, wait: Duration) -> Result<Job, ServiceError> {
        // Subscribed before the first read, so an end between the two is not missed.
        let mut events = self.queue.subscribe();
        let mut job = self.get(id).await?;
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        while !job.status.is_terminal() {
            let refetch = tokio::select! {
                () = &mut deadline => break,
                e = events.recv() => match e {
                    Ok(e) => e.id == id,
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => break,
                },
            };
            if refetch {
                job = self.get(id).await?;
            }
        }
        Ok(job)
    }

    /// Every admission rule, then the enqueue.
    async fn admit(
        &self,
        who: Option<&Principal>,
        request: JobRequest,
    ) -> Result<crate::queue::Enqueued, ServiceError> {
        if let Some(url) = &request.webhook {
            check_url("webhook", url)?;
            self.targets
                .check_url(url)
                .await
                .map_err(|m| ServiceError::invalid("webhook", m))?;
        }
        let request = match &self.library {
            Some(library) => super::prompts::expand(library, request).await?,
            None if request.prompt.is_some() || request.campaign.is_some() => {
                return Err(ServiceError::invalid(
                    "prompt",
                    "this server has no prompt library",
                ));
            }
            None => request,
        };
        // One snapshot for the whole admission: a reload meanwhile changes nothing here.
        let templates = self.templates.current();
        let request = match &self.inputs {
            Some(inputs) => inputs.resolve(&templates, request).await?,
            None => request,
        };
        let routed = super::models::route(&request, &templates, &self.queue, &self.dispatcher).await?;
        let new = request.into_new_job_with(&templates, routed)?;
        if self.dispatcher.backends().is_empty() {
            return Err(ServiceError::NoBackend(
                "no ComfyUI backend is configured, so no job could ever run: set comfyui.backends or pass --comfyui URL"
                    .into(),
            ));
        }
        let queued = self.queue.counts().await?.queued;
        if queued >= self.limits.max_queued {
            return Err(ServiceError::QueueFull(format!(
                "{queued} jobs are already queued (api.max_queued = {}); try again later",
                self.limits.max_queued
            )));
        }
        // Last: the reservation is counted, and must be settled whatever happens.
        let (Some(quotas), Some(who)) = (&self.quotas, who) else {
            return Ok(self.queue.enqueue(new).await?);
        };
        let reservation = quotas.admit(who, &new).await?;
        let enqueued = self.queue.enqueue(new).await;
        quotas.settle(reservation, enqueued.as_ref().ok()).await;
        Ok(enqueued?)
    }

    /// One job, with its payload, progress, result and every attempt's error.
    pub async fn get(&self, id: Ulid) -> Result<Job, ServiceError> {
        let mut job = self
            .queue
            .get(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no job {id}")))?;
        self.with_etas(std::slice::from_mut(&mut job)).await;
        Ok(job)
    }

    /// Fills the expected start and finish of running and queued jobs (with a
    /// model catalog; a forecast that cannot be made leaves them out).
    async fn with_etas(&self, jobs: &mut [Job]) {
        let live = |j: &Job| matches!(j.status, JobStatus::Queued | JobStatus::Running);
        if self.dispatcher.models().0.is_empty() || !jobs.iter().any(live) {
            return;
        }
        match super::models::forecast(&self.queue, &self.dispatcher).await {
            Ok(f) => {
                for j in jobs.iter_mut() {
                    j.eta = f.etas.get(&j.id).copied();
                }
            }
            Err(e) => tracing::debug!(error = %e, "no job forecast"),
        }
    }

    /// A page of jobs: one status, or all of them in [`LIST_ORDER`].
    pub async fn list(&self, listing: JobListing) -> Result<JobPage, ServiceError> {
        let JobListing {
            status: only,
            limit,
            cursor,
        } = listing;
        if !(1..=500).contains(&limit) {
            return Err(ServiceError::invalid("limit", "must be 1..=500"));
        }
        // The cursor is `status` or `status.inner`: where in which status to go on.
        let (mut status, mut after) = match cursor.as_deref() {
            Some(c) => {
                let (st, inner) = c.split_once('.').unwrap_or((c, ""));
                let st = st
                    .parse::<JobStatus>()
                    .map_err(|_| ServiceError::invalid("cursor", "not a cursor this API returned"))?;
                (st, (!inner.is_empty()).then(|| inner.to_owned()))
            }
            None => (only.unwrap_or(LIST_ORDER[0]), None),
        };
        if only.is_some_and(|o| o != status) {
            return Err(ServiceError::invalid(
                "cursor",
                "belongs to a listing of another status",
            ));
        }
        let mut jobs = Vec::new();
        loop {
            let mut q = ListQuery::new(status, limit - jobs.len());
            q.queue = Some(QUEUE.into());
            q.after = after.take();
            let page = self.queue.list(q).await.map_err(|e| match e {
                QueueError::Invalid(m) => ServiceError::invalid("cursor", m),
                other => other.into(),
            })?;
            jobs.extend(page.jobs);
            if let Some(next) = page.next {
                self.with_etas(&mut jobs).await;
                return Ok(JobPage {
                    jobs,
                    next_cursor: Some(format!("{status}.{next}")),
                });
            }
            let following = LIST_ORDER
                .iter()
                .position(|x| *x == status)
                .and_then(|i| LIST_ORDER.get(i + 1));
            match (only, following) {
                (None, Some(next)) if jobs.len() < limit => status = *next,
                (None, Some(next)) => {
                    self.with_etas(&mut jobs).await;
                    return Ok(JobPage {
                        jobs,
                        next_cursor: Some(next.to_string()),
                    });
                }
                _ => {
                    self.with_etas(&mut jobs).await;
                    return Ok(JobPage {
                        jobs,
                        next_cursor: None,
                    });
                }
            }
        }
    }

    /// Cancels a job: at once when waiting, on ComfyUI when running.
    pub async fn cancel(&self, id: Ulid) -> Result<Job, ServiceError> {
        Ok(self.queue.cancel(id).await?)
    }

    /// Runs a failed or cancelled job again, with fresh attempts.
    pub async fn retry(&self, id: Ulid) -> Result<Job, ServiceError> {
        Ok(self.queue.retry(id).await?)
    }

    /// [`Jobs::submit`] for `who`, who owns the job.
    pub async fn submit_as(
        &self,
        who: &Principal,
        mut request: JobRequest,
        wait_seconds: Option<u64>,
    ) -> Result<Submitted, ServiceError> {
        request.owner = Some(who.user.clone());
        request.reader = Some(who.clone());
        self.submit_by(Some(who), request, wait_seconds).await
    }

    /// Job `id` if `who` may see it; to anyone else it does not exist.
    pub async fn get_as(&self, who: &Principal, id: Ulid) -> Result<Job, ServiceError> {
        let job = self.get(id).await?;
        if visible(who, &job) {
            Ok(job)
        } else {
            Err(ServiceError::NotFound(format!("no job {id}")))
        }
    }

    /// [`Jobs::list`] of the jobs `who` may see (a page may hold fewer than
    /// `limit` then; follow `next_cursor`).
    pub async fn list_as(&self, who: &Principal, listing: JobListing) -> Result<JobPage, ServiceError> {
        let mut page = self.list(listing).await?;
        page.jobs.retain(|j| visible(who, j));
        Ok(page)
    }

    pub async fn cancel_as(&self, who: &Principal, id: Ulid) -> Result<Job, ServiceError> {
        self.get_as(who, id).await?;
        self.cancel(id).await
    }

    pub async fn retry_as(&self, who: &Principal, id: Ulid) -> Result<Job, ServiceError> {
        self.get_as(who, id).await?;
        self.retry(id).await
    }
}

/// Whether `who` may see `job`: admins see every job, others the jobs they own.
pub fn visible(who: &Principal, job: &Job) -> bool {
    who.role == Role::Admin || job.owner.as_deref() == Some(who.user.as_str())
}

/// A job id as a client wrote it.
pub fn parse_id(id: &str) -> Result<Ulid, ServiceError> {
    id.parse()
        .map_err(|_| ServiceError::invalid("id", format!("{id:?} is not a job id (a 26-character ULID)")))
}

/// Checks that `url` is an http(s) URL.
pub fn check_url(field: &str, url: &str) -> Result<(), ServiceError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(ServiceError::invalid(
            field,
            format!("{url:?} is not an http:// or https:// URL"),
        )),
    }
}
