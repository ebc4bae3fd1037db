//! The sealed format of an object's bytes: the plaintext cut into chunks of
//! `chunk_size` bytes (the last shorter, an empty object one empty chunk), each
//! sealed with AES-256-GCM under the object's data key and followed by its 16-byte
//! tag. The nonce is (segment, chunk index): an object sealed in one piece is
//! segment 0 under a key of its own; each upload of a multipart part is a segment
//! with a random 64-bit id under the upload's key, so a part uploaded twice never
//! reuses a nonce. The additional data marks the last chunk of a segment, so a
//! truncated blob does not open. A multipart object is its parts' segments one
//! after the other.
//!
//! [`seal`] wraps a body stream (hashing and inspecting the plaintext on the way);
//! [`plan`] says which chunks a byte range needs and [`open_chunk`] opens one.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::sync::lock;

/// Plaintext bytes per chunk for new objects.
pub const CHUNK_SIZE: u32 = 64 * 1024;
/// Bytes each chunk adds (the GCM tag).
pub const TAG_LEN: u64 = 16;

/// The size of a segment of `plain` bytes once sealed.
pub fn sealed_len(plain: u64, chunk: u32) -> u64 {
    plain + chunks(plain, chunk) * TAG_LEN
}

fn chunks(plain: u64, chunk: u32) -> u64 {
    plain.div_ceil(u64::from(chunk)).max(1)
}

fn key(raw: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, raw).unwrap_or_else(|_| unreachable!("32-byte key")))
}

fn nonce(segment: u64, index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&segment.to_be_bytes());
    // 2^32 chunks of 64 KiB is 256 TiB, far beyond any object S3 allows.
    n[8..].copy_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(last: bool) -> Aad<[u8; 14]> {
    let mut a = *b"darkroom-sse1\0";
    a[13] = u8::from(last);
    Aad::from(a)
}

/// What [`seal`] saw of the plaintext, read once the stream has ended.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub size: u64,
    pub md5: [u8; 16],
}

/// Seals `body` as segment `segment` under `data_key`: yields sealed chunks, calls
/// `inspect` on the plaintext (checksums), and leaves the plaintext's size and MD5
/// in `totals` when the body ends.
pub fn seal<S, E>(
    body: S,
    data_key: &[u8; 32],
    segment: u64,
    chunk_size: u32,
    mut inspect: impl FnMut(&[u8]),
    totals: Arc<Mutex<Totals>>,
) -> impl Stream<Item = Result<Bytes, E>> + Unpin
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    struct State<S, F> {
        body: S,
        buf: BytesMut,
        key: LessSafeKey,
        index: u64,
        md5: Md5,
        size: u64,
        ended: bool,
        done: bool,
        inspect: F,
    }
    let chunk = usize::try_from(chunk_size).unwrap_or(64 * 1024);
    let state = State {
        body,
        buf: BytesMut::new(),
        key: key(data_key),
        index: 0,
        md5: Md5::new(),
        size: 0,
        ended: false,
        done: false,
        inspect: move |c: &[u8]| inspect(c),
    };
    Box::pin(futures::stream::unfold(state, move |mut st| {
        let totals = totals.clone();
        async move {
            if st.done {
                return None;
            }
            // A full chunk goes out only once a byte beyond it has arrived, so the
            // last chunk is always known to be last.
            while !st.ended && st.buf.len() <= chunk {
                match st.body.next().await {
                    Some(Ok(bytes)) => {
                        st.md5.update(&bytes);
                        (st.inspect)(&bytes);
                        st.size += bytes.len() as u64;
                        st.buf.extend_from_slice(&bytes);
                    }
                    Some(Err(e)) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                    None => st.ended = true,
                }
            }
            let last = st.ended && st.buf.len() <= chunk;
            let mut out = st.buf.split_to(st.buf.len().min(chunk));
            out.reserve(16);
            st.key
                .seal_in_place_append_tag(nonce(segment, st.index), aad(last), &mut out)
                .unwrap_or_else(|_| unreachable!("a chunk is far below GCM's limit"));
            st.index += 1;
            if last {
                st.done = true;
                let md5 = std::mem::take(&mut st.md5);
                *lock(&totals) = Totals {
                    size: st.size,
                    md5: md5.finalize().into(),
                };
            }
            Some((Ok(out.freeze()), st))
        }
    }))
}

/// One chunk a ranged read needs: where its sealed bytes are and which of its
/// plaintext bytes the range keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRead {
    pub offset: u64,
    pub len: usize,
    pub segment: u64,
    pub index: u64,
    pub last: bool,
    pub keep: Range<usize>,
}

/// The chunks holding plaintext bytes `span` of an object of `size` bytes whose
/// segments are `segments` (empty: one segment 0 of `size` bytes).
pub fn plan(size: u64, segments: &[(u64, u64)], chunk_size: u32, span: Range<u64>) -> Vec<ChunkRead> {
    let whole = [(0, size)];
    let segments = if segments.is_empty() { &whole[..] } else { segments };
    let chunk = u64::from(chunk_size);
    let mut reads = Vec::new();
    let (mut plain_at, mut sealed_at) = (0u64, 0u64);
    for &(segment, seg_size) in segments {
        let seg = plain_at..plain_at + seg_size;
        let n = chunks(seg_size, chunk_size);
        let touches = span.start < seg.end && span.end > seg.start;
        // An empty object is one empty chunk, read when the whole object is asked for.
        let empty_whole = size == 0 && span.is_empty();
        if touches || empty_whole {
            let from = span.start.max(seg.start) - seg.start;
            let to = span.end.min(seg.end) - seg.start;
            let first = from / chunk;
            let last_needed = if to == 0 { 0 } else { (to - 1) / chunk };
            for index in first..=last_needed.min(n - 1) {
                let c_start = index * chunk;
                let c_len = chunk.min(seg_size - c_start);
                let keep_from = from.saturating_sub(c_start).min(c_len);
                let keep_to = to.saturating_sub(c_start).min(c_len);
                reads.push(ChunkRead {
                    offset: sealed_at + index * (chunk + TAG_LEN),
                    len: usize::try_from(c_len + TAG_LEN).unwrap_or(usize::MAX),
                    segment,
                    index,
                    last: index == n - 1,
                    keep: usize::try_from(keep_from).unwrap_or(0)..usize::try_from(keep_to).unwrap_or(0),
                });
            }
        }
        plain_at = seg.end;
        sealed_at += sealed_len(seg_size, chunk_size);
    }
    reads
}

/// The sealed size of a whole object (the blob's expected length).
pub fn object_sealed_len(size: u64, segments: &[(u64, u64)], chunk_size: u32) -> u64 {
    if segments.is_empty() {
        sealed_len(size, chunk_size)
    } else {
        segments.iter().map(|&(_, s)| sealed_len(s, chunk_size)).sum()
    }
}

/// A chunk that does not open: wrong key, or bytes changed on disk.
#[derive(Debug, thiserror::Error)]
#[error("sealed chunk {index} of segment {segment} does not open (wrong key or damaged bytes)")]
pub struct OpenError {
    pub segment: u64,
    pub index: u64,
}

/// An opener for one object's chunks.
pub struct Opener {
    key: LessSafeKey,
}

impl Opener {
    pub fn new(data_key: &[u8; 32]) -> Self {
        Self { key: key(data_key) }
    }

    /// Opens `sealed` (the chunk's bytes, tag included) and returns the bytes the
    /// range keeps.
    pub fn open_chunk(&self, read: &ChunkRead, sealed: &mut [u8]) -> Result<Bytes, OpenError> {
        let err = || OpenError {
            segment: read.segment,
            index: read.index,
        };
        let plain = self
            .key
            .open_in_place(nonce(read.segment, read.index), aad(read.last), sealed)
            .map_err(|_| err())?;
        plain
            .get(read.keep.clone())
            .map(Bytes::copy_from_slice)
            .ok_or_else(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sealed_bytes(plain: &[u8], segment: u64, chunk: u32, key: &[u8; 32]) -> (Vec<u8>, Totals) {
        let totals = Arc::new(Mutex::new(Totals::default()));
        // Odd-sized pieces so chunk boundaries fall inside them.
        let pieces: Vec<Result<Bytes, std::io::Error>> =
            plain.chunks(7).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let mut s = seal(
            futures::stream::iter(pieces),
            key,
            segment,
            chunk,
            |_| {},
            totals.clone(),
        );
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        let t = lock(&totals).clone();
        (out, t)
    }

    fn read(
        sealed: &[u8],
        size: u64,
        segments: &[(u64, u64)],
        chunk: u32,
        span: Range<u64>,
        key: &[u8; 32],
    ) -> Vec<u8> {
        let opener = Opener::new(key);
        let mut out = Vec::new();
        for r in plan(size, segments, chunk, span) {
            let start = usize::try_from(r.offset).unwrap();
            let mut buf = sealed[start..start + r.len].to_vec();
            out.extend_from_slice(&opener.open_chunk(&r, &mut buf).unwrap());
        }
        out
    }

    #[tokio::test]
    async fn every_range_across_chunk_boundaries_opens_to_the_plaintext() {
        let key = [7u8; 32];
        let chunk = 16;
        for len in [0usize, 1, 15, 16, 17, 32, 33, 70] {
            let plain: Vec<u8> = (0..len).map(|i| u8::try_from(i * 31 % 251).unwrap()).collect();
            let (sealed, totals) = sealed_bytes(&plain, 0, chunk, &key).await;
            assert_eq!(sealed.len() as u64, sealed_len(len as u64, chunk), "len {len}");
            assert_eq!(totals.size, len as u64);
            for a in 0..=len {
                for b in a..=len {
                    let got = read(&sealed, len as u64, &[], chunk, a as u64..b as u64, &key);
                    assert_eq!(got, plain[a..b], "len {len} range {a}..{b}");
                }
            }
        }
    }

    #[tokio::test]
    async fn segments_read_as_one_object_and_truncation_is_caught() {
        let key = [9u8; 32];
        let chunk = 16;
        let (p1, p2): (Vec<u8>, Vec<u8>) = ((0..40).collect(), (100..123).collect());
        let (s1, _) = sealed_bytes(&p1, 0x1234_5678_9abc_def0, chunk, &key).await;
        let (s2, _) = sealed_bytes(&p2, 7, chunk, &key).await;
        let sealed = [s1.clone(), s2].concat();
        let (s1_id, s2_id) = (0x1234_5678_9abc_def0, 7);
        let segments = [(s1_id, 40), (s2_id, 23)];
        let whole = [p1.clone(), p2].concat();
        for a in 0..whole.len() {
            for b in a..=whole.len() {
                assert_eq!(
                    read(&sealed, 63, &segments, chunk, a as u64..b as u64, &key),
                    whole[a..b]
                );
            }
        }
        // Dropping the last chunk of segment 1 and calling the one before it last fails.
        let mut r = plan(40, &[(s1_id, 40)], chunk, 0..32)[1].clone();
        r.last = true;
        let mut buf = s1[usize::try_from(r.offset).unwrap()..][..r.len].to_vec();
        assert!(Opener::new(&key).open_chunk(&r, &mut buf).is_err());
        // A wrong key does not open.
        let r = plan(40, &[(s1_id, 40)], chunk, 0..1).remove(0);
        let mut buf = s1[..r.len].to_vec();
        assert!(Opener::new(&[1u8; 32]).open_chunk(&r, &mut buf).is_err());
    }
}
