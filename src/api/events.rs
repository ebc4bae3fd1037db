//! `GET /api/v1/events`: the [`EventHub`](crate::events::EventHub) as Server-Sent
//! Events. Each SSE message carries the hub's id, so a client that reconnects with
//! `Last-Event-ID` gets what it missed from the backlog; when the backlog no longer
//! reaches back that far it first gets a `resync` event (refetch
//! `/api/v1/status`). The resume logic is the hub's ([`crate::events::EventHub::stream`]);
//! this only renders it. Keep-alive comments every 15 s hold proxies open.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use futures::stream::StreamExt;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ulid::Ulid;

use crate::events::{EventKind, ResyncNotice, StreamItem};
use crate::users::{Principal, Role};

/// The stream of job, alert and GPU events.
#[utoipa::path(
    get, path = "/api/v1/events", tag = "events",
    params(("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, description = "text/event-stream; each event's `event` is its type (job, alert, gpu, resync), `id` its number and `data` the JSON of an `Event` (a `ResyncNotice` for resync)", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    )
)]
pub async fn events(
    State(s): State<ApiState>,
    axum::Extension(who): axum::Extension<Principal>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let last = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::invalid("Last-Event-ID", "must be an event id this API sent"))?,
        ),
        None => None,
    };
    let mine = Mine {
        who,
        queue: s.svc.queue.clone(),
        seen: Arc::default(),
    };
    let stream = s.svc.hub.stream(last).filter_map(move |item| {
        let mine = mine.clone();
        async move { mine.shows(&item).await.then(|| Ok(to_sse(&item))) }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Which job events a caller gets: an admin every one, anyone else those of the
/// jobs they own (each job's owner read once, then remembered).
#[derive(Clone)]
struct Mine {
    who: Principal,
    queue: crate::queue::Queue,
    seen: Arc<Mutex<HashMap<Ulid, bool>>>,
}

impl Mine {
    async fn shows(&self, item: &StreamItem) -> bool {
        let StreamItem::Event(e) = item else {
            return true;
        };
        let EventKind::Job(job) = &e.kind else {
            return true;
        };
        if self.who.role == Role::Admin {
            return true;
        }
        if let Some(known) = crate::sync::lock(&self.seen).get(&job.id) {
            return *known;
        }
        let owned = match self.queue.get(job.id).await {
            Ok(Some(j)) => crate::service::jobs::visible(&self.who, &j),
            _ => false,
        };
        let mut seen = crate::sync::lock(&self.seen);
        if seen.len() >= 100_000 {
            seen.clear();
        }
        seen.insert(job.id, owned);
        owned
    }
}

fn to_sse(item: &StreamItem) -> SseEvent {
    match item {
        StreamItem::Event(e) => SseEvent::default()
            .id(e.id.to_string())
            .event(e.kind.name())
            .data(serde_json::to_string(&**e).unwrap_or_else(|_| "{}".into())),
        StreamItem::Resync(cause) => SseEvent::default()
            .event("resync")
            .data(serde_json::to_string(&ResyncNotice::from(*cause)).unwrap_or_else(|_| "{}".into())),
    }
}
