//! Object operations: put (stage a blob, then commit metadata), open for reading,
//! head, delete, copy (by reference to the source's blob file) and tagging.

use std::fs::File;

use bytes::Bytes;
use futures::Stream;
use redb::ReadableTable;

use super::meta::{self, Checksums, ObjectAttrs, ObjectMeta};
use super::{ObjectStore, StagedBlob, StorageError, require_bucket};

/// Conditions a write must meet at commit time (checked atomically with the write).
#[derive(Debug, Clone, Default)]
pub struct PutConditions {
    /// `If-None-Match: *`: only create, never overwrite.
    pub if_none_match_any: bool,
    /// `If-Match: "etag"`: only overwrite this exact version.
    pub if_match: Option<String>,
}

/// An object opened for reading: its metadata and its bytes, which stay valid even
/// if the object is overwritten or deleted meanwhile.
#[derive(Debug)]
pub struct OpenObject {
    pub meta: ObjectMeta,
    pub body: ObjectBody,
}

/// Where an opened object's bytes are.
#[derive(Debug)]
pub enum ObjectBody {
    /// An open blob file.
    File(File),
    /// A small object's bytes, read from the database snapshot.
    Inline(Bytes),
}

impl ObjectStore {
    /// Streams a body into a new blob (not yet visible), refusing more than the
    /// configured maximum. `inspect` sees every chunk (for additional checksums).
    /// Small bodies stay in memory and are stored inline.
    pub async fn stage<S, E>(
        &self,
        bucket: &str,
        body: S,
        inspect: impl FnMut(&[u8]),
    ) -> Result<StagedBlob, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.stage_with(bucket, body, self.inner.opts.inline_max, true, inspect)
            .await
    }

    /// Like [`ObjectStore::stage`] for a multipart part, which is always a file.
    pub async fn stage_part<S, E>(
        &self,
        bucket: &str,
        body: S,
        inspect: impl FnMut(&[u8]),
    ) -> Result<StagedBlob, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.stage_with(bucket, body, 0, true, inspect).await
    }

    /// Like [`ObjectStore::stage`] (or with `part`, [`ObjectStore::stage_part`])
    /// for sealed bytes: no MD5 of them, the caller has the plaintext's.
    pub(super) async fn stage_unhashed<S, E>(
        &self,
        bucket: &str,
        body: S,
        part: bool,
    ) -> Result<StagedBlob, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let inline_max = if part { 0 } else { self.inner.opts.inline_max };
        self.stage_with(bucket, body, inline_max, false, |_| {}).await
    }

    async fn stage_with<S, E>(
        &self,
        bucket: &str,
        body: S,
        inline_max: usize,
        hash: bool,
        inspect: impl FnMut(&[u8]),
    ) -> Result<StagedBlob, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        // Fail fast before writing bytes for a bucket that does not exist.
        self.head_bucket(bucket).await?;
        self.inner
            .blobs
            .write_stream(body, self.inner.opts.max_object_size, inline_max, hash, inspect)
            .await
    }

    /// Makes a staged blob the current version of `bucket/key`.
    pub async fn commit_object(
        &self,
        bucket: &str,
        key: &str,
        staged: StagedBlob,
        attrs: ObjectAttrs,
        checksums: Checksums,
        conditions: PutConditions,
    ) -> Result<ObjectMeta, StorageError> {
        let record = ObjectMeta {
            size: staged.size,
            etag: staged.etag_hex(),
            last_modified_ms: self.now(),
            blob: staged.id.clone(),
            attrs,
            checksums,
            parts: 0,
            inline: staged.inline.is_some(),
            damaged: None,
            encryption: staged.sealed.clone(),
        };
        self.commit_record(bucket, key, staged, record, conditions).await
    }

    /// Commits `record` (whose blob is `staged`) under `bucket/key`, then deletes the
    /// blob of the version it replaced.
    pub(super) async fn commit_record(
        &self,
        bucket: &str,
        key: &str,
        staged: StagedBlob,
        record: ObjectMeta,
        conditions: PutConditions,
    ) -> Result<ObjectMeta, StorageError> {
        let written = (bucket.to_owned(), key.to_owned());
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let stored = record.clone();
        let inline = staged.inline.clone();
        let old = self
            .inner
            .db
            .write(move |txn| {
                require_bucket(&txn.open_table(meta::BUCKETS)?, &bucket)?;
                let mut objects = txn.open_table(meta::OBJECTS)?;
                let old: Option<ObjectMeta> = match objects.get((bucket.as_str(), key.as_str()))? {
                    Some(v) => Some(meta::decode(v.value())?),
                    None => None,
                };
                check_conditions(old.as_ref(), &conditions)?;
                objects.insert((bucket.as_str(), key.as_str()), meta::encode(&stored)?.as_slice())?;
                if let Some(bytes) = &inline {
                    txn.open_table(meta::INLINE)?
                        .insert(stored.blob.as_str(), bytes.as_ref())?;
                }
                match old {
                    Some(o) => release(txn, &o),
                    None => Ok(None),
                }
            })
            .await?;
        staged.keep();
        self.written(&written.0, &written.1, &record.etag);
        self.remove_blobs(old.into_iter().collect()).await;
        Ok(record)
    }

    /// Streams `body` into `bucket/key` in one call (stage + commit), for callers
    /// that need no checksum verification in between (the dispatcher).
    pub async fn put<S, E>(
        &self,
        bucket: &str,
        key: &str,
        body: S,
        attrs: ObjectAttrs,
    ) -> Result<ObjectMeta, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let seal = self.seal_for(bucket, None).await?;
        let staged = self
            .stage_sealed(bucket, body, seal.as_ref(), false, |_| {})
            .await?;
        self.commit_object(
            bucket,
            key,
            staged,
            attrs,
            Checksums::default(),
            PutConditions::default(),
        )
        .await
    }

    /// The metadata of `bucket/key`.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta, StorageError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.read(move |txn| get_meta(txn, &bucket, &key)).await
    }

    /// Opens `bucket/key` for reading.
    pub async fn open_object(&self, bucket: &str, key: &str) -> Result<OpenObject, StorageError> {
        let store = self.clone();
        let (bucket, key) = (bucket.to_string(), key.to_string());
        tokio::task::spawn_blocking(move || store.open_object_blocking(&bucket, &key))
            .await
            .map_err(|e| StorageError::io("(reader task)", std::io::Error::other(e)))?
    }

    fn open_object_blocking(&self, bucket: &str, key: &str) -> Result<OpenObject, StorageError> {
        // A concurrent overwrite may delete the blob between reading the metadata and
        // opening the file; the next snapshot then names the new blob.
        let mut attempts = 0;
        loop {
            let txn = self.inner.db.read()?;
            let meta = get_meta(&txn, bucket, key)?;
            if let Some(why) = &meta.damaged {
                return Err(StorageError::Damaged {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    why: why.clone(),
                });
            }
            if meta.inline {
                let bytes = match txn.open_table(meta::INLINE)?.get(meta.blob.as_str())? {
                    Some(v) => Bytes::copy_from_slice(v.value()),
                    None => {
                        return Err(StorageError::io(
                            "(inline blob)",
                            std::io::ErrorKind::NotFound.into(),
                        ));
                    }
                };
                return Ok(OpenObject {
                    meta,
                    body: ObjectBody::Inline(bytes),
                });
            }
            match self.inner.blobs.open_blob(&meta.blob) {
                Ok(file) => {
                    return Ok(OpenObject {
                        meta,
                        body: ObjectBody::File(file),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 8 => attempts += 1,
                Err(e) => return Err(StorageError::io(self.inner.blobs.path(&meta.blob), e)),
            }
        }
    }

    /// Deletes `bucket/key`. Deleting a missing key succeeds (S3 semantics).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<bool, StorageError> {
        let removed = (bucket.to_owned(), key.to_owned());
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let old = self
            .inner
            .db
            .write(move |txn| {
                require_bucket(&txn.open_table(meta::BUCKETS)?, &bucket)?;
                let mut objects = txn.open_table(meta::OBJECTS)?;
                let old = match objects.remove((bucket.as_str(), key.as_str()))? {
                    Some(v) => Some(meta::decode::<ObjectMeta>(v.value())?),
                    None => None,
                };
                Ok::<_, StorageError>(match old {
                    Some(o) => Some(release(txn, &o)?),
                    None => None,
                })
            })
            .await?;
        let existed = old.is_some();
        if existed {
            let _ = self.inner.events.send(super::StorageEvent::Removed {
                bucket: removed.0,
                key: removed.1,
            });
        }
        self.remove_blobs(old.flatten().into_iter().collect()).await;
        Ok(existed)
    }

    /// Copies `src_bucket/src_key` to `dst_bucket/dst_key`. With `replace` the new
    /// object gets those attributes, otherwise the source's (metadata directive COPY).
    ///
    /// No bytes are copied for an object in a blob file: the copy refers to the same
    /// file (one more reference in [`meta::BLOB_REFS`]), which is deleted only once
    /// the last object using it is deleted or overwritten. A small inline object's
    /// bytes are copied into a row of its own. Source and destination are read and
    /// written in one transaction, so a concurrent delete of the source cannot free
    /// the bytes under the copy.
    pub async fn copy_object(
        &self,
        (src_bucket, src_key): (&str, &str),
        (dst_bucket, dst_key): (&str, &str),
        replace: Option<ObjectAttrs>,
    ) -> Result<ObjectMeta, StorageError> {
        let (src_bucket, src_key) = (src_bucket.to_string(), src_key.to_string());
        let (dst_bucket_name, dst_key_name) = (dst_bucket.to_owned(), dst_key.to_owned());
        let (dst_bucket, dst_key) = (dst_bucket.to_string(), dst_key.to_string());
        let now = self.now();
        let (record, old) = self
            .inner
            .db
            .write(move |txn| {
                require_bucket(&txn.open_table(meta::BUCKETS)?, &dst_bucket)?;
                let src = match txn
                    .open_table(meta::OBJECTS)?
                    .get((src_bucket.as_str(), src_key.as_str()))?
                {
                    Some(v) => meta::decode::<ObjectMeta>(v.value())?,
                    None => {
                        require_bucket(&txn.open_table(meta::BUCKETS)?, &src_bucket)?;
                        return Err(StorageError::NoSuchKey {
                            bucket: src_bucket,
                            key: src_key,
                        });
                    }
                };
                let blob = if src.inline {
                    let mut inline = txn.open_table(meta::INLINE)?;
                    let bytes = match inline.get(src.blob.as_str())? {
                        Some(v) => v.value().to_vec(),
                        None => {
                            return Err(StorageError::io(
                                "(inline blob)",
                                std::io::ErrorKind::NotFound.into(),
                            ));
                        }
                    };
                    let id = super::blobs::Blobs::new_id();
                    inline.insert(id.as_str(), bytes.as_slice())?;
                    id
                } else {
                    // Taken before the destination's old version is released, so a
                    // copy onto itself keeps its file.
                    add_reference(txn, &src.blob)?;
                    src.blob.clone()
                };
                let record = ObjectMeta {
                    size: src.size,
                    etag: src.etag,
                    last_modified_ms: now,
                    blob,
                    attrs: replace.unwrap_or(src.attrs),
                    checksums: src.checksums,
                    parts: src.parts,
                    inline: src.inline,
                    // A copy shares the bytes, so their damage and their key too.
                    damaged: src.damaged,
                    encryption: src.encryption,
                };
                let mut objects = txn.open_table(meta::OBJECTS)?;
                let old = match objects.insert(
                    (dst_bucket.as_str(), dst_key.as_str()),
                    meta::encode(&record)?.as_slice(),
                )? {
                    Some(v) => Some(meta::decode::<ObjectMeta>(v.value())?),
                    None => None,
                };
                drop(objects);
                let freed = match old {
                    Some(o) => release(txn, &o)?,
                    None => None,
                };
                Ok((record, freed))
            })
            .await?;
        self.written(&dst_bucket_name, &dst_key_name, &record.etag);
        self.remove_blobs(old.into_iter().collect()).await;
        Ok(record)
    }

    /// Replaces the tags of `bucket/key`.
    pub async fn set_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: Vec<(String, String)>,
    ) -> Result<(), StorageError> {
        self.update_object(bucket, key, move |record| record.attrs.tags = tags)
            .await
    }

    /// Changes one existing object's record in one write transaction.
    pub(crate) async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        change: impl FnOnce(&mut ObjectMeta) + Send + 'static,
    ) -> Result<(), StorageError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.inner
            .db
            .write(move |txn| {
                let mut objects = txn.open_table(meta::OBJECTS)?;
                let mut record: ObjectMeta = match objects.get((bucket.as_str(), key.as_str()))? {
                    Some(v) => meta::decode(v.value())?,
                    None => {
                        require_bucket(&txn.open_table(meta::BUCKETS)?, &bucket)?;
                        return Err(StorageError::NoSuchKey { bucket, key });
                    }
                };
                change(&mut record);
                objects.insert((bucket.as_str(), key.as_str()), meta::encode(&record)?.as_slice())?;
                Ok(())
            })
            .await
    }
}

/// Lets go of the bytes of a version that was replaced or deleted: an inline row is
/// removed in the same transaction; a blob file that other objects still share
/// loses one reference and stays; otherwise its id is returned so the caller can
/// delete the file once the transaction has committed.
pub(super) fn release(
    txn: &redb::WriteTransaction,
    old: &ObjectMeta,
) -> Result<Option<String>, StorageError> {
    if old.inline {
        txn.open_table(meta::INLINE)?.remove(old.blob.as_str())?;
        return Ok(None);
    }
    let mut refs = txn.open_table(meta::BLOB_REFS)?;
    let extra = refs.get(old.blob.as_str())?.map(|v| v.value());
    match extra {
        None | Some(0) => {
            refs.remove(old.blob.as_str())?;
            Ok(Some(old.blob.clone()))
        }
        Some(1) => {
            refs.remove(old.blob.as_str())?;
            Ok(None)
        }
        Some(n) => {
            refs.insert(old.blob.as_str(), n - 1)?;
            Ok(None)
        }
    }
}

/// Records one more object using blob file `blob`.
fn add_reference(txn: &redb::WriteTransaction, blob: &str) -> Result<(), StorageError> {
    let mut refs = txn.open_table(meta::BLOB_REFS)?;
    let extra = refs.get(blob)?.map_or(0, |v| v.value());
    refs.insert(blob, extra.saturating_add(1))?;
    Ok(())
}

/// Reads the metadata of `bucket/key` from a snapshot.
pub(super) fn get_meta(
    txn: &redb::ReadTransaction,
    bucket: &str,
    key: &str,
) -> Result<ObjectMeta, StorageError> {
    match txn.open_table(meta::OBJECTS)?.get((bucket, key))? {
        Some(v) => Ok(meta::decode(v.value())?),
        None => {
            require_bucket(&txn.open_table(meta::BUCKETS)?, bucket)?;
            Err(StorageError::NoSuchKey {
                bucket: bucket.to_string(),
                key: key.to_string(),
            })
        }
    }
}

fn check_conditions(old: Option<&ObjectMeta>, c: &PutConditions) -> Result<(), StorageError> {
    if c.if_none_match_any && old.is_some() {
        return Err(StorageError::PreconditionFailed(
            "the object already exists (If-None-Match: *)",
        ));
    }
    if let Some(expected) = &c.if_match {
        match old {
            None => {
                return Err(StorageError::PreconditionFailed(
                    "the object does not exist (If-Match)",
                ));
            }
            Some(o) if expected != "*" && o.etag != *expected => {
                return Err(StorageError::PreconditionFailed(
                    "the ETag does not match (If-Match)",
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}
