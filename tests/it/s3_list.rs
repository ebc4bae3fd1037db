//! Listing over thousands of keys with prefixes, delimiters and pagination (v1 and
//! v2), checked against the expected answer computed from the key set.

use std::collections::BTreeSet;

use darkroom::object_store::ObjectAttrs;
use futures::StreamExt;

use crate::support::server;

/// 3,000 keys: `top-N`, `dir{0..9}/file-N`, `dir{0..9}/sub/N`.
fn keys() -> BTreeSet<String> {
    let mut k = BTreeSet::new();
    for i in 0..3000 {
        let key = match i % 3 {
            0 => format!("top-{i:05}"),
            1 => format!("dir{}/file-{i:05}", i % 10),
            _ => format!("dir{}/sub/{i:05}", i % 10),
        };
        k.insert(key);
    }
    k
}

#[tokio::test]
async fn list_v2_and_v1_paginate_with_delimiters() {
    let s = server().await;
    s.client.create_bucket().bucket("many").send().await.unwrap();
    let all = keys();
    // Fill through the store directly (fast), list through the S3 client.
    let store = s.daemon.storage().clone();
    futures::stream::iter(all.clone())
        .map(|k| {
            let store = store.clone();
            async move {
                let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(k.clone()))]);
                store.put("many", &k, body, ObjectAttrs::default()).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;

    // Full listing in pages of 250 returns every key exactly once, in order.
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let out = s
            .client
            .list_objects_v2()
            .bucket("many")
            .max_keys(250)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        seen.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        if out.is_truncated() == Some(true) {
            token = out.next_continuation_token().map(str::to_string);
        } else {
            break;
        }
    }
    assert_eq!(pages, 12);
    assert_eq!(seen, all.iter().cloned().collect::<Vec<_>>());

    // Delimiter at the root: the ten dirs fold, top-level keys are listed.
    let mut prefixes = Vec::new();
    let mut top = Vec::new();
    let mut token = None;
    loop {
        let out = s
            .client
            .list_objects_v2()
            .bucket("many")
            .delimiter("/")
            .max_keys(7)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        prefixes.extend(
            out.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_string()),
        );
        top.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        if out.is_truncated() != Some(true) {
            break;
        }
        token = out.next_continuation_token().map(str::to_string);
    }
    let want: Vec<String> = (0..10).map(|d| format!("dir{d}/")).collect();
    assert_eq!(prefixes, want);
    assert_eq!(top.len(), 1000);

    // Prefix + delimiter one level down.
    let out = s
        .client
        .list_objects_v2()
        .bucket("many")
        .prefix("dir3/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let sub: Vec<_> = out
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(sub, ["dir3/sub/"]);
    let expected_files = all.iter().filter(|k| k.starts_with("dir3/file-")).count();
    assert_eq!(out.contents().len(), expected_files);

    // StartAfter skips everything up to and including the given key.
    let out = s
        .client
        .list_objects_v2()
        .bucket("many")
        .start_after("top-02000")
        .send()
        .await
        .unwrap();
    let expected: Vec<&String> = all.iter().filter(|k| k.as_str() > "top-02000").collect();
    assert_eq!(out.contents().len(), expected.len());

    // ListObjects v1 with markers.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = s
            .client
            .list_objects()
            .bucket("many")
            .prefix("dir")
            .max_keys(500)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        seen.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        if out.is_truncated() != Some(true) {
            break;
        }
        marker = out.next_marker().map(str::to_string);
    }
    assert_eq!(seen.len(), 2000);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}
