//! Live previews of running jobs: the last image ComfyUI sent over the WebSocket
//! for each job while it runs (a sampler's step previews, `SaveImageWebsocket`'s
//! images), kept in memory only and dropped when the attempt ends. Each frame gets
//! a number unique in this process, so readers ask "anything newer than N?" and a
//! client's cached copy is never mistaken for a newer frame. A job running on
//! another node has no preview here.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ulid::Ulid;

use crate::comfy::BinaryImage;
use crate::sync::lock;

/// One preview frame of a running job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePreview {
    /// Unique in this process and growing: a later frame has a larger number.
    pub seq: u64,
    /// `image/jpeg` (a sampler's preview) or `image/png`.
    pub content_type: String,
    pub bytes: Bytes,
}

/// The last frame of every running job; a cheap `Clone` handle.
#[derive(Clone)]
pub struct Previews {
    inner: Arc<Inner>,
}

struct Inner {
    frames: Mutex<HashMap<Ulid, LivePreview>>,
    next: AtomicU64,
}

impl Default for Previews {
    fn default() -> Self {
        // A random start keeps numbers from an earlier run of the daemon (cached
        // by a client as ETags) from matching this run's frames.
        let start = u64::from(rand::random::<u32>()) << 16;
        Self {
            inner: Arc::new(Inner {
                frames: Mutex::new(HashMap::new()),
                next: AtomicU64::new(start),
            }),
        }
    }
}

impl Previews {
    /// Keeps `image` as `job`'s latest frame; images of a kind darkroom cannot
    /// show (an unknown format) are ignored.
    pub fn record(&self, job: Ulid, image: &BinaryImage) {
        let Some(content_type) = image.content_type() else {
            return;
        };
        if image.bytes.is_empty() {
            return;
        }
        let seq = self.inner.next.fetch_add(1, Ordering::Relaxed) + 1;
        let frame = LivePreview {
            seq,
            content_type: content_type.to_owned(),
            bytes: image.bytes.clone(),
        };
        lock(&self.inner.frames).insert(job, frame);
    }

    /// The job's latest frame.
    pub fn get(&self, job: Ulid) -> Option<LivePreview> {
        lock(&self.inner.frames).get(&job).cloned()
    }

    /// The attempt ended: its frames go.
    pub fn forget(&self, job: Ulid) {
        lock(&self.inner.frames).remove(&job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::ImageFormat;

    fn frame(format: Option<ImageFormat>, bytes: &'static [u8]) -> BinaryImage {
        BinaryImage {
            event: 1,
            format,
            metadata: None,
            node: Some("3".into()),
            bytes: Bytes::from_static(bytes),
        }
    }

    #[test]
    fn the_last_frame_wins_and_goes_with_the_attempt() {
        let previews = Previews::default();
        let job = Ulid::new();
        assert!(previews.get(job).is_none());
        previews.record(job, &frame(Some(ImageFormat::Jpeg), b"first"));
        let first = previews.get(job).unwrap();
        previews.record(job, &frame(Some(ImageFormat::Png), b"second"));
        let second = previews.get(job).unwrap();
        assert!(second.seq > first.seq);
        assert_eq!(
            (second.content_type.as_str(), second.bytes.as_ref()),
            ("image/png", b"second".as_ref())
        );
        // An unknown format or an empty frame leaves the last good one.
        previews.record(job, &frame(Some(ImageFormat::Other(9)), b"x"));
        previews.record(job, &frame(Some(ImageFormat::Jpeg), b""));
        assert_eq!(previews.get(job).unwrap().seq, second.seq);
        previews.forget(job);
        assert!(previews.get(job).is_none());
    }
}
