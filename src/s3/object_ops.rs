//! Object operations of the S3 API: put, get (ranges and conditions), head, delete,
//! batch delete, copy and tagging.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::authz::Caller;
use super::checksum::{self, Incoming, Target, declared};
use super::convert;
use super::sse;
use crate::object_store::{ObjectAttrs, ObjectMeta, ObjectStore, PutConditions};

type Out<T> = S3Result<S3Response<T>>;

/// The connection a request came on (set by `s3::serve`).
fn connection<T>(req: &S3Request<T>) -> Option<super::Connection> {
    req.extensions.get::<super::Connection>().copied()
}

/// The SSE-C key of a request's `sse_customer_*` fields.
macro_rules! customer_of {
    ($input:expr, $conn:expr) => {
        sse::customer_key(
            $input.sse_customer_algorithm.as_deref(),
            $input.sse_customer_key.as_deref(),
            $input.sse_customer_key_md5.as_deref(),
            $conn,
        )
    };
}
pub(crate) use customer_of;

/// The SSE-C key of a copy request's source (`copy_source_sse_customer_*`).
macro_rules! copy_source_customer_of {
    ($input:expr, $conn:expr) => {
        sse::customer_key(
            $input.copy_source_sse_customer_algorithm.as_deref(),
            $input.copy_source_sse_customer_key.as_deref(),
            $input.copy_source_sse_customer_key_md5.as_deref(),
            $conn,
        )
    };
}
pub(crate) use copy_source_customer_of;

/// The owner and ACL of an object a write request makes (`x-amz-acl`,
/// `x-amz-grant-*`), under its bucket's ownership rules.
macro_rules! new_object_acl {
    ($s:expr, $caller:expr, $input:expr) => {{
        let bucket = $s.head_bucket(&$input.bucket).await?;
        let request = $crate::s3::authz::ownership::AclRequest {
            canned: $input.acl.as_ref().map(s3s::dto::ObjectCannedACL::as_str),
            headers: $crate::s3::authz::ownership::grant_headers!($input),
            body: None,
        };
        $crate::s3::authz::ownership::for_new_object(&$caller, &bucket, &request)?
    }};
}
pub(crate) use new_object_acl;

pub async fn put_object(s: &ObjectStore, req: S3Request<PutObjectInput>) -> Out<PutObjectOutput> {
    let conn = connection(&req);
    let caller = Caller::of(&req.extensions);
    let trailers = req.trailing_headers;
    let input = req.input;
    let customer = customer_of!(input, conn)?;
    let mut attrs = convert::attrs_of!(input)?;
    attrs.acl = new_object_acl!(s, caller, input);
    let conditions = PutConditions {
        if_none_match_any: input.if_none_match.as_ref().is_some_and(ETagCondition::is_any),
        if_match: input.if_match.map(|c| match c {
            ETagCondition::Any => "*".to_string(),
            ETagCondition::ETag(e) => e.into_value(),
        }),
    };
    let incoming = Incoming {
        body: input.body,
        content_length: input.content_length,
        declared: declared!(input),
        trailers,
    };
    let requested = sse::requested(input.server_side_encryption.as_ref(), customer.as_ref())?;
    let seal = s.seal_for(&input.bucket, requested).await?;
    let (sse_customer_algorithm, sse_customer_key_md5) = sse::customer_answer(customer.as_ref());
    let (staged, checksums) =
        checksum::receive(s, &input.bucket, incoming, Target::Object, seal.as_ref()).await?;
    let meta = s
        .commit_object(&input.bucket, &input.key, staged, attrs, checksums, conditions)
        .await?;
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(convert::etag(&meta)),
        server_side_encryption: sse::answered(meta.encryption.as_ref()),
        sse_customer_algorithm,
        sse_customer_key_md5,
        checksum_crc32: meta.checksums.crc32,
        checksum_crc32c: meta.checksums.crc32c,
        checksum_sha1: meta.checksums.sha1,
        checksum_sha256: meta.checksums.sha256,
        checksum_crc64nvme: meta.checksums.crc64nvme,
        ..Default::default()
    }))
}

/// The request's conditional headers.
struct Conditions<'a> {
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
}

/// RFC 9110 evaluation order: If-Match, If-Unmodified-Since, If-None-Match,
/// If-Modified-Since. HTTP dates have whole seconds, so compare in seconds.
fn check_conditions(meta: &ObjectMeta, c: &Conditions<'_>) -> S3Result<()> {
    let modified_s = meta.last_modified_ms.div_euclid(1000);
    let matches = |cond: &ETagCondition| match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == meta.etag,
    };
    if let Some(cond) = c.if_match {
        if !matches(cond) {
            return Err(s3_error!(PreconditionFailed, "If-Match: the ETag does not match"));
        }
    } else if let Some(t) = c.if_unmodified_since
        && modified_s > convert::millis(t).div_euclid(1000)
    {
        return Err(s3_error!(
            PreconditionFailed,
            "If-Unmodified-Since: the object was modified"
        ));
    }
    if let Some(cond) = c.if_none_match {
        if matches(cond) {
            return Err(s3_error!(NotModified));
        }
    } else if let Some(t) = c.if_modified_since
        && modified_s <= convert::millis(t).div_euclid(1000)
    {
        return Err(s3_error!(NotModified));
    }
    Ok(())
}

fn content_range(r: &std::ops::Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{size}", r.start, r.end.saturating_sub(1))
}

pub async fn get_object(s: &ObjectStore, req: S3Request<GetObjectInput>) -> Out<GetObjectOutput> {
    let conn = connection(&req);
    let input = req.input;
    let customer = customer_of!(input, conn)?;
    if input.part_number.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "GetObject by partNumber is not supported; use Range"
        ));
    }
    let open = s.open_object(&input.bucket, &input.key).await?;
    let meta = open.meta;
    check_conditions(
        &meta,
        &Conditions {
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_modified_since: input.if_modified_since.as_ref(),
            if_unmodified_since: input.if_unmodified_since.as_ref(),
        },
    )?;
    let range = match &input.range {
        Some(r) => Some(r.check(meta.size)?),
        None => None,
    };
    let span = range.clone().unwrap_or(0..meta.size);
    let len = span.end - span.start;
    let body = StreamingBlob::wrap(s.read_span(&meta, open.body, span, customer.as_ref().map(|c| &c.key))?);
    let (sse_customer_algorithm, sse_customer_key_md5) = sse::customer_answer(customer.as_ref());
    let whole = range.is_none();
    let a = &meta.attrs;
    let output = GetObjectOutput {
        body: Some(body),
        content_length: Some(i64::try_from(len).unwrap_or(i64::MAX)),
        content_range: range.as_ref().map(|r| content_range(r, meta.size)),
        accept_ranges: Some("bytes".into()),
        last_modified: Some(convert::timestamp(meta.last_modified_ms)),
        e_tag: Some(convert::etag(&meta)),
        content_type: input.response_content_type.or_else(|| a.content_type.clone()),
        content_encoding: input
            .response_content_encoding
            .or_else(|| a.content_encoding.clone()),
        content_disposition: input
            .response_content_disposition
            .or_else(|| a.content_disposition.clone()),
        content_language: input
            .response_content_language
            .or_else(|| a.content_language.clone()),
        cache_control: input.response_cache_control.or_else(|| a.cache_control.clone()),
        metadata: metadata_of(a),
        tag_count: i32::try_from(a.tags.len()).ok().filter(|n| *n > 0),
        parts_count: i32::try_from(meta.parts).ok().filter(|n| *n > 0),
        server_side_encryption: sse::answered(meta.encryption.as_ref()),
        sse_customer_algorithm,
        sse_customer_key_md5,
        checksum_crc32: meta.checksums.crc32.clone().filter(|_| whole),
        checksum_crc32c: meta.checksums.crc32c.clone().filter(|_| whole),
        checksum_sha1: meta.checksums.sha1.clone().filter(|_| whole),
        checksum_sha256: meta.checksums.sha256.clone().filter(|_| whole),
        checksum_crc64nvme: meta.checksums.crc64nvme.clone().filter(|_| whole),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

fn metadata_of(a: &ObjectAttrs) -> Option<Metadata> {
    (!a.user_metadata.is_empty()).then(|| a.user_metadata.clone().into_iter().collect())
}

pub async fn head_object(s: &ObjectStore, req: S3Request<HeadObjectInput>) -> Out<HeadObjectOutput> {
    let conn = connection(&req);
    let input = req.input;
    let customer = customer_of!(input, conn)?;
    let meta = s.head_object(&input.bucket, &input.key).await?;
    s.open_seal(meta.encryption.as_ref(), customer.as_ref().map(|c| &c.key))?;
    let (sse_customer_algorithm, sse_customer_key_md5) = sse::customer_answer(customer.as_ref());
    check_conditions(
        &meta,
        &Conditions {
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_modified_since: input.if_modified_since.as_ref(),
            if_unmodified_since: input.if_unmodified_since.as_ref(),
        },
    )?;
    let a = &meta.attrs;
    Ok(S3Response::new(HeadObjectOutput {
        content_length: Some(i64::try_from(meta.size).unwrap_or(i64::MAX)),
        accept_ranges: Some("bytes".into()),
        last_modified: Some(convert::timestamp(meta.last_modified_ms)),
        e_tag: Some(convert::etag(&meta)),
        content_type: a.content_type.clone(),
        content_encoding: a.content_encoding.clone(),
        content_disposition: a.content_disposition.clone(),
        content_language: a.content_language.clone(),
        cache_control: a.cache_control.clone(),
        metadata: metadata_of(a),
        parts_count: i32::try_from(meta.parts).ok().filter(|n| *n > 0),
        server_side_encryption: sse::answered(meta.encryption.as_ref()),
        sse_customer_algorithm,
        sse_customer_key_md5,
        checksum_crc32: meta.checksums.crc32.clone(),
        checksum_crc32c: meta.checksums.crc32c.clone(),
        checksum_sha1: meta.checksums.sha1.clone(),
        checksum_sha256: meta.checksums.sha256.clone(),
        checksum_crc64nvme: meta.checksums.crc64nvme.clone(),
        ..Default::default()
    }))
}

pub async fn delete_object(s: &ObjectStore, req: S3Request<DeleteObjectInput>) -> Out<DeleteObjectOutput> {
    s.delete_object(&req.input.bucket, &req.input.key).await?;
    Ok(S3Response::new(DeleteObjectOutput::default()))
}

pub async fn delete_objects(s: &ObjectStore, req: S3Request<DeleteObjectsInput>) -> Out<DeleteObjectsOutput> {
    let denied = req
        .extensions
        .get::<super::authz::DeniedKeys>()
        .cloned()
        .unwrap_or_default();
    let input = req.input;
    if input.delete.objects.len() > 1000 {
        return Err(s3_error!(
            MalformedXML,
            "at most 1000 keys per DeleteObjects request"
        ));
    }
    s.head_bucket(&input.bucket).await?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for obj in input.delete.objects {
        let outcome = if denied.0.contains(&obj.key) {
            Err(s3s::s3_error!(AccessDenied, "Access Denied"))
        } else {
            s.delete_object(&input.bucket, &obj.key)
                .await
                .map_err(s3s::S3Error::from)
        };
        match outcome {
            Ok(_) if quiet => {}
            Ok(_) => deleted.push(DeletedObject {
                key: Some(obj.key),
                ..Default::default()
            }),
            Err(e) => {
                errors.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(obj.key),
                    message: e.message().map(str::to_string),
                    version_id: None,
                });
            }
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    }))
}

/// The bucket and key a CopySource header names.
pub fn copy_source(src: &CopySource) -> S3Result<(&str, &str)> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            if version_id.is_some() {
                return Err(s3_error!(
                    NotImplemented,
                    "versioned copy sources are not supported"
                ));
            }
            Ok((bucket, key))
        }
        _ => Err(s3_error!(
            NotImplemented,
            "access point copy sources are not supported"
        )),
    }
}

pub async fn copy_object(s: &ObjectStore, req: S3Request<CopyObjectInput>) -> Out<CopyObjectOutput> {
    let conn = connection(&req);
    let caller = Caller::of(&req.extensions);
    let input = req.input;
    let acl = new_object_acl!(s, caller, input);
    let customer = customer_of!(input, conn)?;
    let src_customer = copy_source_customer_of!(input, conn)?;
    let (src_bucket, src_key) = copy_source(&input.copy_source)?;
    let src = s.head_object(src_bucket, src_key).await?;
    check_conditions(
        &src,
        &Conditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        },
    )
    .map_err(|e| {
        // A copy never answers 304: an unmet source condition is 412.
        if *e.code() == s3s::S3ErrorCode::NotModified {
            s3_error!(PreconditionFailed, "copy source condition not met")
        } else {
            e
        }
    })?;
    let replace = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    if !replace && src_bucket == input.bucket && src_key == input.key {
        return Err(s3_error!(
            InvalidRequest,
            "copying an object to itself without changing its metadata is not allowed; use MetadataDirective REPLACE"
        ));
    }
    // The copy's owner and ACL are the request's, never the source's.
    let new_attrs = if replace {
        let mut a = convert::attrs_of!(input)?;
        if input.tagging.is_none() {
            a.tags.clone_from(&src.attrs.tags);
        }
        ObjectAttrs { acl, ..a }
    } else {
        ObjectAttrs {
            acl,
            ..src.attrs.clone()
        }
    };
    // The destination is sealed as a new object would be (the request's header, the
    // bucket's default, encrypt_all); when that matches the source, the copy shares
    // its bytes (and data key), otherwise the bytes are opened and sealed again.
    let requested = sse::requested(input.server_side_encryption.as_ref(), customer.as_ref())?;
    let seal = s.seal_for(&input.bucket, requested).await?;
    let src_mode = src.encryption.as_ref().map(|e| e.mode);
    let same_mode = src_mode == seal.as_ref().map(|s| s.sealed.mode);
    // SSE-C never shares: the source's key is checked and the copy gets its own.
    let share = same_mode && src_mode != Some(crate::crypto::SseMode::Customer) && src_customer.is_none();
    let (sse_customer_algorithm, sse_customer_key_md5) = sse::customer_answer(customer.as_ref());
    let meta = if share {
        s.copy_object(
            (src_bucket, src_key),
            (&input.bucket, &input.key),
            Some(new_attrs),
        )
        .await?
    } else {
        let staged = s
            .restage(
                (src_bucket, src_key),
                None,
                &input.bucket,
                seal.as_ref(),
                false,
                src_customer.as_ref().map(|c| &c.key),
            )
            .await?;
        let attrs = new_attrs;
        s.commit_object(
            &input.bucket,
            &input.key,
            staged,
            attrs,
            crate::object_store::Checksums::default(),
            PutConditions::default(),
        )
        .await?
    };
    Ok(S3Response::new(CopyObjectOutput {
        server_side_encryption: sse::answered(meta.encryption.as_ref()),
        sse_customer_algorithm,
        sse_customer_key_md5,
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(convert::etag(&meta)),
            last_modified: Some(convert::timestamp(meta.last_modified_ms)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

pub async fn put_tagging(
    s: &ObjectStore,
    req: S3Request<PutObjectTaggingInput>,
) -> Out<PutObjectTaggingOutput> {
    let input = req.input;
    let tags = convert::tags_from_dto(input.tagging.tag_set)?;
    s.set_tags(&input.bucket, &input.key, tags).await?;
    Ok(S3Response::new(PutObjectTaggingOutput::default()))
}

pub async fn get_tagging(
    s: &ObjectStore,
    req: S3Request<GetObjectTaggingInput>,
) -> Out<GetObjectTaggingOutput> {
    let meta = s.head_object(&req.input.bucket, &req.input.key).await?;
    Ok(S3Response::new(GetObjectTaggingOutput {
        tag_set: convert::tags_to_dto(&meta.attrs.tags),
        version_id: None,
    }))
}

pub async fn delete_tagging(
    s: &ObjectStore,
    req: S3Request<DeleteObjectTaggingInput>,
) -> Out<DeleteObjectTaggingOutput> {
    s.set_tags(&req.input.bucket, &req.input.key, Vec::new()).await?;
    Ok(S3Response::new(DeleteObjectTaggingOutput::default()))
}
