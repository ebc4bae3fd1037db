//! Listing operations of the S3 API: ListObjects (v1) and ListObjectsV2, including
//! `encoding-type=url` (awscli asks for it) and opaque continuation tokens.

use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::convert;
use crate::object_store::{ListPage, ListQuery, ObjectStore};

type Out<T> = S3Result<S3Response<T>>;

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(1000).min(1000)),
    }
}

/// Percent-encodes everything but unreserved characters and `/`, as S3 does for
/// `encoding-type=url`.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

struct Encoder(bool);

impl Encoder {
    fn new(t: Option<&EncodingType>) -> Self {
        Self(t.is_some_and(|t| t.as_str() == EncodingType::URL))
    }
    fn enc(&self, s: String) -> String {
        if self.0 { url_encode(&s) } else { s }
    }
}

fn contents(page: &mut ListPage, e: &Encoder) -> (Vec<Object>, Vec<CommonPrefix>) {
    let objects = std::mem::take(&mut page.objects)
        .into_iter()
        .map(|(key, m)| Object {
            key: Some(e.enc(key)),
            size: Some(i64::try_from(m.size).unwrap_or(i64::MAX)),
            e_tag: Some(convert::etag(&m)),
            last_modified: Some(convert::timestamp(m.last_modified_ms)),
            storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
            owner: Some(match &m.attrs.acl {
                Some(acl) => Owner {
                    display_name: Some(acl.owner.clone()),
                    id: Some(acl.owner.clone()),
                },
                None => super::owner(),
            }),
            ..Default::default()
        })
        .collect();
    let prefixes = std::mem::take(&mut page.common_prefixes)
        .into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(e.enc(p)),
        })
        .collect();
    (objects, prefixes)
}

pub async fn list_objects_v2(
    s: &ObjectStore,
    req: S3Request<ListObjectsV2Input>,
) -> Out<ListObjectsV2Output> {
    let input = req.input;
    let limit = max_keys(input.max_keys)?;
    let after_token = match &input.continuation_token {
        Some(t) => Some(
            URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| s3_error!(InvalidArgument, "the continuation token is not valid"))?,
        ),
        None => None,
    };
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone(),
        start_after: after_token.or_else(|| input.start_after.clone()),
        max_keys: limit,
    };
    let mut page = s.list(&input.bucket, query).await?;
    let e = Encoder::new(input.encoding_type.as_ref());
    let (objects, prefixes) = contents(&mut page, &e);
    let next = page
        .truncated
        .then(|| page.last.as_ref().map(|l| URL_SAFE_NO_PAD.encode(l)))
        .flatten();
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        key_count: Some(i32::try_from(objects.len() + prefixes.len()).unwrap_or(i32::MAX)),
        contents: Some(objects),
        common_prefixes: Some(prefixes),
        prefix: Some(e.enc(input.prefix.unwrap_or_default())),
        delimiter: input.delimiter.map(|d| e.enc(d)),
        max_keys: Some(i32::try_from(limit).unwrap_or(1000)),
        is_truncated: Some(page.truncated),
        continuation_token: input.continuation_token,
        next_continuation_token: next,
        start_after: input.start_after.map(|s| e.enc(s)),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

pub async fn list_objects(s: &ObjectStore, req: S3Request<ListObjectsInput>) -> Out<ListObjectsOutput> {
    let input = req.input;
    let limit = max_keys(input.max_keys)?;
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone(),
        start_after: input.marker.clone().filter(|m| !m.is_empty()),
        max_keys: limit,
    };
    let mut page = s.list(&input.bucket, query).await?;
    let e = Encoder::new(input.encoding_type.as_ref());
    let (objects, prefixes) = contents(&mut page, &e);
    let next_marker = page
        .truncated
        .then(|| page.last.clone().map(|l| e.enc(l)))
        .flatten();
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        contents: Some(objects),
        common_prefixes: Some(prefixes),
        prefix: Some(e.enc(input.prefix.unwrap_or_default())),
        delimiter: input.delimiter.map(|d| e.enc(d)),
        marker: Some(input.marker.unwrap_or_default()),
        max_keys: Some(i32::try_from(limit).unwrap_or(1000)),
        is_truncated: Some(page.truncated),
        next_marker,
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}
