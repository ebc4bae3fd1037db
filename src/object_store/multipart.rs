//! Multipart uploads: each part is a blob; completion concatenates the parts into a
//! new blob by streaming file-to-file copies (never in memory), commits the object
//! with the `md5-of-part-md5s-N` ETag, and remembers the upload so a retried
//! CompleteMultipartUpload answers the same success.

use redb::ReadableTable;

use super::meta::{self, CompletedUpload, ObjectAttrs, ObjectMeta, PartMeta, UploadMeta};
use super::objects::ObjectBody;
use super::{ObjectStore, StorageError, blobs, require_bucket};
use crate::clock::Millis;

/// Every part but the last must be at least this large (the S3 rule).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest part number S3 allows.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// An upload in progress, as ListMultipartUploads shows it.
#[derive(Debug, Clone)]
pub struct UploadSummary {
    pub upload_id: String,
    pub key: String,
    pub initiated_ms: Millis,
}

impl ObjectStore {
    /// Starts a multipart upload and returns its id.
    pub async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        encryption: Option<crate::crypto::Sealed>,
    ) -> Result<String, StorageError> {
        let upload_id = hex::encode(rand::random::<[u8; 16]>());
        let record = UploadMeta {
            bucket: bucket.to_string(),
            key: key.to_string(),
            initiated_ms: self.now(),
            attrs,
            encryption,
        };
        let id = upload_id.clone();
        self.inner
            .db
            .write(move |txn| {
                require_bucket(&txn.open_table(meta::BUCKETS)?, &record.bucket)?;
                txn.open_table(meta::UPLOADS)?
                    .insert(id.as_str(), meta::encode(&record)?.as_slice())?;
                Ok::<_, StorageError>(())
            })
            .await?;
        Ok(upload_id)
    }

    /// The upload's record, checked against the bucket and key the client named.
    pub async fn get_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<UploadMeta, StorageError> {
        let (bucket, key, id) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        self.read(move |txn| upload_of(&txn.open_table(meta::UPLOADS)?, &bucket, &key, &id))
            .await
    }

    /// Stores a staged blob as part `number` of an upload (replacing an earlier one).
    pub async fn commit_part(
        &self,
        (bucket, key, upload_id): (&str, &str, &str),
        number: u32,
        staged: super::StagedBlob,
    ) -> Result<PartMeta, StorageError> {
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(StorageError::InvalidArgument(format!(
                "part number {number} is outside 1..={MAX_PART_NUMBER}"
            )));
        }
        let part = PartMeta {
            size: staged.size,
            etag: staged.etag_hex(),
            last_modified_ms: self.now(),
            blob: staged.id.clone(),
            stored_size: staged
                .sealed
                .as_ref()
                .map(|s| crate::crypto::chunked::sealed_len(staged.size, s.chunk_size)),
            segment: staged
                .sealed
                .as_ref()
                .and_then(|s| s.segments.first().map(|&(id, _)| id)),
        };
        let (bucket, key, id) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        let record = part.clone();
        let old = self
            .inner
            .db
            .write(move |txn| {
                upload_of(&txn.open_table(meta::UPLOADS)?, &bucket, &key, &id)?;
                let mut parts = txn.open_table(meta::PARTS)?;
                let old = match parts.get((id.as_str(), number))? {
                    Some(v) => Some(meta::decode::<PartMeta>(v.value())?.blob),
                    None => None,
                };
                parts.insert((id.as_str(), number), meta::encode(&record)?.as_slice())?;
                Ok::<_, StorageError>(old)
            })
            .await?;
        staged.keep();
        self.remove_blobs(old.into_iter().collect()).await;
        Ok(part)
    }

    /// Copies a byte range of an existing object into a new blob for UploadPartCopy.
    /// With `allow_inline` (CopyObject) a small result may stay inline; parts
    /// (UploadPartCopy) are always files.
    pub async fn stage_copy(
        &self,
        (src_bucket, src_key): (&str, &str),
        range: Option<std::ops::Range<u64>>,
        allow_inline: bool,
    ) -> Result<(super::StagedBlob, ObjectMeta), StorageError> {
        let src = self.open_object(src_bucket, src_key).await?;
        let range = range.unwrap_or(0..src.meta.size);
        let blobs = self.inner.blobs.clone();
        let inline_max = if allow_inline {
            self.inner.opts.inline_max
        } else {
            0
        };
        let staged = tokio::task::spawn_blocking(move || match src.body {
            ObjectBody::File(file) => blobs.copy_range(file, range.start, range.end - range.start),
            ObjectBody::Inline(bytes) => {
                let slice = bytes.slice(
                    usize::try_from(range.start).unwrap_or(0)..usize::try_from(range.end).unwrap_or(0),
                );
                if slice.len() <= inline_max {
                    Ok(blobs::Blobs::inline(slice))
                } else {
                    blobs.write_bytes(&slice)
                }
            }
        })
        .await
        .map_err(|e| StorageError::io("(copy task)", std::io::Error::other(e)))??;
        Ok((staged, src.meta))
    }

    /// The parts uploaded so far, by part number.
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<(u32, PartMeta)>, StorageError> {
        let (bucket, key, id) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        self.read(move |txn| {
            upload_of(&txn.open_table(meta::UPLOADS)?, &bucket, &key, &id)?;
            read_parts(&txn.open_table(meta::PARTS)?, &id)
        })
        .await
    }

    /// Uploads in progress in `bucket` whose key starts with `prefix`, by key.
    pub async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadSummary>, StorageError> {
        let (bucket, prefix) = (bucket.to_string(), prefix.to_string());
        self.read(move |txn| {
            require_bucket(&txn.open_table(meta::BUCKETS)?, &bucket)?;
            let mut out = Vec::new();
            for row in txn.open_table(meta::UPLOADS)?.iter()? {
                let (k, v) = row?;
                let u: UploadMeta = meta::decode(v.value())?;
                if u.bucket == bucket && u.key.starts_with(&prefix) {
                    out.push(UploadSummary {
                        upload_id: k.value().to_string(),
                        key: u.key,
                        initiated_ms: u.initiated_ms,
                    });
                }
            }
            out.sort_by(|a, b| (&a.key, a.initiated_ms).cmp(&(&b.key, b.initiated_ms)));
            Ok(out)
        })
        .await
    }

    /// Aborts an upload and deletes its parts.
    pub async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), StorageError> {
        let (bucket, key, id) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        let blobs = self
            .inner
            .db
            .write(move |txn| {
                let mut uploads = txn.open_table(meta::UPLOADS)?;
                upload_of(&uploads, &bucket, &key, &id)?;
                uploads.remove(id.as_str())?;
                remove_parts(&mut txn.open_table(meta::PARTS)?, &id)
            })
            .await?;
        self.remove_blobs(blobs).await;
        Ok(())
    }

    /// Completes an upload from the client's list of `(part number, etag)`.
    pub async fn complete_upload(
        &self,
        (bucket, key, upload_id): (&str, &str, &str),
        requested: Vec<(u32, String)>,
    ) -> Result<ObjectMeta, StorageError> {
        let upload = match self.get_upload(bucket, key, upload_id).await {
            Ok(u) => u,
            Err(StorageError::NoSuchUpload(id)) => return self.completed_before(bucket, key, &id).await,
            Err(e) => return Err(e),
        };
        let stored = self.list_parts(bucket, key, upload_id).await?;
        let chosen = choose_parts(&requested, &stored)?;
        let blob_ids: Vec<String> = chosen.iter().map(|p| p.blob.clone()).collect();
        let blobs = self.inner.blobs.clone();
        let staged = tokio::task::spawn_blocking(move || blobs.concat(&blob_ids))
            .await
            .map_err(|e| StorageError::io("(concat task)", std::io::Error::other(e)))??;
        // Sealed parts: the object is their segments, its size their plaintext sizes.
        let encryption = match upload.encryption {
            Some(mut e) => {
                e.segments = chosen
                    .iter()
                    .map(|p| {
                        p.segment.map(|id| (id, p.size)).ok_or_else(|| {
                            StorageError::InvalidPart(
                                "a part of an encrypted upload was stored in the clear".into(),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Some(e)
            }
            None => None,
        };
        let size = if encryption.is_some() {
            chosen.iter().map(|p| p.size).sum()
        } else {
            staged.size
        };
        let record = ObjectMeta {
            size,
            etag: multipart_etag(&chosen)?,
            last_modified_ms: self.now(),
            blob: staged.id.clone(),
            attrs: upload.attrs,
            checksums: meta::Checksums::default(),
            parts: u32::try_from(chosen.len()).unwrap_or(u32::MAX),
            inline: false,
            damaged: None,
            encryption,
        };
        let (b, k, id) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        let expected: Vec<String> = chosen.iter().map(|p| p.blob.clone()).collect();
        let done = CompletedUpload {
            bucket: b.clone(),
            key: k.clone(),
            etag: record.etag.clone(),
            completed_ms: record.last_modified_ms,
        };
        let stored_record = record.clone();
        let doomed = self
            .inner
            .db
            .write(move |txn| {
                require_bucket(&txn.open_table(meta::BUCKETS)?, &b)?;
                let mut uploads = txn.open_table(meta::UPLOADS)?;
                upload_of(&uploads, &b, &k, &id)?;
                let mut parts = txn.open_table(meta::PARTS)?;
                let current = read_parts(&parts, &id)?;
                let still: Vec<&String> = current.iter().map(|(_, p)| &p.blob).collect();
                if expected.iter().any(|e| !still.contains(&e)) {
                    return Err(StorageError::InvalidPart(
                        "a part was replaced while completing".into(),
                    ));
                }
                let mut objects = txn.open_table(meta::OBJECTS)?;
                let old = match objects.get((b.as_str(), k.as_str()))? {
                    Some(v) => super::objects::release(txn, &meta::decode::<ObjectMeta>(v.value())?)?,
                    None => None,
                };
                objects.insert((b.as_str(), k.as_str()), meta::encode(&stored_record)?.as_slice())?;
                uploads.remove(id.as_str())?;
                let mut doomed = remove_parts(&mut parts, &id)?;
                doomed.extend(old);
                txn.open_table(meta::COMPLETED)?
                    .insert(id.as_str(), meta::encode(&done)?.as_slice())?;
                Ok(doomed)
            })
            .await?;
        staged.keep();
        self.written(bucket, key, &record.etag);
        self.remove_blobs(doomed).await;
        Ok(record)
    }

    /// A retried Complete of an upload that already completed: success if the object
    /// it produced is still the current version.
    async fn completed_before(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<ObjectMeta, StorageError> {
        let (b, k, id) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        self.read(move |txn| {
            let no_such = || StorageError::NoSuchUpload(id.clone());
            let done: CompletedUpload = match txn.open_table(meta::COMPLETED)?.get(id.as_str())? {
                Some(v) => meta::decode(v.value())?,
                None => return Err(no_such()),
            };
            if done.bucket != b || done.key != k {
                return Err(no_such());
            }
            let current = super::objects::get_meta(txn, &b, &k).map_err(|_| no_such())?;
            if current.etag == done.etag {
                Ok(current)
            } else {
                Err(no_such())
            }
        })
        .await
    }

    /// Forgets completed-upload records older than `before` (called by the sweeper).
    pub(super) async fn forget_completed(&self, before: Millis) -> Result<(), StorageError> {
        self.inner
            .db
            .write(move |txn| {
                let mut table = txn.open_table(meta::COMPLETED)?;
                table.retain(|_, v| {
                    meta::decode::<CompletedUpload>(v).is_ok_and(|c| c.completed_ms >= before)
                })?;
                Ok::<_, StorageError>(())
            })
            .await
    }
}

fn upload_of(
    uploads: &impl ReadableTable<&'static str, &'static [u8]>,
    bucket: &str,
    key: &str,
    id: &str,
) -> Result<UploadMeta, StorageError> {
    let upload: UploadMeta = match uploads.get(id)? {
        Some(v) => meta::decode(v.value())?,
        None => return Err(StorageError::NoSuchUpload(id.to_string())),
    };
    if upload.bucket != bucket || upload.key != key {
        return Err(StorageError::NoSuchUpload(id.to_string()));
    }
    Ok(upload)
}

fn read_parts(
    parts: &impl ReadableTable<(&'static str, u32), &'static [u8]>,
    id: &str,
) -> Result<Vec<(u32, PartMeta)>, StorageError> {
    let mut out = Vec::new();
    for row in parts.range((id, 0u32)..=(id, u32::MAX))? {
        let (k, v) = row?;
        out.push((k.value().1, meta::decode(v.value())?));
    }
    Ok(out)
}

/// Removes every part of upload `id` and returns their blob ids.
pub(super) fn remove_parts(
    parts: &mut redb::Table<(&'static str, u32), &'static [u8]>,
    id: &str,
) -> Result<Vec<String>, StorageError> {
    let existing = read_parts(parts, id)?;
    for (n, _) in &existing {
        parts.remove((id, *n))?;
    }
    Ok(existing.into_iter().map(|(_, p)| p.blob).collect())
}

/// Checks the client's part list against what was uploaded.
fn choose_parts(
    requested: &[(u32, String)],
    stored: &[(u32, PartMeta)],
) -> Result<Vec<PartMeta>, StorageError> {
    if requested.is_empty() {
        return Err(StorageError::InvalidArgument(
            "the request must name at least one part".into(),
        ));
    }
    let mut chosen: Vec<PartMeta> = Vec::with_capacity(requested.len());
    let mut prev = 0u32;
    for (n, etag) in requested {
        if *n <= prev {
            return Err(StorageError::InvalidPartOrder);
        }
        prev = *n;
        let etag = etag.trim_matches('"');
        let part = stored
            .iter()
            .find(|(m, _)| m == n)
            .map(|(_, p)| p)
            .filter(|p| p.etag == etag)
            .ok_or_else(|| {
                StorageError::InvalidPart(format!("part {n} with ETag {etag:?} was not uploaded"))
            })?;
        chosen.push(part.clone());
    }
    let last = chosen.len() - 1;
    for (i, p) in chosen.iter().enumerate() {
        if i < last && p.size < MIN_PART_SIZE {
            return Err(StorageError::EntityTooSmall {
                part: requested[i].0,
                size: p.size,
                min: MIN_PART_SIZE,
            });
        }
    }
    Ok(chosen)
}

/// `hex(md5(md5(part 1) || md5(part 2) ...))-N`, as S3 computes it.
fn multipart_etag(parts: &[PartMeta]) -> Result<String, StorageError> {
    use md5::{Digest, Md5};
    let mut md5 = Md5::new();
    for p in parts {
        let raw = hex::decode(&p.etag)
            .map_err(|e| StorageError::InvalidPart(format!("stored ETag {}: {e}", p.etag)))?;
        md5.update(raw);
    }
    Ok(format!("{}-{}", hex::encode(md5.finalize()), parts.len()))
}
