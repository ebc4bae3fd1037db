//! `darkroom verify`: an fsck of a data directory no daemon holds. Every object
//! the index lists must have its bytes — a blob file or an inline row — of the
//! recorded size and, for objects written in one piece, the recorded MD5 (a
//! multipart object's ETag is not the MD5 of its bytes, so only its size is
//! checked); every blob file must belong to an object or an open multipart
//! upload; every database file must open and pass redb's integrity check.
//!
//! With `repair`, orphan blob files are deleted and objects whose bytes are
//! missing, truncated or corrupt are marked damaged (`ObjectMeta::damaged`), so a
//! GET answers a clear error naming them instead of wrong bytes. The store is read
//! with redb directly, not through [`super::ObjectStore::open`], which would delete
//! orphans silently at start.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::Serialize;

use super::blobs::Blobs;
use super::meta::{self, ObjectMeta, PartMeta};

/// Why verification could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0} holds no objects.redb: not a darkroom data directory")]
    NotADataDir(PathBuf),
    #[error("{path} is open in another process (a running daemon?): stop it first")]
    InUse { path: PathBuf },
    #[error("{path}: {message}")]
    Database { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The object's blob file (or inline row) is gone.
    MissingBlob {
        bucket: String,
        key: String,
        blob: String,
    },
    /// The bytes are there but not as many as recorded.
    WrongSize {
        bucket: String,
        key: String,
        blob: String,
        expected: u64,
        found: u64,
    },
    /// The bytes do not hash to the recorded MD5.
    WrongChecksum {
        bucket: String,
        key: String,
        blob: String,
        expected: String,
        found: String,
    },
    /// A blob file nothing refers to.
    Orphan { blob: String, bytes: u64 },
    /// Marked damaged by an earlier repair.
    Damaged {
        bucket: String,
        key: String,
        why: String,
    },
    /// A database file that does not pass redb's integrity check.
    CorruptDatabase { file: String, message: String },
}

impl Finding {
    /// The object it is about, and why its bytes cannot be trusted.
    fn damage(&self) -> Option<(&str, &str, String)> {
        match self {
            Self::MissingBlob { bucket, key, blob } => Some((bucket, key, format!("blob {blob} is missing"))),
            Self::WrongSize {
                bucket,
                key,
                expected,
                found,
                ..
            } => Some((bucket, key, format!("{found} bytes where {expected} were stored"))),
            Self::WrongChecksum {
                bucket, key, found, ..
            } => Some((bucket, key, format!("its bytes hash to {found}, not its ETag"))),
            _ => None,
        }
    }
}

/// What a verification found, and what a repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Objects checked.
    pub objects: u64,
    /// Bytes read to check them.
    pub bytes: u64,
    /// Multipart objects, checked by size only.
    pub size_only: u64,
    /// Database files checked (`objects.redb`, `queue.redb`, `cache.redb`).
    pub databases: Vec<String>,
    pub findings: Vec<Finding>,
    /// Orphan blob files deleted by the repair.
    pub orphans_removed: u64,
    /// Objects the repair marked damaged.
    pub marked_damaged: u64,
}

impl VerifyReport {
    /// Nothing wrong was found.
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Verifies the data directory at `root`; with `repair`, mends what can be mended.
pub fn verify(root: &Path, repair: bool) -> Result<VerifyReport, VerifyError> {
    let index = root.join("objects.redb");
    if !index.is_file() {
        return Err(VerifyError::NotADataDir(root.to_path_buf()));
    }
    let mut report = VerifyReport::default();
    let db = open_checked(&index, &mut report)?;
    let blobs = Blobs::existing(&root.join("blobs"));
    let referenced = check_objects(&db, &blobs, &index, &mut report)?;
    find_orphans(&root.join("blobs"), &referenced, &mut report)?;
    for other in ["queue.redb", "cache.redb"] {
        let path = root.join(other);
        if path.is_file() {
            drop(open_checked(&path, &mut report)?);
        }
    }
    if repair {
        mend(&db, &blobs, &index, &mut report)?;
    }
    Ok(report)
}

/// Opens a database file and runs redb's integrity check on it.
fn open_checked(path: &Path, report: &mut VerifyReport) -> Result<Database, VerifyError> {
    let mut db = Database::open(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => VerifyError::InUse {
            path: path.to_path_buf(),
        },
        other => VerifyError::Database {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    })?;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    match db.check_integrity() {
        Ok(true) => {}
        Ok(false) => report.findings.push(Finding::CorruptDatabase {
            file: name.clone(),
            message: "failed redb's integrity check and was repaired".into(),
        }),
        Err(e) => report.findings.push(Finding::CorruptDatabase {
            file: name.clone(),
            message: e.to_string(),
        }),
    }
    report.databases.push(name);
    Ok(db)
}

fn db_error(path: &Path, e: impl std::fmt::Display) -> VerifyError {
    VerifyError::Database {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Checks every object's bytes; returns the blob files in use.
fn check_objects(
    db: &Database,
    blobs: &Blobs,
    index: &Path,
    report: &mut VerifyReport,
) -> Result<HashSet<String>, VerifyError> {
    let err = |e: &dyn std::fmt::Display| db_error(index, e);
    let txn = db.begin_read().map_err(|e| err(&e))?;
    let objects = txn.open_table(meta::OBJECTS).map_err(|e| err(&e))?;
    let inline = txn.open_table(meta::INLINE).map_err(|e| err(&e))?;
    let mut referenced = HashSet::new();
    for entry in objects.iter().map_err(|e| err(&e))? {
        let (k, v) = entry.map_err(|e| err(&e))?;
        let (bucket, key) = k.value();
        let object: ObjectMeta = meta::decode(v.value()).map_err(|e| err(&e))?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        report.objects += 1;
        if !object.inline {
            referenced.insert(object.blob.clone());
        }
        if let Some(why) = object.damaged {
            report.findings.push(Finding::Damaged { bucket, key, why });
            continue;
        }
        let measured = if object.inline {
            inline
                .get(object.blob.as_str())
                .map_err(|e| err(&e))?
                .map(|row| measure(&mut row.value()))
                .transpose()
        } else {
            match std::fs::File::open(blobs.path(&object.blob)) {
                Ok(mut file) => measure(&mut file).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }
        .map_err(|source| VerifyError::Io {
            path: blobs.path(&object.blob),
            source,
        })?;
        let blob = object.blob.clone();
        let Some((size, md5)) = measured else {
            report.findings.push(Finding::MissingBlob { bucket, key, blob });
            continue;
        };
        report.bytes += size;
        // A sealed blob is the sealed chunks: its length is known, its MD5 is not the
        // ETag (the GCM tags check its bytes when it is read).
        let expected = object.stored_len();
        if size != expected {
            report.findings.push(Finding::WrongSize {
                bucket,
                key,
                blob,
                expected,
                found: size,
            });
        } else if object.parts > 0 || object.encryption.is_some() {
            report.size_only += 1;
        } else if md5 != object.etag {
            report.findings.push(Finding::WrongChecksum {
                bucket,
                key,
                blob,
                expected: object.etag,
                found: md5,
            });
        }
    }
    // The parts of uploads still open are in use too.
    let parts = txn.open_table(meta::PARTS).map_err(|e| err(&e))?;
    for entry in parts.iter().map_err(|e| err(&e))? {
        let (_, v) = entry.map_err(|e| err(&e))?;
        let part: PartMeta = meta::decode(v.value()).map_err(|e| err(&e))?;
        referenced.insert(part.blob);
    }
    Ok(referenced)
}

/// The size and hex MD5 of everything `reader` yields.
fn measure(reader: &mut impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok((size, hex::encode(hasher.finalize())));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}

/// Lists blob files nothing refers to.
fn find_orphans(
    root: &Path,
    referenced: &HashSet<String>,
    report: &mut VerifyReport,
) -> Result<(), VerifyError> {
    let io = |path: &Path, source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let shards = match std::fs::read_dir(root) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(root, e)),
    };
    let mut orphans = Vec::new();
    for shard in shards {
        let shard = shard.map_err(|e| io(root, e))?.path();
        if !shard.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&shard).map_err(|e| io(&shard, e))? {
            let file = file.map_err(|e| io(&shard, e))?;
            let name = file.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) {
                let bytes = file.metadata().map_err(|e| io(&file.path(), e))?.len();
                orphans.push((name, bytes));
            }
        }
    }
    orphans.sort();
    report.findings.extend(
        orphans
            .into_iter()
            .map(|(blob, bytes)| Finding::Orphan { blob, bytes }),
    );
    Ok(())
}

/// Deletes orphan blob files and marks objects with bad bytes damaged.
fn mend(db: &Database, blobs: &Blobs, index: &Path, report: &mut VerifyReport) -> Result<(), VerifyError> {
    for finding in &report.findings {
        if let Finding::Orphan { blob, .. } = finding {
            let path = blobs.path(blob);
            std::fs::remove_file(&path).map_err(|source| VerifyError::Io { path, source })?;
            report.orphans_removed += 1;
        }
    }
    let damaged: Vec<(String, String, String)> = report
        .findings
        .iter()
        .filter_map(Finding::damage)
        .map(|(b, k, why)| (b.to_owned(), k.to_owned(), why))
        .collect();
    if damaged.is_empty() {
        return Ok(());
    }
    let err = |e: &dyn std::fmt::Display| db_error(index, e);
    let txn = db.begin_write().map_err(|e| err(&e))?;
    {
        let mut objects = txn.open_table(meta::OBJECTS).map_err(|e| err(&e))?;
        for (bucket, key, why) in damaged {
            let record = objects
                .get((bucket.as_str(), key.as_str()))
                .map_err(|e| err(&e))?
                .map(|v| meta::decode::<ObjectMeta>(v.value()))
                .transpose()
                .map_err(|e| err(&e))?;
            if let Some(mut record) = record {
                record.damaged = Some(why);
                let bytes = meta::encode(&record).map_err(|e| err(&e))?;
                objects
                    .insert((bucket.as_str(), key.as_str()), bytes.as_slice())
                    .map_err(|e| err(&e))?;
                report.marked_damaged += 1;
            }
        }
    }
    txn.commit().map_err(|e| err(&e))
}
