//! What the operational endpoints report, gathered from the services that own each
//! part: readiness (`/readyz`: can this node take work?) and the readings
//! `/metrics` exports beside the registry's own counters.

use std::sync::atomic::Ordering;

use super::Services;
use crate::metrics::Scrape;

impl Services {
    /// Why this node cannot take work now (empty: ready): the object store, the
    /// queue and the prompt cache must answer — redb or Redis —, outputs must be
    /// storable and servable, and some ComfyUI backend healthy when any is set.
    pub async fn readiness(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.storage.list_buckets().await {
            problems.push(format!("object store: {e}"));
        }
        if let Err(e) = self.queue.counts().await {
            problems.push(format!("job queue: {e}"));
        }
        if let Err(e) = self.prompts.usage().await {
            problems.push(format!("prompt cache: {e}"));
        }
        let outputs = self.dispatcher.output_store().await;
        if !outputs.is_shared() {
            if self.s3_addr.is_none() {
                problems.push(
                    "outputs are stored here but the S3 API is disabled (s3.enabled = false)".to_string(),
                );
            }
        } else if !outputs.reachable {
            let endpoint = outputs.endpoint.unwrap_or_default();
            let why = outputs.error.unwrap_or_default();
            problems.push(format!("output store {endpoint} does not answer: {why}"));
        }
        let backends = self.dispatcher.backends();
        if !backends.is_empty() && !backends.iter().any(|b| b.healthy) {
            let urls: Vec<&str> = backends.iter().map(|b| b.url.as_str()).collect();
            problems.push(format!("no ComfyUI backend is healthy ({})", urls.join(", ")));
        }
        problems
    }

    /// Reads what `/metrics` reports but other modules own. A part that cannot be
    /// read is logged and left out; the rest is still served.
    pub async fn scrape(&self) -> Scrape {
        let counts = self
            .queue
            .counts()
            .await
            .map_err(|e| tracing::warn!(error = %e, "metrics: cannot read queue counts"))
            .ok();
        let buckets = self
            .storage
            .usage()
            .await
            .map_err(|e| tracing::warn!(error = %e, "metrics: cannot read bucket usage"))
            .unwrap_or_default();
        let usage = self.prompts.usage().await.unwrap_or_default();
        let stores = crate::stores::StoreChecks::run(&self.queue, &self.prompts, &self.dispatcher).await;
        let stats = self.prompts.stats();
        let lifecycle = self.storage.counters();
        let (alerts_firing, alert_notifications) = match &self.alerts {
            Some(a) => {
                let d = a.deliveries();
                (
                    a.firing_count()
                        .into_iter()
                        .map(|(name, severity, n)| (name, severity.to_string(), n))
                        .collect(),
                    (d.delivered, d.failed, d.retried),
                )
            }
            None => (Vec::new(), (0, 0, 0)),
        };
        Scrape {
            counts,
            oldest_queued_seconds: self
                .oldest_queued_seconds(self.queue.now_ms())
                .await
                .ok()
                .flatten(),
            buckets,
            backends: self.dispatcher.backends(),
            cache_entries: usage.entries,
            cache_bytes: usage.bytes,
            cache_hits: stats.hits,
            cache_misses: stats.misses,
            cache_evictions: stats.evictions,
            lifecycle_expired: lifecycle.lifecycle_expired.load(Ordering::Relaxed),
            lifecycle_aborted: lifecycle.lifecycle_aborted_uploads.load(Ordering::Relaxed),
            webhooks: self
                .webhooks
                .as_ref()
                .map_or((0, 0, 0), crate::webhook::Webhooks::counts),
            alert_notifications,
            alerts_firing,
            disk: crate::object_store::disk_space(self.storage.root()),
            gpu: self.gpu.report(),
            stores: stores
                .by_role()
                .into_iter()
                .map(|(role, h)| (role.to_owned(), h.backend.to_string(), h.reachable))
                .collect(),
            backup: self.backup_status(),
            routing_decisions: self.dispatcher.decisions(),
        }
    }
}
