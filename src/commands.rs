//! The client subcommands — `darkroom submit`, `darkroom jobs ...`, `darkroom
//! status` — over [`ApiClient`]: build the request, call the daemon, print for a
//! person (tables, one line per output URL) or, with `--json`, for a script.

use std::fmt::Write as _;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::cli::{JobsCommand, Remote, SubmitArgs};
use crate::client::ApiClient;
use crate::dispatch::JobResult;
use crate::queue::Job;
use crate::status::StatusSnapshot;

fn client(remote: &Remote) -> anyhow::Result<ApiClient> {
    Ok(ApiClient::new(&remote.url, remote.token.clone())?)
}

/// `darkroom submit`.
pub async fn submit(args: &SubmitArgs) -> anyhow::Result<()> {
    let api = client(&args.remote)?;
    let request = submit_request(args)?;
    let job = api.submit(&request, args.wait).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        print!("{}", describe(&job));
    }
    Ok(())
}

/// The `JobRequest` JSON of `darkroom submit`'s flags.
pub fn submit_request(args: &SubmitArgs) -> anyhow::Result<Value> {
    let mut r = Map::new();
    if let Some(path) = &args.workflow {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let wf: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        r.insert("workflow".into(), wf);
    }
    if let Some(t) = &args.template {
        r.insert("template".into(), json!(t));
    }
    let mut params = Map::new();
    for p in &args.params {
        let (name, value) = p
            .split_once('=')
            .with_context(|| format!("--param {p:?}: expected NAME=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        params.insert(name.trim().to_owned(), value);
    }
    if !params.is_empty() {
        r.insert("params".into(), Value::Object(params));
    }
    let options = [
        ("priority", args.priority.map(|v| json!(v))),
        ("timeout_seconds", args.timeout.map(|v| json!(v))),
        ("max_attempts", args.max_attempts.map(|v| json!(v))),
        ("webhook", args.webhook.as_ref().map(|v| json!(v))),
        ("idempotency_key", args.idempotency_key.as_ref().map(|v| json!(v))),
        ("cache", args.no_cache.then_some(json!(false))),
    ];
    for (k, v) in options {
        if let Some(v) = v {
            r.insert(k.into(), v);
        }
    }
    Ok(Value::Object(r))
}

/// A job for a person: id and status, then each output URL or the last error.
pub fn describe(job: &Job) -> String {
    let mut out = format!("{} {}\n", job.id, job.status);
    if let Some(result) = job
        .result
        .clone()
        .and_then(|r| serde_json::from_value::<JobResult>(r).ok())
    {
        for o in &result.outputs {
            let _ = writeln!(
                out,
                "  {}/{} ({} bytes, {})",
                o.bucket, o.key, o.size, o.content_type
            );
            if let Some(url) = &o.url {
                let _ = writeln!(out, "  {url}");
            }
        }
    }
    if let Some(e) = job.errors.last() {
        let _ = writeln!(out, "  attempt {}: {}", e.attempt, e.message);
    }
    out
}

/// `darkroom jobs ...`.
pub async fn jobs(remote: &Remote, command: &JobsCommand) -> anyhow::Result<()> {
    let api = client(remote)?;
    match command {
        JobsCommand::List { status, limit, json } => {
            let page = api.jobs(status.as_deref(), *limit, None).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print!("{}", job_table(&page.jobs));
                if page.next_cursor.is_some() {
                    println!("(more: raise --limit)");
                }
            }
        }
        JobsCommand::Show { id } => println!("{}", serde_json::to_string_pretty(&api.job(id).await?)?),
        JobsCommand::Cancel { id } => print!("{}", describe(&api.cancel(id).await?)),
        JobsCommand::Retry { id } => print!("{}", describe(&api.retry(id).await?)),
    }
    Ok(())
}

/// Jobs as a table.
pub fn job_table(jobs: &[Job]) -> String {
    let mut out = format!(
        "{:<26}  {:<10}  {:>8}  {:>8}  PROGRESS\n",
        "ID", "STATUS", "ATTEMPTS", "PRIORITY"
    );
    for j in jobs {
        let progress = j.progress.as_ref().map_or(String::new(), |p| {
            format!(
                "{:>3.0}% {}",
                f64::from(p.fraction) * 100.0,
                p.message.as_deref().unwrap_or("")
            )
        });
        let _ = writeln!(
            out,
            "{:<26}  {:<10}  {:>4}/{:<3}  {:>8}  {progress}",
            j.id.to_string(),
            j.status.as_str(),
            j.attempts,
            j.max_attempts,
            j.priority
        );
    }
    out
}

/// `darkroom status`.
pub async fn status(remote: &Remote, json: bool) -> anyhow::Result<()> {
    let s = client(remote)?.status().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", status_text(&s));
    }
    Ok(())
}

/// The status snapshot for a person.
pub fn status_text(s: &StatusSnapshot) -> String {
    let c = &s.queue.counts;
    let q = &s.queue;
    let mut out = format!(
        "darkroom {}\nqueue: {} queued, {} scheduled, {} running, {} succeeded, {} failed, {} cancelled\n",
        s.version, c.queued, c.scheduled, c.running, c.succeeded, c.failed, c.cancelled
    );
    let _ = writeln!(
        out,
        "last 5 min: {:.1} jobs/min, {:.0}% failed, {:.0}% from cache{}{}",
        q.recent.jobs_per_minute,
        q.recent.failure_ratio * 100.0,
        q.recent.cache_hit_ratio * 100.0,
        q.recent
            .p50_seconds
            .map_or(String::new(), |v| format!(", p50 {v:.1} s")),
        q.recent
            .p95_seconds
            .map_or(String::new(), |v| format!(", p95 {v:.1} s")),
    );
    if let Some(age) = q.oldest_queued_seconds {
        let _ = writeln!(out, "oldest queued: {age:.0} s");
    }
    if s.backends.is_empty() {
        out.push_str("backends: none configured (comfyui.backends or --comfyui)\n");
    }
    for b in &s.backends {
        let health = if b.healthy { "up" } else { "DOWN" };
        let _ = write!(
            out,
            "backend {} {health}, {}/{} in flight",
            b.url, b.in_flight, b.max_in_flight
        );
        if let (Some(t), Some(f)) = (b.vram_total_bytes, b.vram_free_bytes) {
            let _ = write!(out, ", VRAM {} / {} MiB", (t - f.min(t)) >> 20, t >> 20);
        }
        if let Some(e) = &b.last_error {
            let _ = write!(out, " ({e})");
        }
        out.push('\n');
    }
    for b in &s.buckets {
        let _ = writeln!(out, "bucket {}: {} objects, {} bytes", b.name, b.objects, b.bytes);
    }
    let _ = writeln!(
        out,
        "cache: {} entries, {} bytes, {} hits, {} misses",
        s.cache.entries, s.cache.bytes, s.cache.hits, s.cache.misses
    );
    if s.alerts.is_empty() {
        out.push_str("alerts: none\n");
    }
    for a in &s.alerts {
        let _ = writeln!(
            out,
            "alert {} [{}] {}: {}",
            a["name"].as_str().unwrap_or("?"),
            a["severity"].as_str().unwrap_or("?"),
            a["state"].as_str().unwrap_or("?"),
            a["summary"].as_str().unwrap_or("")
        );
    }
    out
}
