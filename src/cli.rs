//! The command line (clap derive). `darkroom` alone runs the daemon with the
//! terminal dashboard; `darkroom serve` runs it headless; `darkroom dash` attaches
//! the dashboard to a running daemon; `darkroom config check`
//! validates a configuration and prints the effective one; `submit`, `jobs` and
//! `status` are thin clients of a running daemon's HTTP API, and `mcp` serves
//! MCP over stdio in front of it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{LogFormat, Overrides};
use crate::dash::ImageProtocol;

#[derive(Debug, Parser)]
#[command(
    name = "darkroom",
    version,
    about = "One binary to run an image-generation box",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand: run the daemon with the dashboard (same flags as
    /// `serve`; headless when there is no terminal).
    #[command(flatten)]
    pub serve: ServeArgs,
    /// With no subcommand: the dashboard cannot cancel, retry or submit.
    #[arg(long)]
    pub readonly: bool,
    /// With no subcommand: how the dashboard draws pictures (default:
    /// dash.image_protocol, `auto`).
    #[arg(long, value_name = "auto|kitty|iterm2|sixel|halfblocks|none")]
    pub image_protocol: Option<ImageProtocol>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the headless daemon (S3, API, queue, dispatcher, GPU telemetry, alerts).
    Serve(ServeArgs),
    /// Attach the terminal dashboard to a running daemon through its API.
    Dash {
        #[command(flatten)]
        remote: Remote,
        /// No cancel, retry or submit.
        #[arg(long)]
        readonly: bool,
        /// How pictures are drawn (default: dash.image_protocol, `auto`: ask
        /// the terminal).
        #[arg(long, value_name = "auto|kitty|iterm2|sixel|halfblocks|none")]
        image_protocol: Option<ImageProtocol>,
    },
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Submit a job to a running daemon.
    Submit(SubmitArgs),
    /// List, show, cancel or retry jobs of a running daemon.
    Jobs {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Read this machine's GPUs through NVML and print them (no daemon needed).
    Gpu {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Print one reading and exit (default: one every second until Ctrl-C).
        #[arg(long)]
        once: bool,
        /// The NVML library (default: gpu.nvml_lib, `libnvidia-ml.so.1`).
        #[arg(long, value_name = "PATH")]
        nvml_lib: Option<String>,
    },
    /// Check a data directory no daemon holds: every object's bytes (size, MD5),
    /// orphan blob files, every database's integrity. Exit 0 clean, 1 problems
    /// found, 2 could not run.
    Verify {
        /// The data directory (default: data_dir from the configuration).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Delete orphan blob files; mark objects with missing or corrupt bytes
        /// damaged, so reads name them instead of serving wrong bytes.
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Back up: a consistent snapshot of the databases and the blobs they need, to
    /// a directory or s3://bucket/prefix, copying only blobs the destination lacks.
    /// Through the daemon at --url while it serves, or with --data on a data
    /// directory no daemon holds.
    Backup(BackupArgs),
    /// Rebuild a data directory from a backup, checking every file's SHA-256.
    Restore(RestoreArgs),
    /// TLS certificates for the S3 and API listeners.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Keys: users' API keys (`create`, `list`, `revoke`), and the master key of
    /// encryption at rest (`rotate-master`).
    Keys {
        #[command(flatten)]
        target: crate::commands::users::Target,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// What each user used per day, and where they stand against their quotas.
    Usage(crate::commands::usage::UsageArgs),
    /// Users and their roles (admin, user, viewer), on a running daemon or, with
    /// `--data DIR`, a stopped one's store.
    Users {
        #[command(flatten)]
        target: crate::commands::users::Target,
        #[command(subcommand)]
        command: crate::commands::users::UsersCommand,
    },
    /// Serve MCP (Model Context Protocol) on stdin/stdout for an agent (Claude
    /// Desktop, Claude Code), calling a running daemon's API.
    Mcp {
        #[command(flatten)]
        remote: Remote,
    },
    /// Print a running daemon's model catalog: where each model is available and
    /// loaded, learned timings, swaps per backend.
    Models {
        #[command(flatten)]
        remote: Remote,
        /// Print the raw JSON report.
        #[arg(long)]
        json: bool,
    },
    /// The drop folders (`[[inbox]]`) of a running daemon.
    #[command(subcommand)]
    Inbox(InboxCommand),
    /// Workflow templates: import a workflow exported from ComfyUI, list, show,
    /// validate against a backend, delete.
    #[command(subcommand)]
    Templates(TemplatesCommand),
    /// The prompt library of a running daemon: saved prompts with versions and
    /// stats, A/B campaigns, collections, export and import.
    Prompts {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: crate::commands::prompts::PromptsCommand,
    },
    /// Print a running daemon's status (queue, backends, storage, cache, alerts).
    Status {
        #[command(flatten)]
        remote: Remote,
        /// Print the raw JSON snapshot.
        #[arg(long)]
        json: bool,
    },
}

/// `darkroom inbox ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum InboxCommand {
    /// Each rule with its template and pending, processed and failed counts.
    List {
        #[command(flatten)]
        remote: Remote,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `darkroom templates ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum TemplatesCommand {
    /// Import a workflow saved with ComfyUI's Workflow → Export (API) as template
    /// NAME, with a proposed manifest: into the templates folder, or into a
    /// running daemon with --url.
    Import(ImportArgs),
    /// List a running daemon's templates with their versions.
    List {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        json: bool,
    },
    /// Show one template: version, parameters, manifest.
    Show {
        name: String,
        #[command(flatten)]
        remote: Remote,
        /// Print the whole template (workflow included) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a template against a backend's /object_info (unknown node classes
    /// and inputs, values out of range or not among the choices). Exit 1 when
    /// something is wrong.
    Validate {
        name: String,
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        json: bool,
    },
    /// Delete a user template (built-ins cannot be).
    Delete {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `darkroom templates import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The workflow file (API format: in ComfyUI enable the Dev mode options in
    /// the settings, then Workflow → Export (API)).
    pub file: PathBuf,
    /// The template's name: 1 to 64 of a-z, 0-9, `_` and `-`.
    #[arg(long)]
    pub name: String,
    /// Print the proposed manifest (TOML) and save nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Use this manifest (the proposal, edited) instead of proposing one.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// The description of a proposed manifest.
    #[arg(long)]
    pub description: Option<String>,
    /// Replace a template of that name.
    #[arg(long)]
    pub replace: bool,
    /// Save into the daemon at this URL (POST /api/v1/templates) instead of the
    /// templates folder; its backends give the ranges.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Bearer token of the daemon at --url.
    #[arg(long, env = "DARKROOM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM file of CA certificates to trust for an https:// --url.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Without --url: the templates folder (default: comfyui.templates_dir).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Without --url: a ComfyUI server whose /object_info gives ranges and
    /// choices (repeatable; default: comfyui.backends).
    #[arg(long = "comfyui", value_name = "URL")]
    pub comfyui: Vec<String>,
    /// Without --url: the config file (default: ./config.toml when present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `darkroom tls ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum TlsCommand {
    /// Write a self-signed certificate and key for a LAN (cert.pem, key.pem) and
    /// print its SHA-256 fingerprint and the [tls] lines that use it.
    SelfSigned {
        /// A DNS name or IP address clients reach the box by (repeatable).
        #[arg(long = "host", value_name = "NAME", required = true)]
        hosts: Vec<String>,
        /// Where to write the pair (default: {data_dir}/tls).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
}

/// `darkroom keys ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Replace the master key and re-wrap every object's data key with the new one
    /// (no object is rewritten). Run it with the daemon stopped (`--data DIR`:
    /// its data directory; default: data_dir from the configuration).
    RotateMaster,
    #[command(flatten)]
    Api(crate::commands::users::KeyCommand),
}

/// `darkroom backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// A directory or s3://bucket/prefix (default with --url: the daemon's
    /// backup.dest).
    pub dest: Option<String>,
    /// Back up this data directory (no daemon may hold it) instead of asking the
    /// daemon at --url.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub remote: Remote,
    /// Keep the newest N snapshots (0: all; default backup.keep).
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// List DEST's snapshots (complete and partial) instead.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub s3: S3DestArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `darkroom restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup: a directory or s3://bucket/prefix.
    pub src: String,
    /// The data directory to rebuild (default: data_dir from the configuration).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The snapshot to restore (default: the newest complete one).
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// Replace the databases and blobs of a data directory that is not empty.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub s3: S3DestArgs,
    /// A PEM file of CA certificates to trust for an https:// S3 endpoint besides
    /// the public roots (default: tls.ca_file).
    #[arg(long, env = "DARKROOM_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The S3 endpoint of an `s3://` backup destination, for the command line (the
/// keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, as for awscli).
#[derive(Debug, Clone, Default, Args)]
pub struct S3DestArgs {
    /// The S3 endpoint (MinIO, another darkroom); default AWS_ENDPOINT_URL, else
    /// AWS itself.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The region (default AWS_REGION, else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
}

/// Where the daemon's API is.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The daemon's HTTP API.
    #[arg(
        long,
        env = "DARKROOM_URL",
        default_value = "http://127.0.0.1:9080",
        global = true
    )]
    pub url: String,
    /// Bearer token (the daemon's api.token).
    #[arg(long, env = "DARKROOM_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A PEM file of CA certificates to trust for an https:// --url (and an
    /// https:// S3 endpoint of `backup`) besides the public roots (a private CA,
    /// or the daemon's self-signed certificate).
    #[arg(long, env = "DARKROOM_CA_FILE", value_name = "FILE", global = true)]
    pub ca_file: Option<PathBuf>,
}

impl Remote {
    /// The API client these flags describe.
    pub fn client(&self) -> Result<crate::client::ApiClient, crate::client::ClientError> {
        crate::client::ApiClient::with_ca(&self.url, self.token.clone(), self.ca_file.as_deref())
    }
}

#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// The template to run (`noop`, `txt2img`, ...); see `GET /api/v1/templates`.
    #[arg(required_unless_present_any = ["workflow", "prompt", "campaign"])]
    pub template: Option<String>,
    /// Run a saved prompt, `NAME` (its latest version) or `NAME@3`; `--param`
    /// overrides its parameters.
    #[arg(long, value_name = "NAME[@VERSION]", conflicts_with_all = ["template", "workflow", "campaign"])]
    pub prompt: Option<String>,
    /// Submit to an A/B campaign: it picks the prompt version.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["template", "workflow"])]
    pub campaign: Option<String>,
    /// A template parameter, `name=value` (repeatable); values are JSON when they
    /// parse as JSON (`steps=30`), else strings (`prompt=a red fox`).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Run an API-format workflow file instead of a template.
    #[arg(long, value_name = "FILE", conflicts_with = "template")]
    pub workflow: Option<PathBuf>,
    #[arg(long)]
    pub priority: Option<i32>,
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// POST the result here when the job ends.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Do not reuse a cached result of an identical workflow.
    #[arg(long)]
    pub no_cache: bool,
    /// Wait up to this many seconds for the job to finish and print its outputs.
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
    /// Print the job as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest work first.
    List {
        /// Only this status: queued, scheduled, running, succeeded, failed, cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show one job in full (JSON).
    Show { id: String },
    /// Cancel a job.
    Cancel { id: String },
    /// Run a failed or cancelled job again.
    Retry { id: String },
    /// Rate a succeeded job's images, 1 (worst) to 5 (best).
    Rate {
        id: String,
        #[arg(value_parser = clap::value_parser!(u8).range(1..=5))]
        rating: u8,
        #[arg(long)]
        comment: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file (default: ./config.toml if present) plus the DARKROOM_*
    /// environment, and print the effective configuration.
    Check {
        /// The file to check.
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    /// Config file (default: ./config.toml when present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (database and object blobs).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// S3 listen address.
    #[arg(long, value_name = "HOST:PORT")]
    pub s3_addr: Option<SocketAddr>,
    /// HTTP API listen address.
    #[arg(long, value_name = "HOST:PORT")]
    pub api_addr: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// A ComfyUI server to run jobs on (repeatable; replaces `comfyui.backends`).
    #[arg(long = "comfyui", value_name = "URL")]
    pub comfyui: Vec<String>,
    /// The NVML library to read GPUs through (replaces `gpu.nvml_lib`).
    #[arg(long, value_name = "PATH")]
    pub nvml_lib: Option<String>,
}

impl ServeArgs {
    /// The flags that override the config file and environment.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.data.clone(),
            s3_addr: self.s3_addr,
            api_addr: self.api_addr,
            log_format: self.log_format,
            comfyui: self.comfyui.clone(),
            nvml_lib: self.nvml_lib.clone(),
        }
    }
}
