//! `darkroom usage`: what each user used, per day, and where they stand against
//! their limits — yours, or (as an admin) anyone's, from a running daemon.

use std::fmt::Write as _;

use clap::Args;

use crate::cli::Remote;
use crate::service::quotas::{UsageQuery, UsageReport};

/// `darkroom usage`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct UsageArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// Whose usage (admins); default: yours, or everyone's for an admin.
    #[arg(long)]
    pub user: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC); default: the first of this month.
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, included; default: today.
    #[arg(long)]
    pub to: Option<String>,
    /// Print the raw JSON report.
    #[arg(long)]
    pub json: bool,
}

/// Runs `darkroom usage`.
pub async fn usage(args: &UsageArgs) -> anyhow::Result<()> {
    let api = super::client(&args.remote)?;
    let query = UsageQuery {
        user: args.user.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
    };
    let report = api.usage(&query).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(&report));
    }
    Ok(())
}

/// A number, or `-` for no limit.
fn limit(l: Option<crate::quotas::Limit>) -> String {
    l.filter(|l| !l.is_unlimited())
        .map_or_else(|| "-".into(), |l| l.0.to_string())
}

/// The report as two tables: standing now, then per day.
pub fn text(r: &UsageReport) -> String {
    let mut out = format!(
        "{:<20} {:<7} {:>11} {:>13} {:>8} {:>8} {:>14}\n",
        "USER", "ROLE", "TODAY", "MONTH", "WAITING", "RUNNING", "STORED MB"
    );
    for s in &r.users {
        let _ = writeln!(
            out,
            "{:<20} {:<7} {:>11} {:>13} {:>8} {:>8} {:>14}",
            s.user,
            s.role,
            format!("{}/{}", s.generations_today, limit(s.limits.generations_per_day)),
            format!(
                "{}/{}",
                s.generations_this_month,
                limit(s.limits.generations_per_month)
            ),
            format!("{}/{}", s.waiting, limit(s.limits.max_queued)),
            format!("{}/{}", s.running, limit(s.limits.max_running)),
            format!(
                "{}/{}",
                s.stored_bytes / 1_000_000,
                s.limits
                    .storage_bytes
                    .filter(|l| !l.is_unlimited())
                    .map_or_else(|| "-".into(), |l| (l.0 / 1_000_000).to_string())
            ),
        );
    }
    let _ = writeln!(out, "\n{} .. {}", r.from, r.to);
    let _ = writeln!(
        out,
        "{:<10} {:<20} {:>5} {:>5} {:>5} {:>5} {:>9} {:>6} {:>10}",
        "DAY", "USER", "JOBS", "OK", "FAIL", "CANC", "GPU s", "IMAGES", "BYTES"
    );
    for d in &r.days {
        let n = |s: &str| d.jobs.get(s).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "{:<10} {:<20} {:>5} {:>5} {:>5} {:>5} {:>9.1} {:>6} {:>10}",
            d.day,
            d.user,
            d.submitted,
            n("succeeded"),
            n("failed"),
            n("cancelled"),
            d.gpu_seconds,
            d.images,
            d.bytes
        );
    }
    out
}
