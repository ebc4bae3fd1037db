//! darkroom: one binary that runs an image-generation box.
//!
//! The daemon ([`daemon`]) wires these services together and owns shutdown:
//!
//! - [`store`]: the embedded database engine (redb) with a group-commit writer that
//!   every durable write goes through.
//! - [`storage`]: the object store — buckets, objects, multipart uploads, lifecycle —
//!   with metadata in redb and bytes in blob files.
//! - [`s3`]: the S3-compatible server (the `s3s` crate) over [`storage`], so awscli,
//!   boto3, rclone and n8n's S3 node can use darkroom instead of MinIO.
//! - [`queue`]: the durable job queue (priorities, leases, retries with backoff,
//!   delayed jobs, cancellation, idempotency keys, result TTL, change events).
//! - [`cache`]: the prompt cache (SHA-256 of canonical JSON, TTL, LRU by bytes) and
//!   a small key-value cache with TTL.
//! - [`api`]: the HTTP API on its own port — jobs (submit, wait, list, cancel,
//!   retry), Server-Sent Events, status, templates, OpenAPI, health and metrics.
//! - [`events`]: one numbered stream of job and alert changes with a backlog, for
//!   SSE resume and the dashboard.
//! - [`status`]: the snapshot types every view shares (API, CLI, dashboard).
//! - [`metrics`]: the Prometheus registry and what darkroom records in it.
//! - [`alerts`]: built-in alert rules, their pending/firing/resolved states and the
//!   notifiers (webhook, Slack, Alertmanager).
//! - [`webhook`]: job webhooks, signed and retried.
//! - [`comfy`]: the ComfyUI client (HTTP + WebSocket, typed events, polling
//!   fallback) and the workflow templates jobs are rendered from.
//! - [`dispatch`]: the workers — claim a job, run it on the healthiest free ComfyUI
//!   backend, store its images and metadata, complete it with presigned URLs.
//! - [`gpu`]: GPU telemetry through NVML (ComfyUI's `/system_stats` as the
//!   fallback), sampled on its own thread with a bounded history.
//! - [`config`]: typed configuration, layered defaults < file < env < flags.
//! - [`redis_store`]: the shared Redis server behind `queue.backend` and
//!   `cache.backend = "redis"` (several nodes, one queue).
//! - [`clock`]: injectable time for everything that expires or retries.
//! - [`telemetry`]: logging setup.
//! - [`dash`]: the terminal dashboard (ratatui), in-process or attached to a
//!   daemon's API.
//! - [`cli`]: the command line; [`commands`] runs its client subcommands (`submit`,
//!   `jobs`, `status`) through [`client`], the typed API client.

#[macro_use]
pub mod names;

pub mod alerts;
pub mod api;
pub mod cache;
pub mod cli;
pub mod client;
pub mod clock;
pub mod comfy;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod dash;
pub mod dispatch;
pub mod events;
pub mod gpu;
pub mod metrics;
pub mod queue;
pub mod redis_store;
pub mod s3;
pub mod service;
pub mod status;
pub mod storage;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod webhook;
