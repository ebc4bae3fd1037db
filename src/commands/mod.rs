//! The client subcommands — `darkroom submit`, `darkroom jobs ...`, `darkroom
//! status` — over [`ApiClient`]: build the request, call the daemon, print for a
//! person (tables, one line per output URL) or, with `--json`, for a script.

use std::fmt::Write as _;

pub mod backup;
pub mod inbox;
pub mod keys;
pub mod models;
pub mod prompts;
pub mod templates;
pub mod tls;
pub mod usage;
pub mod users;

use anyhow::Context;

use crate::clock::Clock as _;
use serde_json::{Map, Value, json};

use crate::cli::{JobsCommand, Remote, SubmitArgs};
use crate::client::ApiClient;
use crate::dispatch::JobResult;
use crate::queue::Job;
use crate::status::StatusSnapshot;

pub(crate) fn client(remote: &Remote) -> anyhow::Result<ApiClient> {
    Ok(remote.client()?)
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
    for (field, value) in [
        ("template", &args.template),
        ("prompt", &args.prompt),
        ("campaign", &args.campaign),
    ] {
        if let Some(v) = value {
            r.insert(field.into(), json!(v));
        }
    }
    let params = prompts::parse_params(&args.params)?;
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
        JobsCommand::Rate { id, rating, comment } => {
            let rating = crate::prompts::Rating {
                rating: *rating,
                comment: comment.clone(),
            };
            let rated = api.rate(id, &rating).await?;
            let prompt = rated.prompt.map(|p| format!(" ({p})")).unwrap_or_default();
            println!("{} rated {}{prompt}", rated.job_id, rated.rating);
        }
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
/// `embedded`, or `s3 http://minio:9000 reachable (3 ms)` / `redis redis://... UNREACHABLE: why`.
pub fn output_store_text(h: &crate::stores::StoreHealth) -> String {
    let mut text = h.backend.to_string();
    if let Some(e) = &h.endpoint {
        text.push(' ');
        text.push_str(e);
    }
    if h.is_shared() {
        if h.reachable {
            text.push_str(" reachable");
        } else {
            text.push_str(" UNREACHABLE");
        }
        if let Some(ms) = h.latency_ms {
            if ms < 10.0 {
                let _ = write!(text, " ({ms:.1} ms)");
            } else {
                let _ = write!(text, " ({ms:.0} ms)");
            }
        }
        if let Some(e) = &h.error {
            let _ = write!(text, ": {e}");
        }
    }
    text
}

/// `text`, or why it could not be read.
fn or_unavailable(unavailable: Option<&String>, text: String) -> String {
    unavailable.map_or(text, |why| format!("UNAVAILABLE: {why}"))
}

pub fn status_text(s: &StatusSnapshot) -> String {
    let c = &s.queue.counts;
    let q = &s.queue;
    let mut out = format!("darkroom {}\n", s.version);
    let counts = format!(
        "{} queued, {} scheduled, {} running, {} succeeded, {} failed, {} cancelled",
        c.queued, c.scheduled, c.running, c.succeeded, c.failed, c.cancelled
    );
    let _ = writeln!(out, "queue: {}", or_unavailable(q.unavailable.as_ref(), counts));
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
    let _ = writeln!(out, "queue store: {}", output_store_text(&s.queue_store));
    let _ = writeln!(out, "cache store: {}", output_store_text(&s.cache_store));
    let _ = writeln!(out, "outputs: {}", output_store_text(&s.output_store));
    for b in &s.buckets {
        let _ = writeln!(out, "bucket {}: {} objects, {} bytes", b.name, b.objects, b.bytes);
    }
    let cache = format!(
        "{} entries, {} bytes, {} hits, {} misses",
        s.cache.entries, s.cache.bytes, s.cache.hits, s.cache.misses
    );
    let _ = writeln!(
        out,
        "cache: {}",
        or_unavailable(s.cache.unavailable.as_ref(), cache)
    );
    if s.alerts.is_empty() {
        out.push_str("alerts: none\n");
    }
    for a in &s.alerts {
        let _ = writeln!(
            out,
            "alert {} [{}] {}: {}",
            a.name, a.severity, a.state, a.summary
        );
    }
    out
}

/// `darkroom gpu`: reads this machine's GPUs through NVML, once or every second.
/// An NVML that cannot load is reported (and is not an error: exit 0).
pub fn gpu(lib: &str, json: bool, once: bool) -> anyhow::Result<()> {
    let mut source = crate::gpu::NvmlSource::open(lib);
    loop {
        let now = crate::clock::SystemClock.now_ms();
        let report = match source.as_mut() {
            Ok(s) => crate::gpu::GpuMonitor::sample_once(s, now),
            Err(e) => crate::gpu::GpuReport {
                source: crate::gpu::ReadingSource::None,
                unavailable: Some(e.to_string()),
                at_ms: now,
                ..crate::gpu::GpuReport::default()
            },
        };
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", gpu_text(&report));
        }
        if once || source.is_err() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// A GPU report for a person, nvtop-style.
pub fn gpu_text(r: &crate::gpu::GpuReport) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    #[allow(clippy::cast_precision_loss)]
    let gib = |b: Option<u64>| b.map_or("n/a".to_owned(), |b| format!("{:.1}", b as f64 / GIB));
    let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{:.0}%", v * 100.0));
    let mut out = String::new();
    if let Some(why) = &r.unavailable {
        let _ = writeln!(out, "GPU telemetry unavailable: {why}");
    }
    for d in &r.devices {
        let _ = writeln!(
            out,
            "GPU {}: {}{}{}",
            d.index,
            d.name,
            d.uuid.as_ref().map_or(String::new(), |u| format!(" ({u})")),
            r.driver_version
                .as_ref()
                .map_or(String::new(), |v| format!(", driver {v}"))
        );
        if !d.up {
            let _ = writeln!(out, "  DOWN: {}", d.error.as_deref().unwrap_or("no answer"));
            continue;
        }
        let _ = writeln!(
            out,
            "  util {}  mem-controller {}  VRAM {}/{} GiB (reserved {})  {}  power {}/{}  fan {}  SM {}  mem {}",
            pct(d.utilization_ratio),
            pct(d.memory_controller_utilization_ratio),
            gib(d.memory_used_bytes),
            gib(d.memory_total_bytes),
            gib(d.memory_reserved_bytes),
            d.temperature_celsius.map_or("n/a".into(), |t| format!("{t}°C")),
            d.power_watts.map_or("n/a".into(), |w| format!("{w:.0}")),
            d.power_limit_watts
                .map_or("n/a W".into(), |w| format!("{w:.0} W")),
            pct(d.fan_ratio),
            d.sm_clock_hz
                .map_or("n/a".into(), |h| format!("{} MHz", h / 1_000_000)),
            d.memory_clock_hz
                .map_or("n/a".into(), |h| format!("{} MHz", h / 1_000_000)),
        );
        for p in &d.processes {
            let _ = writeln!(
                out,
                "  pid {} {} {} GiB{}",
                p.pid,
                p.name.as_deref().unwrap_or("?"),
                gib(p.used_memory_bytes),
                p.backend
                    .as_ref()
                    .map_or(String::new(), |b| format!("  ComfyUI {b}"))
            );
        }
    }
    if r.devices.is_empty() && r.unavailable.is_none() {
        out.push_str("no GPUs\n");
    }
    out
}

/// `darkroom verify`: checks the data directory at `dir` (with `repair`, mends it)
/// and prints what it found; `Ok(true)` when nothing was wrong.
pub fn verify(dir: &std::path::Path, repair: bool, json: bool) -> anyhow::Result<bool> {
    use crate::object_store::verify::{Finding, verify};
    let report = verify(dir, repair)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(report.clean());
    }
    println!(
        "{}: {} objects, {} read, {} multipart checked by size only; databases {}",
        dir.display(),
        report.objects,
        crate::dash::ui::fmt::bytes(report.bytes),
        report.size_only,
        report.databases.join(", ")
    );
    for f in &report.findings {
        let line = match f {
            Finding::MissingBlob { bucket, key, blob } => {
                format!("missing   {bucket}/{key}: blob {blob} is gone")
            }
            Finding::WrongSize {
                bucket,
                key,
                expected,
                found,
                ..
            } => format!("truncated {bucket}/{key}: {found} bytes, {expected} recorded"),
            Finding::WrongChecksum {
                bucket,
                key,
                expected,
                found,
                ..
            } => format!("corrupt   {bucket}/{key}: MD5 {found}, ETag {expected}"),
            Finding::Orphan { blob, bytes } => {
                format!("orphan    blob {blob} ({bytes} bytes) belongs to no object")
            }
            Finding::Damaged { bucket, key, why } => {
                format!("damaged   {bucket}/{key}: {why} (marked earlier)")
            }
            Finding::CorruptDatabase { file, message } => format!("database  {file}: {message}"),
        };
        println!("{line}");
    }
    if repair {
        println!(
            "repaired: {} orphan blob files removed, {} objects marked damaged",
            report.orphans_removed, report.marked_damaged
        );
    }
    println!(
        "{}",
        if report.clean() {
            "clean".to_owned()
        } else {
            format!("{} problems", report.findings.len())
        }
    );
    Ok(report.clean())
}
