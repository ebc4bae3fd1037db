//! The drop folder: `[[inbox]]` rules turn pictures uploaded under a bucket's
//! prefix into jobs, with no other call. A new object directly under the prefix
//! (a PutObject, a CompleteMultipartUpload or a copy, seen as the store's
//! `Written` event — never by polling) becomes one job of the rule's template,
//! the object bound to its image parameter (`s3://bucket/key`), the rule's
//! parameters overridden by a sidecar `NAME.json` beside it and by
//! `x-amz-meta-darkroom-*` metadata on it. When the job ends, its images are
//! written to `{output_prefix}/{name}-{n}.{ext}` and the original (with its
//! sidecar) moves to `{prefix}processed/`, or to `{prefix}failed/` with a
//! `NAME.error.json` beside it.
//!
//! Exactly one job per uploaded version: the job's idempotency key is a hash of
//! (bucket, key, ETag), so the event, the start-up catch-up (every object still
//! in a watched prefix is submitted again, which returns its job if it has one)
//! and a restart after `kill -9` agree on one job; a job that ended while the
//! daemon was down is finished by the catch-up. Nothing the inbox writes is
//! ingested again: results, `processed/` and `failed/` are never directly under
//! a watched prefix (`config.rs` refuses an output prefix that would be), and
//! `.json` files are sidecars.
//!
//! It sits beside the front ends: it submits through the jobs service, as the
//! API does. `ingest.rs` is the running loop, `finish.rs` what happens when a job
//! ends, `dir.rs` the optional local directory, `config.rs` the rules.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::object_store::{ListQuery, ObjectStore, StorageError};

pub mod config;
mod dir;
mod finish;
mod ingest;

pub use config::InboxRule;
pub use ingest::start;

/// The rules, shared.
pub type Rules = Arc<Vec<InboxRule>>;

/// The prefix of every inbox job's idempotency key.
const KEY_PREFIX: &str = "inbox:";

/// The idempotency key of the job of one uploaded version.
pub fn job_key(bucket: &str, key: &str, etag: &str) -> String {
    let digest = Sha256::digest(format!("{bucket}\n{key}\n{etag}").as_bytes());
    format!("{KEY_PREFIX}{}", hex::encode(digest))
}

/// The rule watching `bucket/key`, and the picture's name, if `key` is a
/// picture directly under a watched prefix (not a sidecar, not in a sub-folder).
pub fn rule_for<'r>(rules: &'r [InboxRule], bucket: &str, key: &str) -> Option<(&'r InboxRule, String)> {
    rules.iter().find_map(|rule| {
        let name = key.strip_prefix(&rule.prefix())?;
        let picture = rule.bucket == bucket
            && !name.is_empty()
            && !name.contains('/')
            && !name.starts_with('.')
            && !name.to_ascii_lowercase().ends_with(".json");
        picture.then(|| (rule, name.to_owned()))
    })
}

/// `photo` of `photo.png`.
pub fn stem(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    }
}

/// One rule and what its folders hold now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleStatus {
    /// `bucket/prefix`.
    pub name: String,
    pub bucket: String,
    pub prefix: String,
    pub template: String,
    pub output_prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Pictures waiting (or running) under the prefix.
    pub pending: u64,
    /// Originals in `processed/`.
    pub processed: u64,
    /// Originals in `failed/`.
    pub failed: u64,
}

/// Every rule with its pending, processed and failed counts.
pub async fn status(storage: &ObjectStore, rules: &[InboxRule]) -> Result<Vec<RuleStatus>, StorageError> {
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let pending = count(storage, &rule.bucket, &rule.prefix(), |k| {
            rule_for(std::slice::from_ref(rule), &rule.bucket, k).is_some()
        })
        .await?;
        let not_json = |k: &str| !k.to_ascii_lowercase().ends_with(".json");
        let processed = count(storage, &rule.bucket, &rule.processed(), not_json).await?;
        let failed = count(storage, &rule.bucket, &rule.failed(), not_json).await?;
        out.push(RuleStatus {
            name: rule.name(),
            bucket: rule.bucket.clone(),
            prefix: rule.prefix(),
            template: rule.template.clone(),
            output_prefix: rule.outputs(),
            owner: rule.owner.clone(),
            dir: rule.dir.as_ref().map(|d| d.display().to_string()),
            pending,
            processed,
            failed,
        });
    }
    Ok(out)
}

/// The keys directly under `prefix` (not in sub-folders) that `keep` keeps.
pub(crate) async fn keys_under(
    storage: &ObjectStore,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, String)>, StorageError> {
    let mut keys = Vec::new();
    let mut after = None;
    loop {
        let page = storage
            .list(
                bucket,
                ListQuery {
                    prefix: prefix.to_owned(),
                    delimiter: Some("/".into()),
                    start_after: after.take(),
                    max_keys: 1000,
                },
            )
            .await?;
        keys.extend(page.objects.into_iter().map(|(k, m)| (k, m.etag)));
        if !page.truncated {
            return Ok(keys);
        }
        after = page.last;
    }
}

async fn count(
    storage: &ObjectStore,
    bucket: &str,
    prefix: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<u64, StorageError> {
    match keys_under(storage, bucket, prefix).await {
        Ok(keys) => Ok(keys.iter().filter(|(k, _)| keep(k)).count() as u64),
        Err(StorageError::NoSuchBucket(_)) => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, output: &str) -> InboxRule {
        InboxRule {
            bucket: "inbox".into(),
            prefix: prefix.into(),
            template: "upscale".into(),
            params: serde_json::Map::new(),
            param: "image".into(),
            output_prefix: output.into(),
            owner: None,
            dir: None,
        }
    }

    #[test]
    fn only_pictures_directly_under_the_prefix_are_ingested() {
        let rules = [rule("upscale", "upscaled")];
        let hit = |k: &str| rule_for(&rules, "inbox", k).map(|(_, n)| n);
        assert_eq!(hit("upscale/photo.png").as_deref(), Some("photo.png"));
        for key in [
            "upscale/photo.json",
            "upscale/processed/photo.png",
            "upscale/failed/photo.png.error.json",
            "upscaled/photo-1.png",
            "upscale/.hidden",
            "other/photo.png",
        ] {
            assert_eq!(hit(key), None, "{key}");
        }
        assert_eq!(rule_for(&rules, "elsewhere", "upscale/photo.png"), None);
        assert_eq!(stem("photo.final.png"), "photo.final");
        assert_eq!(stem(".png"), ".png");
    }

    #[test]
    fn an_output_prefix_that_would_be_ingested_is_refused() {
        assert!(rule("upscale/", "upscale").validate(0).is_err());
        assert!(rule("", "out").validate(0).is_ok());
        let mut r = rule("a", "b");
        r.params.insert("image".into(), serde_json::json!("x"));
        let e = r.validate(3).unwrap_err().to_string();
        assert!(e.starts_with("inbox[3].params"), "{e}");
        assert!(config::validate(&[rule("a", "b"), rule("a/", "c")]).is_err());
    }

    #[test]
    fn the_job_key_is_per_version() {
        let a = job_key("b", "k", "e1");
        assert_ne!(a, job_key("b", "k", "e2"));
        assert!(a.starts_with(KEY_PREFIX) && a.len() < 256);
    }
}
