//! A fake ComfyUI for tests: a real axum HTTP + WebSocket server on a port-0
//! listener that answers with the shapes recorded from a real ComfyUI in
//! `tests/fixtures/comfyui/`. It runs one prompt at a time and emits the recorded
//! message order. Tests script it through [`Ctl`]: hold a prompt at a gate until
//! released, fail the next prompt with `execution_error`,
//! drop the WebSocket mid-job, restart (forgetting queue and history), send step
//! previews as binary frames (event 1, JPEG, as a sampler's are), serve another
//! image from `/view`, take uploads (`/upload/image`, `upload.rs`), and count what
//! reached it. Nothing here sleeps to wait for something: the runner waits on
//! `Notify`s. The one sleep is `set_work`, simulated GPU time for the scale-out
//! bench; no test sets it.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc, watch};

use run::run_queue;

// Paths relative to this file, so benches/dispatch.rs can include the fake too.
#[path = "fake_comfy/models.rs"]
mod models;
#[path = "fake_comfy/run.rs"]
mod run;
#[path = "fake_comfy/tls.rs"]
pub mod tls;
#[path = "fake_comfy/upload.rs"]
mod upload;

pub const PNG: &[u8] = include_bytes!("../fixtures/comfyui/view_output.png");
const SYSTEM_STATS: &str = include_str!("../fixtures/comfyui/system_stats.json");
/// The whole `/object_info` of the recorded server (496 node classes).
const OBJECT_INFO: &str = include_str!("../fixtures/comfyui/object_info.json");
const KNOWN_CLASSES: &[&str] = &[
    "EmptyImage",
    "ImageInvert",
    "ImageScale",
    "ImageBlur",
    "SaveImage",
    "PreviewImage",
    "SaveImageWebsocket",
    "LoadImage",
    "ImageScaleBy",
    "VAEEncode",
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "EmptyLatentImage",
    "KSampler",
    "VAEDecode",
];
const OUTPUT_CLASSES: &[&str] = &["SaveImage", "PreviewImage", "SaveImageWebsocket"];

/// A running fake; dropping it stops the server.
pub struct FakeComfy {
    pub url: String,
    pub ctl: Arc<Ctl>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeComfy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The test's handle on the fake.
#[derive(Default)]
pub struct Ctl {
    state: Mutex<State>,
    wake: Notify,
    gate: Notify,
    held: watch::Sender<Option<String>>,
    finished: watch::Sender<u64>,
    /// Interrupt and queue-delete requests received so far.
    stops: watch::Sender<usize>,
    /// `/system_stats` requests (darkroom's health checks) received so far.
    health_checks: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    pending: VecDeque<Job>,
    running: Option<Job>,
    history: Map<String, Value>,
    files: HashSet<(String, String, String)>,
    number: i64,
    counter: u32,
    generation: u64,
    sockets: Vec<(String, mpsc::UnboundedSender<Out>)>,
    hold: bool,
    /// Simulated GPU time per prompt (the scale-out bench; tests leave it at zero).
    work: std::time::Duration,
    fail_next: Option<(String, String)>,
    drop_ws_next: bool,
    interrupt: Option<String>,
    prompts_received: usize,
    interrupts: Vec<Option<String>>,
    /// (total, free) VRAM of a CUDA device replacing the recorded CPU-only one.
    gpu: Option<(u64, u64)>,
    /// JPEG step previews each prompt sends at the gate's node.
    previews: Vec<Vec<u8>>,
    /// What `/view` serves instead of the recorded PNG.
    image: Option<Bytes>,
    deletes: Vec<String>,
    uploads: Vec<String>,
    /// Uploaded input files by (subfolder, name) (`upload.rs`).
    inputs: std::collections::HashMap<(String, String), Bytes>,
    /// The files LoadImage nodes of accepted prompts named.
    loaded: Vec<String>,
    /// Model files, GPU memory and the loaded model (`models.rs`).
    models: models::ModelState,
}

#[derive(Clone)]
struct Job {
    id: String,
    number: i64,
    workflow: Value,
    client_id: String,
}

enum Out {
    Msg(Message),
    Drop,
}

impl FakeComfy {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let ctl = Arc::new(Ctl::default());
        let app = app(&ctl);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let runner = tokio::spawn(run_queue(ctl.clone()));
        Self {
            url,
            ctl,
            tasks: vec![server, runner],
        }
    }
}

impl Ctl {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
    /// Each prompt from now on takes `work` of simulated GPU time, as a real GPU
    /// would: what makes throughput grow with nodes in the scale-out bench.
    #[allow(dead_code)] // only benches/cluster.rs uses it
    pub fn set_work(&self, work: std::time::Duration) {
        self.lock().work = work;
    }
    /// Prompts from now on send these JPEG step previews (binary frames, event 1)
    /// while their second node runs, each followed by a `progress` message, just
    /// before the gate.
    pub fn previews(&self, frames: Vec<Vec<u8>>) {
        self.lock().previews = frames;
    }
    /// `/view` serves `png` for every output from now on.
    pub fn set_image(&self, png: Vec<u8>) {
        self.lock().image = Some(png.into());
    }
    /// Prompts from now on wait at a gate (after their first node) until released.
    pub fn hold(&self, on: bool) {
        self.lock().hold = on;
    }
    /// `/system_stats` reports one CUDA device with this VRAM (the recording is
    /// from a `--cpu` server).
    pub fn set_gpu(&self, total: u64, free: u64) {
        self.lock().gpu = Some((total, free));
    }
    /// Waits until a prompt is held at the gate; returns its id.
    pub async fn wait_held(&self) -> String {
        let mut rx = self.held.subscribe();
        let held = bounded("a prompt held at the gate", rx.wait_for(Option::is_some))
            .await
            .unwrap();
        held.clone().unwrap()
    }
    /// Lets the held prompt go on.
    pub fn release(&self) {
        self.gate.notify_one();
    }
    /// The next prompt fails at its second node with this exception.
    pub fn fail_next(&self, exception_type: &str, message: &str) {
        self.lock().fail_next = Some((exception_type.into(), message.into()));
    }
    /// The next prompt drops its client's WebSockets (no close frame) mid-job.
    pub fn drop_ws_next(&self) {
        self.lock().drop_ws_next = true;
    }
    /// A ComfyUI restart: queue, history and sockets are gone.
    pub fn restart(&self) {
        let was_held = {
            let mut s = self.lock();
            s.generation += 1;
            s.pending.clear();
            s.running = None;
            s.history.clear();
            for (_, tx) in s.sockets.drain(..) {
                let _ = tx.send(Out::Drop);
            }
            self.held.borrow().is_some()
        };
        if was_held {
            self.gate.notify_one();
        }
    }
    /// Waits until `n` prompts have finished (success, error or interrupt).
    pub async fn wait_finished(&self, n: u64) {
        let mut rx = self.finished.subscribe();
        bounded(&format!("{n} finished prompts"), rx.wait_for(|c| *c >= n))
            .await
            .unwrap();
    }
    /// Waits until `n` interrupt or queue-delete requests have arrived.
    pub async fn wait_stops(&self, n: usize) {
        let mut rx = self.stops.subscribe();
        bounded(&format!("{n} interrupts or deletes"), rx.wait_for(|c| *c >= n))
            .await
            .unwrap();
    }
    /// Waits until darkroom has made a whole health check (stats, then model
    /// files) that began after this call: the second `/system_stats` request from
    /// now starts only once the pass the first one began has ended.
    #[allow(dead_code)] // not every includer waits on health checks
    pub async fn health_checked(&self) {
        let mut rx = self.health_checks.subscribe();
        let seen = *rx.borrow_and_update();
        bounded("a whole health check", rx.wait_for(|n| *n >= seen + 2))
            .await
            .unwrap();
    }
    pub fn prompts_received(&self) -> usize {
        self.lock().prompts_received
    }
    pub fn interrupts(&self) -> Vec<Option<String>> {
        self.lock().interrupts.clone()
    }
    pub fn deletes(&self) -> Vec<String> {
        self.lock().deletes.clone()
    }
    /// Uploads received, as `subfolder/name` (or `name`) answered.
    pub fn uploads(&self) -> Vec<String> {
        self.lock().uploads.clone()
    }
    /// What LoadImage nodes of accepted prompts read.
    pub fn load_images(&self) -> Vec<String> {
        self.lock().loaded.clone()
    }
    /// The bytes of an uploaded input.
    pub fn input(&self, subfolder: &str, name: &str) -> Option<Bytes> {
        self.lock().inputs.get(&(subfolder.into(), name.into())).cloned()
    }

    fn send_to(&self, client_id: Option<&str>, kind: &str, data: Value) {
        let mut frame = Map::new();
        frame.insert("type".into(), kind.into());
        frame.insert("data".into(), data);
        let text = Value::Object(frame).to_string();
        self.send_raw(client_id, &Message::Text(text.into()));
    }
    fn send_raw(&self, client_id: Option<&str>, msg: &Message) {
        self.lock().sockets.retain(|(cid, tx)| {
            client_id.is_some_and(|c| c != cid) || tx.send(Out::Msg(msg.clone())).is_ok()
        });
    }
    fn broadcast_status(&self) {
        let remaining = {
            let s = self.lock();
            s.pending.len() + usize::from(s.running.is_some())
        };
        self.send_to(
            None,
            "status",
            json!({"status": {"exec_info": {"queue_remaining": remaining}}}),
        );
    }
}

/// The fake's whole HTTP + WebSocket surface, at `/` and under `/api`.
fn app(ctl: &Arc<Ctl>) -> Router {
    Router::new()
        .merge(routes())
        .nest("/api", routes())
        .with_state(ctl.clone())
}

fn routes() -> Router<Arc<Ctl>> {
    Router::new()
        .route("/prompt", post(post_prompt))
        .route("/history/{id}", get(get_history))
        .route("/queue", get(get_queue).post(post_queue))
        .route("/interrupt", post(post_interrupt))
        .route("/view", get(get_view))
        .route("/upload/image", post(upload::upload_image))
        .route("/system_stats", get(system_stats))
        .route("/models", get(models::folders))
        .route("/models/{folder}", get(models::files))
        .route("/free", post(models::free))
        .route("/object_info", get(|| async { json_text(OBJECT_INFO) }))
        .route("/object_info/{class}", get(object_info_of))
        .route("/ws", get(ws_upgrade))
}

/// GET /object_info/{class}: `{CLASS: {...}}`, or `{}` for a class the server
/// lacks (as recorded: `object_info_unknown.json`).
async fn object_info_of(Path(class): Path<String>) -> Response {
    static ALL: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let all = ALL.get_or_init(|| serde_json::from_str(OBJECT_INFO).unwrap_or_default());
    let mut one = Map::new();
    if let Some(info) = all.get(&class) {
        one.insert(class, info.clone());
    }
    Json(Value::Object(one)).into_response()
}

fn json_text(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn bad_request(kind: &str, message: &str, details: &str, node_errors: Value) -> Response {
    let mut body = json!({
        "error": {"type": kind, "message": message, "details": details, "extra_info": {}},
    });
    body["node_errors"] = node_errors;
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// Node ids in ComfyUI's order (numeric where they are numbers).
fn node_ids(workflow: &Value) -> Vec<String> {
    let mut ids: Vec<String> = workflow
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), id.clone()));
    ids
}

fn class_of<'a>(workflow: &'a Value, id: &str) -> &'a str {
    workflow[id]["class_type"].as_str().unwrap_or_default()
}

/// The recorded validation answers: unknown class, no outputs, a size below 1.
fn validate(workflow: &Value) -> Option<Response> {
    let ids = node_ids(workflow);
    for id in &ids {
        let class = class_of(workflow, id);
        if !KNOWN_CLASSES.contains(&class) {
            let msg = format!("Cannot execute because node {class} does not exist.");
            return Some(bad_request(
                "invalid_prompt",
                &msg,
                &format!("Node ID '#{id}'"),
                json!({}),
            ));
        }
    }
    let outputs: Vec<&String> = ids
        .iter()
        .filter(|id| OUTPUT_CLASSES.contains(&class_of(workflow, id)))
        .collect();
    if outputs.is_empty() {
        return Some(bad_request(
            "prompt_no_outputs",
            "Prompt has no outputs",
            "",
            json!({}),
        ));
    }
    let mut node_errors = Map::new();
    for id in &ids {
        for input in ["width", "height"] {
            let Some(v) = workflow[id]["inputs"][input].as_i64() else {
                continue;
            };
            if v < 1 {
                let entry = node_errors.entry(id.clone()).or_insert_with(|| {
                    json!({"errors": [], "dependent_outputs": outputs, "class_type": class_of(workflow, id)})
                });
                entry["errors"].as_array_mut().unwrap().push(json!({
                    "type": "value_smaller_than_min",
                    "message": format!("Value {v} smaller than min of 1"),
                    "details": input,
                    "extra_info": {"input_name": input, "input_config": ["INT", {"min": 1}], "received_value": v},
                }));
            }
        }
    }
    (!node_errors.is_empty()).then(|| {
        bad_request(
            "prompt_outputs_failed_validation",
            "Prompt outputs failed validation",
            "",
            Value::Object(node_errors),
        )
    })
}

async fn post_prompt(AxState(ctl): AxState<Arc<Ctl>>, body: Bytes) -> Response {
    ctl.lock().prompts_received += 1;
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error\n\nServer got itself in trouble",
        )
            .into_response();
    };
    let Some(workflow) = body.get("prompt").filter(|p| p.is_object()) else {
        return bad_request("no_prompt", "No prompt provided", "No prompt provided", json!({}));
    };
    if let Some(resp) = validate(workflow)
        .or_else(|| models::validate(&ctl, workflow))
        .or_else(|| upload::validate(&ctl, workflow))
    {
        return resp;
    }
    let id = body["prompt_id"]
        .as_str()
        .map_or_else(|| ulid::Ulid::new().to_string().to_lowercase(), str::to_owned);
    let number = {
        let mut s = ctl.lock();
        let number = s.number;
        s.number += 1;
        s.pending.push_back(Job {
            id: id.clone(),
            number,
            workflow: workflow.clone(),
            client_id: body["client_id"].as_str().unwrap_or_default().to_owned(),
        });
        number
    };
    ctl.broadcast_status();
    ctl.wake.notify_one();
    Json(json!({"prompt_id": id, "number": number, "node_errors": {}})).into_response()
}

async fn get_history(AxState(ctl): AxState<Arc<Ctl>>, Path(id): Path<String>) -> Json<Value> {
    let s = ctl.lock();
    Json(s.history.get(&id).map_or_else(|| json!({}), |e| json!({ id: e })))
}

fn queue_entry(j: &Job) -> Value {
    json!([j.number, j.id, j.workflow, {"client_id": j.client_id}, []])
}

async fn get_queue(AxState(ctl): AxState<Arc<Ctl>>) -> Json<Value> {
    let s = ctl.lock();
    Json(json!({
        "queue_running": s.running.iter().map(queue_entry).collect::<Vec<_>>(),
        "queue_pending": s.pending.iter().map(queue_entry).collect::<Vec<_>>(),
    }))
}

async fn system_stats(AxState(ctl): AxState<Arc<Ctl>>) -> Response {
    ctl.health_checks.send_modify(|n| *n += 1);
    let gpu = {
        let s = ctl.lock();
        s.gpu
            .map(|(total, free)| (total, s.models.free_vram(total, free)))
    };
    let Some((total, free)) = gpu else {
        return json_text(SYSTEM_STATS);
    };
    let mut stats: Value = serde_json::from_str(SYSTEM_STATS).unwrap();
    // The shape a CUDA ComfyUI reports.
    stats["devices"] = json!([{
        "name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync", "type": "cuda", "index": 0,
        "vram_total": total, "vram_free": free, "torch_vram_total": total, "torch_vram_free": free
    }]);
    Json(stats).into_response()
}

async fn post_queue(AxState(ctl): AxState<Arc<Ctl>>, Json(body): Json<Value>) -> StatusCode {
    let mut s = ctl.lock();
    let deleted = s.deletes.len();
    if body["clear"].as_bool() == Some(true) {
        s.pending.clear();
    }
    for id in body["delete"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        s.pending.retain(|j| j.id != id);
        s.deletes.push(id.to_owned());
    }
    let added = s.deletes.len() - deleted;
    drop(s);
    ctl.stops.send_modify(|n| *n += added);
    StatusCode::OK
}

async fn post_interrupt(AxState(ctl): AxState<Arc<Ctl>>, body: Bytes) -> StatusCode {
    let wanted = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["prompt_id"].as_str().map(str::to_owned));
    let hit = {
        let mut s = ctl.lock();
        s.interrupts.push(wanted.clone());
        let running = s.running.as_ref().map(|j| j.id.clone());
        let hit = running.filter(|r| wanted.as_ref().is_none_or(|w| w == r));
        s.interrupt.clone_from(&hit);
        hit
    };
    if hit.is_some() && ctl.held.borrow().as_ref() == hit.as_ref() {
        ctl.gate.notify_one();
    }
    ctl.stops.send_modify(|n| *n += 1);
    StatusCode::OK
}

async fn get_view(
    AxState(ctl): AxState<Arc<Ctl>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let (filename, subfolder, kind) = (get("filename"), get("subfolder"), get("type"));
    if filename.contains("..") || subfolder.contains("..") || filename.contains('/') {
        return StatusCode::FORBIDDEN.into_response();
    }
    let image = {
        let s = ctl.lock();
        if !s.files.contains(&(subfolder, filename.clone(), kind)) {
            return StatusCode::NOT_FOUND.into_response();
        }
        s.image.clone().unwrap_or_else(|| Bytes::from_static(PNG))
    };
    let disposition = format!("filename=\"{filename}\"");
    (
        [
            (header::CONTENT_TYPE, "image/png".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        image,
    )
        .into_response()
}

async fn ws_upgrade(
    AxState(ctl): AxState<Arc<Ctl>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let client_id = q
        .get("clientId")
        .cloned()
        .unwrap_or_else(|| ulid::Ulid::new().to_string());
    ws.on_upgrade(move |socket| serve_ws(ctl, client_id, socket))
}

async fn serve_ws(ctl: Arc<Ctl>, client_id: String, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let remaining = {
        let mut s = ctl.lock();
        s.sockets.push((client_id.clone(), tx));
        s.pending.len() + usize::from(s.running.is_some())
    };
    let hello = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": remaining}}, "sid": client_id}});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Msg(m)) => if socket.send(m).await.is_err() { return },
                Some(Out::Drop) | None => return,
            },
            inc = socket.recv() => if !matches!(inc, Some(Ok(_))) { return },
        }
    }
}

/// A `w` x `h` JPEG of one colour (a step preview).
#[allow(dead_code)] // not every includer sends previews
pub fn jpeg(rgb: [u8; 3], w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

/// Awaits `f`, failing the test with `what` after two minutes — a broken feature
/// fails instead of hanging the suite. (This file is shared with the benches, so it
/// does not lean on the test crate's support module.)
async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(120), f)
        .await
        .unwrap_or_else(|elapsed| panic!("gave up waiting for {what}: {elapsed}"))
}
