//! The usage series, per role (and per user only with `metrics.per_user = true`,
//! since a label per user grows without bound): `darkroom_user_jobs_total{role,status}`
//! (jobs ended, by how), `darkroom_user_gpu_seconds_total{role}` and
//! `darkroom_user_images_total{role}`. Counted once per job end across nodes: by
//! the node whose usage record the end changed.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub(super) struct UsageMetrics {
    jobs: Family<Labels, Counter>,
    gpu_seconds: Family<Labels, Counter<f64, AtomicU64>>,
    images: Family<Labels, Counter>,
}

/// One job end, as the usage metrics count it.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageEnd<'a> {
    pub role: &'a str,
    /// Labelled only with `metrics.per_user`.
    pub user: Option<&'a str>,
    pub status: &'a str,
    pub gpu_seconds: f64,
    pub images: u64,
}

impl UsageMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let jobs = Family::<Labels, Counter>::default();
        r.register(
            "darkroom_user_jobs",
            "Jobs ended, by the owner's role and how they ended",
            jobs.clone(),
        );
        let gpu_seconds = Family::<Labels, Counter<f64, AtomicU64>>::default();
        r.register(
            "darkroom_user_gpu_seconds",
            "Seconds jobs ran on a GPU, by the owner's role",
            gpu_seconds.clone(),
        );
        let images = Family::<Labels, Counter>::default();
        r.register(
            "darkroom_user_images",
            "Images jobs made, by the owner's role",
            images.clone(),
        );
        Self {
            jobs,
            gpu_seconds,
            images,
        }
    }

    pub(super) fn record(&self, end: &UsageEnd<'_>) {
        let mut who = vec![("role".to_owned(), end.role.to_owned())];
        if let Some(user) = end.user {
            who.push(("user".to_owned(), user.to_owned()));
        }
        let mut with_status = who.clone();
        with_status.push(("status".to_owned(), end.status.to_owned()));
        self.jobs.get_or_create(&with_status).inc();
        if end.gpu_seconds > 0.0 {
            self.gpu_seconds.get_or_create(&who).inc_by(end.gpu_seconds);
        }
        if end.images > 0 {
            self.images.get_or_create(&who).inc_by(end.images);
        }
    }
}
