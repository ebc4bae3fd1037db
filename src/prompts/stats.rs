//! What the runs of a prompt version (or of a campaign variant) add up to, and
//! which campaign variant wins — pure functions over [`Run`] records, so the
//! figures can be checked by hand.
//!
//! - `uses`: every job submitted with the version;
//! - `success_rate`: succeeded / (succeeded + failed); cancelled jobs and jobs
//!   still waiting count for neither (absent while none has ended);
//! - `mean_seconds`, `p95_seconds` (nearest rank): generation time of succeeded jobs;
//! - `mean_rating`: over the rated jobs.
//!
//! **The winner rule**: once every variant has at least `min_ratings` ratings, the
//! variant with the highest mean rating wins; a tie goes to the higher success
//! rate, then to the lower mean time, then to the variant listed first. Until
//! then there is no winner, and the report says which variant lacks ratings.

use serde::{Deserialize, Serialize};

use super::model::{Campaign, CampaignState, Run};
use crate::models::timings::percentile;
use crate::queue::JobStatus;

/// The figures of a set of runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stats {
    pub uses: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_seconds: Option<f64>,
    pub ratings: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_rating: Option<f64>,
}

#[allow(clippy::cast_precision_loss)]
fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The figures of `runs`.
#[allow(clippy::cast_precision_loss)]
pub fn of<'a>(runs: impl IntoIterator<Item = &'a Run>) -> Stats {
    let mut s = Stats::default();
    let mut seconds = Vec::new();
    let mut ratings = Vec::new();
    for run in runs {
        s.uses += 1;
        match run.status {
            Some(JobStatus::Succeeded) => {
                s.succeeded += 1;
                seconds.extend(run.seconds);
            }
            Some(JobStatus::Failed) => s.failed += 1,
            Some(JobStatus::Cancelled) => s.cancelled += 1,
            _ => {}
        }
        ratings.extend(run.rating.map(f64::from));
    }
    let ended = s.succeeded + s.failed;
    s.success_rate = (ended > 0).then(|| s.succeeded as f64 / ended as f64);
    s.mean_seconds = mean(&seconds);
    s.p95_seconds = percentile(&seconds, 0.95);
    s.ratings = ratings.len() as u64;
    s.mean_rating = mean(&ratings);
    s
}

/// One variant of a campaign with its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VariantReport {
    /// `name@version`.
    pub prompt: String,
    pub weight: u32,
    #[serde(flatten)]
    pub stats: Stats,
}

/// A campaign with each variant's figures and the winner, if there is one yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignReport {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub state: CampaignState,
    pub target: u64,
    pub assigned: u64,
    pub min_ratings: u64,
    pub variants: Vec<VariantReport>,
    /// `name@version` of the winning variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// Why that one, or why none yet.
    pub verdict: String,
}

/// The report of `campaign` whose variants' runs are `runs[i]`.
pub fn report(campaign: &Campaign, runs: &[Vec<Run>]) -> CampaignReport {
    let variants: Vec<VariantReport> = campaign
        .variants
        .iter()
        .zip(runs)
        .map(|(v, runs)| VariantReport {
            prompt: v.prompt.clone(),
            weight: v.weight,
            stats: of(runs),
        })
        .collect();
    let (winner, verdict) = winner(&variants, campaign.min_ratings);
    CampaignReport {
        name: campaign.name.clone(),
        description: campaign.description.clone(),
        state: campaign.state,
        target: campaign.target,
        assigned: campaign.assigned,
        min_ratings: campaign.min_ratings,
        variants,
        winner,
        verdict,
    }
}

/// The winner rule (see the module documentation): the winner and why, or why
/// there is none yet.
pub fn winner(variants: &[VariantReport], min_ratings: u64) -> (Option<String>, String) {
    if let Some(short) = variants.iter().find(|v| v.stats.ratings < min_ratings) {
        return (
            None,
            format!(
                "no winner yet: {} has {} of the {min_ratings} ratings each variant needs",
                short.prompt, short.stats.ratings
            ),
        );
    }
    let key = |v: &VariantReport| {
        (
            v.stats.mean_rating.unwrap_or(0.0),
            v.stats.success_rate.unwrap_or(0.0),
            -v.stats.mean_seconds.unwrap_or(f64::INFINITY),
        )
    };
    let mut best: Option<&VariantReport> = None;
    for v in variants {
        // Strictly better only, so a full tie keeps the variant listed first.
        if best.is_none_or(|b| key(v).partial_cmp(&key(b)) == Some(std::cmp::Ordering::Greater)) {
            best = Some(v);
        }
    }
    let Some(best) = best else {
        return (None, "no variants".into());
    };
    let runner_up = variants
        .iter()
        .filter(|v| !std::ptr::eq(*v, best))
        .max_by(|a, b| key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal));
    let why = match runner_up {
        Some(r) if r.stats.mean_rating == best.stats.mean_rating => {
            if r.stats.success_rate == best.stats.success_rate {
                "tied on mean rating and success rate; faster on mean time"
            } else {
                "tied on mean rating; higher success rate"
            }
        }
        _ => "highest mean rating",
    };
    let rating = best.stats.mean_rating.unwrap_or(0.0);
    (
        Some(best.prompt.clone()),
        format!("{} wins: {why} ({rating:.2})", best.prompt),
    )
}

/// Which variant the `n`th submission (from 0) gets: smooth weighted round-robin,
/// so every cycle of `sum(weights)` submissions gives each variant exactly its
/// weight, interleaved (weights 2 and 1 give A B A, A B A, ...).
pub fn assign(weights: &[u32], n: u64) -> usize {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return 0;
    }
    let slot = n % total;
    let mut current = vec![0i64; weights.len()];
    let mut chosen = 0;
    let total = i64::try_from(total).unwrap_or(i64::MAX);
    for _ in 0..=slot {
        for (c, w) in current.iter_mut().zip(weights) {
            *c += i64::from(*w);
        }
        chosen = (0..current.len())
            .max_by_key(|i| (current[*i], std::cmp::Reverse(*i)))
            .unwrap_or(0);
        current[chosen] -= total;
    }
    chosen
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
