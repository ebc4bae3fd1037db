//! `darkroom inbox list`: a running daemon's drop folders (`[[inbox]]`), each
//! with its template and pending, processed and failed counts.

use std::fmt::Write as _;

use crate::cli::Remote;
use crate::inbox::RuleStatus;

/// Prints the rules (`--json`: as the API gives them).
pub async fn list(remote: &Remote, json: bool) -> anyhow::Result<()> {
    let rules = super::client(remote)?.inbox().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rules)?);
    } else {
        print!("{}", text(&rules));
    }
    Ok(())
}

/// The rules for a person.
pub fn text(rules: &[RuleStatus]) -> String {
    if rules.is_empty() {
        return "no drop folders ([[inbox]] in config.toml)\n".into();
    }
    let mut out = format!(
        "{:<30}  {:<12}  {:>7}  {:>9}  {:>6}  OUTPUT\n",
        "INBOX", "TEMPLATE", "PENDING", "PROCESSED", "FAILED"
    );
    for r in rules {
        let _ = writeln!(
            out,
            "{:<30}  {:<12}  {:>7}  {:>9}  {:>6}  {}/{}",
            r.name, r.template, r.pending, r.processed, r.failed, r.bucket, r.output_prefix
        );
    }
    out
}
