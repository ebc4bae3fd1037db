//! The prompt cache key: SHA-256 of a request's canonical JSON.
//!
//! Two requests that mean the same thing must hash the same, so object keys are
//! sorted (recursively), whitespace is dropped, and fields the caller marks volatile
//! (a client id, a timestamp — anything that does not change the image) are removed
//! before hashing. Volatile fields are named by JSON-pointer-like paths: `/extra/client_id`
//! names one field, `*` stands for any key or index (`/*/inputs/noise_seed`), and `~1` /
//! `~0` escape `/` and `~` as in RFC 6901.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A SHA-256 digest naming one cached result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// The key of `request` with the `volatile` paths left out.
    pub fn of(request: &Value, volatile: &[&str]) -> Self {
        let canonical = canonical_json(request, volatile);
        Self(Sha256::digest(canonical.as_bytes()).into())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a cache key is 64 hex digits, got `{0}`")]
pub struct ParseKeyError(pub String);

impl FromStr for CacheKey {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| ParseKeyError(s.to_owned()))?;
        Ok(Self(bytes))
    }
}

/// `value` without the `volatile` paths, with sorted keys and no whitespace.
pub fn canonical_json(value: &Value, volatile: &[&str]) -> String {
    let mut pruned = value.clone();
    for path in volatile {
        let segments: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        if !segments.is_empty() {
            remove_path(&mut pruned, &segments);
        }
    }
    let mut out = String::new();
    write_canonical(&pruned, &mut out);
    out
}

fn matches(segment: &str, key: &str) -> bool {
    segment == "*" || segment == key
}

fn remove_path(value: &mut Value, segments: &[String]) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    match value {
        Value::Object(map) => {
            if rest.is_empty() {
                map.retain(|key, _| !matches(first, key));
            } else {
                for (key, child) in map.iter_mut() {
                    if matches(first, key) {
                        remove_path(child, rest);
                    }
                }
            }
        }
        Value::Array(items) => {
            if rest.is_empty() {
                let mut index = 0;
                items.retain(|_| {
                    let keep = !matches(first, &index.to_string());
                    index += 1;
                    keep
                });
            } else {
                for (index, child) in items.iter_mut().enumerate() {
                    if matches(first, &index.to_string()) {
                        remove_path(child, rest);
                    }
                }
            }
        }
        _ => {}
    }
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, child)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(child, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, child) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(child, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's escaping of a plain string cannot fail.
    out.push_str(&Value::String(s.to_owned()).to_string());
}
