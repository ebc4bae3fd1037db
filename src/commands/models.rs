//! `darkroom models`: the model catalog of a running daemon — each model's file,
//! quality, VRAM, where it is available and loaded, its run time (learned or
//! estimated) — and each backend's loaded model and swaps.

use std::fmt::Write as _;

use crate::cli::Remote;
use crate::service::models::ModelsReport;

/// Prints the catalog report (`--json`: as the API gives it).
pub async fn models(remote: &Remote, json: bool) -> anyhow::Result<()> {
    let report = super::client(remote)?.models().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", models_text(&report));
    }
    Ok(())
}

/// The report for a person.
pub fn models_text(r: &ModelsReport) -> String {
    if r.models.is_empty() {
        return "no model catalog ([[models]] in config.toml): jobs name their checkpoint file\n".into();
    }
    let mut out = format!(
        "{:<22}  {:<7}  {:>6}  {:>8}  {:<10}  WHERE\n",
        "MODEL", "QUALITY", "VRAM", "SECONDS", "LEARNED"
    );
    for m in &r.models {
        let runs: usize = m.timings.iter().map(|t| t.runs).sum();
        let learned = if runs >= crate::models::timings::MIN_SAMPLES {
            format!("{runs} runs")
        } else {
            format!("est. ({runs})")
        };
        let mut where_ = if m.available_on.is_empty() {
            "on no backend yet".to_owned()
        } else {
            m.available_on.join(", ")
        };
        if !m.loaded_on.is_empty() {
            let _ = write!(where_, "; loaded on {}", m.loaded_on.join(", "));
        }
        let _ = writeln!(
            out,
            "{:<22}  {:<7}  {:>4.0}GB  {:>8.1}  {:<10}  {where_}",
            m.model.name,
            m.model.quality.as_str(),
            m.model.vram_gb,
            m.run_seconds,
            learned
        );
    }
    let _ = writeln!(
        out,
        "scheduler: {} (max affinity wait {} s)",
        r.scheduler, r.max_affinity_wait_seconds
    );
    for b in &r.backends {
        let loaded = b.loaded_model.as_deref().unwrap_or("nothing yet");
        let health = if b.healthy { "" } else { " (down)" };
        let _ = writeln!(
            out,
            "backend {}{health}: loaded {loaded}, {} swaps",
            b.url, b.swaps
        );
    }
    out
}
