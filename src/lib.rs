//! darkroom: one binary that runs an image-generation box. `ARCHITECTURE.md` at
//! the repository root walks one job through these modules.
//!
//! The daemon ([`daemon`]) wires these services together and owns shutdown. The
//! front ends — the HTTP API ([`api`]) with OpenAI's Images API beside it
//! ([`openai`]), the MCP server for agents ([`mcp`]), the dashboard ([`dash`]) and
//! the command line ([`cli`], [`commands`], [`client`]) — call one service layer
//! ([`service`]) and hold no rules of their own; the dashboard and the MCP server
//! reach it in-process or over the API through one [`link::Link`]:
//!
//! - [`service`]: submit (every admission rule and `?wait`, image inputs resolved
//!   and stored), get, list, cancel and retry jobs; the status collector; browsing outputs and logs; thumbnails of
//!   outputs and live previews of running jobs; typed errors.
//! - [`inbox`]: drop folders — pictures uploaded under a watched prefix become
//!   one job each (through the jobs service), results and originals filed after.
//! - [`events`]: one numbered stream of job, alert and GPU changes with a backlog;
//!   [`events::EventHub::stream`] does resume and `resync` for SSE and the dashboard.
//! - [`status`]: the snapshot types every view shares (API, CLI, dashboard).
//! - [`queue`]: the durable job queue (priorities, leases, retries with backoff,
//!   delayed jobs, cancellation, idempotency keys, result TTL, change events).
//! - [`cache`]: the prompt cache (SHA-256 of canonical JSON, TTL, LRU by bytes) and
//!   a small key-value cache with TTL.
//! - [`dispatch`]: the workers — claim a job, run it on the healthiest free ComfyUI
//!   backend, store its images and metadata, complete it with presigned URLs; the
//!   last preview frame of each running job, in memory.
//! - [`models`]: the model catalog, routing a request to a model by name,
//!   urgency, purpose, quality and free VRAM, and timings learned per model.
//! - [`comfy`]: the ComfyUI client (HTTP + WebSocket, typed events, polling
//!   fallback) and the workflow templates jobs are rendered from.
//! - [`object_store`]: the object store — buckets, objects, multipart uploads,
//!   lifecycle — with metadata in redb and bytes in blob files.
//! - [`s3`]: the S3-compatible server (the `s3s` crate) over [`object_store`], so
//!   awscli, boto3, rclone and n8n's S3 node can use darkroom instead of MinIO.
//! - [`backup`]: consistent snapshots of the data directory to a folder or S3,
//!   incremental, scheduled with retention; restore with hash checks.
//! - [`metrics`]: the Prometheus registry and what darkroom records in it.
//! - [`alerts`]: built-in alert rules, their pending/firing/resolved states and the
//!   notifiers (webhook, Slack, Alertmanager).
//! - [`webhook`]: job webhooks, signed and retried.
//! - [`tls`]: TLS on the S3 and API listeners (certificates re-read on change, a
//!   self-signed pair for a LAN) and the private CA darkroom's own clients trust;
//!   [`crypto`]: encryption at rest (SSE-S3, SSE-C, the master key).
//! - [`gpu`]: GPU telemetry through NVML (ComfyUI's `/system_stats` as the
//!   fallback), sampled on its own thread with a bounded history.
//! - Engines: [`redb_store`] (the embedded database with a group-commit writer every
//!   durable write goes through) and [`redis_store`] (the shared Redis server behind
//!   `queue.backend` / `cache.backend = "redis"`); [`stores`] says where each thing
//!   is kept and whether that store answers.
//! - [`config`]: layers defaults < file < env < flags and assembles the sections
//!   each service owns.
//! - Small shared pieces: [`clock`] (injectable time), [`names`] (enums with names),
//!   [`sync`] (one way to lock), [`telemetry`] (logging).

#[macro_use]
pub mod names;

pub mod alerts;
pub mod api;
pub mod backup;
pub mod cache;
pub mod cli;
pub mod client;
pub mod clock;
pub mod comfy;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod dash;
pub mod dispatch;
pub mod docs;
pub mod events;
pub mod gpu;
pub mod inbox;
pub mod link;
pub mod mcp;
pub mod metrics;
pub mod models;
pub mod object_store;
pub mod openai;
pub mod outbound;
pub mod prompts;
pub mod queue;
pub mod quotas;
pub mod redb_store;
pub mod redis_store;
pub mod s3;
pub mod service;
pub mod status;
pub mod stores;
pub mod sync;
pub mod telemetry;
pub mod templates;
pub mod throttle;
pub mod tls;
pub mod users;
pub mod webhook;
