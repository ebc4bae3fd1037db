//! Object bytes on disk: one file per blob, named by a random internal id and never
//! by the S3 key, so no key can reach outside the data directory.
//!
//! A blob is written under its final name (nothing refers to it until metadata
//! commits), fsynced with its directory, and only then handed to the metadata layer.
//! Bodies no larger than the inline limit never touch a file: they stay in memory
//! and are committed into redb with their metadata (one fsync, shared by the whole
//! group commit, instead of three).
//! A [`StagedBlob`] that is dropped before its metadata commits deletes its file, and
//! [`Blobs::reconcile`] removes whatever a crash left unreferenced.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};

use super::error::StorageError;
use crate::sync::lock;

/// The blob directory and how carefully it writes.
#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
    fsync: bool,
    holds: Arc<Mutex<Holds>>,
}

/// Backups in progress, and the deletions they put off.
#[derive(Debug, Default)]
struct Holds {
    count: usize,
    deferred: Vec<String>,
}

/// While alive, no blob file is deleted: deletions wait until the last hold is
/// dropped. A backup takes one before it snapshots the index, so every blob the
/// snapshot references is still there when it is copied.
#[derive(Debug)]
pub struct BlobHold {
    blobs: Blobs,
}

impl Drop for BlobHold {
    fn drop(&mut self) {
        let deferred = {
            let mut holds = lock(&self.blobs.holds);
            holds.count -= 1;
            if holds.count > 0 {
                return;
            }
            std::mem::take(&mut holds.deferred)
        };
        self.blobs.delete_files(&deferred);
    }
}

/// A blob written and synced (or held in memory, when inline) but not yet
/// referenced by any metadata.
#[derive(Debug)]
pub struct StagedBlob {
    pub id: String,
    pub size: u64,
    pub md5: [u8; 16],
    /// The bytes, when the blob is small enough to live in the database.
    pub inline: Option<Bytes>,
    /// Set when the bytes are sealed: `size` and `md5` are then the plaintext's.
    pub sealed: Option<crate::crypto::Sealed>,
    /// The ETag when it is not `md5`: an SSE-C object's, which (as AWS's) must not
    /// be its plaintext's MD5 — that would let anyone holding the metadata check a
    /// guess of the content without the client's key.
    pub etag: Option<[u8; 16]>,
    path: PathBuf,
    keep: bool,
}

impl StagedBlob {
    /// A guard for a blob file being written at `path`: until [`StagedBlob::keep`],
    /// dropping it deletes the file.
    fn file(id: String, path: PathBuf) -> Self {
        Self {
            id,
            size: 0,
            md5: [0; 16],
            inline: None,
            sealed: None,
            etag: None,
            path,
            keep: false,
        }
    }

    /// Marks the blob as referenced: dropping it no longer deletes the file.
    pub fn keep(mut self) -> String {
        self.keep = true;
        std::mem::take(&mut self.id)
    }

    /// Hex MD5 of the content.
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }

    /// The ETag the object or part gets: its MD5, unless [`StagedBlob::etag`] says otherwise.
    pub fn etag_hex(&self) -> String {
        hex::encode(self.etag.unwrap_or(self.md5))
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if !self.keep && self.inline.is_none() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Blobs {
    /// Opens the blob directory, creating its 256 shard directories.
    pub fn open(root: &Path, fsync: bool) -> Result<Self, StorageError> {
        for shard in 0..=255u8 {
            let dir = root.join(format!("{shard:02x}"));
            std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            fsync,
            holds: Arc::default(),
        })
    }

    /// The blob directory at `root` as it is, creating nothing (for inspection).
    pub fn existing(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            fsync: false,
            holds: Arc::default(),
        }
    }

    /// Puts off every deletion until the returned hold is dropped.
    pub fn hold(&self) -> BlobHold {
        lock(&self.holds).count += 1;
        BlobHold { blobs: self.clone() }
    }

    /// Where blob `id` lives.
    pub fn path(&self, id: &str) -> PathBuf {
        self.root.join(id.get(..2).unwrap_or("00")).join(id)
    }

    /// A fresh random blob id.
    pub(super) fn new_id() -> String {
        hex::encode(rand::random::<[u8; 16]>())
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, id: &str) -> std::io::Result<File> {
        File::open(self.path(id))
    }

    /// Streams `body` into a new blob, computing its MD5 (unless `hash` is false:
    /// a sealed body, whose ETag is its plaintext's MD5, taken before sealing) and
    /// calling `inspect` on every chunk (for the additional checksums), refusing
    /// more than `max` bytes. A body of at most `inline_max` bytes stays in memory
    /// (see [`StagedBlob::inline`]).
    pub async fn write_stream<S, E>(
        &self,
        mut body: S,
        max: u64,
        inline_max: usize,
        hash: bool,
        mut inspect: impl FnMut(&[u8]),
    ) -> Result<StagedBlob, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut md5 = hash.then(Md5::new);
        let mut size = 0u64;
        let mut next = async |md5: &mut Option<Md5>, size: &mut u64| -> Result<Option<Bytes>, StorageError> {
            let Some(chunk) = body.next().await else {
                return Ok(None);
            };
            let chunk = chunk.map_err(|e| StorageError::Body(e.to_string()))?;
            *size += chunk.len() as u64;
            if *size > max {
                return Err(StorageError::EntityTooLarge { max });
            }
            if let Some(md5) = md5 {
                md5.update(&chunk);
            }
            inspect(&chunk);
            Ok(Some(chunk))
        };
        // Small bodies: collect in memory, no file at all.
        let mut head: Vec<Bytes> = Vec::new();
        let mut spill = false;
        while let Some(chunk) = next(&mut md5, &mut size).await? {
            head.push(chunk);
            if size > inline_max as u64 {
                spill = true;
                break;
            }
        }
        let id = Self::new_id();
        let path = self.path(&id);
        if !spill {
            let mut buf = bytes::BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
            for c in head {
                buf.extend_from_slice(&c);
            }
            return Ok(StagedBlob {
                id,
                size,
                md5: md5.map(|m| m.finalize().into()).unwrap_or_default(),
                inline: Some(buf.freeze()),
                sealed: None,
                etag: None,
                path,
                keep: false,
            });
        }
        // From here on the guard removes the file on any early return.
        let mut staged = StagedBlob::file(id, path.clone());
        // A blocking writer thread takes the chunks through a bounded channel, so
        // hashing and receiving overlap with disk writes; it asks for writeback every
        // few MiB so the final fsync has little left to flush.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
        let writer_path = path.clone();
        let fsync = self.fsync;
        let writer = tokio::task::spawn_blocking(move || write_chunks(&writer_path, rx, fsync));
        let mut send_failed = false;
        for chunk in head {
            send_failed |= tx.send(chunk).await.is_err();
        }
        let received = loop {
            match next(&mut md5, &mut size).await {
                Ok(Some(chunk)) => send_failed |= tx.send(chunk).await.is_err(),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
            if send_failed {
                break Ok(());
            }
        };
        drop(tx);
        let written = writer
            .await
            .map_err(|e| StorageError::io(&path, std::io::Error::other(e)))?;
        received?;
        written?;
        staged.size = size;
        staged.md5 = md5.map(|m| m.finalize().into()).unwrap_or_default();
        Ok(staged)
    }

    /// A staged blob that lives only in memory (committed inline with its metadata).
    pub fn inline(bytes: Bytes) -> StagedBlob {
        StagedBlob {
            id: Self::new_id(),
            size: bytes.len() as u64,
            md5: Md5::digest(&bytes).into(),
            inline: Some(bytes),
            sealed: None,
            etag: None,
            path: PathBuf::new(),
            keep: false,
        }
    }

    /// Writes `bytes` into a new blob file (blocking).
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<StagedBlob, StorageError> {
        self.write_blocking(|out, md5| {
            md5.update(bytes);
            out.write_all(bytes)?;
            Ok(bytes.len() as u64)
        })
    }

    /// Writes a new blob from `len` bytes of `src` starting at `offset` (blocking).
    pub fn copy_range(&self, mut src: File, offset: u64, len: u64) -> Result<StagedBlob, StorageError> {
        src.seek(SeekFrom::Start(offset))
            .map_err(|e| StorageError::io("(source object)", e))?;
        let mut src = src.take(len);
        self.write_blocking(|out, md5| {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = src.read(&mut buf)?;
                if n == 0 {
                    return Ok(total);
                }
                md5.update(&buf[..n]);
                out.write_all(&buf[..n])?;
                total += n as u64;
            }
        })
    }

    /// Writes a new blob that is the concatenation of `parts`, in order (blocking).
    /// The bytes are copied file to file (copy_file_range), never held in memory.
    pub fn concat(&self, parts: &[String]) -> Result<StagedBlob, StorageError> {
        self.write_blocking(|out, _md5| {
            let mut total = 0;
            for id in parts {
                let mut part = File::open(self.path(id))?;
                total += std::io::copy(&mut part, out)?;
            }
            Ok(total)
        })
    }

    fn write_blocking(
        &self,
        fill: impl FnOnce(&mut File, &mut Md5) -> std::io::Result<u64>,
    ) -> Result<StagedBlob, StorageError> {
        let id = Self::new_id();
        let path = self.path(&id);
        let mut file = File::create(&path).map_err(|e| StorageError::io(&path, e))?;
        let mut staged = StagedBlob::file(id, path.clone());
        let mut md5 = Md5::new();
        staged.size = fill(&mut file, &mut md5).map_err(|e| StorageError::io(&path, e))?;
        staged.md5 = md5.finalize().into();
        sync_file_and_dir(&file, &path, self.fsync)?;
        Ok(staged)
    }

    /// Deletes blobs that metadata no longer references (blocking; missing is fine),
    /// or, while a [`BlobHold`] is alive, when the last hold goes.
    pub fn remove(&self, ids: &[String]) {
        {
            let mut holds = lock(&self.holds);
            if holds.count > 0 {
                holds.deferred.extend_from_slice(ids);
                return;
            }
        }
        self.delete_files(ids);
    }

    fn delete_files(&self, ids: &[String]) {
        for id in ids {
            let path = self.path(id);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "could not delete blob");
            }
        }
    }

    /// Deletes every blob file not in `referenced` (run at startup, before serving).
    /// Returns how many files were removed.
    pub fn reconcile(&self, referenced: &HashSet<String>) -> Result<usize, StorageError> {
        let mut removed = 0;
        for shard in 0..=255u8 {
            let dir = self.root.join(format!("{shard:02x}"));
            let entries = std::fs::read_dir(&dir).map_err(|e| StorageError::io(&dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| StorageError::io(&dir, e))?;
                let name = entry.file_name();
                if !referenced.contains(name.to_string_lossy().as_ref()) {
                    let path = entry.path();
                    std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Writes every chunk from `rx` into a new file at `path`, then syncs it (blocking).
///
/// Every few MiB it asks the kernel to start writing back what it has so far
/// (`posix_fadvise(DONTNEED)` starts asynchronous writeback on Linux), so the disk
/// works while the body is still arriving and the final fsync has little left.
fn write_chunks(
    path: &Path,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    fsync: bool,
) -> Result<(), StorageError> {
    const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;
    let file = File::create(path).map_err(|e| StorageError::io(path, e))?;
    let mut out = std::io::BufWriter::with_capacity(1024 * 1024, file);
    let mut written = 0u64;
    let mut flushed_to = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        out.write_all(&chunk).map_err(|e| StorageError::io(path, e))?;
        written += chunk.len() as u64;
        if fsync && written - flushed_to >= WRITEBACK_EVERY {
            out.flush().map_err(|e| StorageError::io(path, e))?;
            let len = std::num::NonZeroU64::new(written - flushed_to);
            // Only a hint: a failure here changes nothing about durability.
            let _ = rustix::fs::fadvise(out.get_ref(), flushed_to, len, rustix::fs::Advice::DontNeed);
            flushed_to = written;
        }
    }
    out.flush().map_err(|e| StorageError::io(path, e))?;
    sync_file_and_dir(out.get_ref(), path, fsync)
}

fn sync_file_and_dir(file: &File, path: &Path, fsync: bool) -> Result<(), StorageError> {
    if !fsync {
        return Ok(());
    }
    file.sync_all().map_err(|e| StorageError::io(path, e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::io(dir, e))?;
    }
    Ok(())
}
