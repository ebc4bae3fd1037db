//! `[comfyui]`: the ComfyUI servers jobs run on and what happens to their
//! outputs — and [`DispatchSettings`], the dispatcher's working form of it. This
//! module owns the section: its defaults and its validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

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
    /// The folder of user templates (`NAME.json` + `NAME.toml`), watched for
    /// changes; default `{data_dir}/templates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates_dir: Option<std::path::PathBuf>,
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
            templates_dir: None,
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

impl ComfyConfig {
    /// Where the user templates are: `templates_dir`, else `{data_dir}/templates`.
    pub fn templates_dir(&self, data_dir: &std::path::Path) -> std::path::PathBuf {
        self.templates_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("templates"))
    }

    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        for (i, b) in self.backends.iter().enumerate() {
            if let Err(e) = crate::comfy::parse_base_url(&b.url) {
                return invalid("comfyui.backends.url", format!("backend {}: {e}", i + 1));
            }
            if b.max_in_flight == 0 {
                return invalid(
                    "comfyui.backends.max_in_flight",
                    format!("backend {} ({}): must be at least 1", i + 1, b.url),
                );
            }
        }
        if let Err(e) = crate::object_store::validate_bucket_name(&self.output_bucket) {
            return invalid("comfyui.output_bucket", format!("{:?}: {e}", self.output_bucket));
        }
        if self.url_expiry_seconds == 0 || self.url_expiry_seconds > 7 * 86_400 {
            return invalid(
                "comfyui.url_expiry_seconds",
                "must be 1..=604800 (S3 presigned URLs last at most 7 days)".into(),
            );
        }
        if self.health_interval_ms == 0 || self.poll_interval_ms == 0 || self.request_timeout_seconds == 0 {
            return invalid(
                "comfyui.health_interval_ms",
                "comfyui.health_interval_ms, poll_interval_ms and request_timeout_seconds must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}

/// How the dispatcher behaves (from `[comfyui]` and `shutdown_grace_seconds`).
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    pub backends: Vec<BackendConfig>,
    pub output_bucket: String,
    pub url_expiry: Duration,
    pub health_interval: Duration,
    pub poll_interval: Duration,
    pub request_timeout: Duration,
    /// How long running jobs may go on after shutdown begins.
    pub grace: Duration,
    /// Names this node's leases (`host:pid`).
    pub worker: String,
    /// The model catalog; empty: jobs go to the least loaded backend in order.
    pub catalog: crate::models::Catalog,
    pub routing: crate::models::RoutingConfig,
    /// Learned run and load times, and the shared loaded-model view.
    pub timings: crate::models::Timings,
    /// The CAs the backends' clients trust over https and wss (`tls.ca_file`).
    pub trust: crate::tls::Trust,
}

impl DispatchSettings {
    /// The settings of `[comfyui]`, with `grace` after shutdown begins.
    pub fn new(c: &ComfyConfig, grace: Duration) -> Self {
        Self {
            backends: c.backends.clone(),
            output_bucket: c.output_bucket.clone(),
            url_expiry: Duration::from_secs(c.url_expiry_seconds),
            health_interval: Duration::from_millis(c.health_interval_ms),
            poll_interval: Duration::from_millis(c.poll_interval_ms),
            request_timeout: Duration::from_secs(c.request_timeout_seconds),
            grace,
            worker: worker_name(),
            catalog: crate::models::Catalog::default(),
            routing: crate::models::RoutingConfig::default(),
            timings: crate::models::Timings::default(),
            trust: crate::tls::Trust::default(),
        }
    }
}

/// `hostname:pid`, so a lease says which node holds it.
fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "darkroom".into());
    // The random part keeps names apart where hostnames and pids repeat (containers
    // all run as pid 1), since leases on a shared Redis queue are told apart by it.
    format!("{host}:{}:{:04x}", std::process::id(), rand::random::<u16>())
}
