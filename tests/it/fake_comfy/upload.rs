//! The fake's POST /upload/image, as recorded from a real ComfyUI
//! (`upload_image_*.json`, `upload_image_errors.txt`): multipart fields `image`
//! (the file), `type`, `subfolder`, `overwrite`; the same bytes under a taken name
//! keep the name, different bytes are renamed `name (1).png` unless `overwrite`
//! is true; no file or a subfolder escaping the input folder is a 400. Every
//! upload that reached it is counted, and a LoadImage naming a file it does not
//! have fails validation as ComfyUI's does (`error_missing_input_file.json`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::Ctl;

/// The parts of a multipart body: (name, file name, bytes).
fn parts(headers: &HeaderMap, body: &Bytes) -> Vec<(String, Option<String>, Bytes)> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(boundary) = ct.split("boundary=").nth(1) else {
        return Vec::new();
    };
    let delimiter = format!("--{}", boundary.trim_matches('"'));
    let find = |from: usize, needle: &[u8]| {
        body[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let mut out = Vec::new();
    let Some(mut at) = find(0, delimiter.as_bytes()) else {
        return out;
    };
    loop {
        at += delimiter.len();
        if body[at..].starts_with(b"--") {
            return out;
        }
        let Some(head_end) = find(at, b"\r\n\r\n") else {
            return out;
        };
        let head = String::from_utf8_lossy(&body[at..head_end]).into_owned();
        let Some(next) = find(head_end, delimiter.as_bytes()) else {
            return out;
        };
        let field = |key: &str| {
            head.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k == key).then(|| v.trim_matches('"').to_owned())
            })
        };
        if let Some(name) = field("name") {
            out.push((name, field("filename"), body.slice(head_end + 4..next - 2)));
        }
        at = next;
    }
}

pub(super) async fn upload_image(
    AxState(ctl): AxState<Arc<Ctl>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parts = parts(&headers, &body);
    let text = |name: &str| {
        parts
            .iter()
            .find(|(n, f, _)| n == name && f.is_none())
            .map(|(_, _, b)| String::from_utf8_lossy(b).into_owned())
    };
    let Some((_, Some(file), bytes)) = parts.iter().find(|(n, _, _)| n == "image") else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let subfolder = text("subfolder").unwrap_or_default();
    if subfolder.split('/').any(|s| s == "..") || subfolder.starts_with('/') {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let overwrite = text("overwrite").is_some_and(|o| o == "true" || o == "1");
    let mut s = ctl.lock();
    let (stem, ext) = file.rsplit_once('.').unwrap_or((file.as_str(), ""));
    let mut name = file.clone();
    let mut n = 0;
    while let Some(held) = s.inputs.get(&(subfolder.clone(), name.clone())) {
        if overwrite || held == bytes {
            break;
        }
        n += 1;
        name = format!("{stem} ({n}).{ext}");
    }
    s.inputs.insert((subfolder.clone(), name.clone()), bytes.clone());
    s.uploads.push(if subfolder.is_empty() {
        name.clone()
    } else {
        format!("{subfolder}/{name}")
    });
    s.files.insert((subfolder.clone(), name.clone(), "input".into()));
    Json(json!({"name": name, "subfolder": subfolder, "type": "input"})).into_response()
}

/// ComfyUI's 400 for a LoadImage whose file is not in the input folder; records
/// the files LoadImage nodes name otherwise.
pub(super) fn validate(ctl: &Ctl, workflow: &Value) -> Option<Response> {
    let mut s = ctl.lock();
    let nodes = workflow.as_object()?;
    for (id, node) in nodes {
        if node["class_type"] != "LoadImage" {
            continue;
        }
        let image = node["inputs"]["image"].as_str().unwrap_or_default().to_owned();
        let (sub, name) = image.rsplit_once('/').unwrap_or(("", image.as_str()));
        if !s.inputs.contains_key(&(sub.to_owned(), name.to_owned())) {
            let body = json!({
                "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
                "node_errors": {id: {"errors": [{"type": "custom_validation_failed", "message": "Custom validation failed for node",
                    "details": format!("image - Invalid image file: {image}"), "extra_info": {"input_name": "image"}}],
                    "dependent_outputs": [], "class_type": "LoadImage"}},
            });
            return Some((StatusCode::BAD_REQUEST, Json(body)).into_response());
        }
        s.loaded.push(image);
    }
    None
}
