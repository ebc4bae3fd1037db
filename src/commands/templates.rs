//! `darkroom templates ...`: import a workflow exported from ComfyUI as a
//! template — into the templates folder (the daemon watching it picks it up) or
//! into a running daemon with `--url` — and list, show, validate and delete a
//! daemon's templates through its API. `--dry-run` prints the proposed manifest
//! for the user to accept or edit (`--manifest FILE` then uses the edited one).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::{ImportArgs, TemplatesCommand};
use crate::client::ApiClient;
use crate::comfy::{Template, TemplateSource, Templates};
use crate::config::{Config, Overrides};
use crate::service::{ImportOutcome, TemplateDetail, TemplateInfo, TemplateUpload, ValidationReport};
use crate::templates::{folder, object_info};
use crate::tls::Trust;

/// Runs one `darkroom templates` subcommand.
pub async fn run(command: &TemplatesCommand) -> anyhow::Result<()> {
    match command {
        TemplatesCommand::Import(args) => import(args).await,
        TemplatesCommand::List { remote, json } => {
            let list = super::client(remote)?.templates().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", list_text(&list));
            }
            Ok(())
        }
        TemplatesCommand::Show { name, remote, json } => {
            let t = super::client(remote)?.template(name).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                print!("{}", show_text(&t));
            }
            Ok(())
        }
        TemplatesCommand::Validate { name, remote, json } => {
            let report = super::client(remote)?.validate_template(name).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", validate_text(&report));
            }
            if !report.ok {
                bail!(
                    "template `{name}` has {} problem(s)",
                    report.findings.len() + report.problems.len()
                );
            }
            Ok(())
        }
        TemplatesCommand::Delete { name, remote } => {
            super::client(remote)?.delete_template(name).await?;
            println!("deleted template {name}");
            Ok(())
        }
    }
}

/// The templates as a table.
pub fn list_text(list: &[TemplateInfo]) -> String {
    let mut out = format!(
        "{:<24}  {:<12}  {:<7}  {:>6}  DESCRIPTION\n",
        "NAME", "VERSION", "SOURCE", "PARAMS"
    );
    for t in list {
        let broken = if t.problems.is_empty() {
            ""
        } else {
            " (newer edit broken: see show)"
        };
        let _ = writeln!(
            out,
            "{:<24}  {:<12}  {:<7}  {:>6}  {}{broken}",
            t.name,
            t.version,
            t.source.as_str(),
            t.params.len(),
            t.description
        );
    }
    out
}

/// One template for a person: its header, problems, then its manifest.
pub fn show_text(t: &TemplateDetail) -> String {
    let i = &t.info;
    let mut out = format!("{} version {} ({})\n", i.name, i.version, i.source);
    if !i.description.is_empty() {
        let _ = writeln!(out, "{}", i.description);
    }
    for p in &i.problems {
        let _ = writeln!(out, "PROBLEM: {p} (version {} still serves)", i.version);
    }
    out.push('\n');
    out.push_str(&t.manifest);
    if !t.manifest.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// A validation report for a person: one line per finding.
pub fn validate_text(r: &ValidationReport) -> String {
    let mut out = format!("{} version {} against {}: ", r.template, r.version, r.backend);
    if r.ok {
        out.push_str("ok\n");
        return out;
    }
    let _ = writeln!(out, "{} problem(s)", r.findings.len() + r.problems.len());
    for p in &r.problems {
        let _ = writeln!(out, "  file: {p}");
    }
    for f in &r.findings {
        let kind = serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(out, "  {kind}: {}", f.message);
    }
    out
}

/// `darkroom templates import`.
async fn import(args: &ImportArgs) -> anyhow::Result<()> {
    let file_name = args.file.file_name().map_or_else(
        || args.file.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let workflow = crate::templates::read_workflow(&file_name, &text)?;
    let manifest = match &args.manifest {
        Some(path) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    if let Some(url) = &args.url {
        let api = ApiClient::with_ca(url, args.token.clone(), args.ca_file.as_deref())?;
        let upload = TemplateUpload {
            name: Some(args.name.clone()),
            workflow,
            manifest,
            description: args.description.clone(),
        };
        let outcome = if args.replace && !args.dry_run {
            api.replace_template(&args.name, &upload).await?
        } else {
            api.import_template(&upload, args.dry_run).await?
        };
        report(&outcome, &format!("the daemon at {url}"));
        return Ok(());
    }
    let (dir, backends, trust) = folder_of(args)?;
    let outcome = import_to_folder(args, (&dir, &backends, &trust), &file_name, &workflow, manifest).await?;
    report(&outcome, &dir.display().to_string());
    Ok(())
}

/// The templates folder, the backends and the CAs they are trusted by (`tls.ca_file`)
/// of file mode.
fn folder_of(args: &ImportArgs) -> anyhow::Result<(std::path::PathBuf, Vec<String>, Trust)> {
    let config = Config::load(args.config.as_deref(), &Overrides::default())?.config;
    let trust = Trust::load(config.tls.ca()).context("tls.ca_file")?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| config.comfyui.templates_dir(&config.data_dir));
    let backends = if args.comfyui.is_empty() {
        config.comfyui.backends.iter().map(|b| b.url.clone()).collect()
    } else {
        args.comfyui.clone()
    };
    Ok((dir, backends, trust))
}

/// Proposes (or takes) the manifest and writes both files into the folder.
async fn import_to_folder(
    args: &ImportArgs,
    (dir, backends, trust): (&Path, &[String], &Trust),
    file_name: &str,
    workflow: &serde_json::Value,
    manifest: Option<String>,
) -> anyhow::Result<ImportOutcome> {
    let name = &args.name;
    if !folder::valid_name(name) {
        bail!("--name {name:?}: a template name is 1 to 64 of a-z, 0-9, `_` and `-`");
    }
    if Templates::embedded()?.get(name).is_ok() {
        bail!("--name {name:?} is a built-in template's name: pick another");
    }
    let (manifest_text, backend, notes) = match manifest {
        Some(text) => (text, None, Vec::new()),
        None => {
            let (backend, info, mut notes) =
                match object_info::fetch(backends, Duration::from_secs(15), trust).await {
                    Ok((url, info)) => (Some(url), Some(info), Vec::new()),
                    Err(why) => (None, None, vec![why]),
                };
            let description = args
                .description
                .clone()
                .unwrap_or_else(|| format!("imported from {file_name}"));
            let proposal = crate::templates::propose(workflow, info.as_ref(), &description);
            notes.extend(proposal.notes.iter().cloned());
            (
                crate::templates::manifest_text(&proposal, file_name),
                backend,
                notes,
            )
        }
    };
    let workflow_text = crate::service::templates::pretty(workflow);
    let template = Template::parse(name, &workflow_text, &manifest_text, TemplateSource::Folder)?;
    let saved = !args.dry_run;
    if saved {
        if !args.replace && exists(dir, name) {
            bail!(
                "template {name} already exists in {} (--replace replaces it)",
                dir.display()
            );
        }
        folder::write_pair(dir, name, &workflow_text, &manifest_text)
            .with_context(|| format!("cannot write template {name} into {}", dir.display()))?;
    }
    Ok(ImportOutcome {
        template: TemplateDetail {
            info: TemplateInfo {
                name: template.name.clone(),
                description: template.manifest.description.clone(),
                params: template.manifest.params.clone(),
                version: template.version.clone(),
                source: TemplateSource::Folder,
                problems: Vec::new(),
            },
            workflow: template.workflow,
            manifest: manifest_text,
        },
        saved,
        backend,
        notes,
    })
}

fn exists(dir: &Path, name: &str) -> bool {
    dir.join(format!("{name}.json")).exists() || dir.join(format!("{name}.toml")).exists()
}

/// Prints the proposal (dry run: the manifest on stdout) or what was saved;
/// notes go to stderr.
fn report(outcome: &ImportOutcome, place: &str) {
    let t = &outcome.template;
    if outcome.saved {
        println!(
            "saved template {} version {} ({} parameters) in {place}",
            t.info.name,
            t.info.version,
            t.info.params.len()
        );
    } else {
        print!("{}", t.manifest);
    }
    if let Some(b) = &outcome.backend {
        eprintln!("darkroom: ranges and choices from {b}/object_info");
    }
    for n in &outcome.notes {
        eprintln!("darkroom: note: {n}");
    }
}
