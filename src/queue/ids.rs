//! Job ids and ready-order stamps: ULIDs from one monotonic generator, stamped with
//! the queue's clock, so ids sort by creation and FIFO needs no stored counter.

use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use ulid::Ulid;

use crate::clock::Millis;
use crate::sync::lock;

/// A monotonic ULID generator shared by the queue's callers and its writer.
#[derive(Default)]
pub(crate) struct IdSource {
    generator: Mutex<ulid::Generator>,
}

impl IdSource {
    /// A ULID for time `now`, greater than every one this source made before, even if
    /// the clock stands still or steps back.
    pub(crate) fn next(&self, now: Millis) -> Ulid {
        let ms = u64::try_from(now).unwrap_or(0);
        let at = UNIX_EPOCH + Duration::from_millis(ms);
        let mut generator = lock(&self.generator);
        generator
            .generate_from_datetime(at)
            .unwrap_or_else(|_| Ulid::from_parts(ms, rand::random()))
    }
}
