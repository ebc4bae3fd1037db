//! Where snapshots go: a local directory or `s3://bucket/prefix` on any S3
//! endpoint (MinIO, AWS, another darkroom), behind one small interface of
//! relative paths. Every write hashes what it writes (SHA-256), every read hashes
//! what it reads, so the manifest and `restore`'s checks cost no second pass.
//!
//! A local file is written under a temporary name and renamed into place, so a
//! name never holds half a file; [`Dest::sync`] makes everything written durable
//! before the manifest is (one `syncfs`, not one fsync per blob). An S3 object
//! appears whole or not at all.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use sha2::{Digest, Sha256};

use super::error::BackupError;
use crate::dispatch::ExternalS3;
use crate::tls::Trust;
use crate::tls::client::refusal_or;

const CHUNK: usize = 1024 * 1024;

/// A backup destination.
pub enum Dest {
    Local(PathBuf),
    S3(S3Dest),
}

/// A bucket and key prefix on an S3 endpoint.
pub struct S3Dest {
    client: Client,
    bucket: String,
    /// Empty, or ends without a slash.
    prefix: String,
}

/// What was written or read: its size and hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    pub size: u64,
    pub sha256: String,
}

impl Dest {
    /// `s3://bucket[/prefix]` (endpoint and keys from `s3`, else the `AWS_*`
    /// environment variables awscli reads; over https trusting `trust`'s CAs) or
    /// a local directory.
    pub fn parse(spec: &str, s3: &ExternalS3, trust: &Trust) -> Result<Self, BackupError> {
        let Some(rest) = spec.strip_prefix("s3://") else {
            if spec.is_empty() {
                return Err(BackupError::NoDest);
            }
            return Ok(Self::Local(PathBuf::from(spec)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(BackupError::Dest {
                dest: spec.to_owned(),
                message: "no bucket: expected s3://bucket/prefix".into(),
            });
        }
        let http = trust.aws_http_client().map_err(|e| BackupError::Dest {
            dest: spec.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self::S3(S3Dest {
            client: s3_client(s3, http),
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        }))
    }

    /// The destination as the user wrote it.
    pub fn describe(&self) -> String {
        match self {
            Self::Local(root) => root.display().to_string(),
            Self::S3(s) if s.prefix.is_empty() => format!("s3://{}", s.bucket),
            Self::S3(s) => format!("s3://{}/{}", s.bucket, s.prefix),
        }
    }

    fn err(&self, message: impl std::fmt::Display) -> BackupError {
        BackupError::Dest {
            dest: self.describe(),
            message: message.to_string(),
        }
    }

    /// Copies the local file `src` to `rel`, hashing it on the way.
    pub async fn put_file(&self, rel: &str, src: &Path) -> Result<Hashed, BackupError> {
        match self {
            Self::Local(root) => {
                let (src, dst) = (src.to_path_buf(), root.join(rel));
                in_background(move || copy_hashing(&src, &dst)).await
            }
            Self::S3(s) => {
                let path = src.to_path_buf();
                let hashed = in_background(move || hash_file(&path)).await?;
                let body = ByteStream::from_path(src)
                    .await
                    .map_err(|e| BackupError::io(src.display(), std::io::Error::other(e)))?;
                s.client
                    .put_object()
                    .bucket(&s.bucket)
                    .key(s.key(rel))
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| {
                        self.err(format!(
                            "PUT {}: {}",
                            s.key(rel),
                            refusal_or(&e, DisplayErrorContext(&e))
                        ))
                    })?;
                Ok(hashed)
            }
        }
    }

    /// Writes `bytes` to `rel` (the manifest), durably for a local destination.
    pub async fn put_bytes(&self, rel: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        match self {
            Self::Local(root) => {
                let dst = root.join(rel);
                blocking(move || write_durably(&dst, &bytes)).await
            }
            Self::S3(s) => {
                s.client
                    .put_object()
                    .bucket(&s.bucket)
                    .key(s.key(rel))
                    .content_type("application/json")
                    .body(ByteStream::from(bytes))
                    .send()
                    .await
                    .map_err(|e| {
                        self.err(format!(
                            "PUT {}: {}",
                            s.key(rel),
                            refusal_or(&e, DisplayErrorContext(&e))
                        ))
                    })?;
                Ok(())
            }
        }
    }

    /// Copies `rel` to the local file `dst` (fsynced), hashing it on the way.
    pub async fn get_file(&self, rel: &str, dst: &Path) -> Result<Hashed, BackupError> {
        match self {
            Self::Local(root) => {
                let (src, dst) = (root.join(rel), dst.to_path_buf());
                blocking(move || copy_hashing(&src, &dst).and_then(|h| sync_file(&dst).map(|()| h))).await
            }
            Self::S3(s) => {
                let out = self.s3_get(s, rel).await?;
                let mut body = out.body;
                let mut file = create_with_dirs(dst)?;
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                while let Some(chunk) = body
                    .try_next()
                    .await
                    .map_err(|e| self.err(format!("GET {}: {e}", s.key(rel))))?
                {
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    file.write_all(&chunk)
                        .map_err(|e| BackupError::io(dst.display(), e))?;
                }
                file.sync_all().map_err(|e| BackupError::io(dst.display(), e))?;
                Ok(Hashed {
                    size,
                    sha256: hex::encode(hasher.finalize()),
                })
            }
        }
    }

    /// Starts a GET of `rel` on the S3 destination `s`.
    async fn s3_get(
        &self,
        s: &S3Dest,
        rel: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, BackupError> {
        s.client
            .get_object()
            .bucket(&s.bucket)
            .key(s.key(rel))
            .send()
            .await
            .map_err(|e| {
                self.err(format!(
                    "GET {}: {}",
                    s.key(rel),
                    refusal_or(&e, DisplayErrorContext(&e))
                ))
            })
    }

    /// The whole content of `rel` (a manifest).
    pub async fn get_bytes(&self, rel: &str) -> Result<Vec<u8>, BackupError> {
        match self {
            Self::Local(root) => {
                let path = root.join(rel);
                std::fs::read(&path).map_err(|e| BackupError::io(path.display(), e))
            }
            Self::S3(s) => {
                let out = self.s3_get(s, rel).await?;
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.err(format!("GET {}: {e}", s.key(rel))))?;
                Ok(bytes.to_vec())
            }
        }
    }

    /// Every file under the folder `rel`, as paths relative to the destination.
    /// A destination that does not exist yet lists nothing.
    pub async fn list(&self, rel: &str) -> Result<Vec<String>, BackupError> {
        match self {
            Self::Local(root) => {
                let root = root.clone();
                let rel = rel.to_owned();
                blocking(move || {
                    let mut out = Vec::new();
                    walk(&root, &rel, &mut out)?;
                    Ok(out)
                })
                .await
            }
            Self::S3(s) => {
                let prefix = format!("{}/", s.key(rel));
                let mut out = Vec::new();
                let mut pages = s
                    .client
                    .list_objects_v2()
                    .bucket(&s.bucket)
                    .prefix(&prefix)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| {
                        self.err(format!(
                            "LIST {prefix}: {}",
                            refusal_or(&e, DisplayErrorContext(&e))
                        ))
                    })?;
                    for object in page.contents() {
                        if let Some(key) = object.key() {
                            out.push(s.rel(key).to_owned());
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// Deletes the files at `rels` (missing ones are fine).
    pub async fn delete(&self, rels: &[String]) -> Result<(), BackupError> {
        match self {
            Self::Local(root) => {
                for rel in rels {
                    let path = root.join(rel);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(BackupError::io(path.display(), e)),
                    }
                    // Empty snapshot folders go too; a folder still in use stays.
                    if let Some(dir) = path.parent() {
                        let _ = std::fs::remove_dir(dir);
                    }
                }
                Ok(())
            }
            Self::S3(s) => {
                for rel in rels {
                    s.client
                        .delete_object()
                        .bucket(&s.bucket)
                        .key(s.key(rel))
                        .send()
                        .await
                        .map_err(|e| {
                            self.err(format!(
                                "DELETE {}: {}",
                                s.key(rel),
                                refusal_or(&e, DisplayErrorContext(&e))
                            ))
                        })?;
                }
                Ok(())
            }
        }
    }

    /// Makes everything written so far durable (local: one `syncfs`).
    pub async fn sync(&self) -> Result<(), BackupError> {
        match self {
            Self::Local(root) => {
                let root = root.clone();
                blocking(move || {
                    let dir = std::fs::File::open(&root).map_err(|e| BackupError::io(root.display(), e))?;
                    rustix::fs::syncfs(&dir).map_err(|e| BackupError::io(root.display(), e.into()))
                })
                .await
            }
            Self::S3(_) => Ok(()),
        }
    }
}

impl S3Dest {
    fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    fn rel<'a>(&self, key: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            key
        } else {
            key.strip_prefix(&self.prefix)
                .map_or(key, |k| k.trim_start_matches('/'))
        }
    }
}

/// A client for `c`, with the `AWS_*` variables filling what `c` leaves empty.
fn s3_client(c: &ExternalS3, http: Option<SharedHttpClient>) -> Client {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let or_env = |value: &str, name: &str| {
        if value.is_empty() {
            env(name).unwrap_or_default()
        } else {
            value.to_owned()
        }
    };
    let endpoint = or_env(&c.endpoint, "AWS_ENDPOINT_URL");
    let region = env("AWS_REGION").filter(|_| c.region == ExternalS3::default().region);
    let mut conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new(
            or_env(&c.access_key, "AWS_ACCESS_KEY_ID"),
            or_env(&c.secret_key, "AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "darkroom-backup",
        ))
        .region(Region::new(region.unwrap_or_else(|| c.region.clone())))
        .force_path_style(c.path_style);
    if !endpoint.is_empty() {
        conf = conf.endpoint_url(endpoint);
    }
    if let Some(http) = http {
        conf = conf.http_client(http);
    }
    Client::from_conf(conf.build())
}

/// Runs `f` on a thread of its own at a low CPU priority (nice 10, per thread on
/// Linux), so the copying and hashing of a backup yield the CPU to serving.
async fn in_background<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("darkroom-backup".into())
        .spawn(move || {
            // Only a courtesy: without it the copy runs at normal priority.
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
            let _ = tx.send(f());
        })
        .map_err(|e| BackupError::io("(backup thread)", e))?;
    rx.await
        .map_err(|_| BackupError::io("(backup thread)", std::io::Error::other("the copy thread died")))?
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackupError::io("(backup worker)", std::io::Error::other(e)))?
}

fn create_with_dirs(path: &Path) -> Result<std::fs::File, BackupError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| BackupError::io(dir.display(), e))?;
    }
    std::fs::File::create(path).map_err(|e| BackupError::io(path.display(), e))
}

/// Copies `src` to `dst` through a temporary name, hashing the bytes once.
fn copy_hashing(src: &Path, dst: &Path) -> Result<Hashed, BackupError> {
    let tmp = partial_name(dst);
    let mut out = create_with_dirs(&tmp)?;
    let hashed = read_hashing(src, |chunk| {
        out.write_all(chunk)
            .map_err(|e| BackupError::io(tmp.display(), e))
    })?;
    drop(out);
    std::fs::rename(&tmp, dst).map_err(|e| BackupError::io(dst.display(), e))?;
    Ok(hashed)
}

/// Size and SHA-256 of a local file, on a low-priority thread.
pub async fn hash_in_background(path: &Path) -> Result<Hashed, BackupError> {
    let path = path.to_path_buf();
    in_background(move || hash_file(&path)).await
}

/// Size and SHA-256 of a local file.
pub fn hash_file(path: &Path) -> Result<Hashed, BackupError> {
    read_hashing(path, |_| Ok(()))
}

/// Reads `path` through once, hashing it and handing every chunk to `sink`.
fn read_hashing(
    path: &Path,
    mut sink: impl FnMut(&[u8]) -> Result<(), BackupError>,
) -> Result<Hashed, BackupError> {
    let mut input = std::fs::File::open(path).map_err(|e| BackupError::io(path.display(), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| BackupError::io(path.display(), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        sink(&buf[..n])?;
        size += n as u64;
    }
    Ok(Hashed {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Writes `bytes` to `dst` so that after a crash it is either whole or absent.
fn write_durably(dst: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let tmp = partial_name(dst);
    let mut out = create_with_dirs(&tmp)?;
    out.write_all(bytes)
        .map_err(|e| BackupError::io(tmp.display(), e))?;
    out.sync_all().map_err(|e| BackupError::io(tmp.display(), e))?;
    std::fs::rename(&tmp, dst).map_err(|e| BackupError::io(dst.display(), e))?;
    sync_dir(dst)
}

fn sync_file(path: &Path) -> Result<(), BackupError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| BackupError::io(path.display(), e))
}

/// fsyncs the folder holding `path`, so a rename into it is durable.
pub(super) fn sync_dir(path: &Path) -> Result<(), BackupError> {
    match path.parent() {
        Some(dir) => sync_file(dir),
        None => Ok(()),
    }
}

/// The temporary name a file is written under before it is renamed into place.
fn partial_name(dst: &Path) -> PathBuf {
    let name = dst
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    dst.with_file_name(format!(".{name}.partial"))
}

/// Collects the files under `root/rel` as relative paths (skipping partial ones).
fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), BackupError> {
    let dir = root.join(rel);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BackupError::io(dir.display(), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| BackupError::io(dir.display(), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = format!("{rel}/{name}");
        let kind = entry.file_type().map_err(|e| BackupError::io(dir.display(), e))?;
        if kind.is_dir() {
            walk(root, &child, out)?;
        } else if !name.ends_with(".partial") {
            out.push(child);
        }
    }
    Ok(())
}
