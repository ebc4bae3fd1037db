//! Where a front end's data comes from and its actions go, whether the daemon is
//! in this process or behind its HTTP API: [`Link`], with two implementations.
//! [`RemoteLink`] is the HTTP API and its Server-Sent Events (the typed
//! [`ApiClient`]); [`LocalLink`] calls the service layer in-process and reads the
//! event hub's stream directly. Both hand back the same Rust types and a typed
//! [`LinkError`], so everything above this module is one code path, and no JSON
//! is made inside the process. The dashboard ([`crate::dash`]) and the MCP server
//! ([`crate::mcp`]) both work through it.

use std::pin::Pin;

use async_trait::async_trait;
use futures::{Stream, StreamExt};

use crate::client::{ApiClient, ClientError};
use crate::dispatch::{JobRequest, LivePreview};
use crate::events::{Event, ResyncNotice, StreamItem};
use crate::queue::Job;
use crate::service::browse::Folder;
use crate::service::jobs::parse_id;
use crate::service::pictures::{OutputPicture, ThumbnailFormat};
use crate::service::prompts::{PromptDetails, PromptFilter, PromptSummary};
use crate::service::quotas::{UsageQuery, UsageReport};
use crate::service::{
    JobListing, JobPage, LogPage, ObjectPage, PresignedUrl, ServiceError, Services, TemplateInfo,
};
use crate::status::StatusSnapshot;

/// The event stream; it ends when the connection does.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamItem, LinkError>> + Send>>;

/// A call over the link that failed: the service refused it (local), or the API
/// did or could not be reached (remote).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Remote(#[from] ClientError),
    /// The service's own words, with the field it names.
    #[error("{}", local_text(.0))]
    Local(#[from] ServiceError),
}

impl LinkError {
    /// darkroom's error code: the service's (`invalid_request`, `not_found`, ...),
    /// the API's, or `unreachable` / `bad_answer` when the API could not be used.
    pub fn code(&self) -> &str {
        match self {
            Self::Local(e) => e.code(),
            Self::Remote(ClientError::Api { code, .. }) if !code.is_empty() => code,
            Self::Remote(ClientError::Api { .. }) => "api_error",
            Self::Remote(ClientError::Unreachable { .. }) => "unreachable",
            Self::Remote(ClientError::Decode(_)) => "bad_answer",
            Self::Remote(ClientError::Invalid(_)) => "invalid_request",
        }
    }

    /// The request field at fault, when the error names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Local(e) => e.field(),
            Self::Remote(ClientError::Api { field, .. }) => field.as_deref(),
            Self::Remote(_) => None,
        }
    }

    /// The words without the field (the local service's own message; an
    /// internal error's cause too, for the caller to decide whether to show it).
    pub fn message(&self) -> String {
        match self {
            Self::Local(e) => e.to_string(),
            Self::Remote(ClientError::Api { message, .. }) => message.clone(),
            Self::Remote(e) => e.to_string(),
        }
    }

    /// A fault inside this process's daemon, whose text is for the log only.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Local(ServiceError::Internal(_)))
    }
}

/// A service error as the dashboard shows it (the field named, as the HTTP API
/// does; an internal error's cause too, since the operator owns this process).
fn local_text(e: &ServiceError) -> String {
    match e.field() {
        Some(f) => format!("{e} (field `{f}`)"),
        None => e.to_string(),
    }
}

/// What the front ends need from a daemon.
#[async_trait]
pub trait Link: Send + Sync + 'static {
    /// Where it is attached (`local` or the URL).
    fn describe(&self) -> String;
    async fn status(&self) -> Result<StatusSnapshot, LinkError>;
    /// A page of jobs; without a status, the newest work first (running, queued,
    /// ... then finished).
    async fn jobs(&self, listing: JobListing) -> Result<JobPage, LinkError>;
    async fn job(&self, id: &str) -> Result<Job, LinkError>;
    async fn templates(&self) -> Result<Vec<TemplateInfo>, LinkError>;
    /// The model catalog, where each model is, learned timings, swaps.
    async fn models(&self) -> Result<crate::service::models::ModelsReport, LinkError>;
    async fn logs(&self, after: u64) -> Result<LogPage, LinkError>;
    async fn events(&self, last_id: Option<u64>) -> Result<EventStream, LinkError>;
    async fn submit(&self, request: JobRequest) -> Result<Job, LinkError>;
    async fn cancel(&self, id: &str) -> Result<Job, LinkError>;
    async fn retry(&self, id: &str) -> Result<Job, LinkError>;
    async fn objects(&self, bucket: &str, prefix: &str) -> Result<ObjectPage, LinkError>;
    async fn presign(&self, bucket: &str, key: &str) -> Result<PresignedUrl, LinkError>;
    /// An output's bytes, refused past `limit` bytes.
    async fn read_output(&self, bucket: &str, key: &str, limit: u64) -> Result<bytes::Bytes, LinkError>;
    /// A PNG thumbnail of output `n` (from 0) of job `id`, fitting `size` x `size`.
    async fn thumbnail(&self, id: &str, n: usize, size: u32) -> Result<OutputPicture, LinkError>;
    /// The live preview of running job `id`; `None` while its newest frame is
    /// still `newer_than`.
    async fn preview(&self, id: &str, newer_than: Option<u64>) -> Result<Option<LivePreview>, LinkError>;
    /// The saved prompts with their stats.
    async fn prompts(&self) -> Result<Vec<PromptSummary>, LinkError>;
    /// One saved prompt's versions with their stats, and its latest runs.
    async fn prompt(&self, name: &str) -> Result<PromptDetails, LinkError>;
    /// Usage per user per day and each user's standing against their limits:
    /// everyone's for an admin, only their own for anyone else.
    async fn usage(&self, query: UsageQuery) -> Result<UsageReport, LinkError>;
}

/// How many log lines one read returns.
const LOG_PAGE: usize = 500;

/// A daemon reached over its HTTP API.
pub struct RemoteLink {
    pub client: ApiClient,
}

#[async_trait]
impl Link for RemoteLink {
    fn describe(&self) -> String {
        self.client.base().to_owned()
    }
    async fn status(&self) -> Result<StatusSnapshot, LinkError> {
        Ok(self.client.status().await?)
    }
    async fn jobs(&self, listing: JobListing) -> Result<JobPage, LinkError> {
        let status = listing.status.map(|s| s.to_string());
        Ok(self
            .client
            .jobs(status.as_deref(), listing.limit, listing.cursor.as_deref())
            .await?)
    }
    async fn job(&self, id: &str) -> Result<Job, LinkError> {
        Ok(self.client.job(id).await?)
    }
    async fn templates(&self) -> Result<Vec<TemplateInfo>, LinkError> {
        Ok(self.client.templates().await?)
    }
    async fn models(&self) -> Result<crate::service::models::ModelsReport, LinkError> {
        Ok(self.client.models().await?)
    }
    async fn logs(&self, after: u64) -> Result<LogPage, LinkError> {
        Ok(self.client.logs(after).await?)
    }
    async fn events(&self, last_id: Option<u64>) -> Result<EventStream, LinkError> {
        let stream = self.client.events(last_id).await?;
        Ok(Box::pin(stream.filter_map(|m| async move {
            match m {
                Err(e) => Some(Err(e.into())),
                Ok(m) if m.event == "resync" => {
                    let cause = serde_json::from_str::<ResyncNotice>(&m.data)
                        .map_or(crate::events::Resync::Gap, |n| n.cause);
                    Some(Ok(StreamItem::Resync(cause)))
                }
                // An event this build does not know (a newer daemon) is skipped.
                Ok(m) => serde_json::from_str::<Event>(&m.data)
                    .ok()
                    .map(|e| Ok(StreamItem::Event(e.into()))),
            }
        })))
    }
    async fn submit(&self, request: JobRequest) -> Result<Job, LinkError> {
        Ok(self.client.submit(&request, None).await?)
    }
    async fn cancel(&self, id: &str) -> Result<Job, LinkError> {
        Ok(self.client.cancel(id).await?)
    }
    async fn retry(&self, id: &str) -> Result<Job, LinkError> {
        Ok(self.client.retry(id).await?)
    }
    async fn objects(&self, bucket: &str, prefix: &str) -> Result<ObjectPage, LinkError> {
        Ok(self.client.objects(bucket, prefix).await?)
    }
    async fn presign(&self, bucket: &str, key: &str) -> Result<PresignedUrl, LinkError> {
        Ok(self.client.presign(bucket, key).await?)
    }
    /// Through a presigned URL: the API hands out URLs, not bytes.
    async fn read_output(&self, bucket: &str, key: &str, limit: u64) -> Result<bytes::Bytes, LinkError> {
        let url = self.client.presign(bucket, key).await?.url;
        Ok(self.client.download(&url, limit).await?)
    }
    async fn thumbnail(&self, id: &str, n: usize, size: u32) -> Result<OutputPicture, LinkError> {
        Ok(self.client.thumbnail(id, n, size).await?)
    }
    async fn preview(&self, id: &str, newer_than: Option<u64>) -> Result<Option<LivePreview>, LinkError> {
        Ok(self.client.preview(id, newer_than).await?)
    }
    async fn prompts(&self) -> Result<Vec<PromptSummary>, LinkError> {
        Ok(self.client.prompts(&PromptFilter::default()).await?)
    }
    async fn prompt(&self, name: &str) -> Result<PromptDetails, LinkError> {
        Ok(self.client.prompt(name).await?)
    }
    async fn usage(&self, query: UsageQuery) -> Result<UsageReport, LinkError> {
        Ok(self.client.usage(&query).await?)
    }
}

/// The daemon in this process: the service layer called directly, acting for
/// one principal (the dashboard's: the bootstrap admin; `/mcp`'s: the caller).
pub struct LocalLink {
    pub services: Services,
    pub who: crate::users::Principal,
}

impl LocalLink {
    /// The link of the box's operator (the bootstrap admin).
    pub fn new(services: Services) -> Self {
        Self::acting_for(services, crate::users::Principal::root())
    }

    /// A link that sees, submits and manages jobs as `who` may.
    pub fn acting_for(services: Services, who: crate::users::Principal) -> Self {
        Self { services, who }
    }
}

#[async_trait]
impl Link for LocalLink {
    fn describe(&self) -> String {
        "local".to_owned()
    }
    async fn status(&self) -> Result<StatusSnapshot, LinkError> {
        Ok(self.services.status().await?)
    }
    async fn jobs(&self, listing: JobListing) -> Result<JobPage, LinkError> {
        Ok(self.services.jobs.list_as(&self.who, listing).await?)
    }
    async fn job(&self, id: &str) -> Result<Job, LinkError> {
        Ok(self.services.jobs.get_as(&self.who, parse_id(id)?).await?)
    }
    async fn templates(&self) -> Result<Vec<TemplateInfo>, LinkError> {
        Ok(self.services.templates())
    }
    async fn models(&self) -> Result<crate::service::models::ModelsReport, LinkError> {
        Ok(crate::service::models::report(&self.services.dispatcher).await)
    }
    async fn logs(&self, after: u64) -> Result<LogPage, LinkError> {
        Ok(self.services.logs(after, LOG_PAGE)?)
    }
    async fn events(&self, last_id: Option<u64>) -> Result<EventStream, LinkError> {
        Ok(Box::pin(self.services.hub.stream(last_id).map(Ok)))
    }
    async fn submit(&self, request: JobRequest) -> Result<Job, LinkError> {
        Ok(self.services.jobs.submit_as(&self.who, request, None).await?.job)
    }
    async fn cancel(&self, id: &str) -> Result<Job, LinkError> {
        Ok(self.services.jobs.cancel_as(&self.who, parse_id(id)?).await?)
    }
    async fn retry(&self, id: &str) -> Result<Job, LinkError> {
        Ok(self.services.jobs.retry_as(&self.who, parse_id(id)?).await?)
    }
    async fn objects(&self, bucket: &str, prefix: &str) -> Result<ObjectPage, LinkError> {
        Ok(self.services.objects(bucket, Folder::at(prefix)).await?)
    }
    async fn presign(&self, bucket: &str, key: &str) -> Result<PresignedUrl, LinkError> {
        Ok(self.services.presign(bucket, key).await?)
    }
    async fn read_output(&self, bucket: &str, key: &str, limit: u64) -> Result<bytes::Bytes, LinkError> {
        Ok(self.services.read_output(bucket, key, limit).await?)
    }
    async fn thumbnail(&self, id: &str, n: usize, size: u32) -> Result<OutputPicture, LinkError> {
        let id = self.services.jobs.get_as(&self.who, parse_id(id)?).await?.id;
        let thumb = (self.services)
            .thumbnail(id, n, size, ThumbnailFormat::Png)
            .await?;
        Ok(thumb.into())
    }
    async fn preview(&self, id: &str, newer_than: Option<u64>) -> Result<Option<LivePreview>, LinkError> {
        let id = self.services.jobs.get_as(&self.who, parse_id(id)?).await?.id;
        let frame = self.services.live_preview(id).await?;
        Ok((Some(frame.seq) != newer_than).then_some(frame))
    }
    async fn prompts(&self) -> Result<Vec<PromptSummary>, LinkError> {
        Ok(self.services.library.list(&PromptFilter::default()).await?)
    }
    async fn prompt(&self, name: &str) -> Result<PromptDetails, LinkError> {
        Ok(self.services.library.get(name).await?)
    }
    /// As the API answers: a 404 when this daemon keeps no quotas.
    async fn usage(&self, query: UsageQuery) -> Result<UsageReport, LinkError> {
        let quotas = (self.services.jobs.quotas())
            .ok_or_else(|| ServiceError::NotFound("this server keeps no quotas".into()))?;
        Ok(quotas.usage(&self.who, query).await?)
    }
}
