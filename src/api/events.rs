//! `GET /api/v1/events`: the [`EventHub`](crate::events::EventHub) as Server-Sent
//! Events. Each SSE message carries the hub's id, so a client that reconnects with
//! `Last-Event-ID` gets what it missed from the backlog; when the backlog no longer
//! reaches back that far it first gets a `resync` event (refetch
//! `/api/v1/status`). Keep-alive comments every 15 s hold proxies open.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use futures::stream::{self, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use crate::events::{Event, Resume};

/// The stream of job, alert and GPU events.
#[utoipa::path(
    get, path = "/api/v1/events", tag = "events",
    params(("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, description = "text/event-stream; each event's `event` is its type (job, alert, gpu, resync), `id` its number and `data` the JSON of the hub's event", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    )
)]
pub async fn events(
    State(s): State<ApiState>,
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
    let sub = s.hub.subscribe(last);
    let resync = matches!(sub.resume, Resume::Gap).then(|| {
        SseEvent::default()
            .event("resync")
            .data(r#"{"reason":"events were missed; refetch /api/v1/status"}"#)
    });
    let newest = sub.backlog.last().map_or(last.unwrap_or(0), |e| e.id);
    let backlog = stream::iter(sub.backlog).map(|e| Ok(to_sse(&e)));
    let live = stream::unfold((sub.live, newest), |(mut rx, newest)| async move {
        loop {
            match rx.recv().await {
                // Anything the backlog already sent is not sent again.
                Ok(e) if e.id <= newest => {}
                Ok(e) => return Some((Ok(to_sse(&e)), (rx, e.id))),
                Err(RecvError::Lagged(_)) => {
                    let ev = SseEvent::default()
                        .event("resync")
                        .data(r#"{"reason":"this client fell behind; refetch /api/v1/status"}"#);
                    return Some((Ok(ev), (rx, newest)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let stream = stream::iter(resync.map(Ok)).chain(backlog).chain(live);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn to_sse(e: &Arc<Event>) -> SseEvent {
    let data = serde_json::to_string(&**e).unwrap_or_else(|_| "{}".into());
    SseEvent::default()
        .id(e.id.to_string())
        .event(e.kind.name())
        .data(data)
}
