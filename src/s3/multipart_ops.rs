//! Multipart operations of the S3 API: create, upload part (and part copy),
//! list parts, list uploads, complete, abort.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::checksum::{self, Incoming, Target, declared};
use super::convert;
use super::object_ops::{copy_source, copy_source_customer_of, customer_of};
use super::sse;
use crate::object_store::ObjectStore;

type Out<T> = S3Result<S3Response<T>>;

fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| s3_error!(InvalidArgument, "part number must be between 1 and 10000"))
}

pub async fn create(
    s: &ObjectStore,
    req: S3Request<CreateMultipartUploadInput>,
) -> Out<CreateMultipartUploadOutput> {
    let conn = req.extensions.get::<super::Connection>().copied();
    let caller = super::authz::Caller::of(&req.extensions);
    let input = req.input;
    let mut attrs = convert::attrs_of!(input)?;
    attrs.acl = super::object_ops::new_object_acl!(s, caller, input);
    let customer = customer_of!(input, conn)?;
    let requested = sse::requested(input.server_side_encryption.as_ref(), customer.as_ref())?;
    let seal = s.seal_for(&input.bucket, requested).await?;
    let (sse_customer_algorithm, sse_customer_key_md5) = sse::customer_answer(customer.as_ref());
    let sealed = seal.map(|s| s.sealed);
    let server_side_encryption = sse::answered(sealed.as_ref());
    let upload_id = s.create_upload(&input.bucket, &input.key, attrs, sealed).await?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        server_side_encryption,
        sse_customer_algorithm,
        sse_customer_key_md5,
        ..Default::default()
    }))
}

pub async fn upload_part(s: &ObjectStore, req: S3Request<UploadPartInput>) -> Out<UploadPartOutput> {
    let conn = req.extensions.get::<super::Connection>().copied();
    let trailers = req.trailing_headers;
    let input = req.input;
    let number = part_number(input.part_number)?;
    let customer = customer_of!(input, conn)?;
    let upload = s.get_upload(&input.bucket, &input.key, &input.upload_id).await?;
    let seal = s.open_seal(upload.encryption.as_ref(), customer.as_ref().map(|c| &c.key))?;
    let (sse_customer_algorithm, sse_customer_key_md5) = sse::customer_answer(customer.as_ref());
    let incoming = Incoming {
        body: input.body,
        content_length: input.content_length,
        declared: declared!(input),
        trailers,
    };
    let (staged, sums) = checksum::receive(s, &input.bucket, incoming, Target::Part, seal.as_ref()).await?;
    let part = s
        .commit_part((&input.bucket, &input.key, &input.upload_id), number, staged)
        .await?;
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(ETag::Strong(part.etag)),
        server_side_encryption: sse::answered(upload.encryption.as_ref()),
        sse_customer_algorithm,
        sse_customer_key_md5,
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_crc64nvme: sums.crc64nvme,
        ..Default::default()
    }))
}

/// Parses `bytes=first-last` of x-amz-copy-source-range against the source size.
fn copy_range(header: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "x-amz-copy-source-range must be bytes=first-last within the source"
        )
    };
    let spec = header.strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.trim().parse().map_err(|_| bad())?;
    let last: u64 = b.trim().parse().map_err(|_| bad())?;
    if first > last || last >= size {
        return Err(s3_error!(
            InvalidRange,
            "the copy source range is not satisfiable"
        ));
    }
    Ok(first..last + 1)
}

pub async fn upload_part_copy(
    s: &ObjectStore,
    req: S3Request<UploadPartCopyInput>,
) -> Out<UploadPartCopyOutput> {
    let conn = req.extensions.get::<super::Connection>().copied();
    let input = req.input;
    let number = part_number(input.part_number)?;
    let customer = customer_of!(input, conn)?;
    let src_customer = copy_source_customer_of!(input, conn)?;
    let upload = s.get_upload(&input.bucket, &input.key, &input.upload_id).await?;
    let seal = s.open_seal(upload.encryption.as_ref(), customer.as_ref().map(|c| &c.key))?;
    let (src_bucket, src_key) = copy_source(&input.copy_source)?;
    let range = match &input.copy_source_range {
        Some(h) => {
            let src = s.head_object(src_bucket, src_key).await?;
            Some(copy_range(h, src.size)?)
        }
        None => None,
    };
    let staged = s
        .restage(
            (src_bucket, src_key),
            range,
            &input.bucket,
            seal.as_ref(),
            true,
            src_customer.as_ref().map(|c| &c.key),
        )
        .await?;
    let part = s
        .commit_part((&input.bucket, &input.key, &input.upload_id), number, staged)
        .await?;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(part.etag)),
            last_modified: Some(convert::timestamp(part.last_modified_ms)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

pub async fn list_parts(s: &ObjectStore, req: S3Request<ListPartsInput>) -> Out<ListPartsOutput> {
    let input = req.input;
    let max = usize::try_from(input.max_parts.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000);
    let marker = u32::try_from(input.part_number_marker.unwrap_or(0)).unwrap_or(0);
    let all = s.list_parts(&input.bucket, &input.key, &input.upload_id).await?;
    let rest: Vec<_> = all.into_iter().filter(|(n, _)| *n > marker).collect();
    let truncated = rest.len() > max;
    let page: Vec<_> = rest.into_iter().take(max).collect();
    let next = page
        .last()
        .and_then(|(n, _)| i32::try_from(*n).ok())
        .filter(|_| truncated);
    let parts = page
        .into_iter()
        .map(|(n, p)| Part {
            part_number: i32::try_from(n).ok(),
            size: i64::try_from(p.size).ok(),
            e_tag: Some(ETag::Strong(p.etag)),
            last_modified: Some(convert::timestamp(p.last_modified_ms)),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        parts: Some(parts),
        is_truncated: Some(truncated),
        max_parts: i32::try_from(max).ok(),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: next,
        ..Default::default()
    }))
}

pub async fn list_uploads(
    s: &ObjectStore,
    req: S3Request<ListMultipartUploadsInput>,
) -> Out<ListMultipartUploadsOutput> {
    let input = req.input;
    if input.delimiter.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(s3_error!(
            NotImplemented,
            "ListMultipartUploads with a delimiter is not supported"
        ));
    }
    let max = usize::try_from(input.max_uploads.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000);
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let all = s
        .list_uploads(&input.bucket, input.prefix.as_deref().unwrap_or(""))
        .await?;
    let rest: Vec<_> = all
        .into_iter()
        .filter(|u| key_marker.is_empty() || u.key > key_marker)
        .collect();
    let truncated = rest.len() > max;
    let page: Vec<_> = rest.into_iter().take(max).collect();
    let next_key = page.last().map(|u| u.key.clone()).filter(|_| truncated);
    let next_id = page.last().map(|u| u.upload_id.clone()).filter(|_| truncated);
    let uploads = page
        .into_iter()
        .map(|u| MultipartUpload {
            key: Some(u.key),
            upload_id: Some(u.upload_id),
            initiated: Some(convert::timestamp(u.initiated_ms)),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: i32::try_from(max).ok(),
        is_truncated: Some(truncated),
        next_key_marker: next_key,
        next_upload_id_marker: next_id,
        uploads: Some(uploads),
        ..Default::default()
    }))
}

pub async fn complete(
    s: &ObjectStore,
    req: S3Request<CompleteMultipartUploadInput>,
) -> Out<CompleteMultipartUploadOutput> {
    let input = req.input;
    let parts = input
        .multipart_upload
        .and_then(|m| m.parts)
        .ok_or_else(|| s3_error!(MalformedXML, "CompleteMultipartUpload needs a list of parts"))?;
    let requested = parts
        .into_iter()
        .map(|p| {
            let n = part_number(p.part_number.unwrap_or(0))?;
            let etag = p
                .e_tag
                .map(ETag::into_value)
                .ok_or_else(|| s3_error!(InvalidPart, "part {n} has no ETag"))?;
            Ok((n, etag))
        })
        .collect::<S3Result<Vec<_>>>()?;
    let meta = s
        .complete_upload((&input.bucket, &input.key, &input.upload_id), requested)
        .await?;
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        e_tag: Some(convert::etag(&meta)),
        server_side_encryption: sse::answered(meta.encryption.as_ref()),
        ..Default::default()
    }))
}

pub async fn abort(
    s: &ObjectStore,
    req: S3Request<AbortMultipartUploadInput>,
) -> Out<AbortMultipartUploadOutput> {
    let input = req.input;
    s.abort_upload(&input.bucket, &input.key, &input.upload_id)
        .await?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}
