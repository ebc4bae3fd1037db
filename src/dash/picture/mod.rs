//! Pictures in the dashboard: job outputs in the job details and the gallery, the
//! selected image in the storage browser, a running job's live preview. Drawing
//! stays pure: `ui::draw` places each picture by its [`Key`] (what, and in how many
//! cells) and reports the keys it wanted; the loop asks the [`Loader`] for those
//! not in [`Pictures`] yet, which fetches the bytes through the
//! [`Link`](crate::link::Link) (a thumbnail of an output, an object, the newest
//! preview frame), decodes and encodes them for the terminal's protocol on a
//! blocking thread, and hands the result back as an `Outcome`; meanwhile the slot
//! says "loading…". Nothing is fetched or decoded while no picture is on screen.
//! [`protocol`] chooses how pictures are drawn; [`encode`] fits an image into cells.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ulid::Ulid;

pub mod encode;
pub mod load;
pub mod protocol;

pub use load::{Loaded, Loader};
pub use protocol::{Graphics, ImageProtocol};

/// What a picture shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// Output `n` (from 0) of a finished job, as a thumbnail.
    Output { job: Ulid, n: usize },
    /// An object of the storage browser.
    Object { bucket: String, key: String },
    /// A running job's newest preview frame.
    Live { job: Ulid },
}

impl Source {
    /// A live preview changes while it is on screen, so it is fetched again.
    pub fn is_live(&self) -> bool {
        matches!(self, Self::Live { .. })
    }
}

/// A picture as placed: what it shows in how many cells.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub source: Source,
    pub cols: u16,
    pub rows: u16,
}

/// A picture encoded for the terminal.
pub struct Ready {
    pub protocol: ratatui_image::protocol::Protocol,
    /// The image's own width and height in pixels.
    pub width: u32,
    pub height: u32,
    /// The preview frame's number (live previews).
    pub seq: Option<u64>,
}

/// A picture slot's content.
#[derive(Clone)]
pub enum Picture {
    Ready(Arc<Ready>),
    /// Why there is nothing to show (not an image, gone, no frame yet).
    Failed(String),
}

impl std::fmt::Debug for Picture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ready(r) => write!(f, "Ready({}x{}, seq {:?})", r.width, r.height, r.seq),
            Self::Failed(why) => write!(f, "Failed({why:?})"),
        }
    }
}

/// Pictures kept at most; more than any screen shows at once.
pub const MAX_PICTURES: usize = 64;

/// The pictures drawn lately (part of the dashboard's state); the oldest go first.
#[derive(Debug, Clone, Default)]
pub struct Pictures {
    map: HashMap<Key, Picture>,
    order: VecDeque<Key>,
}

impl Pictures {
    pub fn get(&self, key: &Key) -> Option<&Picture> {
        self.map.get(key)
    }

    /// Keeps `picture` for `key` (replacing an older frame of the same slot).
    pub fn put(&mut self, key: Key, picture: Picture) {
        if self.map.insert(key.clone(), picture).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > MAX_PICTURES {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> Key {
        Key {
            source: Source::Output { job: Ulid::nil(), n },
            cols: 10,
            rows: 5,
        }
    }

    #[test]
    fn the_oldest_pictures_go_past_the_limit() {
        let mut p = Pictures::default();
        for n in 0..=MAX_PICTURES {
            p.put(key(n), Picture::Failed(n.to_string()));
        }
        assert_eq!(p.len(), MAX_PICTURES);
        assert!(p.get(&key(0)).is_none());
        assert!(p.get(&key(MAX_PICTURES)).is_some());
        // Replacing a picture keeps one entry.
        p.put(key(MAX_PICTURES), Picture::Failed("again".into()));
        assert_eq!(p.len(), MAX_PICTURES);
        assert!(p.get(&key(1)).is_some());
    }
}
