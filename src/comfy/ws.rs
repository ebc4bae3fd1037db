//! The WebSocket half of the ComfyUI client: a stream of typed events for one
//! clientId, and [`wait_for_completion`], which follows a prompt to its end over
//! the socket, reconnecting with the same clientId and polling /queue + /history
//! whenever the socket is gone, so a job is never stuck on a lost connection.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::client::ComfyClient;
use super::error::ComfyError;
use super::events::{BinaryImage, ComfyEvent};
use super::types::PromptState;

/// Events of one WebSocket connection; it ends when the socket closes or breaks.
/// A frame that fails to parse is an `Err` item and the stream goes on.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ComfyEvent, ComfyError>> + Send>>;

impl ComfyClient {
    /// The `/ws?clientId=` URL for `client_id`.
    pub fn ws_url(&self, client_id: &str) -> Result<String, ComfyError> {
        let mut url = self.url("ws")?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme).map_err(|()| ComfyError::InvalidUrl {
            url: url.to_string(),
            reason: "cannot switch to a WebSocket scheme".into(),
        })?;
        url.query_pairs_mut().append_pair("clientId", client_id);
        Ok(url.into())
    }

    /// Opens `/ws?clientId=client_id`. Job events reach only the socket whose
    /// clientId matches the one given to [`ComfyClient::submit`]; reconnecting with
    /// the same id picks them up again.
    pub async fn connect_events(&self, client_id: &str) -> Result<EventStream, ComfyError> {
        let url = self.ws_url(client_id)?;
        // Over wss:// the same CAs as the HTTP client (ignored for ws://).
        let connector = tokio_tungstenite::Connector::Rustls(self.tls());
        let (socket, _) =
            tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, false, Some(connector))
                .await
                .map_err(|e| ws_error(&url, e))?;
        let log_url = url.clone();
        let stream = socket
            .scan(false, move |broken, msg| {
                let item = if *broken {
                    None
                } else {
                    match msg {
                        Ok(Message::Text(text)) => {
                            Some(Some(ComfyEvent::from_text(&text).map_err(|source| {
                                ComfyError::Event {
                                    url: url.clone(),
                                    source,
                                }
                            })))
                        }
                        Ok(Message::Binary(bytes)) => Some(ComfyEvent::from_binary(&bytes).map(Ok)),
                        Ok(Message::Close(_)) => None,
                        Ok(_) => Some(None),
                        Err(e) => {
                            *broken = true;
                            Some(Some(Err(ws_error(&url, e))))
                        }
                    }
                };
                futures::future::ready(item)
            })
            .filter_map(futures::future::ready);
        let mut stream: EventStream = Box::pin(stream);
        // ComfyUI registers the socket for its clientId just after the handshake
        // and then greets it with a `status` frame; a prompt submitted before that
        // would send its first messages to nobody. So wait for the greeting (not
        // forever: an old or odd server may not send one) and keep it in the stream.
        match tokio::time::timeout(GREETING_WAIT, stream.next()).await {
            Ok(Some(first)) => Ok(Box::pin(futures::stream::iter([first]).chain(stream))),
            Ok(None) => Ok(stream),
            Err(_) => {
                tracing::debug!(url = %log_url, "no status greeting on the WebSocket; going on");
                Ok(stream)
            }
        }
    }
}

/// How long [`ComfyClient::connect_events`] waits for ComfyUI's greeting.
const GREETING_WAIT: Duration = Duration::from_secs(2);

fn ws_error(url: &str, e: tokio_tungstenite::tungstenite::Error) -> ComfyError {
    if let Some(reason) = crate::tls::client::certificate_problem(&e) {
        return ComfyError::Untrusted {
            url: url.to_owned(),
            reason,
        };
    }
    ComfyError::WebSocket {
        url: url.to_owned(),
        source: Box::new(e),
    }
}

/// How a followed prompt ended.
#[derive(Debug, Clone)]
pub struct Completion {
    /// `Done`, `Failed` or `Unknown` (ComfyUI forgot the prompt: it restarted).
    pub state: PromptState,
    /// Images that arrived as binary frames while the prompt ran, each with the
    /// node that sent it (`SaveImageWebsocket`'s outputs, which are not in
    /// `/history`, and any step previews: the caller tells them apart by node).
    pub ws_images: Vec<BinaryImage>,
    /// How many times the socket had to be reopened.
    pub reconnects: u32,
}

/// Follows `prompt_id` (submitted with `client_id`) until it ends. Events are
/// passed to `on_event` as they come (progress for the job record). When the
/// socket drops, it polls every `poll_interval` and reconnects with the same
/// clientId; the final state always comes from `/history`, so outputs are complete.
///
/// ComfyUI drops messages for a clientId with no socket open, so pass the socket
/// opened *before* the prompt was submitted as `connected`: otherwise the first
/// progress messages and binary images of a fast prompt are lost.
pub async fn wait_for_completion(
    client: &ComfyClient,
    client_id: &str,
    prompt_id: &str,
    poll_interval: Duration,
    mut connected: Option<EventStream>,
    mut on_event: impl FnMut(&ComfyEvent),
) -> Result<Completion, ComfyError> {
    let mut ws_images = Vec::new();
    let mut reconnects = 0u32;
    let mut ticker = tokio::time::interval(poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ours = false;
    // The node of ours that is executing: binary frames name no node of their own.
    let mut current: Option<String> = None;
    loop {
        let opened = match connected.take() {
            Some(s) => Ok(s),
            None => client.connect_events(client_id).await,
        };
        let mut events = match opened {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(error = %e, "ComfyUI WebSocket unavailable; polling");
                None
            }
        };
        // Anything may have happened while no socket listened: ask once.
        let state = client.poll_status(prompt_id).await?;
        if state.is_terminal() {
            // A fast prompt may be over already, its messages (progress, images
            // sent as binary frames) waiting in the socket: take them first.
            if let Some(s) = events.as_mut() {
                let mut seen = Seen {
                    prompt_id,
                    ours: &mut ours,
                    current: &mut current,
                    ws_images: &mut ws_images,
                };
                while let Ok(Some(item)) = tokio::time::timeout(DRAIN_WAIT, s.next()).await {
                    let Ok(mut event) = item else { continue };
                    seen.note(&mut event);
                    on_event(&event);
                    if event.is_terminal() && event.prompt_id() == Some(prompt_id) {
                        break;
                    }
                }
            }
            return Ok(Completion {
                state,
                ws_images,
                reconnects,
            });
        }
        ticker.reset();
        loop {
            let next = async {
                match events.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                item = next => match item {
                    Some(Ok(mut event)) => {
                        Seen {
                            prompt_id,
                            ours: &mut ours,
                            current: &mut current,
                            ws_images: &mut ws_images,
                        }
                        .note(&mut event);
                        on_event(&event);
                        if event.is_terminal() && event.prompt_id() == Some(prompt_id) {
                            let state = client.poll_status(prompt_id).await?;
                            if state.is_terminal() {
                                return Ok(Completion { state, ws_images, reconnects });
                            }
                        }
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "bad ComfyUI frame skipped"),
                    None => {
                        events = None;
                        reconnects += 1;
                        break;
                    }
                },
                _ = ticker.tick() => {
                    let state = client.poll_status(prompt_id).await?;
                    if state.is_terminal() {
                        return Ok(Completion { state, ws_images, reconnects });
                    }
                    if events.is_none() {
                        reconnects += 1;
                        break;
                    }
                }
            }
        }
        drop(events);
    }
}

/// How long a finished prompt's messages are waited for in its socket.
const DRAIN_WAIT: Duration = Duration::from_millis(200);

/// What following a prompt keeps track of as events arrive.
struct Seen<'a> {
    prompt_id: &'a str,
    /// The last `executing` was for this prompt.
    ours: &'a mut bool,
    /// Its node that is executing: binary frames name no node of their own.
    current: &'a mut Option<String>,
    ws_images: &'a mut Vec<BinaryImage>,
}

impl Seen<'_> {
    fn note(&mut self, event: &mut ComfyEvent) {
        match event {
            ComfyEvent::Executing { prompt_id: p, node } => {
                *self.ours = p.as_deref() == Some(self.prompt_id);
                *self.current = if *self.ours { node.clone() } else { None };
            }
            ComfyEvent::Binary(img) if *self.ours => {
                if img.node.is_none() {
                    img.node.clone_from(self.current);
                }
                self.ws_images.push(img.clone());
            }
            _ => {}
        }
    }
}
