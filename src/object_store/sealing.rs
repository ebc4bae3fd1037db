//! Encryption at rest in the object store: which writes are sealed (a request's
//! `x-amz-server-side-encryption`, else the bucket's default encryption, else
//! `s3.encrypt_all`) — decided here once, for the S3 API and the dispatcher's
//! outputs alike — staging a body sealed as it streams, reading a sealed object's
//! plaintext (only the chunks a range touches), and re-wrapping every data key for
//! a master-key rotation. The format itself is [`crate::crypto::chunked`].

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::Stream;
use redb::ReadableTable;

use super::meta::{self, ObjectMeta, UploadMeta};
use super::{ObjectBody, ObjectStore, StagedBlob, StorageError};
use crate::crypto::chunked::{self, CHUNK_SIZE, Totals};
use crate::crypto::{CustomerCheck, Keyring, Seal, Sealed, SseMode, SseRequest};

/// What [`crate::crypto::master::wrap_with`] labels an SSE-C data key with.
const CUSTOMER_LABEL: &str = "sse-c";
use crate::sync::lock;

/// The store's encryption settings (set once by the daemon).
#[derive(Debug, Clone)]
pub struct Encryption {
    pub keyring: Keyring,
    /// Seal every new object of every bucket (`s3.encrypt_all`).
    pub encrypt_all: bool,
}

/// A plaintext byte stream of a sealed object.
pub type PlainStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync>>;

impl ObjectStore {
    /// Turns encryption at rest on (the daemon calls this once at start).
    pub fn enable_encryption(&self, encryption: Encryption) {
        let _ = self.inner.encryption.set(encryption);
    }

    /// The master keys, once encryption is enabled (S3 secrets are wrapped by them too).
    pub fn master_keys(&self) -> Option<&Keyring> {
        self.inner.encryption.get().map(|e| &e.keyring)
    }

    fn keyring(&self) -> Result<&Keyring, StorageError> {
        self.inner
            .encryption
            .get()
            .map(|e| &e.keyring)
            .ok_or(StorageError::EncryptionUnavailable)
    }

    /// The seal a new object in `bucket` gets: `requested` (the request's headers:
    /// SSE-S3, or SSE-C with the client's key), else the bucket's default
    /// encryption, else `s3.encrypt_all`; `None` when the object is stored in the
    /// clear.
    pub async fn seal_for(
        &self,
        bucket: &str,
        requested: Option<SseRequest>,
    ) -> Result<Option<Seal>, StorageError> {
        let requested = match requested {
            Some(r) => Some(r),
            None => {
                let default = self.head_bucket(bucket).await?.encryption;
                let all = self.inner.encryption.get().is_some_and(|e| e.encrypt_all);
                default.or(all.then_some(SseMode::S3)).map(|_| SseRequest::S3)
            }
        };
        let key = crate::crypto::master::new_data_key();
        let sealed = match requested {
            None => return Ok(None),
            Some(SseRequest::S3) => {
                let (key_id, wrapped_key) = self.keyring()?.wrap(&key);
                Sealed {
                    mode: SseMode::S3,
                    key_id,
                    wrapped_key,
                    chunk_size: CHUNK_SIZE,
                    segments: Vec::new(),
                    customer: None,
                }
            }
            Some(SseRequest::Customer(customer)) => Sealed {
                mode: SseMode::Customer,
                key_id: String::new(),
                wrapped_key: crate::crypto::master::wrap_with(&customer, CUSTOMER_LABEL, &key),
                chunk_size: CHUNK_SIZE,
                segments: Vec::new(),
                customer: Some(CustomerCheck::new(&customer)),
            },
        };
        Ok(Some(Seal { sealed, key }))
    }

    /// The data key of a sealed object or upload, given the client's key when it
    /// is SSE-C — the one rule for every read, part upload and copy source: an
    /// SSE-C object needs its key and only it; a key sent for anything else is
    /// refused.
    pub fn open_seal(
        &self,
        sealed: Option<&Sealed>,
        customer: Option<&[u8; 32]>,
    ) -> Result<Option<Seal>, StorageError> {
        let Some(sealed) = sealed else {
            return match customer {
                Some(_) => Err(StorageError::CustomerKeyNotApplicable),
                None => Ok(None),
            };
        };
        let key = match (&sealed.customer, customer) {
            (Some(check), Some(given)) => {
                if !check.matches(given) {
                    return Err(StorageError::CustomerKeyWrong);
                }
                crate::crypto::master::unwrap_with(given, CUSTOMER_LABEL, &sealed.wrapped_key).ok_or_else(
                    || StorageError::Encryption("an SSE-C data key does not open (corrupt metadata?)".into()),
                )?
            }
            (Some(_), None) => return Err(StorageError::CustomerKeyMissing),
            (None, Some(_)) => return Err(StorageError::CustomerKeyNotApplicable),
            (None, None) => self
                .keyring()?
                .unwrap(&sealed.key_id, &sealed.wrapped_key)
                .map_err(|e| StorageError::Encryption(e.to_string()))?,
        };
        Ok(Some(Seal {
            sealed: sealed.clone(),
            key,
        }))
    }

    /// Stages `body` like [`ObjectStore::stage`] (or, with `part`, like
    /// [`ObjectStore::stage_part`]), sealed with `seal` when given: `inspect` and the
    /// staged size and MD5 then see the plaintext, the blob holds only sealed chunks.
    /// A part is a segment with a fresh random id, recorded in the staged blob's
    /// `sealed.segments`.
    pub async fn stage_sealed<S, E>(
        &self,
        bucket: &str,
        body: S,
        seal: Option<&Seal>,
        part: bool,
        inspect: impl FnMut(&[u8]),
    ) -> Result<StagedBlob, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let Some(seal) = seal else {
            return if part {
                self.stage_part(bucket, body, inspect).await
            } else {
                self.stage(bucket, body, inspect).await
            };
        };
        let segment = if part { rand::random::<u64>() | 1 } else { 0 };
        let totals = Arc::new(Mutex::new(Totals::default()));
        let sealed_body = chunked::seal(
            body,
            &seal.key,
            segment,
            seal.sealed.chunk_size,
            inspect,
            totals.clone(),
        );
        let mut staged = self.stage_unhashed(bucket, sealed_body, part).await?;
        let totals = lock(&totals).clone();
        staged.size = totals.size;
        staged.md5 = totals.md5;
        if seal.sealed.mode == SseMode::Customer {
            staged.etag = Some(customer_etag(&seal.key, &totals.md5));
        }
        let mut sealed = seal.sealed.clone();
        if part {
            sealed.segments = vec![(segment, totals.size)];
        }
        staged.sealed = Some(sealed);
        Ok(staged)
    }

    /// The plaintext of bytes `span` of an opened object (sealed or not;
    /// `customer` is the client's key for SSE-C).
    pub fn read_span(
        &self,
        meta: &ObjectMeta,
        body: ObjectBody,
        span: Range<u64>,
        customer: Option<&[u8; 32]>,
    ) -> Result<PlainStream, StorageError> {
        let Some(seal) = self.open_seal(meta.encryption.as_ref(), customer)? else {
            return Ok(plain_span(body, span));
        };
        let sealed = &seal.sealed;
        let reads = chunked::plan(meta.size, &sealed.segments, sealed.chunk_size, span);
        let opener = chunked::Opener::new(&seal.key);
        Ok(read_ahead(
            body,
            reads,
            |read| (read.offset, read.len),
            move |read, mut buf| {
                opener
                    .open_chunk(read, &mut buf)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            },
        ))
    }

    /// Copies bytes `range` (default: all) of `src` into a new staged blob for
    /// `dst_bucket`, sealed with `seal` (as an object, or with `part` a part),
    /// opening the source's seal on the way: CopyObject across encryption modes and
    /// UploadPartCopy. Between two clear objects it is a plain byte copy.
    pub async fn restage(
        &self,
        src: (&str, &str),
        range: Option<Range<u64>>,
        dst_bucket: &str,
        seal: Option<&Seal>,
        part: bool,
        src_customer: Option<&[u8; 32]>,
    ) -> Result<StagedBlob, StorageError> {
        let open = self.open_object(src.0, src.1).await?;
        if open.meta.encryption.is_none() && seal.is_none() && src_customer.is_none() {
            drop(open);
            return Ok(self.stage_copy(src, range, !part).await?.0);
        }
        let span = range.unwrap_or(0..open.meta.size);
        let plain = self.read_span(&open.meta, open.body, span, src_customer)?;
        self.stage_sealed(dst_bucket, plain, seal, part, |_| {}).await
    }

    /// Sets or clears a bucket's default encryption.
    pub async fn set_bucket_encryption(&self, name: &str, mode: Option<SseMode>) -> Result<(), StorageError> {
        self.update_bucket(name, move |record| record.encryption = mode)
            .await
    }

    /// Re-wraps every data key (objects and pending uploads) with `keyring`'s
    /// current master key, in one transaction; returns how many were re-wrapped.
    /// Blobs are not touched.
    pub async fn rewrap_keys(&self, keyring: &Keyring) -> Result<usize, StorageError> {
        let keyring = keyring.clone();
        self.inner
            .db
            .write(move |txn| {
                let rewrap = |sealed: &mut Sealed| -> Result<bool, StorageError> {
                    // SSE-C keys are wrapped by the client's key, not the master key.
                    if sealed.customer.is_some() || sealed.key_id == keyring.current_id() {
                        return Ok(false);
                    }
                    let key = keyring
                        .unwrap(&sealed.key_id, &sealed.wrapped_key)
                        .map_err(|e| StorageError::Encryption(e.to_string()))?;
                    (sealed.key_id, sealed.wrapped_key) = keyring.wrap(&key);
                    Ok(true)
                };
                let mut count = 0;
                let mut objects = txn.open_table(meta::OBJECTS)?;
                let mut changed = Vec::new();
                for row in objects.iter()? {
                    let (k, v) = row?;
                    let mut record: ObjectMeta = meta::decode(v.value())?;
                    if let Some(sealed) = &mut record.encryption
                        && rewrap(sealed)?
                    {
                        let (b, key) = k.value();
                        changed.push(((b.to_string(), key.to_string()), meta::encode(&record)?));
                    }
                }
                for ((b, k), bytes) in &changed {
                    objects.insert((b.as_str(), k.as_str()), bytes.as_slice())?;
                }
                count += changed.len();
                let mut uploads = txn.open_table(meta::UPLOADS)?;
                let mut changed = Vec::new();
                for row in uploads.iter()? {
                    let (k, v) = row?;
                    let mut record: UploadMeta = meta::decode(v.value())?;
                    if let Some(sealed) = &mut record.encryption
                        && rewrap(sealed)?
                    {
                        changed.push((k.value().to_string(), meta::encode(&record)?));
                    }
                }
                for (id, bytes) in &changed {
                    uploads.insert(id.as_str(), bytes.as_slice())?;
                }
                count += changed.len();
                Ok(count)
            })
            .await
    }
}

/// An SSE-C object's (or part's) ETag: its plaintext's MD5 hashed with its data
/// key, so it names the version as an MD5 would (32 hex digits, the same for the
/// same write) but says nothing of the content without the client's key — AWS's
/// SSE-C ETags are not the data's MD5 either.
fn customer_etag(data_key: &[u8; 32], md5: &[u8; 16]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"darkroom-sse-c-etag")
        .chain_update(data_key)
        .chain_update(md5)
        .finalize();
    let mut etag = [0u8; 16];
    etag.copy_from_slice(&digest[..16]);
    etag
}

/// How much of a clear object one read takes (a sealed one is read a chunk at a time).
const CLEAR_READ: u64 = 256 * 1024;

/// Bytes `span` of an object stored in the clear.
fn plain_span(body: ObjectBody, span: Range<u64>) -> PlainStream {
    match body {
        ObjectBody::File(_) => {
            let pieces: Vec<(u64, usize)> = (span.start..span.end)
                .step_by(usize::try_from(CLEAR_READ).unwrap_or(usize::MAX))
                .map(|at| (at, usize::try_from(CLEAR_READ.min(span.end - at)).unwrap_or(0)))
                .collect();
            read_ahead(body, pieces, |&p| p, |_, buf| Ok(Bytes::from(buf)))
        }
        ObjectBody::Inline(bytes) => {
            let part =
                bytes.slice(usize::try_from(span.start).unwrap_or(0)..usize::try_from(span.end).unwrap_or(0));
            Box::pin(futures::stream::once(async move { Ok(part) }))
        }
    }
}

/// Reads `pieces` of `body` (each at the offset and length `at` gives) on a
/// blocking thread, a few pieces ahead of the consumer, each passed through
/// `finish` (opening a sealed chunk, or nothing). A failed piece ends the stream.
fn read_ahead<T: Send + 'static>(
    body: ObjectBody,
    pieces: Vec<T>,
    at: impl Fn(&T) -> (u64, usize) + Send + 'static,
    mut finish: impl FnMut(&T, Vec<u8>) -> Result<Bytes, std::io::Error> + Send + 'static,
) -> PlainStream {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        for piece in pieces {
            let (offset, len) = at(&piece);
            let mut buf = vec![0u8; len];
            let got = match &body {
                ObjectBody::File(f) => f.read_exact_at(&mut buf, offset),
                ObjectBody::Inline(bytes) => usize::try_from(offset)
                    .ok()
                    .and_then(|start| bytes.get(start..start + len))
                    .map(|b| buf.copy_from_slice(b))
                    .ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into()),
            };
            let item = got.and_then(|()| finish(&piece, buf));
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}
