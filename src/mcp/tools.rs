//! The MCP tools. Each takes a parameter struct whose JSON schema (schemars)
//! is the tool's input schema, calls the [`Link`](crate::link::Link) and answers
//! with JSON text (and, for `generate_image`, the first image when it is small).
//! No rule lives here: limits, parameter checks and state rules are the jobs
//! service's, and its refusals come back as tool errors ([`super::error`]).

use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use rmcp::model::{
    CallToolResult, ContentBlock, ProgressNotificationParam, ProgressToken, RequestMetaObject,
};
use rmcp::service::RequestContext;
use rmcp::{Peer, RoleServer, handler::server::wrapper::Parameters, schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::McpServer;
use super::error::{invalid, refused};
use crate::dispatch::{JobRequest, JobResult, OutputObject};
use crate::events::{EventKind, StreamItem};
use crate::link::{EventStream, LinkError};
use crate::queue::{Job, JobStatus};
use crate::service::JobListing;

/// How long `generate_image` waits when not told.
pub const DEFAULT_WAIT_SECONDS: u64 = 60;
/// The largest first image `generate_image` returns inline (base64).
pub const INLINE_IMAGE_BYTES: u64 = 1 << 20;
/// How often a wait re-reads the job when no event says it changed (a safety
/// net: events normally wake it).
const REFETCH_EVERY: Duration = Duration::from_secs(2);

/// `generate_image`'s arguments: a job request plus how long to wait.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateImage {
    /// A workflow template's name (`list_templates` lists them with their
    /// parameters). Give this or `workflow`.
    #[serde(default)]
    pub template: Option<String>,
    /// The template's parameters by name, e.g. {"prompt": "a red fox", "width": 768}.
    /// Each has a type and range (see `list_templates`); unknown names are refused;
    /// left out, a parameter takes its default.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// A full ComfyUI API-format workflow ({"node id": {"class_type", "inputs"}}),
    /// run as it is, instead of a template.
    #[serde(default)]
    pub workflow: Option<Map<String, Value>>,
    /// A catalog model (see `list_models`) for the template, or "auto" to let
    /// darkroom choose by `purpose`, `urgency` and `min_quality`.
    #[serde(default)]
    pub model: Option<String>,
    /// What the image is for (e.g. thumbnail, hero_image), for model "auto".
    #[serde(default)]
    pub purpose: Option<String>,
    /// immediate (< 30 s), standard (< 2 min) or flexible (best quality), for model "auto".
    #[serde(default)]
    pub urgency: Option<String>,
    /// fast, medium, high or ultra: the least quality "auto" may choose.
    #[serde(default)]
    pub min_quality: Option<String>,
    /// A saved prompt from list_prompts, "name" (its latest version) or "name@3":
    /// its template and parameters, `params` overriding; instead of `template`.
    #[serde(default)]
    pub prompt: Option<String>,
    /// An A/B campaign: it picks the saved prompt version to run.
    #[serde(default)]
    pub campaign: Option<String>,
    /// Higher runs first (default 0).
    #[serde(default)]
    pub priority: Option<i32>,
    /// Reuse the stored result of an identical workflow (default true).
    #[serde(default)]
    pub cache: Option<bool>,
    /// A repeated call with the same key returns the first job instead of a new one.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Seconds to wait for the job to finish (default 60; at most the daemon's
    /// api.max_wait_seconds; 0 returns at once). A job still running then goes
    /// on: follow it with `get_job`.
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

/// One job, by id.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobId {
    /// The job's id (a 26-character ULID, as `generate_image` and `list_jobs` return).
    pub id: String,
}

/// Which jobs to list.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListJobs {
    /// Only this status: queued, scheduled, running, succeeded, failed or
    /// cancelled (default: all, live work first).
    #[serde(default)]
    pub status: Option<String>,
    /// How many (1..=500, default 20).
    #[serde(default)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// One folder of a bucket.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListOutputs {
    /// The bucket. Outputs go to comfyui.output_bucket (`comfyui-outputs` by
    /// default; `get_status` lists the buckets), under `jobs/{job id}/`.
    pub bucket: String,
    /// The folder, ending in `/` (`jobs/`, `jobs/01J.../`); empty for the top.
    #[serde(default)]
    pub prefix: String,
}

/// JSON text content.
fn json_text<T: serde::Serialize>(value: &T) -> ContentBlock {
    ContentBlock::text(
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")),
    )
}

fn answer<T: serde::Serialize>(r: Result<T, LinkError>) -> CallToolResult {
    match r {
        Ok(v) => CallToolResult::success(vec![json_text(&v)]),
        Err(e) => refused(&e),
    }
}

#[tool_router(vis = "pub(super)")]
impl McpServer {
    #[tool(
        description = "Generate images: run a workflow template (see list_templates) with parameters, or a raw ComfyUI API-format workflow, as a darkroom job. Waits up to wait_seconds (default 60) with progress notifications, then returns the job as JSON — its status and, once succeeded, result.outputs with each image's bucket, key, size and a presigned download URL — plus the first image itself when it is at most 1 MiB. A job still running when the wait ends goes on; follow it with get_job. A refused request names the field at fault (e.g. params.width).",
        annotations(title = "Generate images", read_only_hint = false, open_world_hint = false)
    )]
    async fn generate_image(
        &self,
        Parameters(args): Parameters<GenerateImage>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let this = self.acting(&ctx);
        let wait = args
            .wait_seconds
            .unwrap_or(DEFAULT_WAIT_SECONDS)
            .min(this.max_wait_seconds);
        let request = JobRequest {
            template: args.template,
            params: args.params,
            workflow: args.workflow.map(Value::Object),
            priority: args.priority,
            idempotency_key: args.idempotency_key,
            cache: args.cache,
            model: args.model,
            purpose: args.purpose,
            urgency: args.urgency,
            min_quality: args.min_quality,
            prompt: args.prompt,
            campaign: args.campaign,
            ..JobRequest::default()
        };
        // Subscribed before the submit, so the end of a quick job is not missed;
        // without events (an old daemon, a proxy), the wait re-reads the job.
        let events = match wait {
            0 => None,
            _ => this.link.events(None).await.ok(),
        };
        let job = match this.link.submit(request).await {
            Ok(job) => job,
            Err(e) => return refused(&e),
        };
        let progress = meta.get_progress_token().map(|token| Progress {
            peer,
            token,
            sent: None,
        });
        let job = match this
            .follow(job, Duration::from_secs(wait), events, progress)
            .await
        {
            Ok(job) => job,
            Err(e) => return refused(&e),
        };
        this.generated(job, wait).await
    }

    #[tool(
        description = "One job in full by id: status, progress, attempts, errors and, once succeeded, result.outputs with presigned URLs.",
        annotations(title = "Get a job", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_job(
        &self,
        Parameters(JobId { id }): Parameters<JobId>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(self.acting(&ctx).link.job(&id).await)
    }

    #[tool(
        description = "A page of jobs, live work first (running, queued, scheduled, then succeeded, failed, cancelled), or only one status. Pass next_cursor back as cursor for the next page.",
        annotations(title = "List jobs", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_jobs(
        &self,
        Parameters(args): Parameters<ListJobs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let status = match args.status.as_deref().map(str::parse::<JobStatus>).transpose() {
            Ok(s) => s,
            Err(e) => return invalid("status", &e.to_string()),
        };
        let listing = JobListing {
            status,
            limit: args.limit.unwrap_or(20),
            cursor: args.cursor,
        };
        answer(self.acting(&ctx).link.jobs(listing).await)
    }

    #[tool(
        description = "Cancel a job: at once when it is waiting, on ComfyUI when it is running (it then ends as cancelled). Returns the job.",
        annotations(title = "Cancel a job", destructive_hint = true, open_world_hint = false)
    )]
    async fn cancel_job(
        &self,
        Parameters(JobId { id }): Parameters<JobId>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(self.acting(&ctx).link.cancel(&id).await)
    }

    #[tool(
        description = "Run a failed or cancelled job again, with fresh attempts. Returns the job.",
        annotations(title = "Retry a job", destructive_hint = false, open_world_hint = false)
    )]
    async fn retry_job(
        &self,
        Parameters(JobId { id }): Parameters<JobId>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(self.acting(&ctx).link.retry(&id).await)
    }

    #[tool(
        description = "The workflow templates generate_image can run, each with its description and parameters (type, default, min/max or choices).",
        annotations(title = "List templates", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_templates(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        answer(self.acting(&ctx).link.templates().await)
    }

    #[tool(
        description = "The team's saved prompts generate_image can run by name (prompt): each one's template, latest version, tags and how it has done — uses, success rate, mean and p95 seconds, mean rating.",
        annotations(title = "List saved prompts", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_prompts(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        answer(self.acting(&ctx).link.prompts().await)
    }

    #[tool(
        description = "The model catalog generate_image can name (model) or choose from (model \"auto\"): each model's quality, VRAM, recommended steps, max resolution and use cases, which backends have it and have it loaded, and its learned run time. Empty when the daemon has no catalog (then a template names its checkpoint file).",
        annotations(title = "List models", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_models(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        answer(self.acting(&ctx).link.models().await)
    }

    #[tool(
        description = "One folder of a bucket of stored outputs: its sub-folders (prefixes) and objects (key, size, content type). Outputs of job X are under jobs/X/ in the output bucket; read one as the resource darkroom://outputs/{bucket}/{key}.",
        annotations(title = "List outputs", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_outputs(
        &self,
        Parameters(args): Parameters<ListOutputs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(self.acting(&ctx).link.objects(&args.bucket, &args.prefix).await)
    }

    #[tool(
        description = "darkroom's status: queue counts, ComfyUI backends and their health, GPUs, storage, cache and the pending or firing alerts.",
        annotations(title = "Get status", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_status(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        answer(self.acting(&ctx).link.status().await)
    }
}

/// Where progress notifications go: the caller's progress token.
struct Progress {
    peer: Peer<RoleServer>,
    token: ProgressToken,
    /// The last percentage sent (each must be larger than the one before).
    sent: Option<u32>,
}

impl Progress {
    /// Tells the client how far the job is, when that moved.
    async fn report(&mut self, job: &Job) {
        let fraction = job.progress.as_ref().map_or(0.0, |p| p.fraction);
        let percent = match job.status {
            JobStatus::Succeeded => 100,
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            _ => (fraction.clamp(0.0, 1.0) * 100.0).floor() as u32,
        };
        if self.sent.is_some_and(|s| percent <= s) {
            return;
        }
        self.sent = Some(percent);
        let message = job
            .progress
            .as_ref()
            .and_then(|p| p.message.clone())
            .map_or_else(|| job.status.to_string(), |m| format!("{}: {m}", job.status));
        let param = ProgressNotificationParam::new(self.token.clone(), f64::from(percent))
            .with_total(100.0)
            .with_message(message);
        if let Err(e) = self.peer.notify_progress(param).await {
            tracing::debug!(error = %e, "mcp: progress notification not sent");
        }
    }
}

impl McpServer {
    /// `job` once it has ended, or as it is when `wait` is over, reporting its
    /// progress on the way.
    async fn follow(
        &self,
        mut job: Job,
        wait: Duration,
        events: Option<EventStream>,
        mut progress: Option<Progress>,
    ) -> Result<Job, LinkError> {
        let deadline = Instant::now() + wait;
        let mut events: EventStream = events.unwrap_or_else(|| Box::pin(futures::stream::pending()));
        let mut refetch = tokio::time::interval_at(Instant::now() + REFETCH_EVERY, REFETCH_EVERY);
        let id = job.id;
        loop {
            if let Some(p) = progress.as_mut() {
                p.report(&job).await;
            }
            if job.status.is_terminal() || Instant::now() >= deadline {
                return Ok(job);
            }
            let changed = tokio::select! {
                () = tokio::time::sleep_until(deadline) => true,
                _ = refetch.tick() => true,
                item = events.next() => match item {
                    Some(Ok(StreamItem::Event(e))) => matches!(&e.kind, EventKind::Job(j) if j.id == id),
                    Some(Ok(StreamItem::Resync(_))) => true,
                    // The stream ended (a dropped connection): re-read on the timer.
                    Some(Err(_)) | None => {
                        events = Box::pin(futures::stream::pending());
                        true
                    }
                },
            };
            if changed {
                job = self.link.job(&id.to_string()).await?;
            }
        }
    }

    /// `generate_image`'s answer for `job` after waiting `wait` seconds.
    async fn generated(&self, mut job: Job, wait: u64) -> CallToolResult {
        // The rendered workflow is noise to an agent; get_job has it.
        job.payload = Value::Null;
        match job.status {
            JobStatus::Succeeded => {
                let mut content = vec![json_text(&job)];
                if let Some(image) = first_image(&job) {
                    match self
                        .link
                        .read_output(&image.bucket, &image.key, INLINE_IMAGE_BYTES)
                        .await
                    {
                        Ok(bytes) => content.push(ContentBlock::image(
                            base64::engine::general_purpose::STANDARD.encode(bytes),
                            image.content_type.clone(),
                        )),
                        Err(e) => tracing::warn!(job = %job.id, error = %e, "mcp: first image not inlined"),
                    }
                }
                CallToolResult::success(content)
            }
            JobStatus::Failed | JobStatus::Cancelled => {
                let why = job
                    .errors
                    .last()
                    .map_or("no error recorded", |e| e.message.as_str());
                let line = format!("generation_failed: job {} {}: {why}", job.id, job.status);
                CallToolResult::error(vec![ContentBlock::text(line), json_text(&job)])
            }
            _ => {
                let line = format!(
                    "job {} is still {} after {wait} s; it goes on: follow it with get_job",
                    job.id, job.status
                );
                CallToolResult::success(vec![ContentBlock::text(line), json_text(&job)])
            }
        }
    }
}

/// The first image a succeeded job stored, if it is small enough to inline.
fn first_image(job: &Job) -> Option<OutputObject> {
    let result: JobResult = serde_json::from_value(job.result.clone()?).ok()?;
    result
        .outputs
        .into_iter()
        .find(|o| o.content_type.starts_with("image/"))
        .filter(|o| o.size <= INLINE_IMAGE_BYTES)
}
