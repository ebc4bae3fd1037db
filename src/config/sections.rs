//! The sections of the configuration file that belong to one service each
//! (`[s3]`, `[api]`, `[queue]`, `[cache]`, `[comfyui]`), with their defaults.
//! Loading, layering and validation live in the parent module.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The S3-compatible server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    pub enabled: bool,
    pub addr: SocketAddr,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub public_url: String,
    pub max_object_size: u64,
    pub fsync: bool,
    pub inline_max_bytes: usize,
    pub lifecycle_day_seconds: u64,
    pub lifecycle_interval_seconds: u64,
    pub buckets: Vec<BucketConfig>,
}

impl Default for S3Config {
    fn default() -> Self {
        let bucket = |name: &str, expire_days| BucketConfig {
            name: name.into(),
            public_read: false,
            expire_days,
        };
        Self {
            enabled: true,
            addr: SocketAddr::from(([127, 0, 0, 1], 9000)),
            access_key: String::new(),
            secret_key: String::new(),
            region: "us-east-1".into(),
            public_url: String::new(),
            max_object_size: 5 * 1024 * 1024 * 1024,
            fsync: true,
            inline_max_bytes: 32 * 1024,
            lifecycle_day_seconds: 86_400,
            lifecycle_interval_seconds: 60,
            buckets: vec![
                bucket("comfyui-outputs", 0),
                bucket("darkchannel-jobs", 0),
                bucket("darkchannel-output", 0),
                bucket("darkchannel-refs", 0),
                bucket("darkchannel-temp", 1),
            ],
        }
    }
}

/// A bucket created at startup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    pub name: String,
    #[serde(default)]
    pub public_read: bool,
    /// Lifecycle days after which objects expire; 0 means never.
    #[serde(default)]
    pub expire_days: u32,
}

/// The HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub addr: SocketAddr,
    /// Bearer token `/api/v1` requires; empty = none (allowed only on loopback).
    pub token: String,
    /// Require the token on /healthz, /readyz and /metrics too.
    pub protect_ops: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest `?wait=` a submit may ask for, in seconds.
    pub max_wait_seconds: u64,
    /// Submits are refused with 429 while this many jobs are queued.
    pub max_queued: u64,
    /// Events kept for `Last-Event-ID` resume.
    pub events_backlog: usize,
    /// Signs job webhooks (`X-Darkroom-Signature: sha256=<hex HMAC>`) when set.
    pub webhook_secret: String,
    /// Tries per job webhook delivery.
    pub webhook_max_attempts: u32,
    /// First retry delay of a job webhook, in milliseconds (doubles, capped at 60 s).
    pub webhook_backoff_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 9080)),
            token: String::new(),
            protect_ops: false,
            max_body_bytes: 8 << 20,
            max_wait_seconds: 300,
            max_queued: 10_000,
            events_backlog: 4096,
            webhook_secret: String::new(),
            webhook_max_attempts: 5,
            webhook_backoff_ms: 1000,
        }
    }
}

/// The durable job queue (`{data_dir}/queue.redb`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// `embedded` (a redb file in the data directory) or `redis` (`[redis]`, shared
    /// by several nodes).
    pub backend: super::Backend,
    /// Seconds a claimed job stays leased without a heartbeat.
    pub lease_seconds: u64,
    /// Seconds a job may run before it is stopped (per-job override allowed).
    pub default_timeout_seconds: u64,
    /// Attempts before a job is dead-lettered as `failed` (per-job override allowed).
    pub default_max_attempts: u32,
    /// Seconds finished jobs are kept (RQ's result_ttl; per-job override allowed).
    pub result_ttl_seconds: u64,
    /// Seconds failed jobs are kept for inspection and retry.
    pub failed_ttl_seconds: u64,
    /// First retry delay in seconds; doubles per attempt, with jitter.
    pub backoff_base_seconds: u64,
    /// Longest retry delay in seconds.
    pub backoff_max_seconds: u64,
    /// Milliseconds between reaper passes (expired leases, timeouts, due delayed jobs).
    pub reaper_interval_ms: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            backend: super::Backend::Embedded,
            lease_seconds: 30,
            default_timeout_seconds: 600,
            default_max_attempts: 3,
            result_ttl_seconds: 86_400,
            failed_ttl_seconds: 7 * 86_400,
            backoff_base_seconds: 2,
            backoff_max_seconds: 600,
            reaper_interval_ms: 1000,
        }
    }
}

impl QueueSettings {
    /// The queue's own configuration type.
    pub fn to_queue_config(&self) -> crate::queue::QueueConfig {
        use std::time::Duration;
        crate::queue::QueueConfig {
            lease: Duration::from_secs(self.lease_seconds),
            default_timeout: Duration::from_secs(self.default_timeout_seconds),
            default_max_attempts: self.default_max_attempts,
            result_ttl: Duration::from_secs(self.result_ttl_seconds),
            failed_ttl: Duration::from_secs(self.failed_ttl_seconds),
            backoff: crate::queue::Backoff {
                base: Duration::from_secs(self.backoff_base_seconds),
                max: Duration::from_secs(self.backoff_max_seconds),
                ..crate::queue::Backoff::default()
            },
            ..crate::queue::QueueConfig::default()
        }
    }
}

/// The prompt cache and the key-value cache (`{data_dir}/cache.redb`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// `embedded` (`{data_dir}/cache.redb`) or `redis` (`[redis]`, shared by several
    /// nodes, so one node's cached result serves them all).
    pub backend: super::Backend,
    /// Seconds a cached generation result is reused.
    pub prompt_ttl_seconds: u64,
    /// Total size of the outputs the prompt cache refers to before least recently
    /// used entries are evicted (the seed's Redis ran with maxmemory 2gb allkeys-lru).
    pub prompt_max_bytes: u64,
    /// Seconds between expiry sweeps of both caches.
    pub sweep_interval_seconds: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            backend: super::Backend::Embedded,
            prompt_ttl_seconds: 7 * 86_400,
            prompt_max_bytes: 2 << 30,
            sweep_interval_seconds: 60,
        }
    }
}

/// The ComfyUI servers jobs run on, and what happens to their outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComfyConfig {
    /// The servers; none means jobs wait in the queue until one is configured.
    pub backends: Vec<BackendConfig>,
    /// The bucket outputs are stored in (created at start if missing).
    pub output_bucket: String,
    /// Seconds the presigned download URLs in a job's result stay valid.
    pub url_expiry_seconds: u64,
    /// Milliseconds between health checks (GET /system_stats) of each backend.
    pub health_interval_ms: u64,
    /// Milliseconds between /history polls while a job's WebSocket is down.
    pub poll_interval_ms: u64,
    /// Seconds one HTTP request to ComfyUI (submit, history, image download) may take.
    pub request_timeout_seconds: u64,
}

impl Default for ComfyConfig {
    fn default() -> Self {
        Self {
            backends: Vec::new(),
            output_bucket: "comfyui-outputs".into(),
            url_expiry_seconds: 3600,
            health_interval_ms: 2000,
            poll_interval_ms: 1000,
            request_timeout_seconds: 120,
        }
    }
}

/// One ComfyUI server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Base URL, e.g. `http://127.0.0.1:8188`.
    pub url: String,
    /// Prompts sent to it at once. ComfyUI runs one at a time; more only wait in
    /// its own queue, where darkroom cannot reorder or move them.
    #[serde(default = "one")]
    pub max_in_flight: usize,
}

fn one() -> usize {
    1
}

impl BackendConfig {
    /// A backend at `url` with the default limit.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_in_flight: 1,
        }
    }
}
