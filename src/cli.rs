//! The command line (clap derive). `darkroom` alone runs the daemon (the dashboard
//! will join it there); `darkroom serve` runs it headless; `darkroom config check`
//! validates a configuration and prints the effective one.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{LogFormat, Overrides};

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
    /// With no subcommand: run the daemon (same flags as `serve`).
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the headless daemon (S3 server, and the services of later releases).
    Serve(ServeArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
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
        }
    }
}
