//! Prompt cache and key-value cache: canonical keys, hits and misses, TTL, LRU
//! eviction by bytes. Time moves on a manual clock.

use std::sync::Arc;
use std::time::Duration;

use darkroom::cache::{
    CacheKey, CachedObject, CachedResult, KvCache, PromptCache, PromptCacheConfig, canonical_json,
};
use darkroom::clock::{Clock, ManualClock};
use darkroom::redb_store::Store;
use serde_json::json;

use darkroom::redis_store::RedisStore;

use crate::queue_support::{Kind, T0, on_both_backends};
use crate::redis_server::RedisServer;

struct Caches {
    prompts: PromptCache,
    kv: KvCache,
    clock: ManualClock,
    dir: tempfile::TempDir,
    redis: Option<RedisStore>,
}

fn caches(kind: Kind, config: PromptCacheConfig) -> Caches {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let shared = Arc::new(clock.clone());
    let (prompts, kv, redis) = match kind {
        Kind::Embedded => {
            let store = Store::open_compacted(&dir.path().join("cache.redb")).unwrap();
            (
                PromptCache::new(store.clone(), shared.clone(), config).unwrap(),
                KvCache::new(store, shared).unwrap(),
                None,
            )
        }
        Kind::Redis => {
            let store = RedisServer::shared().store();
            (
                PromptCache::new_redis(store.clone(), shared.clone(), config),
                KvCache::new_redis(store.clone(), shared),
                Some(store),
            )
        }
    };
    Caches {
        prompts,
        kv,
        clock,
        dir,
        redis,
    }
}

fn image(name: &str, size: u64) -> CachedResult {
    CachedResult {
        objects: vec![CachedObject {
            bucket: "outputs".into(),
            key: format!("{name}.png"),
            size,
            content_type: "image/png".into(),
        }],
    }
}

fn key(n: u64) -> CacheKey {
    CacheKey::of(&json!({ "prompt": n }), &[])
}

#[test]
fn key_order_and_whitespace_do_not_change_the_key() {
    let a: serde_json::Value =
        serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"q": 2, "p": 3}], "x": "s"}}"#).unwrap();
    let b: serde_json::Value =
        serde_json::from_str(r#"{"a":{"x":"s","y":[1,{"p":3,"q":2}]},"b":1}"#).unwrap();
    assert_eq!(CacheKey::of(&a, &[]), CacheKey::of(&b, &[]));
    assert_eq!(
        canonical_json(&a, &[]),
        r#"{"a":{"x":"s","y":[1,{"p":3,"q":2}]},"b":1}"#
    );

    let reordered_array = json!({ "b": 1, "a": { "x": "s", "y": [{ "p": 3, "q": 2 }, 1] } });
    assert_ne!(CacheKey::of(&a, &[]), CacheKey::of(&reordered_array, &[]));
    let other_value = json!({ "b": 2, "a": { "x": "s", "y": [1, { "p": 3, "q": 2 }] } });
    assert_ne!(CacheKey::of(&a, &[]), CacheKey::of(&other_value, &[]));
    let text = CacheKey::of(&a, &[]).to_string();
    assert_eq!(text.len(), 64);
    assert_eq!(text.parse::<CacheKey>().unwrap(), CacheKey::of(&a, &[]));
}

#[test]
fn volatile_fields_are_left_out_of_the_key() {
    let volatile = ["/client_id", "/prompt/*/inputs/noise_seed", "/extra~1data"];
    let one = json!({
        "client_id": "abc",
        "extra/data": 1,
        "prompt": { "3": { "inputs": { "noise_seed": 1, "steps": 20 } }, "4": { "inputs": { "noise_seed": 9 } } }
    });
    let two = json!({
        "client_id": "xyz",
        "extra/data": 2,
        "prompt": { "3": { "inputs": { "noise_seed": 2, "steps": 20 } }, "4": { "inputs": { "noise_seed": 8 } } }
    });
    assert_eq!(CacheKey::of(&one, &volatile), CacheKey::of(&two, &volatile));
    assert_ne!(CacheKey::of(&one, &[]), CacheKey::of(&two, &[]));
    let three =
        json!({ "client_id": "abc", "prompt": { "3": { "inputs": { "noise_seed": 1, "steps": 30 } } } });
    assert_ne!(CacheKey::of(&one, &volatile), CacheKey::of(&three, &volatile));
}

async fn hits_and_misses_are_counted(kind: Kind) {
    let c = caches(kind, PromptCacheConfig::default());
    assert_eq!(c.prompts.get(&key(1)).await.unwrap(), None);
    c.prompts.put(&key(1), image("one", 1000)).await.unwrap();
    assert_eq!(c.prompts.get(&key(1)).await.unwrap(), Some(image("one", 1000)));
    assert_eq!(c.prompts.get(&key(1)).await.unwrap(), Some(image("one", 1000)));
    assert_eq!(c.prompts.get(&key(2)).await.unwrap(), None);
    let stats = c.prompts.stats();
    assert_eq!((stats.hits, stats.misses), (2, 2));
    assert!(c.prompts.remove(&key(1)).await.unwrap());
    assert_eq!(c.prompts.get(&key(1)).await.unwrap(), None);
    assert_eq!(c.prompts.usage().await.unwrap().bytes, 0);
}

async fn entries_expire_after_their_ttl(kind: Kind) {
    let c = caches(kind, PromptCacheConfig::default());
    c.prompts.put(&key(1), image("week", 10)).await.unwrap();
    c.prompts
        .put_with_ttl(&key(2), image("minute", 10), Duration::from_mins(1))
        .await
        .unwrap();
    c.clock.advance_ms(59_999);
    assert!(c.prompts.get(&key(2)).await.unwrap().is_some());
    c.clock.advance_ms(1);
    assert!(c.prompts.get(&key(2)).await.unwrap().is_none());
    let swept = c.prompts.sweep_expired(c.clock.now_ms()).await.unwrap();
    assert_eq!(swept.iter().map(|e| e.key).collect::<Vec<_>>(), [key(2)]);

    c.clock.advance_ms(7 * 24 * 3_600_000 - 60_001);
    assert!(c.prompts.get(&key(1)).await.unwrap().is_some());
    c.clock.advance_ms(1);
    assert!(c.prompts.get(&key(1)).await.unwrap().is_none());
    assert_eq!(c.prompts.sweep_expired(c.clock.now_ms()).await.unwrap().len(), 1);
    assert_eq!(c.prompts.usage().await.unwrap().entries, 0);
    assert_eq!(c.prompts.stats().expired, 2);
}

async fn least_recently_used_entries_go_when_bytes_exceed_the_bound(kind: Kind) {
    let config = PromptCacheConfig {
        max_bytes: 3_500_000,
        ..PromptCacheConfig::default()
    };
    let c = caches(kind, config);
    for n in 1..=3 {
        let outcome = c
            .prompts
            .put(&key(n), image(&n.to_string(), 1_000_000))
            .await
            .unwrap();
        assert!(outcome.stored && outcome.evicted.is_empty());
    }
    assert!(c.prompts.get(&key(1)).await.unwrap().is_some());
    let outcome = c.prompts.put(&key(4), image("4", 1_000_000)).await.unwrap();
    assert_eq!(outcome.evicted.len(), 1);
    assert_eq!(outcome.evicted[0].key, key(2), "2 was least recently used");
    assert_eq!(outcome.evicted[0].result, image("2", 1_000_000));
    assert!(c.prompts.get(&key(2)).await.unwrap().is_none());
    for n in [1, 3, 4] {
        assert!(c.prompts.get(&key(n)).await.unwrap().is_some(), "entry {n}");
    }
    let big = c.prompts.put(&key(5), image("5", 2_400_000)).await.unwrap();
    let gone: Vec<_> = big.evicted.iter().map(|e| e.key).collect();
    assert_eq!(gone, [key(1), key(3)]);
    let usage = c.prompts.usage().await.unwrap();
    assert!(usage.bytes <= 3_500_000 && usage.entries == 2, "{usage:?}");
    assert_eq!(c.prompts.stats().evictions, 3);

    let oversized = c.prompts.put(&key(6), image("6", 4_000_000)).await.unwrap();
    assert!(!oversized.stored && oversized.evicted.is_empty());
    assert!(c.prompts.get(&key(6)).await.unwrap().is_none());
}

async fn kv_get_set_delete_and_expire(kind: Kind) {
    let c = caches(kind, PromptCacheConfig::default());
    assert_eq!(c.kv.get("session:1").await.unwrap(), None);
    c.kv.set("session:1", b"alice", None).await.unwrap();
    c.kv.set("session:2", b"bob", Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(
        c.kv.get("session:1").await.unwrap().as_deref(),
        Some(&b"alice"[..])
    );
    c.clock.advance_ms(10_000);
    assert_eq!(c.kv.get("session:2").await.unwrap(), None);
    assert!(!c.kv.expire("session:2", Duration::from_secs(10)).await.unwrap());

    assert!(c.kv.expire("session:1", Duration::from_secs(5)).await.unwrap());
    c.clock.advance_ms(4_999);
    assert!(c.kv.get("session:1").await.unwrap().is_some());
    c.clock.advance_ms(1);
    assert!(c.kv.get("session:1").await.unwrap().is_none());
    assert_eq!(c.kv.sweep_expired(c.clock.now_ms()).await.unwrap(), 2);

    c.kv.set("k", b"v", None).await.unwrap();
    assert!(c.kv.delete("k").await.unwrap());
    assert!(!c.kv.delete("k").await.unwrap());
    assert_eq!(c.kv.get("k").await.unwrap(), None);
}

async fn kv_incr_counts_within_a_window(kind: Kind) {
    let c = caches(kind, PromptCacheConfig::default());
    let window = Some(Duration::from_mins(1));
    for expected in 1..=3 {
        assert_eq!(c.kv.incr("rate:ip", 1, window).await.unwrap(), expected);
    }
    c.clock.advance_ms(60_000);
    assert_eq!(
        c.kv.incr("rate:ip", 1, window).await.unwrap(),
        1,
        "a new window starts at zero"
    );
    c.kv.set("text", b"abc", None).await.unwrap();
    assert!(c.kv.incr("text", 1, None).await.is_err());
}

/// Counters are 64-bit integers on both backends: exact past 2^53 (where a double
/// would round), saturating at the ends of the range, refusing "1e3".
async fn kv_incr_is_exact_to_64_bits_and_saturates(kind: Kind) {
    let c = caches(kind, PromptCacheConfig::default());
    c.kv.set("big", b"9007199254740993", None).await.unwrap();
    assert_eq!(c.kv.incr("big", 1, None).await.unwrap(), 9_007_199_254_740_994);
    assert_eq!(c.kv.get("big").await.unwrap().unwrap(), b"9007199254740994");
    c.kv.set("max", (i64::MAX - 1).to_string().as_bytes(), None)
        .await
        .unwrap();
    assert_eq!(c.kv.incr("max", 5, None).await.unwrap(), i64::MAX);
    assert_eq!(c.kv.incr("max", -1, None).await.unwrap(), i64::MAX - 1);
    c.kv.set("min", i64::MIN.to_string().as_bytes(), None)
        .await
        .unwrap();
    assert_eq!(c.kv.incr("min", -1, None).await.unwrap(), i64::MIN);
    c.kv.set("float", b"1e3", None).await.unwrap();
    let refused = c.kv.incr("float", 1, None).await.unwrap_err();
    assert!(refused.to_string().contains("float"), "{refused}");
    assert_eq!(c.kv.get("float").await.unwrap().unwrap(), b"1e3");
}

async fn entries_survive_a_restart(kind: Kind) {
    let c = caches(kind, PromptCacheConfig::default());
    c.prompts.put(&key(1), image("kept", 123)).await.unwrap();
    c.kv.set("session:1", b"alice", None).await.unwrap();
    // A restarted process (or, on Redis, another node) opens the same data.
    let clock = Arc::new(c.clock.clone());
    let config = PromptCacheConfig::default();
    let (_copy_dir, prompts, kv) = match &c.redis {
        None => {
            let (copy_dir, copy) = crate::queue_support::disk_copy(&c.dir.path().join("cache.redb"));
            let store = Store::open_compacted(&copy).unwrap();
            let prompts = PromptCache::new(store.clone(), clock.clone(), config).unwrap();
            (Some(copy_dir), prompts, KvCache::new(store, clock).unwrap())
        }
        Some(store) => (
            None,
            PromptCache::new_redis(store.clone(), clock.clone(), config),
            KvCache::new_redis(store.clone(), clock),
        ),
    };
    assert_eq!(prompts.get(&key(1)).await.unwrap(), Some(image("kept", 123)));
    assert_eq!(prompts.usage().await.unwrap(), c.prompts.usage().await.unwrap());
    assert_eq!(kv.get("session:1").await.unwrap().as_deref(), Some(&b"alice"[..]));
}

on_both_backends!(
    hits_and_misses_are_counted,
    entries_expire_after_their_ttl,
    least_recently_used_entries_go_when_bytes_exceed_the_bound,
    kv_get_set_delete_and_expire,
    kv_incr_counts_within_a_window,
    kv_incr_is_exact_to_64_bits_and_saturates,
    entries_survive_a_restart,
);
