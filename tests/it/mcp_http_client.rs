//! rmcp's Streamable HTTP client transport over the reqwest 0.12 the project
//! already depends on, so the MCP tests drive `/mcp` with rmcp's real client as
//! they drive stdio. rmcp ships such a client only behind its
//! `transport-streamable-http-client-reqwest` feature, which is built on reqwest
//! 0.13: a second reqwest in the tree for one test. rmcp's transport is generic
//! over [`StreamableHttpClient`] (one POST, GET or DELETE at a time), so this is
//! only that HTTP layer; the protocol above it (the session id, the handshake,
//! the standalone GET stream, SSE reconnection, closing the session) stays
//! rmcp's own. It leaves out what a test against our own server does not need:
//! response size limits and `server/discover` fallbacks for old servers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use http::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, StatusCode};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, InsufficientScopeError, SseError, StreamableHttpClient, StreamableHttpClientTransport,
    StreamableHttpClientTransportConfig, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Sse, SseStream};

const SESSION_ID: &str = "Mcp-Session-Id";
const LAST_EVENT_ID: &str = "Last-Event-Id";
const EVENT_STREAM: &str = "text/event-stream";
const JSON: &str = "application/json";

type Error = StreamableHttpError<reqwest::Error>;

/// A reqwest 0.12 client as rmcp's HTTP layer. No overall timeout: the GET
/// stream stays open for the session; the tests bound their own waits.
#[derive(Clone, Default)]
pub struct Reqwest012(reqwest::Client);

/// rmcp's Streamable HTTP client transport to `url`, sending `token` as the
/// bearer token when there is one.
pub fn transport(url: &str, token: Option<&str>) -> StreamableHttpClientTransport<Reqwest012> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url);
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    StreamableHttpClientTransport::with_client(Reqwest012::default(), config)
}

/// What every request carries: the token, the session, rmcp's headers (the
/// negotiated `MCP-Protocol-Version` among them).
fn common(
    mut req: reqwest::RequestBuilder,
    session_id: Option<&str>,
    auth_header: Option<String>,
    custom_headers: HashMap<HeaderName, HeaderValue>,
) -> reqwest::RequestBuilder {
    if let Some(token) = auth_header {
        req = req.bearer_auth(token);
    }
    if let Some(session_id) = session_id {
        req = req.header(SESSION_ID, session_id);
    }
    for (name, value) in custom_headers {
        req = req.header(name, value);
    }
    req
}

async fn send(req: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
    req.send().await.map_err(StreamableHttpError::Client)
}

/// A 401 or 403 with a challenge, as rmcp's own clients report them.
fn refusal(resp: &reqwest::Response) -> Option<Error> {
    let challenge = resp.headers().get(WWW_AUTHENTICATE)?;
    let challenge = String::from_utf8_lossy(challenge.as_bytes()).into_owned();
    match resp.status() {
        StatusCode::UNAUTHORIZED => Some(StreamableHttpError::AuthRequired(AuthRequiredError::new(
            challenge,
        ))),
        StatusCode::FORBIDDEN => Some(StreamableHttpError::InsufficientScope(
            InsufficientScopeError::new(challenge, None),
        )),
        _ => None,
    }
}

fn content_type(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn is(content_type: Option<&str>, mime: &str) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case(mime))
    })
}

/// The body as the SSE events rmcp reads messages from.
fn events(resp: reqwest::Response) -> BoxStream<'static, Result<Sse, SseError>> {
    SseStream::from_bytes_stream(resp.bytes_stream()).boxed()
}

impl StreamableHttpClient for Reqwest012 {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let req = self
            .0
            .post(uri.as_ref())
            .header(ACCEPT, format!("{EVENT_STREAM}, {JSON}"))
            .json(&message);
        let req = common(req, session_id.as_deref(), auth_header, custom_headers);
        let resp = send(req).await?;
        if let Some(e) = refusal(&resp) {
            return Err(e);
        }
        let status = resp.status();
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        let session = resp
            .headers()
            .get(SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let ct = content_type(&resp);
        if !status.is_success() {
            // A JSON-RPC error is the server's answer; anything else is a failure.
            let body = resp.text().await.map_err(StreamableHttpError::Client)?;
            return match serde_json::from_str::<ServerJsonRpcMessage>(&body) {
                Ok(e @ ServerJsonRpcMessage::Error(_)) => Ok(StreamableHttpPostResponse::Json(e, session)),
                _ => Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                    format!("HTTP {status}: {body}"),
                ))),
            };
        }
        if is(ct.as_deref(), EVENT_STREAM) {
            return Ok(StreamableHttpPostResponse::Sse(events(resp), session));
        }
        if is(ct.as_deref(), JSON) {
            let body = resp.bytes().await.map_err(StreamableHttpError::Client)?;
            let answer = serde_json::from_slice(&body)?;
            return Ok(StreamableHttpPostResponse::Json(answer, session));
        }
        // Nothing awaited (a notification or a reply): any 2xx will do.
        if !matches!(message, ClientJsonRpcMessage::Request(_)) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        Err(StreamableHttpError::UnexpectedContentType(ct))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        let req = self.0.delete(uri.as_ref());
        let req = common(req, Some(&session_id), auth_header, custom_headers);
        let resp = send(req).await?;
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(());
        }
        resp.error_for_status()
            .map(drop)
            .map_err(StreamableHttpError::Client)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let mut req = self
            .0
            .get(uri.as_ref())
            .header(ACCEPT, format!("{EVENT_STREAM}, {JSON}"));
        if let Some(id) = last_event_id {
            req = req.header(LAST_EVENT_ID, id);
        }
        let req = common(req, session_id.as_deref(), auth_header, custom_headers);
        let resp = send(req).await?;
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if let Some(e) = refusal(&resp) {
            return Err(e);
        }
        let resp = resp.error_for_status().map_err(StreamableHttpError::Client)?;
        let ct = content_type(&resp);
        if !is(ct.as_deref(), EVENT_STREAM) {
            return Err(StreamableHttpError::UnexpectedContentType(ct));
        }
        Ok(events(resp))
    }
}
