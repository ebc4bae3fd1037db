//! Every node hears every job change: commits append their events to one Redis
//! stream, and each node's reader thread follows it (`XREAD BLOCK`) into the node's
//! broadcast channel — the channel [`Queue::subscribe`](crate::queue::Queue::subscribe)
//! hands out, which the API's event stream, webhooks and the dashboard read. A new
//! ready job also wakes this node's waiting claimers, wherever it was enqueued.
//!
//! The reader starts from the stream's last entry as it was when the queue opened, so
//! no event committed after that is missed; after a lost connection it resumes from
//! the last entry it saw.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{Commands, Connection};
use tokio::sync::{Notify, broadcast, watch};

use crate::queue::error::QueueError;
use crate::queue::job::{JobEvent, JobStatus};
use crate::redis_store::RedisStore;

/// How long one `XREAD` blocks; also how soon the reader notices it should stop.
const BLOCK: Duration = Duration::from_millis(500);

/// The id of the stream's newest entry, or `0-0` for an empty stream.
pub(crate) fn last_id(conn: &mut Connection, stream: &str) -> Result<String, QueueError> {
    let newest: redis::streams::StreamRangeReply = conn.xrevrange_count(stream, "+", "-", 1)?;
    Ok(newest
        .ids
        .into_iter()
        .next()
        .map_or_else(|| "0-0".to_owned(), |entry| entry.id))
}

/// Stops the reader when dropped (with the queue).
pub(crate) struct ReaderGuard {
    stop: Arc<AtomicBool>,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Where the reader delivers.
pub(crate) struct Sinks {
    pub events: broadcast::Sender<JobEvent>,
    pub ready: Arc<Notify>,
}

/// What the reader tells the queue: the id of the last entry it broadcast, and
/// whether it is connected (presumed until it fails; while it is not, nothing waits
/// for an echo).
pub(crate) struct Progress {
    pub delivered: watch::Sender<super::txn::StreamId>,
    pub following: Arc<AtomicBool>,
}

/// Starts following `stream` after entry `from`.
pub(crate) fn spawn_reader(
    store: RedisStore,
    stream: String,
    from: String,
    sinks: Sinks,
    progress: Progress,
) -> ReaderGuard {
    let stop = Arc::new(AtomicBool::new(false));
    let guard = ReaderGuard { stop: stop.clone() };
    let following = progress.following.clone();
    let spawned = std::thread::Builder::new()
        .name("darkroom-redis-events".into())
        .spawn(move || follow(&store, &stream, from, &sinks, &progress, &stop));
    if let Err(e) = spawned {
        following.store(false, Ordering::Relaxed);
        tracing::error!(error = %e, "cannot start the Redis event reader; job events from other nodes will not arrive");
    }
    guard
}

fn follow(
    store: &RedisStore,
    stream: &str,
    mut last: String,
    sinks: &Sinks,
    progress: &Progress,
    stop: &AtomicBool,
) {
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match store.dedicated(BLOCK * 4) {
            Ok(conn) => conn,
            Err(e) => {
                progress.following.store(false, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(endpoint = store.endpoint(), error = %e, "Redis event stream unreachable; retrying");
                    failing = true;
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if failing {
            tracing::info!(endpoint = store.endpoint(), "Redis event stream reconnected");
            failing = false;
        }
        progress.following.store(true, Ordering::Relaxed);
        while !stop.load(Ordering::Relaxed) {
            let options = StreamReadOptions::default()
                .block(usize::try_from(BLOCK.as_millis()).unwrap_or(500))
                .count(512);
            let reply: Result<Option<StreamReadReply>, _> = conn.xread_options(&[stream], &[&last], &options);
            match reply {
                Ok(Some(reply)) => {
                    deliver(reply, &mut last, sinks);
                    if let Some(id) = super::txn::parse_stream_id(&last) {
                        progress.delivered.send_replace(id);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    progress.following.store(false, Ordering::Relaxed);
                    tracing::warn!(endpoint = store.endpoint(), error = %e, "Redis event stream read failed; reconnecting");
                    failing = true;
                    break;
                }
            }
        }
    }
    progress.following.store(false, Ordering::Relaxed);
}

fn deliver(reply: StreamReadReply, last: &mut String, sinks: &Sinks) {
    let mut woke = false;
    for key in reply.keys {
        for entry in key.ids {
            let event = entry
                .get::<String>("e")
                .and_then(|text| serde_json::from_str::<JobEvent>(&text).ok());
            match event {
                Some(event) => {
                    if event.to == JobStatus::Queued && !woke {
                        sinks.ready.notify_waiters();
                        woke = true;
                    }
                    let _ = sinks.events.send(event);
                }
                None => {
                    tracing::warn!(id = %entry.id, "Redis event stream entry is not a job event; skipped");
                }
            }
            *last = entry.id;
        }
    }
}
