//! `darkroom backup` and `darkroom restore` for a person or a script: pick the
//! path (through the daemon's API, or straight on a data directory no daemon
//! holds), run it, and print what happened — a line per fact, or JSON.

use std::fmt::Write as _;

use anyhow::Context;

use crate::backup::{BackupReport, Dest, Inventory, RestoreReport, Source};
use crate::cli::{BackupArgs, RestoreArgs, S3DestArgs};
use crate::clock::Clock as _;
use crate::config::Config;
use crate::dash::ui::fmt::bytes;
use crate::dispatch::ExternalS3;
use crate::service::BackupRequest;
use crate::tls::Trust;

/// The S3 settings of a destination: `[backup.s3]`, then the flags.
fn s3_settings(config: &Config, flags: &S3DestArgs) -> ExternalS3 {
    let mut s3 = config.backup.s3.clone();
    if let Some(endpoint) = &flags.s3_endpoint {
        s3.endpoint.clone_from(endpoint);
    }
    if let Some(region) = &flags.s3_region {
        s3.region.clone_from(region);
    }
    s3
}

/// The CAs an `s3://` destination over https is trusted by: `--ca-file`, else
/// `tls.ca_file`.
fn trust(config: &Config, ca_file: Option<&std::path::Path>) -> anyhow::Result<Trust> {
    let (key, file) = match ca_file {
        Some(f) => ("--ca-file", Some(f)),
        None => ("tls.ca_file", config.tls.ca()),
    };
    Trust::load(file).with_context(|| key.to_owned())
}

/// `darkroom backup`.
pub async fn backup(args: &BackupArgs, config: &Config) -> anyhow::Result<()> {
    let s3 = s3_settings(config, &args.s3);
    let spec = args.dest.clone().unwrap_or_else(|| config.backup.dest.clone());
    let trust = trust(config, args.remote.ca_file.as_deref())?;
    if args.list {
        return list(&Dest::parse(&spec, &s3, &trust)?, args.json).await;
    }
    let report = match &args.data {
        Some(dir) => {
            let dest = Dest::parse(&spec, &s3, &trust)?;
            let source = Source::open(dir)?;
            let keep = args.keep.unwrap_or(config.backup.keep);
            let now = crate::clock::SystemClock.now_ms();
            crate::backup::backup(&source, &dest, keep, now).await?
        }
        None => {
            let api = args.remote.client()?;
            let request = BackupRequest {
                dest: args.dest.clone(),
                keep: args.keep,
            };
            api.backup(&request)
                .await
                .with_context(|| format!("the daemon at {} could not take the backup", args.remote.url))?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", describe(&report));
    }
    Ok(())
}

/// A backup report for a person.
pub fn describe(r: &BackupReport) -> String {
    let mut out = format!("snapshot {} -> {}\n", r.id, r.dest);
    let _ = writeln!(
        out,
        "  {} files and {} blobs, {} in all; copied {} blobs, {} in {:.1}s (writes paused {} ms)",
        r.files,
        r.blobs,
        bytes(r.bytes),
        r.blobs_copied,
        bytes(r.bytes_copied),
        r.seconds,
        r.writes_paused_ms
    );
    if !r.pruned.is_empty() {
        let _ = writeln!(out, "  pruned: {}", r.pruned.join(", "));
    }
    out
}

async fn list(dest: &Dest, json: bool) -> anyhow::Result<()> {
    let snapshots = Inventory::read(dest).await?.list();
    if json {
        println!("{}", serde_json::to_string_pretty(&snapshots)?);
        return Ok(());
    }
    if snapshots.is_empty() {
        println!("{}: no snapshots", dest.describe());
    }
    for s in snapshots {
        if s.complete {
            println!("{}  complete  {} files  {}", s.id, s.files, bytes(s.bytes));
        } else {
            println!(
                "{}  PARTIAL   (a backup that did not finish; never restored, pruned by the next backup)",
                s.id
            );
        }
    }
    Ok(())
}

/// `darkroom restore`.
pub async fn restore(args: &RestoreArgs, config: &Config) -> anyhow::Result<()> {
    let trust = trust(config, args.ca_file.as_deref())?;
    let src = Dest::parse(&args.src, &s3_settings(config, &args.s3), &trust)?;
    let clock = crate::clock::system();
    let report = crate::backup::restore(
        &src,
        &config.data_dir,
        args.snapshot.as_deref(),
        args.force,
        clock,
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", describe_restore(&report));
    }
    Ok(())
}

fn describe_restore(r: &RestoreReport) -> String {
    format!(
        "restored snapshot {} into {}: {} files, {}, every SHA-256 checked; {} running jobs queued again\n",
        r.snapshot,
        r.data_dir.display(),
        r.files,
        bytes(r.bytes),
        r.requeued
    )
}
