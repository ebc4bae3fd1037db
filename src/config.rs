//! Typed, validated configuration.
//!
//! Layers, later wins: built-in defaults < config file (`--config FILE`, else
//! `./config.toml` when present) < `DARKROOM_*` environment variables (`__` separates
//! levels: `DARKROOM_S3__ACCESS_KEY`) < command-line flags. MinIO's
//! `MINIO_ROOT_USER` / `MINIO_ROOT_PASSWORD` stand in for the S3 credentials.
//! Unknown keys are errors that name the key and where it came from. The documented
//! example, `config.toml` at the repository root, is embedded and must parse to the
//! defaults (a test checks it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The documented example configuration shipped with darkroom.
pub const EXAMPLE: &str = include_str!("../config.toml");

/// The whole daemon configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database and object blobs live.
    pub data_dir: PathBuf,
    /// Seconds in-flight work gets to finish after SIGTERM.
    pub shutdown_grace_seconds: u64,
    pub log: LogConfig,
    pub s3: S3Config,
    pub api: ApiConfig,
    pub queue: QueueSettings,
    pub cache: CacheSettings,
    pub comfyui: ComfyConfig,
    pub alerts: crate::alerts::AlertsConfig,
    pub gpu: crate::gpu::GpuConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            shutdown_grace_seconds: 30,
            log: LogConfig::default(),
            s3: S3Config::default(),
            api: ApiConfig::default(),
            queue: QueueSettings::default(),
            cache: CacheSettings::default(),
            comfyui: ComfyConfig::default(),
            alerts: crate::alerts::AlertsConfig::default(),
            gpu: crate::gpu::GpuConfig::default(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

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

/// A configuration that could not be loaded, naming where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    /// A message that starts with the key at fault (`alerts.rules[2].threshold: ...`).
    #[error("{0}")]
    Keyed(String),
}

/// Command-line values that override everything else (`None` = not given).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub s3_addr: Option<SocketAddr>,
    pub api_addr: Option<SocketAddr>,
    pub log_format: Option<LogFormat>,
    /// `--comfyui URL` (repeatable): replaces the configured backends.
    pub comfyui: Vec<String>,
    /// `--nvml-lib PATH`: replaces `gpu.nvml_lib`.
    pub nvml_lib: Option<String>,
}

/// Where the effective configuration came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
}

impl Config {
    /// Loads the layered configuration from the real process environment.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Loaded, ConfigError> {
        Self::load_from(file, std::env::vars(), overrides)
    }

    /// Loads the layered configuration with an explicit environment (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Loaded, ConfigError> {
        let default_file = Path::new("config.toml");
        let file = match file {
            Some(f) => Some(f.to_path_buf()),
            None if default_file.is_file() => Some(default_file.to_path_buf()),
            None => None,
        };
        let mut tree = toml::Table::new();
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            tree = parse_file(path, &text)?;
        }
        apply_env(&mut tree, env)?;
        let mut config: Config = Config::deserialize(tree).map_err(|e| ConfigError::File {
            path: file.clone().unwrap_or_else(|| PathBuf::from("(environment)")),
            message: e.to_string(),
        })?;
        config.apply(overrides);
        config.validate()?;
        Ok(Loaded { config, file })
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(d) = &o.data_dir {
            self.data_dir.clone_from(d);
        }
        if let Some(a) = o.s3_addr {
            self.s3.addr = a;
        }
        if let Some(a) = o.api_addr {
            self.api.addr = a;
        }
        if let Some(f) = o.log_format {
            self.log.format = f;
        }
        if let Some(lib) = &o.nvml_lib {
            self.gpu.nvml_lib.clone_from(lib);
        }
        if !o.comfyui.is_empty() {
            self.comfyui.backends = o.comfyui.iter().map(BackendConfig::new).collect();
        }
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        if self.s3.access_key.is_empty() != self.s3.secret_key.is_empty() {
            return invalid(
                "s3.access_key",
                "set both s3.access_key and s3.secret_key, or neither (to generate them)",
            );
        }
        if !self.s3.secret_key.is_empty() && self.s3.secret_key.len() < 8 {
            return invalid("s3.secret_key", "must be at least 8 characters");
        }
        if self.s3.lifecycle_day_seconds == 0 {
            return invalid("s3.lifecycle_day_seconds", "must be at least 1");
        }
        if self.queue.lease_seconds == 0 || self.queue.reaper_interval_ms == 0 {
            return invalid(
                "queue.lease_seconds",
                "queue.lease_seconds and queue.reaper_interval_ms must be at least 1",
            );
        }
        if self.queue.default_max_attempts == 0 {
            return invalid("queue.default_max_attempts", "must be at least 1");
        }
        if self.cache.sweep_interval_seconds == 0 {
            return invalid("cache.sweep_interval_seconds", "must be at least 1");
        }
        if self.s3.lifecycle_interval_seconds == 0 {
            return invalid("s3.lifecycle_interval_seconds", "must be at least 1");
        }
        self.validate_comfyui()?;
        self.validate_api()?;
        self.alerts.validate().map_err(ConfigError::Keyed)?;
        for b in &self.s3.buckets {
            if let Err(e) = crate::storage::validate_bucket_name(&b.name) {
                return Err(ConfigError::Invalid {
                    key: "s3.buckets.name",
                    message: format!("{:?}: {e}", b.name),
                });
            }
        }
        Ok(())
    }

    fn validate_comfyui(&self) -> Result<(), ConfigError> {
        let c = &self.comfyui;
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        for (i, b) in c.backends.iter().enumerate() {
            if let Err(e) = crate::comfy::ComfyClient::new(&b.url) {
                return invalid("comfyui.backends.url", format!("backend {}: {e}", i + 1));
            }
            if b.max_in_flight == 0 {
                return invalid(
                    "comfyui.backends.max_in_flight",
                    format!("backend {} ({}): must be at least 1", i + 1, b.url),
                );
            }
        }
        if let Err(e) = crate::storage::validate_bucket_name(&c.output_bucket) {
            return invalid("comfyui.output_bucket", format!("{:?}: {e}", c.output_bucket));
        }
        if c.url_expiry_seconds == 0 || c.url_expiry_seconds > 7 * 86_400 {
            return invalid(
                "comfyui.url_expiry_seconds",
                "must be 1..=604800 (S3 presigned URLs last at most 7 days)".into(),
            );
        }
        if c.health_interval_ms == 0 || c.poll_interval_ms == 0 || c.request_timeout_seconds == 0 {
            return invalid(
                "comfyui.health_interval_ms",
                "comfyui.health_interval_ms, poll_interval_ms and request_timeout_seconds must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }

    fn validate_api(&self) -> Result<(), ConfigError> {
        let a = &self.api;
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if a.token.is_empty() && !a.addr.ip().is_loopback() {
            return invalid(
                "api.token",
                format!(
                    "the API would listen on {} (not loopback) without a token; set one with \
                     `token = \"...\"` under [api] in the config file or DARKROOM_API__TOKEN=..., \
                     or listen on 127.0.0.1",
                    a.addr
                ),
            );
        }
        if a.max_body_bytes < 1024 {
            return invalid("api.max_body_bytes", "must be at least 1024".into());
        }
        if a.events_backlog == 0 || a.webhook_max_attempts == 0 || a.max_queued == 0 {
            return invalid(
                "api.events_backlog",
                "api.events_backlog, api.webhook_max_attempts and api.max_queued must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// The effective configuration as TOML (what `darkroom config check` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Parses a config file, rejecting unknown keys with the file's name.
fn parse_file(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    let file_err = |message: String| ConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    // Deserialize the file alone first so an unknown key is reported against it.
    toml::from_str::<Config>(text).map_err(|e| file_err(e.to_string()))?;
    toml::from_str(text).map_err(|e| file_err(e.to_string()))
}

/// Overlays `DARKROOM_*` (and MinIO's credential variables) onto the tree.
fn apply_env(
    tree: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("DARKROOM_") || k.starts_with("MINIO_ROOT_"))
        .collect();
    // MinIO aliases first so the DARKROOM_ names win.
    vars.sort_by_key(|(k, _)| !k.starts_with("MINIO_"));
    for (var, raw) in vars {
        let path: Vec<String> = match var.as_str() {
            "MINIO_ROOT_USER" => vec!["s3".into(), "access_key".into()],
            "MINIO_ROOT_PASSWORD" => vec!["s3".into(), "secret_key".into()],
            v if v.starts_with("MINIO_") => continue,
            v => v["DARKROOM_".len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect(),
        };
        // A value is read as TOML (numbers, booleans, arrays) and falls back to a
        // plain string; each variable is checked alone so an error names it.
        let mut first_error = None;
        let mut accepted = None;
        for value in [parse_env_value(&raw), toml::Value::String(raw.clone())] {
            let mut single = toml::Table::new();
            insert_path(&mut single, &path, value.clone());
            match Config::deserialize(single) {
                Ok(_) => {
                    accepted = Some(value);
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        let Some(value) = accepted else {
            return Err(ConfigError::Env {
                var,
                message: first_error.unwrap_or_default(),
            });
        };
        insert_path(tree, &path, value);
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

fn insert_path(tree: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = tree;
    for p in parents {
        let entry = cur
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(t) = entry else {
            return;
        };
        cur = t;
    }
    cur.insert(last.clone(), value);
}
