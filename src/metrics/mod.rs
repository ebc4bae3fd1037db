//! Prometheus metrics: one explicit registry (no globals) owned by the daemon and
//! rendered in the text format at `GET /metrics`.
//!
//! The seed exporter's names are kept so its alert rules and Grafana panels work
//! unchanged (`comfyui_vram_usage_bytes` — from NVML for the GPU a local backend
//! runs on, else the backend's `/system_stats` —, `comfyui_generation_duration_seconds`,
//! `comfyui_generations_total{status,model}`, `comfyui_queue_size`,
//! `comfyui_active_generations`); everything else is `darkroom_*`.
//!
//! Events are counted where they happen (S3 requests, finished generations); state
//! that already lives elsewhere (queue depth, bucket usage, cache size, backend
//! health, alerts, running totals kept by other modules) is handed over at scrape
//! time as a [`Scrape`], so there is one source of truth for each number.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::dispatch::{BackendStatus, Generation};
use crate::object_store::BucketUsage;
use crate::queue::{Counts, JobStatus};
use crate::sync::lock;

mod backup;
pub mod config;
mod gpu;
mod models;
mod text;
mod usage;

pub use text::to_prometheus_text;
pub use usage::UsageEnd;

/// A label set of one label; the name is given by the type alias.
macro_rules! labels {
    ($name:ident { $($field:ident),+ }) => {
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct $name {
            $($field: String),+
        }
    };
}
labels!(Operation { operation });
labels!(OperationOutcome { operation, outcome });
labels!(Status { status });
labels!(StatusModel { status, model });
labels!(Build { version });
labels!(BucketLabel { bucket });
labels!(BackendLabel { backend });
labels!(StoreLabel { store, backend });
labels!(ResultLabel { result });
labels!(OutcomeLabel { outcome });
labels!(AlertLabel { alertname, severity });

type FloatGauge = Gauge<f64, AtomicU64>;
/// The label set of a series without labels.
type NoLabels = Vec<(String, String)>;

/// Running totals kept by other modules, and what else the scrape reads.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub counts: Option<Counts>,
    pub oldest_queued_seconds: Option<f64>,
    pub buckets: Vec<BucketUsage>,
    pub backends: Vec<BackendStatus>,
    pub cache_entries: u64,
    pub cache_bytes: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_evictions: u64,
    pub lifecycle_expired: u64,
    pub lifecycle_aborted: u64,
    /// (delivered, failed, retried) of job webhooks.
    pub webhooks: (u64, u64, u64),
    /// (delivered, failed, retried) of alert notifications.
    pub alert_notifications: (u64, u64, u64),
    /// (alert name, severity, instances firing) for every rule.
    pub alerts_firing: Vec<(String, String, u64)>,
    /// (free, total) bytes of the data directory's file system.
    pub disk: Option<(u64, u64)>,
    /// The latest GPU readings.
    pub gpu: crate::gpu::GpuReport,
    /// (role, backend, answers) of the queue's, the cache's and the outputs' stores.
    pub stores: Vec<(String, String, bool)>,
    /// The backup schedule and the last backup (absent: this daemon takes none).
    pub backup: Option<crate::backup::BackupStatus>,
    /// Routing decisions at submit, by (model, reason).
    pub routing_decisions: Vec<((String, String), u64)>,
}

/// Cheap `Clone` handle on the registry and the metrics darkroom records.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    s3_requests: Family<OperationOutcome, Counter>,
    s3_duration: Family<Operation, Histogram>,
    s3_received: Counter,
    s3_sent: Counter,
    generation_seconds: Histogram,
    generations: Family<StatusModel, Counter>,
    queue_wait: Histogram,
    retries: Counter,
    queue_size: Gauge,
    active: Gauge,
    queue_jobs: Family<Status, Gauge>,
    oldest_queued: FloatGauge,
    vram_used: Family<BackendLabel, Gauge>,
    vram_total: Family<BackendLabel, Gauge>,
    backend_up: Family<BackendLabel, Gauge>,
    backend_in_flight: Family<BackendLabel, Gauge>,
    store_up: Family<StoreLabel, Gauge>,
    bucket_objects: Family<BucketLabel, Gauge>,
    bucket_bytes: Family<BucketLabel, Gauge>,
    cache_entries: Gauge,
    cache_bytes: Gauge,
    cache_requests: Mirrored<ResultLabel>,
    cache_evictions: Mirrored<NoLabels>,
    lifecycle_expired: Mirrored<NoLabels>,
    lifecycle_aborted: Mirrored<NoLabels>,
    webhooks: Mirrored<OutcomeLabel>,
    alert_notifications: Mirrored<OutcomeLabel>,
    alerts_firing: Family<AlertLabel, Gauge>,
    disk_free: Gauge,
    disk_total: Gauge,
    gpu: gpu::GpuMetrics,
    backup: backup::BackupMetrics,
    models: models::ModelMetrics,
    usage: usage::UsageMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn gauge_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    #[allow(clippy::too_many_lines)]
    pub fn new() -> Self {
        let mut r = Registry::default();
        macro_rules! reg {
            ($name:literal, $help:literal, $metric:expr) => {{
                let m = $metric;
                r.register($name, $help, m.clone());
                m
            }};
        }
        let s3_requests = reg!(
            "darkroom_s3_requests",
            "S3 API requests by operation and outcome (ok or the S3 error code)",
            Family::<OperationOutcome, Counter>::default()
        );
        let s3_duration = reg!(
            "darkroom_s3_request_duration_seconds",
            "Time to answer an S3 request (to the response head; bodies stream after)",
            Family::<Operation, Histogram>::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
            })
        );
        let s3_received = reg!(
            "darkroom_s3_received_bytes",
            "Object bytes received by PutObject and UploadPart",
            Counter::default()
        );
        let s3_sent = reg!(
            "darkroom_s3_sent_bytes",
            "Object bytes sent by GetObject",
            Counter::default()
        );
        let generation_seconds = reg!(
            "comfyui_generation_duration_seconds",
            "Time from claim to stored outputs of each generation that ran on ComfyUI",
            Histogram::new([0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0])
        );
        let generations = reg!(
            "comfyui_generations",
            "Generations that ran on ComfyUI, by status (success, failure) and model",
            Family::<StatusModel, Counter>::default()
        );
        // Both statuses from the start (with no model yet), so a failure-rate rule
        // reads 0 on a fresh node instead of nothing.
        for status in ["success", "failure"] {
            let _ = generations.get_or_create(&StatusModel {
                status: status.into(),
                model: String::new(),
            });
        }
        let queue_wait = reg!(
            "darkroom_queue_wait_seconds",
            "Time jobs waited in the queue before their first attempt started",
            Histogram::new([0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0])
        );
        let retries = reg!(
            "darkroom_job_retries",
            "Failed attempts that put their job back in the queue",
            Counter::default()
        );
        let queue_size = reg!("comfyui_queue_size", "Jobs waiting to run", Gauge::default());
        let active = reg!("comfyui_active_generations", "Jobs running now", Gauge::default());
        let queue_jobs = reg!(
            "darkroom_queue_jobs",
            "Jobs in the queue by status",
            Family::<Status, Gauge>::default()
        );
        let oldest_queued = reg!(
            "darkroom_queue_oldest_queued_age_seconds",
            "Age of the oldest job waiting to run (0 when none waits)",
            FloatGauge::default()
        );
        let vram_used = reg!(
            "comfyui_vram_usage_bytes",
            "VRAM in use on each ComfyUI backend's GPUs (its /system_stats)",
            Family::<BackendLabel, Gauge>::default()
        );
        let vram_total = reg!(
            "comfyui_vram_total_bytes",
            "VRAM of each ComfyUI backend's GPUs (its /system_stats)",
            Family::<BackendLabel, Gauge>::default()
        );
        let backend_up = reg!(
            "darkroom_backend_up",
            "1 when the ComfyUI backend answers its health check",
            Family::<BackendLabel, Gauge>::default()
        );
        let backend_in_flight = reg!(
            "darkroom_backend_in_flight",
            "Jobs in flight on each ComfyUI backend",
            Family::<BackendLabel, Gauge>::default()
        );
        let store_up = reg!(
            "darkroom_store_up",
            "1 when the store of the queue, the cache or the outputs answers its check (embedded ones always do)",
            Family::<StoreLabel, Gauge>::default()
        );
        let bucket_objects = reg!(
            "darkroom_bucket_objects",
            "Objects in each bucket",
            Family::<BucketLabel, Gauge>::default()
        );
        let bucket_bytes = reg!(
            "darkroom_bucket_bytes",
            "Bytes of the objects in each bucket",
            Family::<BucketLabel, Gauge>::default()
        );
        let cache_entries = reg!("darkroom_cache_entries", "Prompt cache entries", Gauge::default());
        let cache_bytes = reg!(
            "darkroom_cache_bytes",
            "Bytes of output the prompt cache refers to",
            Gauge::default()
        );
        let cache_requests = Mirrored::register(
            &mut r,
            "darkroom_cache_requests",
            "Prompt cache lookups by result (hit, miss)",
        );
        let cache_evictions = Mirrored::register(
            &mut r,
            "darkroom_cache_evictions",
            "Prompt cache entries pushed out by the size bound",
        );
        let lifecycle_expired = Mirrored::register(
            &mut r,
            "darkroom_lifecycle_expired_objects",
            "Objects deleted by lifecycle expiration rules",
        );
        let lifecycle_aborted = Mirrored::register(
            &mut r,
            "darkroom_lifecycle_aborted_uploads",
            "Incomplete multipart uploads aborted by lifecycle rules",
        );
        let webhooks = Mirrored::register(
            &mut r,
            "darkroom_webhook_deliveries",
            "Job webhook deliveries by outcome (delivered, failed after the last try, retried)",
        );
        let alert_notifications = Mirrored::register(
            &mut r,
            "darkroom_alert_notifications",
            "Alert notifications by outcome (delivered, failed after the last try, retried)",
        );
        let alerts_firing = reg!(
            "darkroom_alerts_firing",
            "Instances of each built-in alert rule firing now",
            Family::<AlertLabel, Gauge>::default()
        );
        let disk_free = reg!(
            "darkroom_data_free_bytes",
            "Free bytes on the data directory's file system",
            Gauge::default()
        );
        let disk_total = reg!(
            "darkroom_data_total_bytes",
            "Size of the data directory's file system",
            Gauge::default()
        );
        let gpu = gpu::GpuMetrics::register(&mut r);
        let backup = backup::BackupMetrics::register(&mut r);
        let models = models::ModelMetrics::register(&mut r);
        let usage = usage::UsageMetrics::register(&mut r);
        let build = Family::<Build, Gauge>::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        r.register("darkroom_build_info", "darkroom's version (always 1)", build);
        Self {
            inner: Arc::new(Inner {
                registry: r,
                s3_requests,
                s3_duration,
                s3_received,
                s3_sent,
                generation_seconds,
                generations,
                queue_wait,
                retries,
                queue_size,
                active,
                queue_jobs,
                oldest_queued,
                vram_used,
                vram_total,
                backend_up,
                backend_in_flight,
                store_up,
                bucket_objects,
                bucket_bytes,
                cache_entries,
                cache_bytes,
                cache_requests,
                cache_evictions,
                lifecycle_expired,
                lifecycle_aborted,
                webhooks,
                alert_notifications,
                alerts_firing,
                disk_free,
                disk_total,
                gpu,
                backup,
                models,
                usage,
            }),
        }
    }

    /// Counts one job's end in its owner's role's usage.
    pub fn usage(&self, end: &UsageEnd<'_>) {
        self.inner.usage.record(end);
    }

    /// Records one S3 request.
    pub fn s3_request(&self, operation: &str, outcome: &str, took: Duration) {
        let i = &self.inner;
        i.s3_requests
            .get_or_create(&OperationOutcome {
                operation: operation.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        i.s3_duration
            .get_or_create(&Operation {
                operation: operation.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records object bytes received (writes) or sent (reads).
    pub fn s3_bytes(&self, received: u64, sent: u64) {
        self.inner.s3_received.inc_by(received);
        self.inner.s3_sent.inc_by(sent);
    }

    /// Makes `comfyui_generations_total{status,model}` exist for every catalog
    /// model from the start, so a failure-rate rule has something to read.
    pub fn catalog_models<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        for name in names {
            for status in ["success", "failure"] {
                let _ = self.inner.generations.get_or_create(&StatusModel {
                    status: status.into(),
                    model: name.to_owned(),
                });
            }
        }
    }

    /// Records one finished attempt of the dispatcher.
    pub fn generation(&self, g: &Generation) {
        let i = &self.inner;
        if let Some(wait) = g.queue_wait_seconds {
            i.queue_wait.observe(wait);
        }
        if g.end.retried() {
            i.retries.inc();
        }
        if g.end.cache_hit() {
            return;
        }
        if let Some(load) = g.load_seconds {
            i.models.load(&g.model, load);
        }
        i.generation_seconds.observe(g.seconds);
        i.generations
            .get_or_create(&StatusModel {
                status: if g.end.succeeded() { "success" } else { "failure" }.into(),
                model: g.model.clone(),
            })
            .inc();
    }

    /// Takes in the scrape-time state, then renders everything in the Prometheus
    /// text format.
    pub fn render(&self, s: &Scrape) -> String {
        let i = &self.inner;
        if let Some(counts) = &s.counts {
            for status in JobStatus::ALL {
                i.queue_jobs
                    .get_or_create(&Status {
                        status: status.to_string(),
                    })
                    .set(gauge_i64(counts.get(status)));
            }
            i.queue_size.set(gauge_i64(counts.queued));
            i.active.set(gauge_i64(counts.running));
        }
        i.oldest_queued.set(s.oldest_queued_seconds.unwrap_or(0.0));
        for f in [&i.vram_used, &i.vram_total, &i.backend_up, &i.backend_in_flight] {
            f.clear();
        }
        for b in &s.backends {
            let l = BackendLabel {
                backend: b.url.clone(),
            };
            i.backend_up.get_or_create(&l).set(i64::from(b.healthy));
            i.backend_in_flight
                .get_or_create(&l)
                .set(gauge_i64(b.in_flight as u64));
            if let Some((used, total)) = crate::gpu::backend_vram(&s.gpu, b) {
                i.vram_total.get_or_create(&l).set(gauge_i64(total));
                i.vram_used.get_or_create(&l).set(gauge_i64(used));
            }
        }
        i.store_up.clear();
        for (store, backend, up) in &s.stores {
            i.store_up
                .get_or_create(&StoreLabel {
                    store: store.clone(),
                    backend: backend.clone(),
                })
                .set(i64::from(*up));
        }
        i.bucket_objects.clear();
        i.bucket_bytes.clear();
        for b in &s.buckets {
            let l = BucketLabel {
                bucket: b.name.clone(),
            };
            i.bucket_objects.get_or_create(&l).set(gauge_i64(b.objects));
            i.bucket_bytes.get_or_create(&l).set(gauge_i64(b.bytes));
        }
        i.cache_entries.set(gauge_i64(s.cache_entries));
        i.cache_bytes.set(gauge_i64(s.cache_bytes));
        i.cache_requests.sync(&result("hit"), s.cache_hits);
        i.cache_requests.sync(&result("miss"), s.cache_misses);
        i.cache_evictions.sync(&NoLabels::new(), s.cache_evictions);
        i.lifecycle_expired.sync(&NoLabels::new(), s.lifecycle_expired);
        i.lifecycle_aborted.sync(&NoLabels::new(), s.lifecycle_aborted);
        for (mirror, (delivered, failed, retried)) in [
            (&i.webhooks, s.webhooks),
            (&i.alert_notifications, s.alert_notifications),
        ] {
            mirror.sync(&outcome("delivered"), delivered);
            mirror.sync(&outcome("failed"), failed);
            mirror.sync(&outcome("retried"), retried);
        }
        i.alerts_firing.clear();
        for (name, severity, n) in &s.alerts_firing {
            i.alerts_firing
                .get_or_create(&AlertLabel {
                    alertname: name.clone(),
                    severity: severity.clone(),
                })
                .set(gauge_i64(*n));
        }
        i.gpu.set(&s.gpu);
        i.backup.set(s.backup.as_ref());
        let swaps: Vec<(String, u64)> = s.backends.iter().map(|b| (b.url.clone(), b.swaps)).collect();
        i.models.set(&swaps, &s.routing_decisions);
        if let Some((free, total)) = s.disk {
            i.disk_free.set(gauge_i64(free));
            i.disk_total.set(gauge_i64(total));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &i.registry) {
            tracing::error!(error = %e, "metrics: encoding failed");
        }
        to_prometheus_text(&out)
    }
}

fn result(r: &str) -> ResultLabel {
    ResultLabel { result: r.into() }
}

fn outcome(o: &str) -> OutcomeLabel {
    OutcomeLabel { outcome: o.into() }
}

/// A counter family that follows a running total kept by another module.
struct Mirrored<L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static> {
    family: Family<L, Counter>,
    seen: std::sync::Mutex<std::collections::HashMap<L, u64>>,
}

impl<L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static> Mirrored<L> {
    fn register(r: &mut Registry, name: &str, help: &str) -> Self {
        let family = Family::<L, Counter>::default();
        r.register(name, help, family.clone());
        Self {
            family,
            seen: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Moves the counter for `labels` up to `total`.
    fn sync(&self, labels: &L, total: u64) {
        let counter = self.family.get_or_create(labels);
        let mut seen = lock(&self.seen);
        let before = seen.insert(labels.clone(), total).unwrap_or(0);
        if total > before {
            counter.inc_by(total - before);
        }
    }
}
