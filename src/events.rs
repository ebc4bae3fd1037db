//! One stream of everything that changes — job transitions and progress, alert
//! changes, GPU samples (at most one a second) — numbered in order and kept in a
//! bounded backlog, so the API's Server-Sent Events and the dashboard's remote mode
//! can resume after a reconnect with `Last-Event-ID` instead of refetching.
//!
//! Producers publish typed [`EventKind`]s; the hub stamps each with the next id.
//! A subscriber asks for everything after the last id it saw: it gets what the
//! backlog still holds, then live events, with no gap and no duplicate (both are
//! taken under one lock). If its id is older than the backlog, it is told so
//! ([`Resume::Gap`]) and should refetch the status snapshot.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::alerts::AlertChange;
use crate::clock::Millis;
use crate::queue::JobEvent;

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum EventKind {
    /// A job changed status or progress.
    Job(JobEvent),
    /// An alert became pending, fired, resolved or cleared.
    Alert(AlertChange),
    /// A GPU sample (at most one a second).
    Gpu(crate::gpu::GpuReport),
}

impl EventKind {
    /// The SSE event name: `job`, `alert`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Job(_) => "job",
            Self::Alert(_) => "alert",
            Self::Gpu(_) => "gpu",
        }
    }
}

/// An event with its place in the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: u64,
    pub at_ms: Millis,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// An event as a client reads it back (the kind left as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    pub id: u64,
    pub at_ms: Millis,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
}

/// Where a resuming subscriber starts.
#[derive(Debug)]
pub enum Resume {
    /// Everything after the given id is in `backlog`, then `live`.
    Complete,
    /// Events between the given id and the backlog's first were dropped.
    Gap,
}

/// A subscription: the backlog to send first, then the live receiver.
pub struct Subscription {
    pub resume: Resume,
    pub backlog: Vec<Arc<Event>>,
    pub live: broadcast::Receiver<Arc<Event>>,
}

/// The hub; cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Event>>,
    capacity: usize,
}

struct State {
    next_id: u64,
    backlog: VecDeque<Arc<Event>>,
}

impl EventHub {
    /// A hub keeping the last `capacity` events, numbering from `first_id`. The
    /// daemon starts from its start time in microseconds, so an id a client kept
    /// from an earlier run is always recognised as a gap.
    pub fn new(capacity: usize, first_id: u64) -> Self {
        let capacity = capacity.max(1);
        let (tx, _) = broadcast::channel(capacity);
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    next_id: first_id.max(1),
                    backlog: VecDeque::with_capacity(capacity),
                }),
                tx,
                capacity,
            }),
        }
    }

    /// Stamps and sends one event.
    pub fn publish(&self, at_ms: Millis, kind: EventKind) {
        let Ok(mut s) = self.inner.state.lock() else {
            return;
        };
        let event = Arc::new(Event {
            id: s.next_id,
            at_ms,
            kind,
        });
        s.next_id += 1;
        if s.backlog.len() == self.inner.capacity {
            s.backlog.pop_front();
        }
        s.backlog.push_back(event.clone());
        // Sent under the lock so a subscriber never sees an event twice or misses one.
        let _ = self.inner.tx.send(event);
    }

    /// Subscribes to the events after `last_id` (`None`: live events only).
    pub fn subscribe(&self, last_id: Option<u64>) -> Subscription {
        let s = match self.inner.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let live = self.inner.tx.subscribe();
        let Some(last) = last_id else {
            return Subscription {
                resume: Resume::Complete,
                backlog: Vec::new(),
                live,
            };
        };
        let first = s.backlog.front().map_or(s.next_id, |e| e.id);
        let resume = if last.saturating_add(1) >= first && last < s.next_id {
            Resume::Complete
        } else {
            Resume::Gap
        };
        let backlog = s.backlog.iter().filter(|e| e.id > last).cloned().collect();
        Subscription {
            resume,
            backlog,
            live,
        }
    }

    /// The id the next event will get.
    pub fn next_id(&self) -> u64 {
        self.inner.state.lock().map_or(0, |s| s.next_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: i64) -> EventKind {
        EventKind::Job(JobEvent {
            id: ulid::Ulid::nil(),
            queue: "q".into(),
            from: None,
            to: crate::queue::JobStatus::Queued,
            progress: None,
            cancel_requested: false,
            at_ms: n,
        })
    }

    #[test]
    fn resume_replays_the_backlog_then_goes_live() {
        let hub = EventHub::new(3, 1);
        for n in 0..5 {
            hub.publish(n, event(n));
        }
        // Ids 3, 4, 5 are kept.
        let sub = hub.subscribe(Some(3));
        assert!(matches!(sub.resume, Resume::Complete));
        assert_eq!(sub.backlog.iter().map(|e| e.id).collect::<Vec<_>>(), [4, 5]);
        let gap = hub.subscribe(Some(1));
        assert!(matches!(gap.resume, Resume::Gap));
        assert_eq!(gap.backlog.len(), 3);
        let mut live = hub.subscribe(Some(5));
        assert!(live.backlog.is_empty());
        hub.publish(9, event(9));
        assert_eq!(live.live.try_recv().unwrap().id, 6);
        // An id from another run of the daemon (ahead of this one) is a gap too.
        assert!(matches!(hub.subscribe(Some(1_000)).resume, Resume::Gap));
    }

    #[test]
    fn events_serialize_with_type_and_data() {
        let hub = EventHub::new(2, 1);
        let mut sub = hub.subscribe(None);
        hub.publish(7, event(1));
        let e = sub.live.try_recv().unwrap();
        let v = serde_json::to_value(&*e).unwrap();
        assert_eq!((v["id"].clone(), v["at_ms"].clone()), (1.into(), 7.into()));
        assert_eq!(v["type"], "job");
        assert_eq!(v["data"]["to"], "queued");
        let raw: RawEvent = serde_json::from_value(v).unwrap();
        assert_eq!(raw.kind, "job");
    }
}
