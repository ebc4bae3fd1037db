//! The HTTP half of the ComfyUI client: submit, history, queue, cancel, files
//! and server info, each call one request whose errors name the URL.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::{ComfyError, validation_error};
use super::types::{
    HistoryEntry, ImageType, PromptState, QueueSnapshot, Submitted, SystemStats, UploadedImage,
};
use crate::tls::Trust;

/// A handle on one ComfyUI server; cheap to clone.
#[derive(Debug, Clone)]
pub struct ComfyClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: Url,
    http: reqwest::Client,
    /// What the WebSocket trusts over wss:// (the same CAs as `http`).
    tls: Arc<rustls::ClientConfig>,
}

/// A ComfyUI server's base URL, checked (http or https) and ending in `/`: what
/// [`ComfyClient::new`] and the `[comfyui]` validation both accept.
pub fn parse_base_url(base_url: &str) -> Result<Url, ComfyError> {
    let invalid = |reason: String| ComfyError::InvalidUrl {
        url: base_url.to_owned(),
        reason,
    };
    let mut base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(invalid("scheme must be http or https".into()));
    }
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}

impl ComfyClient {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8188`).
    pub fn new(base_url: &str) -> Result<Self, ComfyError> {
        Self::with_timeout(base_url, Duration::from_mins(2))
    }

    /// Like [`Self::new`] with a per-request timeout (connects time out after 5 s).
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self, ComfyError> {
        Self::with_trust(base_url, timeout, &Trust::default())
    }

    /// Like [`Self::with_timeout`], trusting `trust`'s CAs (`tls.ca_file` besides
    /// the public roots) over https:// and wss://.
    pub fn with_trust(base_url: &str, timeout: Duration, trust: &Trust) -> Result<Self, ComfyError> {
        let base = parse_base_url(base_url)?;
        let invalid = |reason: String| ComfyError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout);
        let http = trust
            .reqwest(builder)
            .map_err(|e| invalid(format!("tls.ca_file: {e}")))?
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                base,
                http,
                tls: trust.rustls(),
            }),
        })
    }

    /// The rustls configuration the WebSocket uses over wss://.
    pub(crate) fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.inner.tls.clone()
    }

    /// The base URL, with a trailing slash.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    pub(crate) fn url(&self, path: &str) -> Result<Url, ComfyError> {
        self.inner.base.join(path).map_err(|e| ComfyError::InvalidUrl {
            url: format!("{}{path}", self.inner.base),
            reason: e.to_string(),
        })
    }

    /// Sends a request; returns the body of a 2xx answer, else `Status`.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), ComfyError> {
        let mut req = self.inner.http.request(method, url.clone());
        if let Some(b) = body {
            req = req.json(b);
        }
        self.finish(url, req).await
    }

    async fn finish(
        &self,
        url: Url,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Bytes), ComfyError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ComfyError::from_reqwest(url.as_str(), e))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ComfyError::from_reqwest(url.as_str(), e))?;
        Ok((status, body))
    }

    fn ok_or_status(url: &Url, status: StatusCode, body: &Bytes) -> Result<(), ComfyError> {
        if status.is_success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(body);
        Err(ComfyError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            body: text.chars().take(500).collect(),
        })
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ComfyError> {
        let url = self.url(path)?;
        let (status, body) = self.send(Method::GET, url.clone(), None).await?;
        Self::ok_or_status(&url, status, &body)?;
        decode(&url, &body)
    }

    async fn post_ok(&self, path: &str, body: &Value) -> Result<(), ComfyError> {
        let url = self.url(path)?;
        let (status, resp) = self.send(Method::POST, url.clone(), Some(body)).await?;
        Self::ok_or_status(&url, status, &resp)
    }

    /// Queues an API-format workflow (POST /prompt). A 400 is
    /// [`ComfyError::Validation`] naming the offending nodes and inputs.
    pub async fn submit(&self, workflow: &Value, client_id: &str) -> Result<Submitted, ComfyError> {
        let url = self.url("prompt")?;
        let body = json!({ "prompt": workflow, "client_id": client_id });
        let (status, resp) = self.send(Method::POST, url.clone(), Some(&body)).await?;
        if status == StatusCode::BAD_REQUEST
            && let Some(e) = validation_error(&String::from_utf8_lossy(&resp))
        {
            return Err(e);
        }
        Self::ok_or_status(&url, status, &resp)?;
        decode(&url, &resp)
    }

    /// GET /history/{id}: `None` when ComfyUI has no finished entry (unknown id,
    /// still queued or running, or forgotten by a restart).
    pub async fn history(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, ComfyError> {
        let mut all: serde_json::Map<String, Value> = self.get_json(&format!("history/{prompt_id}")).await?;
        let Some(entry) = all.remove(prompt_id) else {
            return Ok(None);
        };
        let url = self.url(&format!("history/{prompt_id}"))?;
        serde_json::from_value(entry)
            .map(Some)
            .map_err(|source| ComfyError::Decode {
                url: url.to_string(),
                source,
            })
    }

    /// GET /queue: running and pending prompt ids.
    pub async fn queue(&self) -> Result<QueueSnapshot, ComfyError> {
        let v: Value = self.get_json("queue").await?;
        QueueSnapshot::from_value(&v).ok_or_else(|| ComfyError::Decode {
            url: self
                .inner
                .base
                .join("queue")
                .map(String::from)
                .unwrap_or_default(),
            source: <serde_json::Error as serde::de::Error>::custom(
                "expected queue_running and queue_pending arrays",
            ),
        })
    }

    /// POST /queue `{"delete": ids}`: removes pending prompts (running ones stay;
    /// unknown ids are ignored by ComfyUI).
    pub async fn delete_from_queue(&self, prompt_ids: &[String]) -> Result<(), ComfyError> {
        self.post_ok("queue", &json!({ "delete": prompt_ids })).await
    }

    /// POST /interrupt `{"prompt_id"}`: stops the prompt if it is the running one,
    /// between nodes.
    pub async fn interrupt(&self, prompt_id: &str) -> Result<(), ComfyError> {
        self.post_ok("interrupt", &json!({ "prompt_id": prompt_id }))
            .await
    }

    /// GET /models/{folder}: the model files ComfyUI has there (sub-folders with
    /// `/`). An unknown folder answers 404: none.
    pub async fn models(&self, folder: &str) -> Result<Vec<String>, ComfyError> {
        match self.get_json(&format!("models/{folder}")).await {
            Err(ComfyError::Status { status: 404, .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    /// POST /free `{"unload_models": true, "free_memory": true}`: unloads every
    /// model between prompts, so the next one loads into free VRAM.
    pub async fn free(&self) -> Result<(), ComfyError> {
        self.post_ok("free", &json!({ "unload_models": true, "free_memory": true }))
            .await
    }

    /// GET /view: the bytes of one file ComfyUI wrote.
    pub async fn view(&self, filename: &str, subfolder: &str, kind: ImageType) -> Result<Bytes, ComfyError> {
        let mut url = self.url("view")?;
        url.query_pairs_mut()
            .append_pair("filename", filename)
            .append_pair("subfolder", subfolder)
            .append_pair("type", kind.as_str());
        let (status, body) = self.send(Method::GET, url.clone(), None).await?;
        Self::ok_or_status(&url, status, &body)?;
        Ok(body)
    }

    /// POST /upload/image (multipart) into `subfolder` of ComfyUI's input folder
    /// (`""`: the folder itself). Identical bytes keep their name; different
    /// bytes under a taken name are renamed (`name (1).png`): use the answer.
    pub async fn upload_image(
        &self,
        name: &str,
        subfolder: &str,
        bytes: Bytes,
    ) -> Result<UploadedImage, ComfyError> {
        let url = self.url("upload/image")?;
        let part = reqwest::multipart::Part::stream(bytes).file_name(name.to_owned());
        let form = reqwest::multipart::Form::new()
            .part("image", part)
            .text("type", "input")
            .text("subfolder", subfolder.to_owned());
        let req = self.inner.http.post(url.clone()).multipart(form);
        let (status, body) = self.finish(url.clone(), req).await?;
        Self::ok_or_status(&url, status, &body)?;
        decode(&url, &body)
    }

    /// GET /system_stats: versions, RAM and devices (the health check).
    pub async fn system_stats(&self) -> Result<SystemStats, ComfyError> {
        self.get_json("system_stats").await
    }

    /// GET /object_info: every node class with its inputs.
    pub async fn object_info(&self) -> Result<Value, ComfyError> {
        self.get_json("object_info").await
    }

    /// Where a prompt stands, from /queue then /history (in that order, so a
    /// prompt finishing between the two calls is seen in history). ComfyUI's
    /// history is `{}` while a prompt is queued or running, and after a restart
    /// both are empty: that is [`PromptState::Unknown`].
    pub async fn poll_status(&self, prompt_id: &str) -> Result<PromptState, ComfyError> {
        let queue = self.queue().await?;
        if queue.is_running(prompt_id) {
            return Ok(PromptState::Running);
        }
        if queue.is_pending(prompt_id) {
            return Ok(PromptState::Queued);
        }
        Ok(match self.history(prompt_id).await? {
            Some(entry) => entry.state(),
            None => PromptState::Unknown,
        })
    }
}

fn decode<T: DeserializeOwned>(url: &Url, body: &[u8]) -> Result<T, ComfyError> {
    serde_json::from_slice(body).map_err(|source| ComfyError::Decode {
        url: url.to_string(),
        source,
    })
}
