//! The ComfyUI backends and which one takes the next job.
//!
//! Each [`Backend`] is one ComfyUI server with a limit on prompts in flight
//! (default 1: ComfyUI runs one at a time, and a second would only wait in its own
//! queue where darkroom can neither reorder nor move it). A health loop asks
//! `/system_stats`; a backend that does not answer — or that fails a job with a
//! refused connection — gets no work until a health check passes again. The
//! [`Pool`] hands out [`Slot`]s: the healthy backend with a free place and the
//! fewest jobs in flight, so the next free GPU takes the next job.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::BackendConfig;
use crate::comfy::{ComfyClient, ComfyError};
use crate::sync::lock;

/// One ComfyUI server.
#[derive(Debug)]
pub struct Backend {
    /// The base URL as configured; names the backend in logs, metrics and results.
    pub url: String,
    pub client: ComfyClient,
    health_client: ComfyClient,
    max_in_flight: usize,
    healthy: AtomicBool,
    in_flight: AtomicUsize,
    last_error: Mutex<Option<String>>,
    completed: AtomicU64,
    failed: AtomicU64,
    /// VRAM (total, free) summed over its GPUs, from the last health check.
    vram: Mutex<Option<(u64, u64)>>,
}

/// A backend as shown by the API and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct BackendStatus {
    pub url: String,
    pub healthy: bool,
    pub in_flight: usize,
    pub max_in_flight: usize,
    /// Jobs it finished successfully since start.
    pub completed: u64,
    /// Attempts that failed on it since start.
    pub failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// VRAM of its GPUs (ComfyUI's `/system_stats`; CPU devices left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_free_bytes: Option<u64>,
}

impl Backend {
    fn new(config: &BackendConfig, request_timeout: Duration) -> Result<Self, ComfyError> {
        Ok(Self {
            url: config.url.clone(),
            client: ComfyClient::with_timeout(&config.url, request_timeout)?,
            health_client: ComfyClient::with_timeout(
                &config.url,
                request_timeout.min(Duration::from_secs(5)),
            )?,
            max_in_flight: config.max_in_flight.max(1),
            healthy: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            vram: Mutex::new(None),
        })
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    pub fn status(&self) -> BackendStatus {
        let vram = *lock(&self.vram);
        BackendStatus {
            vram_total_bytes: vram.map(|v| v.0),
            vram_free_bytes: vram.map(|v| v.1),
            url: self.url.clone(),
            healthy: self.is_healthy(),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            max_in_flight: self.max_in_flight,
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
        }
    }

    pub(crate) fn record(&self, success: bool) {
        let counter = if success { &self.completed } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn set_error(&self, error: Option<String>) {
        *lock(&self.last_error) = error;
    }
}

/// The backends, and a wake-up for whoever waits for a free slot.
#[derive(Debug)]
pub struct Pool {
    backends: Vec<Arc<Backend>>,
    changed: Notify,
}

impl Pool {
    pub fn new(configs: &[BackendConfig], request_timeout: Duration) -> Result<Arc<Self>, ComfyError> {
        let backends = configs
            .iter()
            .map(|c| Backend::new(c, request_timeout).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(Self {
            backends,
            changed: Notify::new(),
        }))
    }

    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// Places free on healthy backends.
    pub fn free_slots(&self) -> usize {
        self.backends
            .iter()
            .filter(|b| b.is_healthy())
            .map(|b| b.max_in_flight.saturating_sub(b.in_flight.load(Ordering::SeqCst)))
            .sum()
    }

    /// Waits until a slot may have freed or a backend's health changed.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Takes a place on the healthy backend with the fewest jobs in flight,
    /// preferring any other to `avoid` (where the job's last attempt failed).
    pub fn reserve(self: &Arc<Self>, avoid: Option<&str>) -> Option<Slot> {
        loop {
            let best = self
                .backends
                .iter()
                .filter(|b| b.is_healthy())
                .map(|b| (b, b.in_flight.load(Ordering::SeqCst)))
                .filter(|(b, n)| *n < b.max_in_flight)
                .min_by_key(|(b, n)| (avoid == Some(b.url.as_str()), *n))?;
            let (backend, seen) = best;
            if backend
                .in_flight
                .compare_exchange(seen, seen + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Some(Slot {
                    backend: backend.clone(),
                    pool: self.clone(),
                });
            }
        }
    }

    /// Takes `backend` out of rotation after it failed to answer.
    pub fn mark_down(&self, backend: &Backend, error: &ComfyError) {
        backend.set_error(Some(error.to_string()));
        if backend.healthy.swap(false, Ordering::SeqCst) {
            tracing::warn!(backend = %backend.url, %error, "ComfyUI backend down; no work goes there until it answers again");
            self.changed.notify_one();
        }
    }

    fn mark_up(&self, backend: &Backend) {
        if !backend.healthy.swap(true, Ordering::SeqCst) {
            tracing::info!(backend = %backend.url, "ComfyUI backend healthy");
            backend.set_error(None);
            self.changed.notify_one();
        }
    }

    /// Health-checks every backend each `every` until `shutdown`.
    pub fn spawn_health_checks(self: &Arc<Self>, every: Duration, shutdown: &CancellationToken) {
        for backend in &self.backends {
            let (pool, backend) = (self.clone(), backend.clone());
            tokio::spawn(crate::clock::run_every(every, shutdown.clone(), move || {
                let (pool, backend) = (pool.clone(), backend.clone());
                async move {
                    match backend.health_client.system_stats().await {
                        Ok(stats) => {
                            let gpus = stats.devices.iter().filter(|d| d.kind != "cpu");
                            let vram = gpus.fold(None, |acc: Option<(u64, u64)>, d| {
                                let (t, f) = acc.unwrap_or_default();
                                Some((t + d.vram_total, f + d.vram_free))
                            });
                            *lock(&backend.vram) = vram;
                            pool.mark_up(&backend);
                        }
                        Err(e) => pool.mark_down(&backend, &e),
                    }
                }
            }));
        }
    }
}

/// A place on one backend for one job; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    pub backend: Arc<Backend>,
    pool: Arc<Pool>,
}

impl Slot {
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.pool.changed.notify_one();
    }
}
