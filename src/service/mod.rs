//! The service layer: what darkroom offers its users — submit and manage jobs,
//! read the status, follow events, browse outputs, read the log — as typed calls
//! with typed errors, callable without HTTP. The HTTP API ([`crate::api`]) only
//! extracts, calls and maps errors; the dashboard's local mode calls these same
//! functions in-process, and its remote mode (and the CLI) reach them through the
//! typed API client, getting the same Rust types back.
//!
//! - [`jobs`]: admission rules (backend configured, `max_queued`, validation),
//!   `?wait`, get, list with a cursor, cancel, retry;
//! - [`inbox`]: the drop folders' rules with their pending, processed and
//!   failed counts;
//! - [`inputs`]: image parameters resolved at submit (`s3://`, URLs, base64,
//!   multipart files), stored content-addressed, with the read-access rule;
//! - [`models`]: which catalog model a request gets (or why none: 400 / 409),
//!   each job's expected start and finish, the catalog report;
//! - [`status`]: the status collector behind every status view;
//! - [`browse`]: one folder of a bucket, presigned URLs, log lines;
//! - [`templates`]: list, show, import (with a proposed manifest), replace,
//!   delete and validate workflow templates;
//! - [`pictures`]: thumbnails of job outputs and live previews of running jobs;
//! - [`ops`]: readiness and the readings `/metrics` exports;
//! - [`backups`]: take a backup now, read how the scheduled ones went;
//! - [`users`]: users and API keys (admins only);
//! - [`prompts`]: the prompt library — saved prompts and versions, submit by
//!   prompt or campaign, ratings, per-version stats, A/B reports, collections;
//! - events: [`crate::events::EventHub::stream`] (backlog, resume and `resync`).
//!
//! A new rule about who may do what, or what a job may ask for, goes here once.

use std::net::SocketAddr;
use std::time::Duration;

pub mod backups;
pub mod browse;
pub mod error;
pub mod inbox;
pub mod inputs;
pub mod jobs;
pub mod models;
pub mod ops;
pub mod pictures;
pub mod prompts;
pub mod quotas;
pub mod status;
pub mod templates;
pub mod users;

pub use backups::BackupRequest;
pub use browse::{LogPage, ObjectEntry, ObjectPage, PresignedUrl};
pub use error::ServiceError;
pub use jobs::{JobLimits, JobListing, JobPage, Jobs, Submitted};
pub use templates::{ImportOutcome, TemplateDetail, TemplateInfo, TemplateUpload, ValidationReport};

use crate::alerts::Alerts;
use crate::cache::PromptCache;
use crate::dispatch::Dispatcher;
use crate::events::EventHub;
use crate::gpu::GpuMonitor;
use crate::metrics::Metrics;
use crate::object_store::ObjectStore;
use crate::queue::Queue;
use crate::s3::presign::Presigner;
use crate::status::{Endpoints, RecentGenerations};
use crate::telemetry::LogBuffer;
use crate::webhook::Webhooks;

/// Every service and what they read; cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub jobs: Jobs,
    pub storage: ObjectStore,
    pub queue: Queue,
    pub metrics: Metrics,
    /// Where the S3 API listens, if it is enabled.
    pub s3_addr: Option<SocketAddr>,
    pub dispatcher: Dispatcher,
    pub hub: EventHub,
    pub prompts: PromptCache,
    pub recent: RecentGenerations,
    pub alerts: Option<Alerts>,
    pub webhooks: Option<Webhooks>,
    pub gpu: GpuMonitor,
    /// Makes presigned URLs (absent when the S3 server is off), valid this long.
    pub presigner: Option<Presigner>,
    pub url_expiry: Duration,
    pub logs: LogBuffer,
    /// Where the daemon listens, for the status snapshot.
    pub endpoints: Option<Endpoints>,
    /// Backups of the data directory (absent in front ends without one).
    pub backups: Option<crate::backup::Backups>,
    /// Thumbnails of outputs made lately.
    pub thumbnails: pictures::ThumbnailCache,
    /// The prompt library (not the prompt cache: that is `prompts`).
    pub library: prompts::Prompts,
    /// Users and their API keys.
    pub users: users::UsersService,
    /// The drop-folder rules (`[[inbox]]`), for their status.
    pub inbox: crate::inbox::Rules,
}
