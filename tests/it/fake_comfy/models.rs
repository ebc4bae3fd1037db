//! The fake ComfyUI's models, as a real one behaves with model files on disk
//! (recorded in `tests/fixtures/comfyui/models*.json`, `run_missing_model.*`,
//! `run_broken_model.*`): GET /models and /models/{folder} (404 for an unknown
//! folder), a checkpoint it lacks refused at POST /prompt with
//! `value_not_in_list`, a file that cannot load failing in the loader node with
//! `execution_error`, and a loaded model: switching to another file takes the
//! scripted load time and uses its VRAM until POST /free unloads it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Ctl, bad_request, class_of, node_ids};

const FOLDERS: &str = include_str!("../../fixtures/comfyui/models.json");
/// What the recorded server said about a file that is not a safetensors file.
const BROKEN: (&str, &str) = (
    "safetensors._safetensors_rust.SafetensorError",
    "Error while deserializing header: header too small\n",
);

#[derive(Default)]
pub(super) struct ModelState {
    /// Files per folder; `None`: the recorded two checkpoints.
    files: Option<BTreeMap<String, Vec<String>>>,
    broken: HashSet<String>,
    load_time: HashMap<String, Duration>,
    vram: HashMap<String, u64>,
    loaded: Option<String>,
    frees: usize,
    loads: Vec<String>,
}

impl ModelState {
    fn files(&self, folder: &str) -> Option<Vec<String>> {
        match &self.files {
            Some(f) => f.get(folder).cloned(),
            None => (folder == "checkpoints").then(|| {
                serde_json::from_str(include_str!("../../fixtures/comfyui/models_checkpoints.json")).unwrap()
            }),
        }
    }

    /// Free VRAM with the loaded model's use taken off the scripted figure.
    pub(super) fn free_vram(&self, total: u64, free: u64) -> u64 {
        let used = self
            .loaded
            .as_ref()
            .and_then(|f| self.vram.get(f))
            .copied()
            .unwrap_or(0);
        free.min(total.saturating_sub(used))
    }
}

#[allow(dead_code)] // not every includer scripts models
impl Ctl {
    /// The files this server has in `folder` (sorted, as ComfyUI lists them).
    pub fn set_models(&self, folder: &str, files: &[&str]) {
        let mut s = self.lock();
        let mut files: Vec<String> = files.iter().map(|f| (*f).to_owned()).collect();
        files.sort();
        s.models
            .files
            .get_or_insert_with(BTreeMap::new)
            .insert(folder.to_owned(), files);
    }
    /// `file` is present but cannot load (an execution error in the loader).
    pub fn set_broken(&self, file: &str) {
        self.lock().models.broken.insert(file.to_owned());
    }
    /// Loading `file` takes `time` and then uses `vram` bytes until unloaded.
    pub fn set_model_cost(&self, file: &str, time: Duration, vram: u64) {
        let mut s = self.lock();
        s.models.load_time.insert(file.to_owned(), time);
        s.models.vram.insert(file.to_owned(), vram);
    }
    /// POST /free requests received.
    pub fn frees(&self) -> usize {
        self.lock().models.frees
    }
    /// Every model load (a switch from another file or from none), in order.
    pub fn loads(&self) -> Vec<String> {
        self.lock().models.loads.clone()
    }
    pub fn loaded(&self) -> Option<String> {
        self.lock().models.loaded.clone()
    }
}

pub(super) async fn folders() -> Response {
    super::json_text(FOLDERS)
}

pub(super) async fn files(AxState(ctl): AxState<Arc<Ctl>>, Path(folder): Path<String>) -> Response {
    match ctl.lock().models.files(&folder) {
        Some(files) => Json(files).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub(super) async fn free(AxState(ctl): AxState<Arc<Ctl>>, Json(body): Json<Value>) -> StatusCode {
    let mut s = ctl.lock();
    s.models.frees += 1;
    if body["unload_models"].as_bool() == Some(true) {
        s.models.loaded = None;
    }
    StatusCode::OK
}

/// A checkpoint the server lacks: the recorded `value_not_in_list` answer.
pub(super) fn validate(ctl: &Ctl, workflow: &Value) -> Option<Response> {
    let known = {
        let s = ctl.lock();
        s.models.files.as_ref()?;
        s.models.files("checkpoints").unwrap_or_default()
    };
    for id in node_ids(workflow) {
        if class_of(workflow, &id) != "CheckpointLoaderSimple" {
            continue;
        }
        let wanted = workflow[&id]["inputs"]["ckpt_name"].as_str().unwrap_or_default();
        if known.iter().any(|k| k == wanted) {
            continue;
        }
        let list = format!("{known:?}").replace('"', "'");
        let error = json!({
            "type": "value_not_in_list",
            "message": "Value not in list",
            "details": format!("ckpt_name: '{wanted}' not in {list}"),
            "extra_info": {"input_name": "ckpt_name", "input_config": [known, {"tooltip": "The name of the checkpoint (model) to load."}], "received_value": wanted},
        });
        let node =
            json!({"errors": [error], "dependent_outputs": [], "class_type": "CheckpointLoaderSimple"});
        return Some(bad_request(
            "prompt_outputs_failed_validation",
            "Prompt outputs failed validation",
            "",
            json!({ id: node }),
        ));
    }
    None
}

/// Loads the workflow's checkpoint before anything runs: the load time on a
/// switch, or the recorded exception for a broken file as (node id, type, message).
pub(super) async fn load(ctl: &Ctl, workflow: &Value) -> Option<(String, String, String)> {
    let (id, file) = node_ids(workflow).into_iter().find_map(|id| {
        (class_of(workflow, &id) == "CheckpointLoaderSimple")
            .then(|| {
                Some((
                    id.clone(),
                    workflow[&id]["inputs"]["ckpt_name"].as_str()?.to_owned(),
                ))
            })
            .flatten()
    })?;
    let delay = {
        let mut s = ctl.lock();
        if s.models.broken.contains(&file) {
            return Some((id, BROKEN.0.into(), BROKEN.1.into()));
        }
        if s.models.loaded.as_deref() == Some(file.as_str()) {
            return None;
        }
        s.models.loaded = Some(file.clone());
        s.models.loads.push(file.clone());
        s.models.load_time.get(&file).copied().unwrap_or_default()
    };
    if !delay.is_zero() {
        // Simulated disk-to-GPU time, as `set_work` simulates GPU time.
        tokio::time::sleep(delay).await;
    }
    None
}
