//! A typed client of darkroom's HTTP API, for the command-line tools (`darkroom
//! submit`, `jobs`, `status`) and the dashboard's remote mode. Errors carry the
//! API's own message and the field it names.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{ErrorBody, JobPage};
use crate::queue::Job;
use crate::status::StatusSnapshot;

/// What a call to the API can end with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach darkroom at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("darkroom answered {status}: {message}{}", field.as_ref().map(|f| format!(" (field `{f}`)")).unwrap_or_default())]
    Api {
        status: u16,
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
        let url =
            reqwest::Url::parse(base).map_err(|e| ClientError::Invalid(format!("--url {base:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::Invalid(format!(
                "--url {base:?}: must be http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
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

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(StatusCode, T), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).timeout(timeout);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
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
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => ClientError::Api {
                    status: status.as_u16(),
                    message: e.error.message,
                    field: e.error.field,
                },
                Err(_) => ClientError::Api {
                    status: status.as_u16(),
                    message: String::from_utf8_lossy(&bytes).trim().to_owned(),
                    field: None,
                },
            });
        }
        serde_json::from_slice(&bytes)
            .map(|v| (status, v))
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Submits a job request (`JobRequest` JSON); with `wait`, holds until it ends.
    pub async fn submit(&self, request: &Value, wait: Option<u64>) -> Result<Job, ClientError> {
        let path = match wait {
            Some(w) => format!("/api/v1/jobs?wait={w}"),
            None => "/api/v1/jobs".to_owned(),
        };
        let timeout = Duration::from_secs(wait.unwrap_or(0) + 30);
        Ok(self.call(Method::POST, &path, Some(request), timeout).await?.1)
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
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("limit", &limit.to_string());
        if let Some(s) = status {
            query.append_pair("status", s);
        }
        if let Some(c) = cursor {
            query.append_pair("cursor", c);
        }
        let path = format!("/api/v1/jobs?{}", query.finish());
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
}

/// The timeout of calls that answer at once.
const SHORT: Duration = Duration::from_secs(30);
