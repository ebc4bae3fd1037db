//! Where each thing darkroom keeps lives — the job queue, the caches, the outputs —
//! and whether it answers now: the one place that says "is this shared store up?".
//! Embedded stores (redb files, the object store in the data directory) always
//! answer; a Redis server is asked with a PING, an external S3 endpoint with a
//! HeadBucket of the output bucket. Status, `/metrics`, `/readyz` and the
//! `store_down` alert all read [`StoreChecks`].

use serde::{Deserialize, Serialize};

use crate::cache::PromptCache;
use crate::dispatch::Dispatcher;
use crate::queue::Queue;
use crate::redis_store::RedisStore;

/// What kind of store holds something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Inside darkroom's data directory.
    Embedded,
    /// A Redis server shared by several nodes.
    Redis,
    /// An external S3 endpoint (MinIO, AWS, another darkroom).
    S3,
}

named_enum!(StoreKind, "store kind", {
    Embedded => "embedded",
    Redis => "redis",
    S3 => "s3",
});

/// A store as status reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoreHealth {
    pub backend: StoreKind,
    /// The external endpoint (absent for an embedded store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub reachable: bool,
    /// How long the check took (a PING, an S3 HeadBucket), when one was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StoreHealth {
    /// A store inside darkroom: always there.
    pub fn embedded() -> Self {
        Self {
            backend: StoreKind::Embedded,
            endpoint: None,
            reachable: true,
            latency_ms: None,
            error: None,
        }
    }

    /// A Redis server's health from a PING (`None`: the store is embedded).
    pub async fn of_redis(store: Option<&RedisStore>) -> Self {
        let Some(store) = store else {
            return Self::embedded();
        };
        let ping = store.ping().await;
        Self {
            backend: StoreKind::Redis,
            endpoint: Some(store.endpoint().to_owned()),
            reachable: ping.is_ok(),
            latency_ms: ping.as_ref().ok().map(|p| p.latency.as_secs_f64() * 1000.0),
            error: ping.err().map(|e| e.to_string()),
        }
    }

    /// Several nodes may share it (it is not inside this node's data directory).
    pub fn is_shared(&self) -> bool {
        self.backend != StoreKind::Embedded
    }
}

/// The store of each thing darkroom keeps, checked now.
#[derive(Debug, Clone)]
pub struct StoreChecks {
    pub queue: StoreHealth,
    pub cache: StoreHealth,
    pub outputs: StoreHealth,
}

impl StoreChecks {
    /// Checks all three at once.
    pub async fn run(queue: &Queue, prompts: &PromptCache, dispatcher: &Dispatcher) -> Self {
        let (queue, cache, outputs) = tokio::join!(
            StoreHealth::of_redis(queue.redis()),
            StoreHealth::of_redis(prompts.redis()),
            dispatcher.output_store()
        );
        Self {
            queue,
            cache,
            outputs,
        }
    }

    /// Each with its role: `queue`, `cache`, `outputs`.
    pub fn by_role(&self) -> [(&'static str, &StoreHealth); 3] {
        [
            ("queue", &self.queue),
            ("cache", &self.cache),
            ("outputs", &self.outputs),
        ]
    }

    /// The shared (not embedded) ones, as the `store_down` alert reads them.
    pub fn shared(&self) -> Vec<crate::alerts::StoreCheck> {
        self.by_role()
            .into_iter()
            .filter(|(_, h)| h.is_shared())
            .map(|(role, h)| crate::alerts::StoreCheck {
                instance: role.to_owned(),
                store: h
                    .endpoint
                    .as_ref()
                    .map_or_else(|| h.backend.to_string(), |e| format!("{} {e}", h.backend)),
                up: h.reachable,
                error: h.error.clone(),
            })
            .collect()
    }
}
