//! Where the dashboard's data comes from and its actions go: [`Link`], with two
//! implementations. [`RemoteLink`] is the HTTP API and its Server-Sent Events (the
//! typed [`ApiClient`]); [`LocalLink`] calls the same API handlers in-process and
//! reads the event hub's broadcast channel directly. Both hand back the types the
//! API serves, so everything above this module is one code path.

use std::pin::Pin;

use async_trait::async_trait;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::api::browse::{LogPage, ObjectPage, PresignedUrl};
use crate::api::{ApiState, JobPage, TemplateInfo};
use crate::client::ApiClient;
use crate::dispatch::JobRequest;
use crate::events::{RawEvent, Resume};
use crate::queue::Job;
use crate::status::StatusSnapshot;

/// A message of the event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Event(RawEvent),
    /// Events were missed: refetch the snapshot.
    Resync,
}

/// The event stream; it ends when the connection does.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamItem, String>> + Send>>;

/// What the dashboard needs from a daemon. Errors are the text to show.
#[async_trait]
pub trait Link: Send + Sync + 'static {
    /// Where it is attached (`local` or the URL).
    fn describe(&self) -> String;
    async fn status(&self) -> Result<StatusSnapshot, String>;
    /// The newest work first (running, queued, ... then finished).
    async fn jobs(&self, limit: usize) -> Result<Vec<Job>, String>;
    async fn job(&self, id: &str) -> Result<Job, String>;
    async fn templates(&self) -> Result<Vec<TemplateInfo>, String>;
    async fn logs(&self, after: u64) -> Result<LogPage, String>;
    async fn events(&self, last_id: Option<u64>) -> Result<EventStream, String>;
    async fn submit(&self, request: Value) -> Result<Job, String>;
    async fn cancel(&self, id: &str) -> Result<Job, String>;
    async fn retry(&self, id: &str) -> Result<Job, String>;
    async fn objects(&self, bucket: &str, prefix: &str) -> Result<ObjectPage, String>;
    async fn presign(&self, bucket: &str, key: &str) -> Result<PresignedUrl, String>;
}

/// A daemon reached over its HTTP API.
pub struct RemoteLink {
    pub client: ApiClient,
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[async_trait]
impl Link for RemoteLink {
    fn describe(&self) -> String {
        self.client.base().to_owned()
    }
    async fn status(&self) -> Result<StatusSnapshot, String> {
        self.client.status().await.map_err(text)
    }
    async fn jobs(&self, limit: usize) -> Result<Vec<Job>, String> {
        Ok(self.client.jobs(None, limit, None).await.map_err(text)?.jobs)
    }
    async fn job(&self, id: &str) -> Result<Job, String> {
        self.client.job(id).await.map_err(text)
    }
    async fn templates(&self) -> Result<Vec<TemplateInfo>, String> {
        self.client.templates().await.map_err(text)
    }
    async fn logs(&self, after: u64) -> Result<LogPage, String> {
        self.client.logs(after).await.map_err(text)
    }
    async fn events(&self, last_id: Option<u64>) -> Result<EventStream, String> {
        let stream = self.client.events(last_id).await.map_err(text)?;
        Ok(Box::pin(stream.filter_map(|m| async move {
            match m {
                Err(e) => Some(Err(e.to_string())),
                Ok(m) if m.event == "resync" => Some(Ok(StreamItem::Resync)),
                Ok(m) => serde_json::from_str::<RawEvent>(&m.data)
                    .ok()
                    .map(|e| Ok(StreamItem::Event(e))),
            }
        })))
    }
    async fn submit(&self, request: Value) -> Result<Job, String> {
        self.client.submit(&request, None).await.map_err(text)
    }
    async fn cancel(&self, id: &str) -> Result<Job, String> {
        self.client.cancel(id).await.map_err(text)
    }
    async fn retry(&self, id: &str) -> Result<Job, String> {
        self.client.retry(id).await.map_err(text)
    }
    async fn objects(&self, bucket: &str, prefix: &str) -> Result<ObjectPage, String> {
        self.client.objects(bucket, prefix).await.map_err(text)
    }
    async fn presign(&self, bucket: &str, key: &str) -> Result<PresignedUrl, String> {
        self.client.presign(bucket, key).await.map_err(text)
    }
}

/// The daemon in this process: the API's handlers called directly.
pub struct LocalLink {
    pub state: ApiState,
}

/// An API error as the dashboard shows it (the field named, as the HTTP API does).
fn api_text(e: &crate::api::ApiError) -> String {
    match e {
        crate::api::ApiError::Invalid {
            field: Some(f),
            message,
        } => format!("{message} (field `{f}`)"),
        crate::api::ApiError::Internal(m) => m.clone(),
        other => other.to_string(),
    }
}

fn query(pairs: &[(&str, &str)]) -> RawQuery {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    RawQuery(Some(q.finish()))
}

#[async_trait]
impl Link for LocalLink {
    fn describe(&self) -> String {
        "local".to_owned()
    }
    async fn status(&self) -> Result<StatusSnapshot, String> {
        crate::api::status::collect(&self.state)
            .await
            .map_err(|e| api_text(&e))
    }
    async fn jobs(&self, limit: usize) -> Result<Vec<Job>, String> {
        let limit = limit.to_string();
        let Json(JobPage { jobs, .. }) =
            crate::api::jobs::list(State(self.state.clone()), query(&[("limit", &limit)]))
                .await
                .map_err(|e| api_text(&e))?;
        Ok(jobs)
    }
    async fn job(&self, id: &str) -> Result<Job, String> {
        let r = crate::api::jobs::get(State(self.state.clone()), Path(id.to_owned())).await;
        r.map(|j| j.0).map_err(|e| api_text(&e))
    }
    async fn templates(&self) -> Result<Vec<TemplateInfo>, String> {
        Ok(crate::api::templates(State(self.state.clone())).await.0)
    }
    async fn logs(&self, after: u64) -> Result<LogPage, String> {
        Ok(LogPage {
            lines: self.state.logs.after(after, 500),
        })
    }
    async fn events(&self, last_id: Option<u64>) -> Result<EventStream, String> {
        let sub = self.state.hub.subscribe(last_id);
        let resync = matches!(sub.resume, Resume::Gap).then_some(Ok(StreamItem::Resync));
        let newest = sub.backlog.last().map_or(last_id.unwrap_or(0), |e| e.id);
        let backlog: Vec<_> = sub
            .backlog
            .iter()
            .map(|e| Ok(StreamItem::Event(raw(e))))
            .collect();
        let live = futures::stream::unfold((sub.live, newest), |(mut rx, newest)| async move {
            loop {
                match rx.recv().await {
                    Ok(e) if e.id <= newest => {}
                    Ok(e) => return Some((Ok(StreamItem::Event(raw(&e))), (rx, e.id))),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        return Some((Ok(StreamItem::Resync), (rx, newest)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Box::pin(
            futures::stream::iter(resync.into_iter().chain(backlog)).chain(live),
        ))
    }
    async fn submit(&self, request: Value) -> Result<Job, String> {
        let request: JobRequest =
            serde_json::from_value(request).map_err(|e| api_text(&crate::api::error::json_error(&e)))?;
        crate::api::jobs::enqueue(&self.state, request)
            .await
            .map(|e| e.job)
            .map_err(|e| api_text(&e))
    }
    async fn cancel(&self, id: &str) -> Result<Job, String> {
        let r = crate::api::jobs::cancel(State(self.state.clone()), Path(id.to_owned())).await;
        r.map(|j| j.0).map_err(|e| api_text(&e))
    }
    async fn retry(&self, id: &str) -> Result<Job, String> {
        let r = crate::api::jobs::retry(State(self.state.clone()), Path(id.to_owned())).await;
        r.map(|j| j.0).map_err(|e| api_text(&e))
    }
    async fn objects(&self, bucket: &str, prefix: &str) -> Result<ObjectPage, String> {
        let r = crate::api::browse::objects(
            State(self.state.clone()),
            Path(bucket.to_owned()),
            query(&[("prefix", prefix)]),
        )
        .await;
        r.map(|p| p.0).map_err(|e| api_text(&e))
    }
    async fn presign(&self, bucket: &str, key: &str) -> Result<PresignedUrl, String> {
        let r = crate::api::browse::presign(
            State(self.state.clone()),
            Path(bucket.to_owned()),
            query(&[("key", key)]),
        )
        .await;
        r.map(|p| p.0).map_err(|e| api_text(&e))
    }
}

/// A hub event as the SSE stream carries it.
fn raw(e: &crate::events::Event) -> RawEvent {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or(RawEvent {
            id: e.id,
            at_ms: e.at_ms,
            kind: e.kind.name().to_owned(),
            data: Value::Null,
        })
}
