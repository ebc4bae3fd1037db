//! The `darkroom` executable: parse the command line, set up logging, run.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use darkroom::cli::{Cli, Command, ConfigCommand, ServeArgs};
use darkroom::config::{Config, Overrides};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Serve(args)) => serve(&args),
        None if darkroom::dash::has_terminal() => dashboard(&cli.serve, cli.readonly, cli.image_protocol),
        None => {
            eprintln!("darkroom: no terminal for the dashboard; running headless (as `darkroom serve`)");
            serve(&cli.serve)
        }
        Some(Command::Dash {
            remote,
            readonly,
            image_protocol,
        }) => Config::load(None, &Overrides::default())
            .map_err(anyhow::Error::from)
            .and_then(|loaded| {
                let image_protocol = image_protocol.unwrap_or(loaded.config.dash.image_protocol);
                client(darkroom::dash::run_remote(
                    &remote,
                    darkroom::dash::Options {
                        readonly,
                        image_protocol,
                    },
                ))
            }),
        Some(Command::Config(ConfigCommand::Check { file })) => check_config(file.as_deref()),
        Some(Command::Submit(args)) => client(darkroom::commands::submit(&args)),
        Some(Command::Jobs { remote, command }) => client(darkroom::commands::jobs(&remote, &command)),
        Some(Command::Mcp { remote }) => mcp(&remote),
        Some(Command::Usage(args)) => client(darkroom::commands::usage::usage(&args)),
        Some(Command::Status { remote, json }) => client(darkroom::commands::status(&remote, json)),
        Some(Command::Templates(command)) => client(darkroom::commands::templates::run(&command)),
        Some(Command::Prompts { remote, command }) => {
            client(darkroom::commands::prompts::run(&remote, &command))
        }
        Some(Command::Models { remote, json }) => client(darkroom::commands::models::models(&remote, json)),
        Some(Command::Inbox(darkroom::cli::InboxCommand::List { remote, json })) => {
            client(darkroom::commands::inbox::list(&remote, json))
        }
        Some(Command::Verify { data, repair, json }) => return verify(data, repair, json),
        Some(Command::Backup(args)) => with_data_dir(args.data.clone())
            .and_then(|c| client(darkroom::commands::backup::backup(&args, &c))),
        Some(Command::Tls(command)) => darkroom::commands::tls::run(&command),
        Some(Command::Keys {
            target,
            command: darkroom::cli::KeysCommand::RotateMaster,
        }) => with_data_dir(target.data).and_then(|c| client(darkroom::commands::keys::rotate_master(&c))),
        Some(Command::Keys {
            target,
            command: darkroom::cli::KeysCommand::Api(command),
        }) => local_config(&target)
            .and_then(|c| client(darkroom::commands::users::keys(&target, c.as_ref(), &command))),
        Some(Command::Users { target, command }) => local_config(&target)
            .and_then(|c| client(darkroom::commands::users::users(&target, c.as_ref(), &command))),
        Some(Command::Restore(args)) => with_data_dir(args.data.clone())
            .and_then(|c| client(darkroom::commands::backup::restore(&args, &c))),
        Some(Command::Gpu { json, once, nvml_lib }) => {
            let overrides = Overrides {
                nvml_lib,
                ..Overrides::default()
            };
            Config::load(None, &overrides)
                .map_err(anyhow::Error::from)
                .and_then(|l| darkroom::commands::gpu(&l.config.gpu.nvml_lib, json, once))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("darkroom: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let loaded = Config::load(args.config.as_deref(), &args.overrides())?;
    darkroom::telemetry::init(
        loaded.config.log.format,
        &loaded.config.log.level,
        &darkroom::telemetry::Output::Stderr,
    )?;
    if let Some(file) = &loaded.file {
        tracing::info!(file = %file.display(), "configuration loaded");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(darkroom::daemon::run(loaded.config))
}

/// The daemon with the dashboard in this terminal; the log goes to a file and the
/// log panel, never over the screen.
fn dashboard(
    args: &ServeArgs,
    readonly: bool,
    image_protocol: Option<darkroom::dash::ImageProtocol>,
) -> anyhow::Result<()> {
    let loaded = Config::load(args.config.as_deref(), &args.overrides())?;
    let dir = &loaded.config.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("data_dir: cannot create {}", dir.display()))?;
    let log = dir.join("darkroom.log");
    darkroom::telemetry::init(
        loaded.config.log.format,
        &loaded.config.log.level,
        &darkroom::telemetry::Output::File(&log),
    )
    .with_context(|| format!("cannot open the log file {}", log.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let options = darkroom::dash::Options {
        readonly,
        image_protocol: image_protocol.unwrap_or(loaded.config.dash.image_protocol),
    };
    runtime.block_on(darkroom::dash::run_local(loaded.config, options))
}

/// `darkroom verify`: 0 clean, 1 problems found, 2 could not run.
/// The configuration (for `data_dir` and `[backup]`), with `--data` over it.
/// The configuration with `--data`, when the command works on a stopped daemon's store.
fn local_config(target: &darkroom::commands::users::Target) -> anyhow::Result<Option<Config>> {
    target.data.clone().map(|d| with_data_dir(Some(d))).transpose()
}

fn with_data_dir(data: Option<std::path::PathBuf>) -> anyhow::Result<Config> {
    let overrides = Overrides {
        data_dir: data,
        ..Overrides::default()
    };
    Ok(Config::load(None, &overrides)?.config)
}

fn verify(data: Option<std::path::PathBuf>, repair: bool, json: bool) -> ExitCode {
    let dir = match with_data_dir(data) {
        Ok(c) => c.data_dir,
        Err(e) => {
            eprintln!("darkroom: {e}");
            return ExitCode::from(2);
        }
    };
    match darkroom::commands::verify(&dir, repair, json) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("darkroom: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `darkroom mcp`: stdout carries MCP's messages, so the log goes to stderr
/// (warnings only unless RUST_LOG says otherwise; rmcp's warning for each
/// refused request is left out, the client has the answer).
fn mcp(remote: &darkroom::cli::Remote) -> anyhow::Result<()> {
    darkroom::telemetry::init(
        darkroom::config::LogFormat::Text,
        "warn,rmcp=error",
        &darkroom::telemetry::Output::Stderr,
    )?;
    client(darkroom::mcp::serve_stdio(remote))
}

/// Runs a client subcommand on a small runtime.
fn client(run: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run)
}

fn check_config(file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let loaded = Config::load(file, &Overrides::default())?;
    match &loaded.file {
        Some(f) => eprintln!("darkroom: {} is valid", f.display()),
        None => eprintln!("darkroom: no config file; built-in defaults and environment are valid"),
    }
    print!("{}", loaded.config.to_toml());
    Ok(())
}
