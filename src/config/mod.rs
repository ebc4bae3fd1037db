//! Typed, validated configuration.
//!
//! Layers, later wins: built-in defaults < config file (`--config FILE`, else
//! `./config.toml` when present) < `DARKROOM_*` environment variables (`__` separates
//! levels: `DARKROOM_S3__ACCESS_KEY`) < command-line flags. MinIO's
//! `MINIO_ROOT_USER` / `MINIO_ROOT_PASSWORD` stand in for the S3 credentials.
//! Unknown keys are errors that name the key and where it came from. The documented
//! example, `config.toml` at the repository root, is embedded and must parse to the
//! defaults (a test checks it).
//!
//! Each section belongs to the service that reads it — `[s3]` to [`crate::s3`],
//! `[api]` to [`crate::api`], `[queue]` to [`crate::queue`], `[cache]` to
//! [`crate::cache`], `[comfyui]` and `[storage]` to [`crate::dispatch`], `[redis]` to
//! [`crate::redis_store`], `[alerts]` to [`crate::alerts`], `[gpu]` to
//! [`crate::gpu`], `[openai]` to [`crate::openai`], `[backup]` to [`crate::backup`], `[log]` to
//! [`crate::telemetry`], `[dash]` to [`crate::dash`], `[tls]` to [`crate::tls`], `[[inbox]]` to [`crate::inbox`] — which defines its type, its defaults and its
//! `validate()`. This module only layers and assembles them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::alerts::AlertsConfig;
use crate::api::ApiConfig;
use crate::backup::BackupConfig;
use crate::cache::CacheSettings;
use crate::dash::DashConfig;
use crate::dispatch::{BackendConfig, ComfyConfig, StorageConfig};
use crate::gpu::GpuConfig;
use crate::openai::OpenAiConfig;
use crate::queue::QueueSettings;
use crate::redis_store::{Backend, RedisSettings};
use crate::s3::S3Config;
use crate::telemetry::LogConfig;
pub use crate::telemetry::LogFormat;
use crate::tls::TlsConfig;

/// The documented example configuration shipped with darkroom.
pub const EXAMPLE: &str = include_str!("../../config.toml");

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
    pub storage: StorageConfig,
    pub redis: RedisSettings,
    pub alerts: AlertsConfig,
    pub gpu: GpuConfig,
    pub openai: OpenAiConfig,
    pub backup: BackupConfig,
    pub dash: DashConfig,
    /// The model catalog (`[[models]]`); empty: jobs name their checkpoint file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<crate::models::ModelSpec>,
    pub routing: crate::models::RoutingConfig,
    pub tls: TlsConfig,
    /// `[quotas.viewer|user|admin]`: each role's limits.
    pub quotas: crate::quotas::QuotasConfig,
    pub metrics: crate::metrics::config::MetricsConfig,
    /// Drop folders (`[[inbox]]`): uploads that become jobs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inbox: Vec<crate::inbox::InboxRule>,
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
            storage: StorageConfig::default(),
            redis: RedisSettings::default(),
            alerts: AlertsConfig::default(),
            gpu: GpuConfig::default(),
            openai: OpenAiConfig::default(),
            backup: BackupConfig::default(),
            dash: DashConfig::default(),
            models: Vec::new(),
            routing: crate::models::RoutingConfig::default(),
            tls: TlsConfig::default(),
            quotas: crate::quotas::QuotasConfig::default(),
            metrics: crate::metrics::config::MetricsConfig::default(),
            inbox: Vec::new(),
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

    /// Checks values that parse but make no sense: each section's own rules,
    /// then the ones that span sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.s3.validate()?;
        self.queue.validate()?;
        self.cache.validate()?;
        self.comfyui.validate()?;
        self.storage.validate()?;
        if self.queue.backend == Backend::Redis || self.cache.backend == Backend::Redis {
            self.redis.validate()?;
        }
        self.api.validate()?;
        self.alerts.validate()?;
        self.gpu.validate()?;
        self.openai.validate()?;
        self.backup.validate()?;
        self.log.validate()?;
        let catalog = crate::models::Catalog::new(self.models.clone())?;
        self.routing.validate(&catalog)?;
        self.tls.validate()?;
        crate::inbox::config::validate(&self.inbox)?;
        self.tls.check_exposure(&self.listeners())?;
        Ok(())
    }

    /// The listeners that will be bound, for the TLS exposure rule.
    pub fn listeners(&self) -> Vec<(crate::tls::ListenerKind, SocketAddr)> {
        let mut listeners = vec![(crate::tls::ListenerKind::Api, self.api.addr)];
        if self.s3.enabled {
            listeners.push((crate::tls::ListenerKind::S3, self.s3.addr));
        }
        listeners
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
