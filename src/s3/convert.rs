//! Translations between s3s's wire types and the object store's records: times,
//! ETags, attributes, tags and lifecycle rules.

use s3s::dto::{
    AbortIncompleteMultipartUpload, ETag, ExpirationStatus, LifecycleExpiration, LifecycleRule as DtoRule,
    LifecycleRuleAndOperator, LifecycleRuleFilter, Metadata, Tag, Timestamp,
};
use s3s::{S3Result, s3_error};

use crate::clock::Millis;
use crate::object_store::{LifecycleRule, ObjectAttrs, ObjectMeta};

/// Milliseconds since the epoch as an S3 timestamp.
pub fn timestamp(ms: Millis) -> Timestamp {
    let nanos = i128::from(ms) * 1_000_000;
    let t =
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(t)
}

/// An S3 timestamp as milliseconds since the epoch.
pub fn millis(ts: &Timestamp) -> Millis {
    let t: time::OffsetDateTime = ts.clone().into();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub fn etag(meta: &ObjectMeta) -> ETag {
    ETag::Strong(meta.etag.clone())
}

/// The attributes a write request sets.
#[allow(clippy::too_many_arguments)]
pub fn attrs(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    metadata: Option<Metadata>,
    tagging: Option<&str>,
) -> S3Result<ObjectAttrs> {
    Ok(ObjectAttrs {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        user_metadata: metadata.unwrap_or_default().into_iter().collect(),
        tags: match tagging {
            Some(t) => parse_tagging_header(t)?,
            None => Vec::new(),
        },
        acl: None,
    })
}

/// The [`ObjectAttrs`] of a write input with the usual S3 field names
/// (PutObject, CreateMultipartUpload, CopyObject with `REPLACE`).
macro_rules! attrs_of {
    ($input:expr) => {
        $crate::s3::convert::attrs(
            $input.content_type,
            $input.content_encoding,
            $input.content_disposition,
            $input.content_language,
            $input.cache_control,
            $input.metadata,
            $input.tagging.as_deref(),
        )
    };
}
pub(crate) use attrs_of;

/// Parses the `x-amz-tagging` header (`k1=v1&k2=v2`, URL-encoded).
pub fn parse_tagging_header(header: &str) -> S3Result<Vec<(String, String)>> {
    let tags: Vec<(String, String)> = form_urlencoded::parse(header.as_bytes()).into_owned().collect();
    check_tags(&tags)?;
    Ok(tags)
}

/// S3's tag limits: at most 10 tags, keys up to 128 and values up to 256 characters,
/// no duplicate keys.
pub fn check_tags(tags: &[(String, String)]) -> S3Result<()> {
    if tags.len() > 10 {
        return Err(s3_error!(InvalidTag, "an object can have at most 10 tags"));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(s3_error!(
                InvalidTag,
                "tag {k:?}: keys are 1-128 and values 0-256 characters"
            ));
        }
        if tags[..i].iter().any(|(other, _)| other == k) {
            return Err(s3_error!(InvalidTag, "tag key {k:?} appears twice"));
        }
    }
    Ok(())
}

pub fn tags_from_dto(set: Vec<Tag>) -> S3Result<Vec<(String, String)>> {
    let tags: Vec<(String, String)> = set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    check_tags(&tags)?;
    Ok(tags)
}

pub fn tags_to_dto(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

/// An S3 lifecycle rule as darkroom applies it; unsupported actions are refused
/// rather than silently ignored.
pub fn rule_from_dto(r: DtoRule) -> S3Result<LifecycleRule> {
    if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions
            .as_ref()
            .is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_expiration.is_some()
    {
        return Err(s3_error!(
            NotImplemented,
            "only Expiration and AbortIncompleteMultipartUpload lifecycle actions are supported"
        ));
    }
    let mut rule = LifecycleRule {
        id: r.id,
        enabled: r.status.as_str() == ExpirationStatus::ENABLED,
        prefix: r.prefix.unwrap_or_default(),
        ..LifecycleRule::default()
    };
    if let Some(f) = r.filter {
        if f.object_size_greater_than.is_some() || f.object_size_less_than.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "lifecycle filters by object size are not supported"
            ));
        }
        if let Some(p) = f.prefix {
            rule.prefix = p;
        }
        if let Some(t) = f.tag {
            rule.tags = tags_from_dto(vec![t])?;
        }
        if let Some(and) = f.and {
            if and.object_size_greater_than.is_some() || and.object_size_less_than.is_some() {
                return Err(s3_error!(
                    NotImplemented,
                    "lifecycle filters by object size are not supported"
                ));
            }
            if let Some(p) = and.prefix {
                rule.prefix = p;
            }
            rule.tags = tags_from_dto(and.tags.unwrap_or_default())?;
        }
    }
    if let Some(e) = r.expiration {
        if e.expired_object_delete_marker == Some(true) {
            return Err(s3_error!(
                NotImplemented,
                "ExpiredObjectDeleteMarker needs versioning, which darkroom does not have"
            ));
        }
        rule.expiration_days = e.days.map(|d| positive_days(d, "Expiration.Days")).transpose()?;
        rule.expiration_date_ms = e.date.as_ref().map(millis);
    }
    if let Some(a) = r.abort_incomplete_multipart_upload {
        rule.abort_incomplete_days = a
            .days_after_initiation
            .map(|d| positive_days(d, "DaysAfterInitiation"))
            .transpose()?;
    }
    if rule.expiration_days.is_none()
        && rule.expiration_date_ms.is_none()
        && rule.abort_incomplete_days.is_none()
    {
        return Err(s3_error!(
            MalformedXML,
            "a lifecycle rule needs at least one action"
        ));
    }
    Ok(rule)
}

fn positive_days(d: i32, field: &str) -> S3Result<u32> {
    u32::try_from(d)
        .ok()
        .filter(|d| *d > 0)
        .ok_or_else(|| s3_error!(InvalidArgument, "{field} must be a positive integer"))
}

pub fn rule_to_dto(r: &LifecycleRule) -> DtoRule {
    let tags = tags_to_dto(&r.tags);
    let filter = if tags.len() > 1 || (!tags.is_empty() && !r.prefix.is_empty()) {
        LifecycleRuleFilter {
            and: Some(LifecycleRuleAndOperator {
                prefix: Some(r.prefix.clone()),
                tags: Some(tags),
                ..Default::default()
            }),
            ..Default::default()
        }
    } else if let Some(tag) = tags.into_iter().next() {
        LifecycleRuleFilter {
            tag: Some(tag),
            ..Default::default()
        }
    } else {
        LifecycleRuleFilter {
            prefix: Some(r.prefix.clone()),
            ..Default::default()
        }
    };
    let expiration =
        (r.expiration_days.is_some() || r.expiration_date_ms.is_some()).then(|| LifecycleExpiration {
            days: r.expiration_days.and_then(|d| i32::try_from(d).ok()),
            date: r.expiration_date_ms.map(timestamp),
            expired_object_delete_marker: None,
        });
    DtoRule {
        id: r.id.clone(),
        status: ExpirationStatus::from_static(if r.enabled {
            ExpirationStatus::ENABLED
        } else {
            ExpirationStatus::DISABLED
        }),
        filter: Some(filter),
        expiration,
        abort_incomplete_multipart_upload: r.abort_incomplete_days.map(|d| AbortIncompleteMultipartUpload {
            days_after_initiation: i32::try_from(d).ok(),
        }),
        prefix: None,
        noncurrent_version_expiration: None,
        noncurrent_version_transitions: None,
        transitions: None,
    }
}
