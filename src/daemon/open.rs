//! Opening the stores and starting the servers the daemon is made of: the object
//! store with its configured buckets, the queue and cache files, the S3 listener
//! with its presigner, and the dispatcher.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::credentials::S3Login;
use crate::cache::{KvCache, PromptCache};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::dispatch::StorageBackend;
use crate::dispatch::{DispatchSettings, Dispatcher, GenerationObserver, S3Sink, SharedSink, StoreSink};
use crate::metrics::Metrics;
use crate::object_store::{LifecycleRule, ObjectStore};
use crate::queue::Queue;
use crate::redb_store::Store;
use crate::redis_store::Backend;
use crate::redis_store::RedisStore;
use crate::s3::presign::Presigner;
use crate::status::Endpoints;

/// The stores every service works on.
pub(super) struct Stores {
    pub storage: ObjectStore,
    pub queue: Queue,
    pub prompts: PromptCache,
    pub kv: KvCache,
    /// Users and their keys (API and S3), on the queue's store.
    pub users: crate::users::Users,
}

/// Opens the object store, the queue and the caches.
pub(super) async fn open_stores(config: &Config, clock: &SharedClock) -> anyhow::Result<Stores> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let storage = open_storage(config, clock).await?;
    let (queue, prompts, kv) = open_queue_and_caches(config, clock).await?;
    let users = open_users(&queue, &storage, clock).await?;
    Ok(Stores {
        storage,
        queue,
        prompts,
        kv,
        users,
    })
}

/// darkroom's own S3 server, once it listens.
pub(super) struct S3Server {
    pub addr: std::net::SocketAddr,
    /// What presigned URLs and clients use (`s3.public_url`, else the address).
    pub public_url: String,
    pub presigner: Presigner,
    pub login: S3Login,
}

/// Binds the S3 listener and starts serving.
pub(super) async fn start_s3(
    config: &Config,
    stores: &Stores,
    metrics: &Metrics,
    throttle: &crate::throttle::AuthThrottle,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Option<S3Server>> {
    if !config.s3.enabled {
        return Ok(None);
    }
    let login = super::credentials::resolve_credentials(config)?;
    let credentials = &login.credentials;
    let listener = TcpListener::bind(config.s3.addr)
        .await
        .with_context(|| format!("s3.addr: cannot listen on {}", config.s3.addr))?;
    let listener = super::tls_listener(listener, config, crate::tls::ListenerKind::S3)?;
    let addr = listener.local_addr()?;
    let scheme = if listener.is_tls() { "https" } else { "http" };
    let public_url = if config.s3.public_url.is_empty() {
        format!("{scheme}://{addr}")
    } else {
        config.s3.public_url.clone()
    };
    let presigner = Presigner::new(credentials.clone(), &config.s3.region, &public_url)?;
    let outputs = crate::s3::JobOutputs {
        bucket: config.comfyui.output_bucket.clone(),
        owners: Arc::new(QueueOwners(stores.queue.clone())),
    };
    let service = crate::s3::build(
        stores.storage.clone(),
        credentials,
        Some(stores.users.clone()),
        Some(outputs),
        &config.s3.region,
        metrics.clone(),
    );
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    tasks.spawn(crate::s3::serve(
        listener,
        service,
        throttle.clone(),
        shutdown.clone(),
        grace,
    ));
    tracing::info!(%addr, "S3 API listening");
    Ok(Some(S3Server {
        addr,
        public_url,
        presigner,
        login,
    }))
}

/// Where the daemon listens and how to log in to its S3 API, for the status.
pub(super) fn endpoints(s3: Option<&S3Server>, api_url: String) -> Endpoints {
    Endpoints {
        api_url,
        s3_url: s3.map(|s| s.public_url.clone()),
        s3_access_key: s3.map(|s| s.login.credentials.access_key.clone()),
        s3_secret_in: s3.map(|s| s.login.secret_in.clone()),
    }
}

/// Users and their keys, on the queue's store, with the master key that wraps
/// S3 secrets.
async fn open_users(
    queue: &Queue,
    storage: &ObjectStore,
    clock: &SharedClock,
) -> anyhow::Result<crate::users::Users> {
    let docs = crate::docs::Docs::of_queue(queue)
        .await
        .context("cannot open the users' records")?;
    let users = crate::users::Users::new(docs, clock.clone());
    Ok(match storage.master_keys() {
        Some(keyring) => users.with_keyring(keyring.clone()),
        None => users,
    })
}

/// Opens the object store and creates the buckets the config declares.
pub(super) async fn open_storage(config: &Config, clock: &SharedClock) -> anyhow::Result<ObjectStore> {
    let opts = config.s3.storage_options();
    let root = config.data_dir.clone();
    let store_clock = clock.clone();
    let storage = tokio::task::spawn_blocking(move || ObjectStore::open(&root, opts, store_clock))
        .await?
        .context("cannot open the object store")?;
    let keyring = config.s3.keyring(&config.data_dir).with_context(|| {
        if config.s3.master_key.is_empty() {
            format!(
                "s3.master_key_file: cannot load the master key {}",
                config.s3.master_key_path(&config.data_dir).display()
            )
        } else {
            "s3.master_key: cannot use the master key".to_owned()
        }
    })?;
    storage.enable_encryption(crate::object_store::Encryption {
        keyring,
        encrypt_all: config.s3.encrypt_all,
    });
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
        // public_read is a bucket policy (GetObject for anyone) since issue 17.
        crate::s3::apply_public_read(&storage, &b.name, b.public_read)
            .await
            .with_context(|| format!("config s3.buckets.public_read: bucket {:?}", b.name))?;
    }
    Ok(storage)
}

/// Creates the output bucket if backends are configured and starts the dispatcher.
pub(super) async fn start_dispatcher(
    config: &Config,
    stores: &Stores,
    presigner: Option<&Presigner>,
    observer: GenerationObserver,
    trust: &crate::tls::Trust,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Dispatcher> {
    let sink: SharedSink = match config.storage.backend {
        StorageBackend::Embedded => Arc::new(StoreSink {
            storage: stores.storage.clone(),
            presigner: presigner.cloned(),
        }),
        StorageBackend::S3 => Arc::new(S3Sink::with_trust(&config.storage.s3, trust).context("tls.ca_file")?),
    };
    // With backends configured, make the bucket now so a bad name or a full disk
    // stops the start; without, nothing will be stored and no bucket appears. An
    // external endpoint that does not answer yet is only a warning: status shows
    // it, and outputs fail (and retry) until it answers.
    let bucket = &config.comfyui.output_bucket;
    if !config.comfyui.backends.is_empty() {
        match (sink.ensure_bucket(bucket).await, config.storage.backend) {
            (Ok(()), _) => {}
            (Err(e), StorageBackend::S3) => {
                tracing::warn!(bucket, error = %e, "storage.s3: cannot make sure the output bucket exists");
            }
            (Err(e), StorageBackend::Embedded) => {
                return Err(e)
                    .with_context(|| format!("comfyui.output_bucket: cannot create bucket {bucket:?}"));
            }
        }
    }
    let mut settings = DispatchSettings::new(
        &config.comfyui,
        Duration::from_secs(config.shutdown_grace_seconds),
    );
    settings.catalog = crate::models::Catalog::new(config.models.clone())?;
    settings.routing = config.routing.clone();
    settings.timings = crate::models::Timings::new(Some(stores.kv.clone()));
    settings.trust = trust.clone();
    if !settings.catalog.is_empty() {
        // What earlier runs (and other nodes) learned, then again every minute.
        let (timings, catalog) = (settings.timings.clone(), settings.catalog.clone());
        timings.refresh(&catalog).await;
        let every = Duration::from_secs(60);
        tasks.spawn(crate::clock::run_every(every, shutdown.clone(), move || {
            let (timings, catalog) = (timings.clone(), catalog.clone());
            async move { timings.refresh(&catalog).await }
        }));
        tracing::info!(models = settings.catalog.all().len(), scheduler = ?settings.routing.scheduler, "model catalog in use");
    }
    let (dispatcher, task) = Dispatcher::start(
        settings,
        stores.queue.clone(),
        Some(stores.prompts.clone()),
        sink,
        Some(observer),
        shutdown.clone(),
    )?;
    tasks.spawn(async move {
        let _ = task.await;
    });
    Ok(dispatcher)
}

/// Opens the queue and the caches on their configured backends (on a blocking
/// thread): `queue.redb` and `cache.redb` (compacting them), or the Redis server.
pub(super) async fn open_queue_and_caches(
    config: &Config,
    clock: &SharedClock,
) -> anyhow::Result<(Queue, PromptCache, KvCache)> {
    let dir = config.data_dir.clone();
    let queue_config = config.queue.to_queue_config();
    let prompt_config = config.cache.prompt_cache();
    let (queue_backend, cache_backend) = (config.queue.backend, config.cache.backend);
    let redis_settings = config.redis.clone();
    let clock = clock.clone();
    tokio::task::spawn_blocking(move || {
        let redis = if queue_backend == Backend::Redis || cache_backend == Backend::Redis {
            let store = RedisStore::connect(&redis_settings)?;
            tracing::info!(endpoint = store.endpoint(), prefix = %redis_settings.key_prefix, "Redis connected");
            Some(store)
        } else {
            None
        };
        let queue = match (&redis, queue_backend) {
            (Some(store), Backend::Redis) => Queue::open_redis(store.clone(), clock.clone(), queue_config)
                .with_context(|| format!("cannot open the job queue on Redis at {}", store.endpoint()))?,
            _ => {
                let queue_path = dir.join("queue.redb");
                Queue::open(&queue_path, clock.clone(), queue_config)
                    .with_context(|| format!("cannot open the job queue {}", queue_path.display()))?
            }
        };
        let (prompts, kv) = match (&redis, cache_backend) {
            (Some(store), Backend::Redis) => (
                PromptCache::new_redis(store.clone(), clock.clone(), prompt_config),
                KvCache::new_redis(store.clone(), clock),
            ),
            _ => {
                let cache_path = dir.join("cache.redb");
                let store = Store::open_compacted(&cache_path)
                    .with_context(|| format!("cannot open the cache {}", cache_path.display()))?;
                (
                    PromptCache::new(store.clone(), clock.clone(), prompt_config)?,
                    KvCache::new(store, clock)?,
                )
            }
        };
        Ok((queue, prompts, kv))
    })
    .await?
}

/// Whose a job is, from the queue (for S3's "own outputs" rule).
struct QueueOwners(crate::queue::Queue);

#[async_trait::async_trait]
impl crate::s3::JobOwners for QueueOwners {
    async fn owner_of(&self, id: &str) -> Option<String> {
        let id = id.parse().ok()?;
        self.0.get(id).await.ok().flatten()?.owner
    }
}
