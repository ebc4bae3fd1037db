//! The ComfyUI backends and which one takes the next job.
//!
//! Each [`Backend`] is one ComfyUI server with a limit on prompts in flight
//! (default 1: ComfyUI runs one at a time, and a second would only wait in its own
//! queue where darkroom can neither reorder nor move it). A health loop asks
//! `/system_stats`; a backend that does not answer — or that fails a job with a
//! refused connection — gets no work until a health check passes again. The
//! [`Pool`] hands out [`Slot`]s: the healthy backend with a free place and the
//! fewest jobs in flight, so the next free GPU takes the next job. With a model
//! catalog, each health check also reads the backend's model files
//! (GET /models/{folder}), and the backend remembers the model it last loaded, so
//! `schedule` can place jobs where their model is (or fits).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::BackendConfig;
use crate::comfy::{ComfyClient, ComfyError};
use crate::models::{BackendView, Timings};
use crate::sync::lock;
use crate::tls::Trust;

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
    /// Model files per folder, from the last health check (catalog folders only).
    inventory: Mutex<Option<BTreeMap<String, Vec<String>>>>,
    /// The file of the model it last ran.
    loaded: Mutex<Option<String>>,
    swaps: AtomicU64,
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
    /// The model file it last ran (with a model catalog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_model: Option<String>,
    /// Times it switched from one model to another since start.
    #[serde(default)]
    pub swaps: u64,
}

impl Backend {
    fn new(config: &BackendConfig, request_timeout: Duration, trust: &Trust) -> Result<Self, ComfyError> {
        Ok(Self {
            url: config.url.clone(),
            client: ComfyClient::with_trust(&config.url, request_timeout, trust)?,
            health_client: ComfyClient::with_trust(
                &config.url,
                request_timeout.min(Duration::from_secs(5)),
                trust,
            )?,
            max_in_flight: config.max_in_flight.max(1),
            healthy: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            vram: Mutex::new(None),
            inventory: Mutex::new(None),
            loaded: Mutex::new(None),
            swaps: AtomicU64::new(0),
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
            loaded_model: self.loaded(),
            swaps: self.swaps.load(Ordering::Relaxed),
        }
    }

    /// How routing and the scheduler see it.
    pub fn view(&self) -> BackendView {
        let vram = *lock(&self.vram);
        BackendView {
            url: self.url.clone(),
            healthy: self.is_healthy(),
            inventory: lock(&self.inventory).clone(),
            vram_total: vram.map(|v| v.0),
            vram_free: vram.map(|v| v.1),
            loaded: self.loaded(),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            max_in_flight: self.max_in_flight,
        }
    }

    /// The model file it last ran.
    pub fn loaded(&self) -> Option<String> {
        lock(&self.loaded).clone()
    }

    /// Records that it now runs `file`; true when that is a switch from another
    /// model (a swap, counted).
    pub(crate) fn load(&self, file: &str) -> bool {
        let before = lock(&self.loaded).replace(file.to_owned());
        let swapped = before.as_deref().is_some_and(|b| b != file);
        if swapped {
            self.swaps.fetch_add(1, Ordering::Relaxed);
        }
        swapped
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
    /// The catalog's model folders, read from each backend at its health check.
    folders: Vec<String>,
    /// Where the loaded-model view is shared with other nodes.
    timings: Timings,
    /// Reads a backend's VRAM (used, total) from NVML when its process is on this
    /// machine's GPU; set once GPU telemetry runs.
    vram_source: SourceCell,
}

/// The VRAM source, once set.
#[derive(Default)]
struct SourceCell(std::sync::OnceLock<VramSource>);

impl std::fmt::Debug for SourceCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "set" } else { "unset" })
    }
}

/// VRAM (used, total) of the GPU a backend runs on, if known better than its
/// `/system_stats`.
pub type VramSource = Arc<dyn Fn(&BackendStatus) -> Option<(u64, u64)> + Send + Sync>;

impl Pool {
    pub fn new(configs: &[BackendConfig], request_timeout: Duration) -> Result<Arc<Self>, ComfyError> {
        Self::with_models(
            configs,
            request_timeout,
            &Trust::default(),
            Vec::new(),
            Timings::default(),
        )
    }

    /// A pool whose clients trust `trust`'s CAs over https and wss, that also
    /// reads the model files of `folders` at each health check and shares the
    /// loaded-model view through `timings`' store.
    pub fn with_models(
        configs: &[BackendConfig],
        request_timeout: Duration,
        trust: &Trust,
        folders: Vec<String>,
        timings: Timings,
    ) -> Result<Arc<Self>, ComfyError> {
        let backends = configs
            .iter()
            .map(|c| Backend::new(c, request_timeout, trust).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(Self {
            backends,
            changed: Notify::new(),
            folders,
            timings,
            vram_source: SourceCell::default(),
        }))
    }

    /// Every backend as routing sees it.
    pub fn views(&self) -> Vec<BackendView> {
        self.backends.iter().map(|b| self.view(b)).collect()
    }

    /// `backend` as routing sees it, its VRAM from NVML when that knows it.
    pub fn view(&self, backend: &Backend) -> BackendView {
        let mut view = backend.view();
        if let Some(source) = self.vram_source.0.get()
            && let Some((used, total)) = source(&backend.status())
        {
            view.vram_total = Some(total);
            view.vram_free = Some(total.saturating_sub(used));
        }
        view
    }

    /// Reads VRAM through `source` from now on (set once).
    pub fn read_vram_from(&self, source: VramSource) {
        let _ = self.vram_source.0.set(source);
    }

    /// Takes a place on backend `index` if it is healthy and has one free.
    pub fn reserve_on(self: &Arc<Self>, index: usize) -> Option<Slot> {
        let backend = self.backends.get(index)?;
        loop {
            let seen = backend.in_flight.load(Ordering::SeqCst);
            if !backend.is_healthy() || seen >= backend.max_in_flight {
                return None;
            }
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

    /// Records that `backend` now runs `file`, here and for other nodes; true on a swap.
    pub async fn loaded(&self, backend: &Backend, file: &str) -> bool {
        let swapped = backend.load(file);
        self.timings.share_loaded(&backend.url, file).await;
        swapped
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
        let message = error.to_string();
        let before = lock(&backend.last_error).replace(message.clone());
        if backend.healthy.swap(false, Ordering::SeqCst) {
            tracing::warn!(backend = %backend.url, %error, "ComfyUI backend down; no work goes there until it answers again");
            self.changed.notify_one();
        } else if matches!(error, ComfyError::Untrusted { .. }) && before.as_deref() != Some(&message) {
            // A backend that was never up for this reason would otherwise be
            // silent: a wrong tls.ca_file is worth saying once.
            tracing::warn!(backend = %backend.url, %error, "ComfyUI backend refused: no work goes there");
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
                            match pool.read_models(&backend).await {
                                Ok(()) => pool.mark_up(&backend),
                                Err(e) => pool.mark_down(&backend, &e),
                            }
                        }
                        Err(e) => pool.mark_down(&backend, &e),
                    }
                }
            }));
        }
    }
}

impl Pool {
    /// Reads `backend`'s model files in the catalog's folders, and the model
    /// another node last loaded on it. A change wakes the claim loop: a job
    /// waiting for a file may now have a place.
    async fn read_models(&self, backend: &Backend) -> Result<(), ComfyError> {
        if self.folders.is_empty() {
            return Ok(());
        }
        let mut inventory = BTreeMap::new();
        for folder in &self.folders {
            inventory.insert(folder.clone(), backend.health_client.models(folder).await?);
        }
        let changed = lock(&backend.inventory).replace(inventory.clone()) != Some(inventory);
        if let Some(file) = self.timings.shared_loaded(&backend.url).await
            && backend.in_flight.load(Ordering::SeqCst) == 0
        {
            *lock(&backend.loaded) = Some(file);
        }
        if changed {
            self.changed.notify_one();
        }
        Ok(())
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
