//! Listing: an ordered range scan over the `(bucket, key)` index, folding keys into
//! common prefixes when a delimiter is given and seeking past each folded prefix, so
//! a page costs what it returns, not the size of the bucket.

use std::ops::Bound;

use redb::ReadableTable;

use super::meta::{self, ObjectMeta};
use super::{ObjectStore, StorageError, require_bucket};

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Start strictly after this key (StartAfter, Marker, or a continuation).
    pub start_after: Option<String>,
    /// Keys plus common prefixes returned at most.
    pub max_keys: usize,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<(String, ObjectMeta)>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix returned: where the next page starts.
    pub last: Option<String>,
}

impl ObjectStore {
    /// Lists a page of `bucket`.
    pub async fn list(&self, bucket: &str, query: ListQuery) -> Result<ListPage, StorageError> {
        let bucket = bucket.to_string();
        self.read(move |txn| {
            require_bucket(&txn.open_table(meta::BUCKETS)?, &bucket)?;
            scan(&txn.open_table(meta::OBJECTS)?, &bucket, &query)
        })
        .await
    }
}

fn scan(
    objects: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    bucket: &str,
    q: &ListQuery,
) -> Result<ListPage, StorageError> {
    let mut page = ListPage::default();
    if q.max_keys == 0 {
        return Ok(page);
    }
    let prefix = q.prefix.as_str();
    let delimiter = q.delimiter.as_deref().filter(|d| !d.is_empty());
    // Where the scan (re)starts: the larger of the prefix and the start-after key.
    let mut from: Bound<String> = match &q.start_after {
        Some(s) if s.as_str() >= prefix => Bound::Excluded(s.clone()),
        _ => Bound::Included(prefix.to_string()),
    };
    let mut count = 0usize;
    'seek: loop {
        let lower = match &from {
            Bound::Included(k) => Bound::Included((bucket, k.as_str())),
            Bound::Excluded(k) => Bound::Excluded((bucket, k.as_str())),
            Bound::Unbounded => Bound::Unbounded,
        };
        for row in objects.range::<(&str, &str)>((lower, Bound::Unbounded))? {
            let (k, v) = row?;
            let (b, key) = k.value();
            if b != bucket || !key.starts_with(prefix) {
                break 'seek;
            }
            let folded = delimiter.and_then(|d| {
                key[prefix.len()..]
                    .find(d)
                    .map(|i| &key[..prefix.len() + i + d.len()])
            });
            match folded {
                Some(cp) => {
                    let already = q.start_after.as_deref().is_some_and(|s| cp <= s)
                        || page.common_prefixes.last().is_some_and(|l| l == cp);
                    if !already {
                        if count == q.max_keys {
                            page.truncated = true;
                            break 'seek;
                        }
                        page.common_prefixes.push(cp.to_string());
                        page.last = Some(cp.to_string());
                        count += 1;
                    }
                    // Seek past every key under this prefix; if nothing sorts after
                    // the seek target inside the prefix, step one key instead.
                    let next = format!("{cp}\u{10FFFF}");
                    from = if key < next.as_str() {
                        Bound::Included(next)
                    } else {
                        Bound::Excluded(key.to_string())
                    };
                    continue 'seek;
                }
                None => {
                    if count == q.max_keys {
                        page.truncated = true;
                        break 'seek;
                    }
                    page.objects.push((key.to_string(), meta::decode(v.value())?));
                    page.last = Some(key.to_string());
                    count += 1;
                }
            }
        }
        break;
    }
    Ok(page)
}
