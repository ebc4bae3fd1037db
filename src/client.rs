//! A typed client of darkroom's HTTP API, for the command-line tools (`darkroom
//! submit`, `jobs`, `status`) and the dashboard's remote mode. Errors carry the
//! API's own message and the field it names.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::ErrorBody;
use crate::dispatch::LivePreview;
use crate::queue::Job;
pub use crate::service::pictures::OutputPicture;
use crate::service::{
    ImportOutcome, JobPage, LogPage, ObjectPage, PresignedUrl, TemplateDetail, TemplateInfo, TemplateUpload,
    ValidationReport,
};
use crate::status::StatusSnapshot;

/// What a call to the API can end with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach darkroom at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("darkroom answered {status}: {message}{}", field.as_ref().map(|f| format!(" (field `{f}`)")).unwrap_or_default())]
    Api {
        status: u16,
        /// The API's error code (`invalid_request`, `not_found`, ...; empty when
        /// the answer was not darkroom's JSON).
        code: String,
        message: String,
        field: Option<String>,
    },
    #[error("darkroom's answer is not what this client expects: {0}")]
    Decode(String),
    #[error("{0}")]
    Invalid(String),
}

/// A connection to one daemon's API.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the API at `base` (`http://127.0.0.1:9080`).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_ca(base, token, None)
    }

    /// A client that also trusts the CA certificates in the PEM file `ca_file`
    /// (`--ca-file`: a private CA or a self-signed daemon's own certificate).
    pub fn with_ca(
        base: &str,
        token: Option<String>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        let url =
            reqwest::Url::parse(base).map_err(|e| ClientError::Invalid(format!("--url {base:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::Invalid(format!(
                "--url {base:?}: must be http:// or https://"
            )));
        }
        let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        let http = crate::tls::client::trust(builder, ca_file)
            .map_err(|e| ClientError::Invalid(format!("--ca-file: {e}")))?
            .build()
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, T), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).timeout(timeout);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let resp = req.send().await.map_err(|source| ClientError::Unreachable {
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Unreachable { url, source })?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        let bytes = if status == StatusCode::NO_CONTENT {
            bytes::Bytes::from_static(b"null")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes)
            .map(|v| (status, v))
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Submits a job request (a `JobRequest`, or its JSON as read from a file);
    /// with `wait`, holds until it ends.
    pub async fn submit<R: Serialize + Sync + ?Sized>(
        &self,
        request: &R,
        wait: Option<u64>,
    ) -> Result<Job, ClientError> {
        let path = match wait {
            Some(w) => format!("/api/v1/jobs?wait={w}"),
            None => "/api/v1/jobs".to_owned(),
        };
        let timeout = Duration::from_secs(wait.unwrap_or(0) + 30);
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Invalid(e.to_string()))?;
        Ok(self.call(Method::POST, &path, Some(body), timeout).await?.1)
    }

    pub async fn job(&self, id: &str) -> Result<Job, ClientError> {
        Ok(self
            .call(Method::GET, &format!("/api/v1/jobs/{id}"), None, SHORT)
            .await?
            .1)
    }

    /// A page of jobs (all statuses when `status` is `None`).
    pub async fn jobs(
        &self,
        status: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<JobPage, ClientError> {
        let path = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", &limit.to_string());
            if let Some(s) = status {
                query.append_pair("status", s);
            }
            if let Some(c) = cursor {
                query.append_pair("cursor", c);
            }
            format!("/api/v1/jobs?{}", query.finish())
        };
        Ok(self.call(Method::GET, &path, None, SHORT).await?.1)
    }

    pub async fn cancel(&self, id: &str) -> Result<Job, ClientError> {
        let path = format!("/api/v1/jobs/{id}/cancel");
        Ok(self.call(Method::POST, &path, None, SHORT).await?.1)
    }

    pub async fn retry(&self, id: &str) -> Result<Job, ClientError> {
        let path = format!("/api/v1/jobs/{id}/retry");
        Ok(self.call(Method::POST, &path, None, SHORT).await?.1)
    }

    pub async fn status(&self) -> Result<StatusSnapshot, ClientError> {
        Ok(self.call(Method::GET, "/api/v1/status", None, SHORT).await?.1)
    }

    /// The drop folders (`[[inbox]]`) with their counts.
    pub async fn inbox(&self) -> Result<Vec<crate::inbox::RuleStatus>, ClientError> {
        Ok(self.call(Method::GET, "/api/v1/inbox", None, SHORT).await?.1)
    }

    /// Asks the daemon to take a backup now; answers when it is complete (a large
    /// first backup can take a while: no timeout short of a day).
    pub async fn backup(
        &self,
        request: &crate::service::BackupRequest,
    ) -> Result<crate::backup::BackupReport, ClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let day = Duration::from_hours(24);
        Ok(self
            .call(Method::POST, "/api/v1/backups", Some(body), day)
            .await?
            .1)
    }

    /// The backup schedule and how backups have gone.
    pub async fn backup_status(&self) -> Result<crate::backup::BackupStatus, ClientError> {
        Ok(self.call(Method::GET, "/api/v1/backups", None, SHORT).await?.1)
    }

    /// The model catalog with availability, timings and swaps.
    pub async fn models(&self) -> Result<crate::service::models::ModelsReport, ClientError> {
        Ok(self.call(Method::GET, "/api/v1/models", None, SHORT).await?.1)
    }

    pub async fn templates(&self) -> Result<Vec<TemplateInfo>, ClientError> {
        Ok(self.call(Method::GET, "/api/v1/templates", None, SHORT).await?.1)
    }

    /// One template in full.
    pub async fn template(&self, name: &str) -> Result<TemplateDetail, ClientError> {
        let path = format!("/api/v1/templates/{}", encode_segment(name));
        Ok(self.call(Method::GET, &path, None, SHORT).await?.1)
    }

    /// Imports a workflow as a new template (`dry_run`: only the proposal).
    pub async fn import_template(
        &self,
        upload: &TemplateUpload,
        dry_run: bool,
    ) -> Result<ImportOutcome, ClientError> {
        let path = if dry_run {
            "/api/v1/templates?dry_run=true"
        } else {
            "/api/v1/templates"
        };
        let body = serde_json::to_vec(upload).map_err(|e| ClientError::Invalid(e.to_string()))?;
        Ok(self.call(Method::POST, path, Some(body), SHORT).await?.1)
    }

    /// Replaces template `name`.
    pub async fn replace_template(
        &self,
        name: &str,
        upload: &TemplateUpload,
    ) -> Result<ImportOutcome, ClientError> {
        let path = format!("/api/v1/templates/{}", encode_segment(name));
        let body = serde_json::to_vec(upload).map_err(|e| ClientError::Invalid(e.to_string()))?;
        Ok(self.call(Method::PUT, &path, Some(body), SHORT).await?.1)
    }

    /// Deletes template `name`.
    pub async fn delete_template(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/templates/{}", encode_segment(name));
        self.call::<serde_json::Value>(Method::DELETE, &path, None, SHORT)
            .await?;
        Ok(())
    }

    /// Template `name` checked against a backend's `/object_info`.
    pub async fn validate_template(&self, name: &str) -> Result<ValidationReport, ClientError> {
        let path = format!("/api/v1/templates/{}/validate", encode_segment(name));
        Ok(self.call(Method::GET, &path, None, SHORT).await?.1)
    }

    /// One folder of a bucket (`prefix` ends in `/`, or is empty for the top).
    pub async fn objects(&self, bucket: &str, prefix: &str) -> Result<ObjectPage, ClientError> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("prefix", prefix)
            .finish();
        let path = format!("/api/v1/buckets/{}/objects?{query}", encode_segment(bucket));
        Ok(self.call(Method::GET, &path, None, SHORT).await?.1)
    }

    pub async fn presign(&self, bucket: &str, key: &str) -> Result<PresignedUrl, ClientError> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("key", key)
            .finish();
        let path = format!("/api/v1/buckets/{}/presign?{query}", encode_segment(bucket));
        Ok(self.call(Method::GET, &path, None, SHORT).await?.1)
    }

    /// The daemon's log lines after `after`.
    pub async fn logs(&self, after: u64) -> Result<LogPage, ClientError> {
        let path = format!("/api/v1/logs?after={after}");
        Ok(self.call(Method::GET, &path, None, SHORT).await?.1)
    }

    /// A thumbnail of output `n` of job `id` (PNG, fitting `size` x `size`), with
    /// the output's own width and height.
    pub async fn thumbnail(&self, id: &str, n: usize, size: u32) -> Result<OutputPicture, ClientError> {
        let path = format!("/api/v1/jobs/{id}/outputs/{n}/thumbnail?size={size}&format=png");
        let (headers, bytes) = self.get_bytes(&path, None).await?.ok_or_else(|| {
            ClientError::Decode(format!("GET {path} answered 304 to a request without an ETag"))
        })?;
        let dimension = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(OutputPicture {
            bytes,
            source_width: dimension(crate::api::pictures::SOURCE_WIDTH),
            source_height: dimension(crate::api::pictures::SOURCE_HEIGHT),
        })
    }

    /// The live preview of running job `id`; `None` while the newest frame is
    /// still `newer_than` (the frame the caller has).
    pub async fn preview(
        &self,
        id: &str,
        newer_than: Option<u64>,
    ) -> Result<Option<LivePreview>, ClientError> {
        let path = format!("/api/v1/jobs/{id}/preview");
        let etag = newer_than.map(|seq| format!("\"p{seq}\""));
        let Some((headers, bytes)) = self.get_bytes(&path, etag.as_deref()).await? else {
            return Ok(None);
        };
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        let seq = header(crate::api::pictures::PREVIEW_SEQ)
            .parse()
            .map_err(|_| ClientError::Decode(format!("GET {path}: no frame number")))?;
        Ok(Some(LivePreview {
            seq,
            content_type: header(reqwest::header::CONTENT_TYPE.as_str()).to_owned(),
            bytes,
        }))
    }

    /// GETs a binary answer; `None` for 304 Not Modified.
    async fn get_bytes(
        &self,
        path: &str,
        if_none_match: Option<&str>,
    ) -> Result<Option<(reqwest::header::HeaderMap, bytes::Bytes)>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.get(&url).timeout(SHORT);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(tag) = if_none_match {
            req = req.header(reqwest::header::IF_NONE_MATCH, tag);
        }
        let resp = req.send().await.map_err(|source| ClientError::Unreachable {
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Unreachable { url, source })?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        Ok(Some((headers, bytes)))
    }

    /// The bytes behind a URL the daemon handed out (an output's presigned URL),
    /// refused past `limit` bytes. The API's token is not sent: the URL carries its
    /// own signature and may point at another host (`s3.public_url`).
    pub async fn download(&self, url: &str, limit: u64) -> Result<bytes::Bytes, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            url: url.to_owned(),
            source,
        };
        let mut resp = self
            .http
            .get(url)
            .timeout(SHORT)
            .send()
            .await
            .map_err(unreachable)?;
        if !resp.status().is_success() {
            return Err(ClientError::Api {
                status: resp.status().as_u16(),
                code: String::new(),
                message: format!("GET {url} answered {}", resp.status()),
                field: None,
            });
        }
        let too_large = || ClientError::Invalid(format!("{url}: larger than {limit} bytes"));
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > limit {
                return Err(too_large());
            }
        }
        Ok(body.into())
    }

    /// Opens `/api/v1/events`, resuming after `last_id`. The stream ends when the
    /// connection does.
    pub async fn events(
        &self,
        last_id: Option<u64>,
    ) -> Result<impl futures::Stream<Item = Result<SseMessage, ClientError>> + use<>, ClientError> {
        let url = format!("{}/api/v1/events", self.base);
        let mut req = self.http.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.map_err(|source| ClientError::Unreachable {
            url: url.clone(),
            source,
        })?;
        if !resp.status().is_success() {
            return Err(ClientError::Api {
                status: resp.status().as_u16(),
                code: String::new(),
                message: resp.text().await.unwrap_or_default().trim().to_owned(),
                field: None,
            });
        }
        let bytes = resp.bytes_stream();
        Ok(futures::stream::unfold(
            (bytes, SseParser::default(), url),
            |(mut bytes, mut parser, url)| async move {
                loop {
                    if let Some(m) = parser.next_message() {
                        return Some((Ok(m), (bytes, parser, url)));
                    }
                    match futures::StreamExt::next(&mut bytes).await {
                        Some(Ok(chunk)) => parser.feed(&chunk),
                        Some(Err(source)) => {
                            let e = ClientError::Unreachable {
                                url: url.clone(),
                                source,
                            };
                            return Some((Err(e), (bytes, SseParser::closed(), url)));
                        }
                        None => return None,
                    }
                }
            },
        ))
    }
}

/// One Server-Sent Events message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseMessage {
    pub id: Option<u64>,
    /// `job`, `alert`, `gpu`, `resync`.
    pub event: String,
    pub data: String,
}

/// Splits an SSE byte stream into messages (comments and unknown fields skipped).
#[derive(Default)]
struct SseParser {
    buffer: Vec<u8>,
    current: SseMessage,
    ready: std::collections::VecDeque<SseMessage>,
}

impl SseParser {
    fn closed() -> Self {
        Self::default()
    }

    fn feed(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let m = std::mem::take(&mut self.current);
                if !m.data.is_empty() || !m.event.is_empty() {
                    self.ready.push_back(m);
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.current.id = value.parse().ok(),
                "event" => value.clone_into(&mut self.current.event),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                _ => {}
            }
        }
    }

    fn next_message(&mut self) -> Option<SseMessage> {
        self.ready.pop_front()
    }
}

/// An error answer: darkroom's JSON error, else the body as text.
fn api_error(status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(e) => ClientError::Api {
            status: status.as_u16(),
            code: e.error.code,
            message: e.error.message,
            field: e.error.field,
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            code: String::new(),
            message: String::from_utf8_lossy(bytes).trim().to_owned(),
            field: None,
        },
    }
}

/// Percent-encodes one path segment.
pub(crate) fn encode_segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The timeout of calls that answer at once.
pub(crate) const SHORT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    /// The client speaks TLS (Slack, https webhooks and dashboards attached
    /// over https depend on it): an https URL fails to connect, not to build.
    #[tokio::test]
    async fn https_urls_reach_the_network() {
        let client = ApiClient::new("https://127.0.0.1:9", None).unwrap();
        match client.status().await {
            Err(ClientError::Unreachable { source, .. }) => {
                // Without TLS the connector refuses the scheme before any socket.
                let chain = format!("{source:?}");
                assert!(chain.contains("ConnectionRefused"), "{chain}");
            }
            other => panic!("expected a connection error, got {other:?}"),
        }
    }

    #[test]
    fn sse_messages_split_across_chunks() {
        let mut p = SseParser::default();
        p.feed(b": keep-alive\n\nid: 7\nevent: job\nda");
        assert!(p.next_message().is_none());
        p.feed(b"ta: {\"a\":1}\n\nevent: resync\ndata: x\r\n\r\n");
        let m = p.next_message().unwrap();
        assert_eq!(
            (m.id, m.event.as_str(), m.data.as_str()),
            (Some(7), "job", "{\"a\":1}")
        );
        let r = p.next_message().unwrap();
        assert_eq!((r.id, r.event.as_str()), (None, "resync"));
        assert!(p.next_message().is_none());
    }
}
