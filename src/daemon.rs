//! Wires the services together and owns their lifetime: opens the stores (objects,
//! job queue, caches, each its own redb file), creates
//! the configured buckets, binds the listeners, runs the background tasks, and on
//! SIGTERM / Ctrl-C stops accepting, lets in-flight work finish within the grace
//! period and closes the database cleanly.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cache::{KvCache, PromptCache, PromptCacheConfig};
use crate::clock::{self, SharedClock};
use crate::config::Config;
use crate::dispatch::{DispatchSettings, Dispatcher, StoreSink};
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::s3::Credentials;
use crate::s3::presign::Presigner;
use crate::storage::{LifecycleRule, ObjectStore, StorageOptions};
use crate::store::Store;

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
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Daemon {
    /// Opens everything and starts serving. Listens where the config says (port 0
    /// picks a free port: see [`Daemon::s3_addr`]).
    pub async fn start(config: &Config, clock: SharedClock) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
        let storage = open_storage(config, &clock).await?;
        let (queue, prompts, kv) = open_queue_and_caches(config, &clock).await?;
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let reaper = queue.spawn_reaper(
            Duration::from_millis(config.queue.reaper_interval_ms),
            shutdown.clone(),
        );
        let sweeper = crate::cache::spawn_sweeper(
            prompts.clone(),
            kv.clone(),
            clock.clone(),
            Duration::from_secs(config.cache.sweep_interval_seconds),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            let _ = reaper.await;
            let _ = sweeper.await;
        });
        let grace = Duration::from_secs(config.shutdown_grace_seconds);
        let mut s3_addr = None;
        let mut presigner = None;
        if config.s3.enabled {
            let credentials = resolve_credentials(config)?;
            let listener = TcpListener::bind(config.s3.addr)
                .await
                .with_context(|| format!("s3.addr: cannot listen on {}", config.s3.addr))?;
            let addr = listener.local_addr()?;
            s3_addr = Some(addr);
            let public_url = if config.s3.public_url.is_empty() {
                format!("http://{addr}")
            } else {
                config.s3.public_url.clone()
            };
            presigner = Some(Presigner::new(
                credentials.clone(),
                &config.s3.region,
                &public_url,
            )?);
            let service = crate::s3::build(storage.clone(), &credentials, &config.s3.region, metrics.clone());
            tasks.spawn(crate::s3::serve(listener, service, shutdown.clone(), grace));
            tracing::info!(%addr, "S3 API listening");
        }
        let dispatcher = start_dispatcher(
            config,
            &storage,
            presigner.as_ref(),
            &queue,
            &prompts,
            &shutdown,
            &mut tasks,
        )
        .await?;
        let api_listener = TcpListener::bind(config.api.addr)
            .await
            .with_context(|| format!("api.addr: cannot listen on {}", config.api.addr))?;
        let api_addr = api_listener.local_addr()?;
        let api_state = crate::api::ApiState {
            storage: storage.clone(),
            queue: queue.clone(),
            metrics: metrics.clone(),
            s3_addr,
        };
        tasks.spawn(crate::api::serve(api_listener, api_state, shutdown.clone()));
        tracing::info!(addr = %api_addr, "HTTP API listening");
        let interval = Duration::from_secs(config.s3.lifecycle_interval_seconds);
        tasks.spawn(storage.clone().run_lifecycle(interval, shutdown.clone()));
        Ok(Self {
            s3_addr,
            presigner,
            api_addr,
            storage,
            queue,
            prompts,
            kv,
            dispatcher,
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

    /// A token that stops the daemon when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting work, waits for the services to drain, closes the stores.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        // Dropping the last handles joins each store's writer and closes its file.
        drop(self.storage);
        drop(self.queue);
        drop(self.prompts);
        drop(self.kv);
        tracing::info!("darkroom stopped");
    }
}

/// Opens the object store and creates the buckets the config declares.
async fn open_storage(config: &Config, clock: &SharedClock) -> anyhow::Result<ObjectStore> {
    let opts = StorageOptions {
        fsync: config.s3.fsync,
        max_object_size: config.s3.max_object_size,
        lifecycle_day_ms: i64::try_from(config.s3.lifecycle_day_seconds.saturating_mul(1000))
            .unwrap_or(i64::MAX),
        inline_max: config.s3.inline_max_bytes,
    };
    let root = config.data_dir.clone();
    let store_clock = clock.clone();
    let storage = tokio::task::spawn_blocking(move || ObjectStore::open(&root, opts, store_clock))
        .await?
        .context("cannot open the object store")?;
    for b in &config.s3.buckets {
        let rules = if b.expire_days > 0 {
            vec![LifecycleRule {
                id: Some(format!("darkroom-config-expire-{}d", b.expire_days)),
                enabled: true,
                expiration_days: Some(b.expire_days),
                ..LifecycleRule::default()
            }]
        } else {
            Vec::new()
        };
        storage
            .ensure_bucket(&b.name, b.public_read, rules)
            .await
            .with_context(|| format!("config s3.buckets: cannot create bucket {:?}", b.name))?;
    }
    Ok(storage)
}

/// Creates the output bucket if missing and starts the dispatcher.
async fn start_dispatcher(
    config: &Config,
    storage: &ObjectStore,
    presigner: Option<&Presigner>,
    queue: &Queue,
    prompts: &PromptCache,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Dispatcher> {
    let bucket = &config.comfyui.output_bucket;
    match storage.create_bucket(bucket).await {
        Ok(()) | Err(crate::storage::StorageError::BucketAlreadyExists(_)) => {}
        Err(e) => {
            return Err(e).with_context(|| format!("comfyui.output_bucket: cannot create bucket {bucket:?}"));
        }
    }
    let sink = std::sync::Arc::new(StoreSink {
        storage: storage.clone(),
        presigner: presigner.cloned(),
    });
    let (dispatcher, task) = Dispatcher::start(
        DispatchSettings::from_config(config),
        queue.clone(),
        Some(prompts.clone()),
        sink,
        None,
        shutdown.clone(),
    )?;
    tasks.spawn(async move {
        let _ = task.await;
    });
    Ok(dispatcher)
}

/// Opens `queue.redb` and `cache.redb` (compacting them) on a blocking thread.
async fn open_queue_and_caches(
    config: &Config,
    clock: &SharedClock,
) -> anyhow::Result<(Queue, PromptCache, KvCache)> {
    let dir = config.data_dir.clone();
    let queue_config = config.queue.to_queue_config();
    let prompt_config = PromptCacheConfig {
        ttl: Duration::from_secs(config.cache.prompt_ttl_seconds),
        max_bytes: config.cache.prompt_max_bytes,
    };
    let clock = clock.clone();
    tokio::task::spawn_blocking(move || {
        let queue_path = dir.join("queue.redb");
        let queue = Queue::open(&queue_path, clock.clone(), queue_config)
            .with_context(|| format!("cannot open the job queue {}", queue_path.display()))?;
        let cache_path = dir.join("cache.redb");
        let store = Store::open_compacted(&cache_path)
            .with_context(|| format!("cannot open the cache {}", cache_path.display()))?;
        let prompts = PromptCache::new(store.clone(), clock.clone(), prompt_config)?;
        let kv = KvCache::new(store, clock)?;
        Ok((queue, prompts, kv))
    })
    .await?
}

/// Runs the daemon until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let daemon = Daemon::start(&config, clock::system()).await?;
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
    wait_for_signal().await;
    tracing::info!("shutting down");
    daemon.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the daemon");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The configured credentials, or the ones generated at first start.
fn resolve_credentials(config: &Config) -> anyhow::Result<Credentials> {
    if !config.s3.access_key.is_empty() {
        return Ok(Credentials {
            access_key: config.s3.access_key.clone(),
            secret_key: config.s3.secret_key.clone(),
        });
    }
    load_or_generate_credentials(&config.data_dir.join("credentials.toml"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredCredentials {
    access_key: String,
    secret_key: String,
}

fn load_or_generate_credentials(path: &Path) -> anyhow::Result<Credentials> {
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let c: StoredCredentials =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        return Ok(Credentials {
            access_key: c.access_key,
            secret_key: c.secret_key,
        });
    }
    use rand::distr::{Alphanumeric, SampleString};
    let mut rng = rand::rng();
    let c = StoredCredentials {
        access_key: Alphanumeric.sample_string(&mut rng, 20).to_uppercase(),
        secret_key: Alphanumeric.sample_string(&mut rng, 40),
    };
    let text = toml::to_string(&c)?;
    write_private(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "darkroom: generated S3 credentials (stored in {}, shown once):\n  access key: {}\n  secret key: {}",
        path.display(),
        c.access_key,
        c.secret_key
    );
    Ok(Credentials {
        access_key: c.access_key,
        secret_key: c.secret_key,
    })
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
