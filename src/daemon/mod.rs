//! Wires the services together and owns their lifetime: opens the stores (objects,
//! job queue, caches, each its own redb file), creates
//! the configured buckets, binds the listeners, runs the background tasks, and on
//! SIGTERM / Ctrl-C stops accepting, lets in-flight work finish within the grace
//! period and closes the database cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alerts;
use crate::cache::{KvCache, PromptCache};
use crate::clock::{self, SharedClock};
use crate::comfy::Templates;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::events::EventHub;
use crate::gpu::{ComfyStatsSource, GpuMonitor, GpuSource, NvmlSource, Sampler};
use crate::metrics::Metrics;
use crate::object_store::ObjectStore;
use crate::queue::Queue;
use crate::s3::presign::Presigner;
use crate::service::{Jobs, Services};
use crate::status::RecentGenerations;
use crate::webhook::{RetryPolicy, Webhooks};

mod background;
mod credentials;
mod open;

use open::Stores;

/// A running daemon.
pub struct Daemon {
    s3_addr: Option<SocketAddr>,
    presigner: Option<Presigner>,
    api_addr: SocketAddr,
    storage: ObjectStore,
    queue: Queue,
    prompts: PromptCache,
    kv: KvCache,
    dispatcher: Dispatcher,
    hub: EventHub,
    alerts: Alerts,
    gpu: GpuMonitor,
    gpu_sampler: Option<Sampler>,
    services: Services,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Daemon {
    /// Opens everything and starts serving. Listens where the config says (port 0
    /// picks a free port: see [`Daemon::s3_addr`]).
    pub async fn start(config: &Config, clock: SharedClock) -> anyhow::Result<Self> {
        let stores = open::open_stores(config, &clock).await?;
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        spawn_housekeeping(config, &stores, &clock, &shutdown, &mut tasks);
        let s3 = open::start_s3(config, &stores.storage, &metrics, &shutdown, &mut tasks).await?;
        let (s3_addr, presigner) = (s3.as_ref().map(|s| s.0), s3.map(|s| s.1));
        let hub = EventHub::new(config.api.events_backlog, background::first_event_id(&clock));
        let recent = RecentGenerations::default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        let alerts = Alerts::new(config.alerts.clone(), clock.clone(), http.clone());
        let observer = background::observer(&metrics, &recent, &alerts);
        let dispatcher = open::start_dispatcher(
            config,
            &stores,
            presigner.as_ref(),
            observer,
            &shutdown,
            &mut tasks,
        )
        .await?;
        let (gpu, gpu_sampler) = start_gpu(config, &dispatcher, &clock);
        let Stores {
            storage,
            queue,
            prompts,
            kv,
        } = stores;
        tasks.spawn(background::forward_events(
            queue.clone(),
            alerts.clone(),
            hub.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(alerts.clone().run_notifier(shutdown.clone()));
        tasks.spawn(background::forward_gpu(
            gpu.clone(),
            hub.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(background::evaluate_alerts(
            alerts.clone(),
            dispatcher.clone(),
            (queue.clone(), prompts.clone()),
            gpu.clone(),
            config.data_dir.clone(),
            shutdown.clone(),
        ));
        let webhooks = start_webhooks(config, http, &queue, &kv, &shutdown, &mut tasks);
        let templates = Arc::new(Templates::embedded().context("the embedded workflow templates")?);
        let services = Services {
            jobs: Jobs::new(
                queue.clone(),
                dispatcher.clone(),
                templates,
                config.api.job_limits(),
            ),
            storage: storage.clone(),
            queue: queue.clone(),
            metrics,
            s3_addr,
            dispatcher: dispatcher.clone(),
            hub: hub.clone(),
            prompts: prompts.clone(),
            recent,
            alerts: Some(alerts.clone()),
            webhooks: Some(webhooks),
            gpu: gpu.clone(),
            presigner: presigner.clone(),
            url_expiry: Duration::from_secs(config.comfyui.url_expiry_seconds),
            logs: crate::telemetry::logs().clone(),
        };
        let api_addr = serve_api(config, services.clone(), &shutdown, &mut tasks).await?;
        Ok(Self {
            s3_addr,
            presigner,
            api_addr,
            storage,
            queue,
            prompts,
            kv,
            dispatcher,
            hub,
            alerts,
            gpu,
            gpu_sampler,
            services,
            shutdown,
            tasks,
        })
    }

    /// Where the S3 API listens, if enabled.
    pub fn s3_addr(&self) -> Option<SocketAddr> {
        self.s3_addr
    }

    /// Makes presigned download URLs against `s3.public_url` (when S3 is enabled).
    pub fn presigner(&self) -> Option<&Presigner> {
        self.presigner.as_ref()
    }

    /// Where the HTTP API (health, readiness, metrics) listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The object store the daemon serves.
    pub fn storage(&self) -> &ObjectStore {
        &self.storage
    }

    /// The durable job queue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The prompt cache.
    pub fn prompt_cache(&self) -> &PromptCache {
        &self.prompts
    }

    /// The key-value cache.
    pub fn kv_cache(&self) -> &KvCache {
        &self.kv
    }

    /// The dispatcher running jobs on the ComfyUI backends.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// Every job and alert change, numbered, with a backlog for resuming.
    pub fn events(&self) -> &EventHub {
        &self.hub
    }

    /// GPU readings and their recent history.
    pub fn gpu(&self) -> &GpuMonitor {
        &self.gpu
    }

    /// The built-in alert rules and their state.
    pub fn alerts(&self) -> &Alerts {
        &self.alerts
    }

    /// The service layer (the dashboard's local mode calls it).
    pub fn services(&self) -> Services {
        self.services.clone()
    }

    /// A token that stops the daemon when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting work, waits for the services to drain, closes the stores.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        // The sampling thread holds the dispatcher (the ComfyUI fallback): stop it
        // before the stores close.
        if let Some(sampler) = self.gpu_sampler.take() {
            let _ = tokio::task::spawn_blocking(move || sampler.stop()).await;
        }
        // Dropping the last handles joins each store's writer and closes its file.
        drop(self.services);
        drop(self.storage);
        drop(self.queue);
        drop(self.prompts);
        drop(self.kv);
        tracing::info!("darkroom stopped");
    }
}

/// Binds the HTTP API's listener and serves the services on it.
async fn serve_api(
    config: &Config,
    services: Services,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(config.api.addr)
        .await
        .with_context(|| format!("api.addr: cannot listen on {}", config.api.addr))?;
    let addr = listener.local_addr()?;
    let state = crate::api::ApiState {
        svc: services,
        config: Arc::new(config.api.clone()),
    };
    tasks.spawn(crate::api::serve(listener, state, shutdown.clone()));
    tracing::info!(%addr, "HTTP API listening");
    Ok(addr)
}

/// Starts delivering job webhooks.
fn start_webhooks(
    config: &Config,
    http: reqwest::Client,
    queue: &Queue,
    kv: &KvCache,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Webhooks {
    let webhooks = Webhooks::new(
        http,
        config.api.webhook_secret.clone(),
        RetryPolicy {
            max_attempts: config.api.webhook_max_attempts,
            backoff_ms: config.api.webhook_backoff_ms,
            stop_in_flight: true,
        },
        Some(kv.clone()),
    );
    let task = webhooks.spawn(queue.clone(), shutdown.clone());
    tasks.spawn(async move {
        let _ = task.await;
    });
    webhooks
}

/// Starts GPU sampling: NVML, else VRAM from the ComfyUI backends.
fn start_gpu(config: &Config, dispatcher: &Dispatcher, clock: &SharedClock) -> (GpuMonitor, Option<Sampler>) {
    if !config.gpu.enabled {
        return (
            GpuMonitor::disabled("GPU telemetry is off (gpu.enabled = false)"),
            None,
        );
    }
    let urls: Vec<String> = config.comfyui.backends.iter().map(|b| b.url.clone()).collect();
    let primary =
        NvmlSource::open(&config.gpu.nvml_lib).map(|s| Box::new(s.with_backends(urls)) as Box<dyn GpuSource>);
    let fallback: Option<Box<dyn GpuSource>> = (!config.comfyui.backends.is_empty())
        .then(|| Box::new(ComfyStatsSource::new(dispatcher.clone())) as Box<dyn GpuSource>);
    let (monitor, sampler) = GpuMonitor::start(&config.gpu, primary, fallback, clock.clone());
    (monitor, Some(sampler))
}

/// The queue's reaper, the cache sweeper and the lifecycle sweeper.
fn spawn_housekeeping(
    config: &Config,
    stores: &Stores,
    clock: &SharedClock,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    let reaper = stores.queue.spawn_reaper(
        Duration::from_millis(config.queue.reaper_interval_ms),
        shutdown.clone(),
    );
    let sweeper = crate::cache::spawn_sweeper(
        stores.prompts.clone(),
        stores.kv.clone(),
        clock.clone(),
        Duration::from_secs(config.cache.sweep_interval_seconds),
        shutdown.clone(),
    );
    tasks.spawn(async move {
        let _ = reaper.await;
        let _ = sweeper.await;
    });
    let interval = Duration::from_secs(config.s3.lifecycle_interval_seconds);
    tasks.spawn(stores.storage.clone().run_lifecycle(interval, shutdown.clone()));
}

/// Runs the daemon until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let daemon = Daemon::start(&config, clock::system()).await?;
    // Listening for signals before saying ready: a SIGTERM sent the moment the
    // lines below appear must stop the daemon cleanly, not kill it.
    let stop = stop_signal();
    // Plain lines on stdout for people and for scripts waiting on readiness; a reader
    // that went away must not take the daemon down.
    let mut ready = Vec::new();
    if let Some(addr) = daemon.s3_addr() {
        ready.push(format!("darkroom: S3 API on http://{addr}\n"));
    }
    ready.push(format!("darkroom: HTTP API on http://{}\n", daemon.api_addr()));
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out
            .write_all(ready.concat().as_bytes())
            .and_then(|()| out.flush());
    }
    stop.await;
    tracing::info!("shutting down");
    daemon.shutdown().await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT); on Unix both are listened for from the
/// moment it is called, not from its first poll.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate()).and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
    };
    async move {
        #[cfg(unix)]
        match signals {
            Ok((mut term, mut interrupt)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = interrupt.recv() => {},
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the daemon");
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
