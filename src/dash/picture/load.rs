//! Loading pictures for the dashboard's loop: the [`Loader`] starts a task for each
//! wanted picture that is neither kept nor on its way (a few at a time), and
//! [`load`] does one: fetch through the link (an output's thumbnail at a size
//! matching the slot, an object's bytes, the newest preview frame), then decode
//! and encode on a blocking thread. Live previews are fetched again at most once
//! a second while they are on screen, and only a newer frame is sent; a failure
//! is tried again after a while.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Graphics, Key, Picture, Pictures, Ready, Source, encode};
use crate::dash::Msg;
use crate::dash::state::Outcome;
use crate::link::Link;

/// Pictures being fetched at once, at most.
const IN_FLIGHT: usize = 4;
/// How often a live preview on screen is asked for a newer frame.
const LIVE_EVERY: Duration = Duration::from_secs(1);
/// When a picture that could not be had is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Objects larger than this are not read for a preview.
pub const MAX_OBJECT_BYTES: u64 = 32 << 20;
/// The thumbnail sizes asked for (pixels on the longer side).
const SIZES: [u32; 5] = [64, 128, 256, 512, 1024];

/// A picture loaded (or not: `None` when a live preview has no newer frame).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Key,
    pub picture: Option<Picture>,
}

/// The loop's side of loading: what is on its way and when each was asked for.
pub struct Loader {
    link: Arc<dyn Link>,
    graphics: Graphics,
    tx: mpsc::Sender<Msg>,
    in_flight: HashSet<Key>,
    asked: HashMap<Key, Instant>,
}

impl Loader {
    pub fn new(link: Arc<dyn Link>, graphics: Graphics, tx: mpsc::Sender<Msg>) -> Self {
        Self {
            link,
            graphics,
            tx,
            in_flight: HashSet::new(),
            asked: HashMap::new(),
        }
    }

    /// The frame drew these pictures: start loading the ones missing or stale.
    pub fn want(&mut self, wanted: &[Key], have: &Pictures) {
        self.asked
            .retain(|k, _| wanted.contains(k) || self.in_flight.contains(k));
        for key in wanted {
            if self.in_flight.len() >= IN_FLIGHT {
                return;
            }
            if self.in_flight.contains(key) {
                continue;
            }
            let since = self.asked.get(key).map(Instant::elapsed);
            let due = match have.get(key) {
                None => true,
                Some(Picture::Failed(_)) => since.is_none_or(|s| s >= retry_after(key)),
                Some(Picture::Ready(_)) => key.source.is_live() && since.is_none_or(|s| s >= LIVE_EVERY),
            };
            if !due {
                continue;
            }
            let newer_than = match have.get(key) {
                Some(Picture::Ready(r)) => r.seq,
                _ => None,
            };
            self.in_flight.insert(key.clone());
            self.asked.insert(key.clone(), Instant::now());
            let (link, tx, graphics, key) = (self.link.clone(), self.tx.clone(), self.graphics, key.clone());
            tokio::spawn(async move {
                let picture = load(&*link, &key, graphics, newer_than).await;
                let loaded = Loaded { key, picture };
                let _ = tx
                    .send(Msg::Outcome(Box::new(Outcome::Picture(Box::new(loaded)))))
                    .await;
            });
        }
    }

    /// A load ended (its outcome is on its way to the state).
    pub fn done(&mut self, key: &Key) {
        self.in_flight.remove(key);
    }
}

/// How soon a failed picture is asked again: live previews wait for their first
/// frame at the live pace.
fn retry_after(key: &Key) -> Duration {
    if key.source.is_live() {
        LIVE_EVERY
    } else {
        RETRY_AFTER
    }
}

/// The thumbnail size that covers `cols` x `rows` cells.
pub fn thumbnail_size(graphics: Graphics, cols: u16, rows: u16) -> u32 {
    let (w, h) = graphics.pixels(cols, rows);
    let need = w.max(h);
    SIZES
        .into_iter()
        .find(|s| *s >= need)
        .unwrap_or(SIZES[SIZES.len() - 1])
}

/// Fetches, decodes and encodes one picture.
pub async fn load(
    link: &dyn Link,
    key: &Key,
    graphics: Graphics,
    newer_than: Option<u64>,
) -> Option<Picture> {
    let (bytes, dims, seq) = match &key.source {
        Source::Output { job, n } => {
            let size = thumbnail_size(graphics, key.cols, key.rows);
            match link.thumbnail(&job.to_string(), *n, size).await {
                Ok(p) => (p.bytes, Some((p.source_width, p.source_height)), None),
                Err(e) => return Some(Picture::Failed(e.message())),
            }
        }
        Source::Object { bucket, key } => match link.read_output(bucket, key, MAX_OBJECT_BYTES).await {
            Ok(b) => (b, None, None),
            Err(e) => return Some(Picture::Failed(e.message())),
        },
        Source::Live { job } => match link.preview(&job.to_string(), newer_than).await {
            Ok(None) => return None,
            Ok(Some(frame)) => (frame.bytes, None, Some(frame.seq)),
            Err(e) if e.code() == "not_found" => {
                return Some(Picture::Failed("waiting for a preview frame…".into()));
            }
            Err(e) => return Some(Picture::Failed(e.message())),
        },
    };
    let (cols, rows) = (key.cols, key.rows);
    let done = tokio::task::spawn_blocking(move || {
        let image = crate::service::pictures::decode(&bytes).map_err(|e| format!("not an image: {e}"))?;
        let (width, height) = dims.unwrap_or((image.width(), image.height()));
        let protocol = encode::encode(&image, cols, rows, graphics)?;
        Ok::<_, String>(Ready {
            protocol,
            width,
            height,
            seq,
        })
    })
    .await;
    Some(match done {
        Ok(Ok(ready)) => Picture::Ready(Arc::new(ready)),
        Ok(Err(why)) => Picture::Failed(why),
        Err(e) => Picture::Failed(format!("decoding failed: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_are_asked_at_the_size_the_slot_needs() {
        let hb = Graphics::halfblocks();
        assert_eq!(thumbnail_size(hb, 18, 7), 64);
        assert_eq!(thumbnail_size(hb, 60, 40), 128);
        let kitty = Graphics {
            kind: ratatui_image::picker::ProtocolType::Kitty,
            font: (10, 20),
            tmux: false,
        };
        assert_eq!(thumbnail_size(kitty, 18, 7), 256);
        assert_eq!(thumbnail_size(kitty, 60, 40), 1024);
        assert_eq!(thumbnail_size(kitty, 200, 60), 1024);
    }
}
