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
//!
//! [`EventHub::stream`] is that subscription as one stream of [`StreamItem`]s —
//! the backlog, then live events without repeats, and a [`Resync`] where events
//! were missed — the one place both the API's SSE endpoint and the dashboard's
//! local mode read from. Events are typed end to end: [`Event`] serialises for SSE
//! and deserialises in the client, so no reader matches on strings.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::alerts::AlertChange;
use crate::clock::Millis;
use crate::queue::JobEvent;
use crate::sync::lock;

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// An event with its place in the stream: the `data` of each SSE message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: u64,
    pub at_ms: Millis,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Why a subscriber must refetch the status snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resync {
    /// The id it resumed from is older than the backlog (or from another run).
    Gap,
    /// It read too slowly and the live channel dropped events.
    Lagged,
}

impl Resync {
    /// The sentence the SSE `resync` event carries.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Gap => "events were missed; refetch /api/v1/status",
            Self::Lagged => "this client fell behind; refetch /api/v1/status",
        }
    }
}

/// The body of the SSE `resync` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResyncNotice {
    pub reason: String,
    /// Absent from daemons older than the typed stream: read as a gap.
    #[serde(default = "gap")]
    pub cause: Resync,
}

fn gap() -> Resync {
    Resync::Gap
}

impl From<Resync> for ResyncNotice {
    fn from(cause: Resync) -> Self {
        Self {
            reason: cause.reason().to_owned(),
            cause,
        }
    }
}

/// One message of a subscriber's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Event(Arc<Event>),
    /// Events were missed: refetch the snapshot, then carry on.
    Resync(Resync),
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
        let mut s = lock(&self.inner.state);
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
        let s = lock(&self.inner.state);
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

    /// Everything after `last_id` (`None`: live events only) as one stream: a
    /// [`Resync::Gap`] first when the backlog does not reach back that far, then
    /// the backlog, then live events — none twice — with a [`Resync::Lagged`]
    /// wherever this reader fell behind. It ends when the hub is dropped.
    pub fn stream(&self, last_id: Option<u64>) -> impl Stream<Item = StreamItem> + Send + use<> {
        use futures::StreamExt;
        let sub = self.subscribe(last_id);
        let resync = matches!(sub.resume, Resume::Gap).then_some(StreamItem::Resync(Resync::Gap));
        let newest = sub.backlog.last().map_or(last_id.unwrap_or(0), |e| e.id);
        let backlog = sub.backlog.into_iter().map(StreamItem::Event);
        let live = futures::stream::unfold((sub.live, newest), |(mut rx, newest)| async move {
            loop {
                match rx.recv().await {
                    // Anything the backlog already sent is not sent again.
                    Ok(e) if e.id <= newest => {}
                    Ok(e) => {
                        let id = e.id;
                        return Some((StreamItem::Event(e), (rx, id)));
                    }
                    Err(RecvError::Lagged(_)) => {
                        return Some((StreamItem::Resync(Resync::Lagged), (rx, newest)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        futures::stream::iter(resync.into_iter().chain(backlog)).chain(live)
    }

    /// The id the next event will get.
    pub fn next_id(&self) -> u64 {
        lock(&self.inner.state).next_id
    }
}

/// Events written as their JSON reads, for the dashboard's tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use super::Event;

    /// An event's four fields, the kind by name.
    pub struct RawEvent {
        pub id: u64,
        pub at_ms: crate::clock::Millis,
        pub kind: String,
        pub data: serde_json::Value,
    }

    /// The typed event `raw` describes.
    pub fn event(raw: RawEvent) -> Arc<Event> {
        let RawEvent {
            id,
            at_ms,
            kind,
            data,
        } = raw;
        let json = serde_json::json!({"id": id, "at_ms": at_ms, "type": kind, "data": data});
        Arc::new(serde_json::from_value(json).expect("a valid event"))
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
            backend: None,
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
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, *e);
    }
}

#[cfg(test)]
mod stream_tests {
    use futures::StreamExt;

    use super::*;

    fn job(n: i64) -> EventKind {
        EventKind::Job(JobEvent {
            id: ulid::Ulid::nil(),
            queue: "q".into(),
            from: None,
            to: crate::queue::JobStatus::Running,
            progress: None,
            backend: None,
            cancel_requested: false,
            at_ms: n,
        })
    }

    fn ids(items: &[StreamItem]) -> Vec<Option<u64>> {
        items
            .iter()
            .map(|i| match i {
                StreamItem::Event(e) => Some(e.id),
                StreamItem::Resync(_) => None,
            })
            .collect()
    }

    async fn next(s: &mut (impl Stream<Item = StreamItem> + Unpin)) -> StreamItem {
        tokio::time::timeout(std::time::Duration::from_secs(10), s.next())
            .await
            .expect("the stream stalled")
            .expect("the stream ended")
    }

    #[tokio::test]
    async fn resume_sends_the_backlog_once_then_live_events() {
        let hub = EventHub::new(8, 1);
        for n in 0..3 {
            hub.publish(n, job(n));
        }
        let mut s = Box::pin(hub.stream(Some(1)));
        hub.publish(3, job(3));
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(next(&mut s).await);
        }
        // 2 and 3 from the backlog; 4 live (its copy in the backlog is not repeated).
        assert_eq!(ids(&got), [Some(2), Some(3), Some(4)]);
        hub.publish(4, job(4));
        assert_eq!(ids(&[next(&mut s).await]), [Some(5)]);
    }

    #[tokio::test]
    async fn a_gap_and_a_lag_each_ask_for_a_resync() {
        let hub = EventHub::new(2, 1);
        for n in 0..5 {
            hub.publish(n, job(n));
        }
        // Ids 4 and 5 are kept; resuming after 1 missed 2 and 3.
        let mut s = Box::pin(hub.stream(Some(1)));
        assert_eq!(next(&mut s).await, StreamItem::Resync(Resync::Gap));
        assert_eq!(ids(&[next(&mut s).await, next(&mut s).await]), [Some(4), Some(5)]);
        // A reader that falls behind the live channel is told so, then goes on.
        for n in 5..10 {
            hub.publish(n, job(n));
        }
        assert_eq!(next(&mut s).await, StreamItem::Resync(Resync::Lagged));
        assert!(matches!(next(&mut s).await, StreamItem::Event(e) if e.id > 5));
        // Live only: nothing from before.
        let mut live = Box::pin(hub.stream(None));
        hub.publish(10, job(10));
        assert_eq!(ids(&[next(&mut live).await]), [Some(11)]);
    }

    #[test]
    fn resync_notices_read_back_and_old_ones_count_as_gaps() {
        let n = ResyncNotice::from(Resync::Lagged);
        let back: ResyncNotice = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert_eq!(back.cause, Resync::Lagged);
        let old: ResyncNotice = serde_json::from_str(r#"{"reason":"x"}"#).unwrap();
        assert_eq!(old.cause, Resync::Gap);
    }
}
