//! `darkroom prompts`: the prompt library of a running daemon from the shell —
//! list and show prompts with their stats, save new ones and new versions, run
//! A/B campaigns, keep collections, and export/import the library as one file
//! for git. Every call goes through the typed API client.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Map, Value, json};

use crate::cli::Remote;
use crate::prompts::{
    CampaignDraft, CampaignReport, Collection, LibraryExport, PromptDraft, PromptEdit, Stats, Variant,
};
use crate::service::prompts::{PromptDetails, PromptFilter, PromptSummary};

#[derive(Debug, Clone, Subcommand)]
pub enum PromptsCommand {
    /// Saved prompts with uses, success rate, times and mean rating.
    List {
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        /// Only favourites.
        #[arg(long)]
        favourite: bool,
        /// Only the prompts of this collection.
        #[arg(long)]
        collection: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One prompt: every version with its stats, and its latest runs.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Save a prompt: a new one, or a new version of an existing one when its
    /// template or parameters change.
    Save {
        name: String,
        /// The template it runs (`txt2img`, ...); an existing prompt keeps its own.
        #[arg(long)]
        template: Option<String>,
        /// A parameter, `name=value` (repeatable; JSON values when they parse).
        /// For an existing prompt, changes these on top of its latest version.
        #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        category: Option<String>,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long)]
        author: Option<String>,
        #[arg(long)]
        favourite: Option<bool>,
        /// What this version changes.
        #[arg(long)]
        note: Option<String>,
    },
    /// Delete a prompt and the record of its runs (its jobs stay).
    Delete { name: String },
    /// Write the whole library (prompts with every version, collections, campaign
    /// definitions) as JSON, to a file or stdout.
    Export {
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Merge an exported library file.
    Import {
        file: PathBuf,
        /// Replace prompts whose versions differ from the file's.
        #[arg(long)]
        replace: bool,
    },
    /// A/B campaigns.
    #[command(subcommand)]
    Campaign(CampaignCommand),
    /// Collections: named lists of prompts.
    #[command(subcommand)]
    Collection(CollectionCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub enum CampaignCommand {
    /// Every campaign with its state and progress.
    List,
    /// Start a campaign over 2+ prompt versions.
    Create {
        name: String,
        /// `NAME@VERSION` or `NAME@VERSION:WEIGHT` (repeatable, 2 or more).
        #[arg(long = "variant", required = true)]
        variants: Vec<String>,
        /// Submissions in all.
        #[arg(long, default_value_t = 100)]
        target: u64,
        /// Ratings each variant needs before a winner is named.
        #[arg(long, default_value_t = 10)]
        min_ratings: u64,
        #[arg(long)]
        description: Option<String>,
        /// Create it as a draft (no submissions until `start`).
        #[arg(long)]
        draft: bool,
    },
    /// Each variant's runs, success rate, mean rating and time, and the winner.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    Start {
        name: String,
    },
    Stop {
        name: String,
    },
    Delete {
        name: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum CollectionCommand {
    List,
    /// Create or replace a collection.
    Set {
        name: String,
        prompts: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    Delete {
        name: String,
    },
}

/// `NAME=VALUE` flags as template parameters.
pub fn parse_params(flags: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut params = Map::new();
    for p in flags {
        let (name, value) = p
            .split_once('=')
            .with_context(|| format!("--param {p:?}: expected NAME=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        params.insert(name.trim().to_owned(), value);
    }
    Ok(params)
}

fn parse_variant(text: &str) -> anyhow::Result<Variant> {
    let (prompt, weight) = match text.rsplit_once(':') {
        Some((p, w)) => (
            p,
            w.parse()
                .with_context(|| format!("--variant {text:?}: the weight after ':' must be a number"))?,
        ),
        None => (text, 1),
    };
    Ok(Variant {
        prompt: prompt.to_owned(),
        weight,
    })
}

/// Runs one `darkroom prompts` command.
#[allow(clippy::too_many_lines)]
pub async fn run(remote: &Remote, command: &PromptsCommand) -> anyhow::Result<()> {
    let api = super::client(remote)?;
    match command {
        PromptsCommand::List {
            category,
            tag,
            favourite,
            collection,
            json,
        } => {
            let filter = PromptFilter {
                category: category.clone(),
                tag: tag.clone(),
                favourite: favourite.then_some(true),
                collection: collection.clone(),
            };
            let list = api.prompts(&filter).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", list_text(&list));
            }
        }
        PromptsCommand::Show { name, json } => {
            let p = api.prompt(name).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print!("{}", show_text(&p));
            }
        }
        PromptsCommand::Save {
            name,
            template,
            params,
            description,
            category,
            tags,
            author,
            favourite,
            note,
        } => {
            let params = parse_params(params)?;
            let existing = match api.prompt(name).await {
                Ok(p) => Some(p),
                Err(crate::client::ClientError::Api { status: 404, .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let saved = match existing {
                None => {
                    let template = template
                        .clone()
                        .with_context(|| format!("prompt {name:?} is new: --template is required"))?;
                    api.create_prompt(&PromptDraft {
                        name: name.clone(),
                        description: description.clone().unwrap_or_default(),
                        category: category.clone(),
                        tags: tags.clone(),
                        author: author.clone(),
                        favourite: favourite.unwrap_or(false),
                        template,
                        params,
                        note: note.clone(),
                    })
                    .await?
                }
                Some(current) => {
                    let mut merged = current
                        .versions
                        .last()
                        .map(|v| v.version.params.clone())
                        .unwrap_or_default();
                    let changes = !params.is_empty();
                    merged.extend(params);
                    api.edit_prompt(
                        name,
                        &PromptEdit {
                            description: description.clone(),
                            category: category.clone(),
                            tags: (!tags.is_empty()).then(|| tags.clone()),
                            author: author.clone(),
                            favourite: *favourite,
                            template: template.clone(),
                            params: changes.then_some(merged),
                            note: note.clone(),
                        },
                    )
                    .await?
                }
            };
            println!("{}@{}", saved.name, saved.latest().version);
        }
        PromptsCommand::Delete { name } => {
            api.delete_prompt(name).await?;
            println!("deleted {name}");
        }
        PromptsCommand::Export { output } => {
            let file = api.export_library().await?;
            let text = serde_json::to_string_pretty(&file)? + "\n";
            match output {
                Some(path) => {
                    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
                }
                None => print!("{text}"),
            }
        }
        PromptsCommand::Import { file, replace } => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let library: LibraryExport = serde_json::from_str(&text)
                .with_context(|| format!("{} is not an exported prompt library", file.display()))?;
            let r = api.import_library(&library, *replace).await?;
            println!(
                "created {}, updated {}, unchanged {}, conflicts {}; {} collections, {} campaigns",
                r.created.len(),
                r.updated.len(),
                r.unchanged.len(),
                r.conflicts.len(),
                r.collections,
                r.campaigns
            );
            for name in &r.conflicts {
                println!(
                    "conflict: {name} has different versions under the same numbers (--replace to take the file's)"
                );
            }
        }
        PromptsCommand::Campaign(c) => campaign(&api, c).await?,
        PromptsCommand::Collection(c) => collection(&api, c).await?,
    }
    Ok(())
}

async fn campaign(api: &crate::client::ApiClient, command: &CampaignCommand) -> anyhow::Result<()> {
    match command {
        CampaignCommand::List => {
            for c in api.campaigns().await? {
                println!(
                    "{:<24} {:<9} {:>5}/{:<5} {}",
                    c.name, c.state, c.assigned, c.target, c.description
                );
            }
        }
        CampaignCommand::Create {
            name,
            variants,
            target,
            min_ratings,
            description,
            draft,
        } => {
            let variants = variants
                .iter()
                .map(|v| parse_variant(v))
                .collect::<anyhow::Result<_>>()?;
            let c = api
                .create_campaign(&CampaignDraft {
                    name: name.clone(),
                    description: description.clone().unwrap_or_default(),
                    variants,
                    target: Some(*target),
                    min_ratings: Some(*min_ratings),
                    state: draft.then_some(crate::prompts::CampaignState::Draft),
                })
                .await?;
            let arms: Vec<String> = c
                .variants
                .iter()
                .map(|v| format!("{} x{}", v.prompt, v.weight))
                .collect();
            println!("{} {} over {}", c.name, c.state, arms.join(", "));
        }
        CampaignCommand::Show { name, json } => {
            let r = api.campaign(name).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", campaign_text(&r));
            }
        }
        CampaignCommand::Start { name } => {
            println!("{} {}", name, api.campaign_action(name, "start").await?.state);
        }
        CampaignCommand::Stop { name } => {
            println!("{} {}", name, api.campaign_action(name, "stop").await?.state);
        }
        CampaignCommand::Delete { name } => {
            api.delete_campaign(name).await?;
            println!("deleted {name}");
        }
    }
    Ok(())
}

async fn collection(api: &crate::client::ApiClient, command: &CollectionCommand) -> anyhow::Result<()> {
    match command {
        CollectionCommand::List => {
            for c in api.collections().await? {
                println!("{:<24} {}", c.name, c.prompts.join(", "));
            }
        }
        CollectionCommand::Set {
            name,
            prompts,
            description,
        } => {
            let c = Collection {
                name: name.clone(),
                description: description.clone().unwrap_or_default(),
                prompts: prompts.clone(),
            };
            let c = api.put_collection(name, &c).await?;
            println!("{}: {}", c.name, c.prompts.join(", "));
        }
        CollectionCommand::Delete { name } => {
            api.delete_collection(name).await?;
            println!("deleted {name}");
        }
    }
    Ok(())
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{:.0}%", x * 100.0))
}

fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

fn stats_cols(s: &Stats) -> String {
    format!(
        "{:>5}  {:>5}  {:>7}  {:>7}  {:>6} ({})",
        s.uses,
        pct(s.success_rate),
        num(s.mean_seconds, 1),
        num(s.p95_seconds, 1),
        num(s.mean_rating, 2),
        s.ratings
    )
}

const STATS_HEAD: &str = " USES   OK%     MEAN      P95  RATING";

/// The listing for a person.
pub fn list_text(list: &[PromptSummary]) -> String {
    if list.is_empty() {
        return "no saved prompts (darkroom prompts save NAME --template T -p prompt=...)\n".into();
    }
    let mut out = format!("{:<24} {:>3}  {:<12} {STATS_HEAD}\n", "PROMPT", "V", "TEMPLATE");
    for p in list {
        let star = if p.favourite { "*" } else { "" };
        let _ = writeln!(
            out,
            "{:<24} {:>3}  {:<12} {}",
            format!("{}{star}", p.name),
            p.latest_version,
            p.template,
            stats_cols(&p.stats)
        );
    }
    out
}

/// One prompt for a person.
pub fn show_text(p: &PromptDetails) -> String {
    let mut out = format!("{}{}\n", p.name, if p.favourite { " *" } else { "" });
    if !p.description.is_empty() {
        let _ = writeln!(out, "  {}", p.description);
    }
    let mut about = Vec::new();
    if let Some(c) = &p.category {
        about.push(format!("category {c}"));
    }
    if !p.tags.is_empty() {
        about.push(format!("tags {}", p.tags.join(", ")));
    }
    if let Some(a) = &p.author {
        about.push(format!("by {a}"));
    }
    if !about.is_empty() {
        let _ = writeln!(out, "  {}", about.join("; "));
    }
    let _ = writeln!(out, "{:<10} {:<12} {STATS_HEAD}", "VERSION", "TEMPLATE");
    for v in &p.versions {
        let _ = writeln!(
            out,
            "{:<10} {:<12} {}",
            format!("@{}", v.version.version),
            v.version.template,
            stats_cols(&v.stats)
        );
        let params = serde_json::to_string(&v.version.params).unwrap_or_default();
        let _ = writeln!(out, "           {params}");
    }
    let _ = writeln!(out, "{:<23} {}", "all versions", stats_cols(&p.stats));
    if !p.recent.is_empty() {
        let _ = writeln!(out, "recent jobs:");
        for r in &p.recent {
            let status = r.status.map_or_else(|| "gone".to_owned(), |s| s.to_string());
            let rating = r.rating.map(|x| format!("  rated {x}")).unwrap_or_default();
            let _ = writeln!(out, "  {} @{} {status}{rating}", r.job_id, r.version);
        }
    }
    out
}

/// A campaign report for a person.
pub fn campaign_text(r: &CampaignReport) -> String {
    let mut out = format!(
        "{} {} ({} of {} submissions)\n",
        r.name, r.state, r.assigned, r.target
    );
    let _ = writeln!(out, "{:<24} {:>6} {STATS_HEAD}", "VARIANT", "WEIGHT");
    for v in &r.variants {
        let _ = writeln!(out, "{:<24} {:>6} {}", v.prompt, v.weight, stats_cols(&v.stats));
    }
    let _ = writeln!(out, "{}", r.verdict);
    out
}
