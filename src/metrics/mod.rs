//! Prometheus metrics: one explicit registry (no globals) owned by the daemon and
//! rendered in the text format at `GET /metrics`.
//!
//! Request-path metrics (S3 operations, their latency and bytes) are counted where
//! they happen; state that already lives elsewhere (queue depth by status, lifecycle
//! expirations) is read from its owner when Prometheus scrapes, so there is one
//! source of truth for each number.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::queue::{JobStatus, Queue};
use crate::storage::ObjectStore;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationOutcome {
    operation: String,
    /// `ok`, or the S3 error code.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: String,
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
    lifecycle_expired: Counter,
    lifecycle_aborted: Counter,
    seen_expired: AtomicU64,
    seen_aborted: AtomicU64,
    queue_jobs: Family<Status, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let s3_requests = Family::<OperationOutcome, Counter>::default();
        registry.register(
            "darkroom_s3_requests",
            "S3 API requests by operation and outcome (ok or the S3 error code)",
            s3_requests.clone(),
        );
        let s3_duration = Family::<Operation, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
        });
        registry.register(
            "darkroom_s3_request_duration_seconds",
            "Time to answer an S3 request (to the response head; bodies stream after)",
            s3_duration.clone(),
        );
        let s3_received = Counter::default();
        registry.register(
            "darkroom_s3_received_bytes",
            "Object bytes received by PutObject and UploadPart",
            s3_received.clone(),
        );
        let s3_sent = Counter::default();
        registry.register(
            "darkroom_s3_sent_bytes",
            "Object bytes sent by GetObject",
            s3_sent.clone(),
        );
        let lifecycle_expired = Counter::default();
        registry.register(
            "darkroom_lifecycle_expired_objects",
            "Objects deleted by lifecycle expiration rules",
            lifecycle_expired.clone(),
        );
        let lifecycle_aborted = Counter::default();
        registry.register(
            "darkroom_lifecycle_aborted_uploads",
            "Incomplete multipart uploads aborted by lifecycle rules",
            lifecycle_aborted.clone(),
        );
        let queue_jobs = Family::<Status, Gauge>::default();
        registry.register(
            "darkroom_queue_jobs",
            "Jobs in the queue by status",
            queue_jobs.clone(),
        );
        let build = Family::<Build, Gauge>::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register("darkroom_build_info", "darkroom's version (always 1)", build);
        Self {
            inner: Arc::new(Inner {
                registry,
                s3_requests,
                s3_duration,
                s3_received,
                s3_sent,
                lifecycle_expired,
                lifecycle_aborted,
                seen_expired: AtomicU64::new(0),
                seen_aborted: AtomicU64::new(0),
                queue_jobs,
            }),
        }
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

    /// Reads the state owned elsewhere, then renders everything in the Prometheus
    /// text format.
    pub async fn render(&self, storage: &ObjectStore, queue: &Queue) -> String {
        let i = &self.inner;
        let c = storage.counters();
        catch_up(
            &i.lifecycle_expired,
            &i.seen_expired,
            c.lifecycle_expired.load(Ordering::Relaxed),
        );
        catch_up(
            &i.lifecycle_aborted,
            &i.seen_aborted,
            c.lifecycle_aborted_uploads.load(Ordering::Relaxed),
        );
        match queue.counts().await {
            Ok(counts) => {
                for status in JobStatus::ALL {
                    i.queue_jobs
                        .get_or_create(&Status {
                            status: status.to_string(),
                        })
                        .set(i64::try_from(counts.get(status)).unwrap_or(i64::MAX));
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read queue counts"),
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &i.registry) {
            tracing::error!(error = %e, "metrics: encoding failed");
        }
        to_prometheus_text(&out)
    }
}

/// Converts prometheus-client's OpenMetrics output to the classic Prometheus text
/// format (0.0.4), which every Prometheus and `promtool check metrics` read: a
/// counter's HELP and TYPE lines name its `_total` series, and there is no `# EOF`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Moves `counter` up to `total`, a running total kept by another module.
fn catch_up(counter: &Counter, seen: &AtomicU64, total: u64) {
    let before = seen.swap(total, Ordering::Relaxed);
    if total > before {
        counter.inc_by(total - before);
    }
}

#[cfg(test)]
mod tests {
    use super::to_prometheus_text;

    #[test]
    fn counters_are_named_by_their_total_series() {
        let om = "# HELP jobs Jobs done.\n# TYPE jobs counter\njobs_total{a=\"b\"} 3\n# HELP up Up.\n# TYPE up gauge\nup 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total{a=\"b\"} 3\n# HELP up Up.\n# TYPE up gauge\nup 1\n"
        );
    }
}
