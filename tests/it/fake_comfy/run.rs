//! The fake ComfyUI's executor: one prompt at a time, emitting the recorded
//! message order (status, execution_start, execution_cached, progress_state and
//! executing per node, progress for KSampler, executed for saved images, then
//! success / error / interrupted, status, executing null), with the scripting
//! point where tests hold, fail, interrupt, drop sockets, send step previews or
//! restart.

use std::sync::Arc;

use axum::extract::ws::Message;
use serde_json::{Map, Value, json};

use super::{Ctl, Job, Out, PNG, class_of, node_ids};

/// Runs queued prompts one at a time, like ComfyUI's single executor.
pub(super) async fn run_queue(ctl: Arc<Ctl>) {
    loop {
        let next = {
            let mut s = ctl.lock();
            match s.pending.pop_front() {
                Some(job) if s.running.is_none() => {
                    s.running = Some(job.clone());
                    Some((job, s.generation))
                }
                Some(job) => {
                    s.pending.push_front(job);
                    None
                }
                None => None,
            }
        };
        match next {
            Some((job, generation)) => run_job(&ctl, &job, generation).await,
            None => ctl.wake.notified().await,
        }
    }
}

async fn run_job(ctl: &Ctl, job: &Job, generation: u64) {
    let (pid, to) = (job.id.as_str(), Some(job.client_id.as_str()));
    let ts = || json!(time::OffsetDateTime::now_utc().unix_timestamp() * 1000);
    let start = json!({"prompt_id": pid, "timestamp": ts()});
    let cached = json!({"nodes": [], "prompt_id": pid, "timestamp": ts()});
    ctl.send_to(to, "execution_start", start.clone());
    ctl.send_to(to, "execution_cached", cached.clone());
    let ids = node_ids(&job.workflow);
    let (mut outputs, mut progress) = (Map::new(), Map::new());
    let mut end = ("execution_success", json!({"prompt_id": pid, "timestamp": ts()}));
    let load_error = super::models::load(ctl, &job.workflow).await;
    if let Some((node, exception_type, message)) = &load_error {
        let class = class_of(&job.workflow, node);
        end = (
            "execution_error",
            json!({"prompt_id": pid, "node_id": node, "node_type": class, "executed": [], "exception_message": message,
                   "exception_type": exception_type, "traceback": ["  File \"/opt/ComfyUI/execution.py\", line 496, in execute\n"], "timestamp": ts()}),
        );
    }
    let run = if load_error.is_some() { &[][..] } else { &ids[..] };
    for (i, id) in run.iter().enumerate() {
        let class = class_of(&job.workflow, id);
        let node = |state: &str, value: f64| json!({"value": value, "max": 1.0, "state": state, "node_id": id, "prompt_id": pid, "display_node_id": id, "parent_node_id": null, "real_node_id": id});
        progress.insert(id.clone(), node("running", 0.0));
        ctl.send_to(to, "progress_state", json!({"prompt_id": pid, "nodes": progress}));
        ctl.send_to(
            to,
            "executing",
            json!({"node": id, "display_node": id, "prompt_id": pid}),
        );
        if i == 1.min(ids.len() - 1) {
            send_previews(ctl, job, id);
            let fail = checkpoint(ctl, job, generation).await;
            let Ok(fail) = fail else { return };
            let base = json!({"prompt_id": pid, "node_id": id, "node_type": class, "executed": ids[..i], "timestamp": ts()});
            if let Some(f) = fail {
                let mut data = base;
                if let Some((t, m)) = f {
                    data["exception_type"] = json!(t);
                    data["exception_message"] = json!(m);
                    data["traceback"] =
                        json!(["  File \"/opt/ComfyUI/execution.py\", line 496, in execute\n"]);
                    end = ("execution_error", data);
                } else {
                    end = ("execution_interrupted", data);
                }
                break;
            }
        }
        if class == "KSampler" {
            let steps = job.workflow[id]["inputs"]["steps"].as_u64().unwrap_or(1);
            for v in 1..=steps {
                ctl.send_to(
                    to,
                    "progress",
                    json!({"value": v, "max": steps, "prompt_id": pid, "node": id}),
                );
            }
        }
        if let Some(images) = save_images(ctl, job, id, class) {
            ctl.send_to(
                to,
                "executed",
                json!({"node": id, "display_node": id, "output": {"images": images}, "prompt_id": pid}),
            );
            outputs.insert(id.clone(), json!({"images": images}));
        }
        progress.insert(id.clone(), node("finished", 1.0));
        ctl.send_to(to, "progress_state", json!({"prompt_id": pid, "nodes": progress}));
    }
    let success = end.0 == "execution_success";
    let entry = json!({
        "prompt": [job.number, pid, job.workflow, {"client_id": job.client_id}, []],
        "outputs": if success { Value::Object(outputs) } else { json!({}) },
        "status": {"status_str": if success { "success" } else { "error" }, "completed": success,
                   "messages": [["execution_start", start], ["execution_cached", cached], [end.0, end.1]]},
        "meta": {},
    });
    {
        let mut s = ctl.lock();
        if s.generation != generation {
            return;
        }
        s.running = None;
        s.history.insert(pid.to_owned(), entry);
    }
    ctl.send_to(to, end.0, end.1);
    ctl.broadcast_status();
    ctl.send_to(to, "executing", json!({"node": null, "prompt_id": pid}));
    ctl.finished.send_modify(|n| *n += 1);
}

/// The scripted step previews of node `id`, each followed by its step's
/// `progress`, as a sampler sends them.
fn send_previews(ctl: &Ctl, job: &Job, id: &str) {
    let frames = ctl.lock().previews.clone();
    let max = frames.len();
    for (step, jpeg) in frames.into_iter().enumerate() {
        let mut frame = vec![0, 0, 0, 1, 0, 0, 0, 1];
        frame.extend_from_slice(&jpeg);
        ctl.send_raw(Some(&job.client_id), &Message::Binary(frame.into()));
        ctl.send_to(
            Some(&job.client_id),
            "progress",
            json!({"value": step + 1, "max": max, "prompt_id": job.id, "node": id}),
        );
    }
}

/// Mid-job scripting point: drop sockets, wait at the gate, then report a
/// restart (`Err`), an interrupt (`Some(None)`) or a scripted failure (`Some(Some)`).
#[allow(clippy::type_complexity)]
async fn checkpoint(ctl: &Ctl, job: &Job, generation: u64) -> Result<Option<Option<(String, String)>>, ()> {
    let (hold, work) = {
        let mut s = ctl.lock();
        if std::mem::take(&mut s.drop_ws_next) {
            s.sockets.retain(|(cid, tx)| {
                let ours = cid == &job.client_id;
                if ours {
                    let _ = tx.send(Out::Drop);
                }
                !ours
            });
        }
        (s.hold, s.work)
    };
    if !work.is_zero() {
        tokio::time::sleep(work).await;
    }
    if hold {
        ctl.held.send_replace(Some(job.id.clone()));
        ctl.gate.notified().await;
        ctl.held.send_replace(None);
    }
    let mut s = ctl.lock();
    if s.generation != generation {
        return Err(());
    }
    if s.interrupt.take().is_some_and(|i| i == job.id) {
        return Ok(Some(None));
    }
    Ok(s.fail_next.take().map(Some))
}

/// SaveImage/PreviewImage write files (served by /view); SaveImageWebsocket sends
/// a binary frame (event 1, PNG) instead.
fn save_images(ctl: &Ctl, job: &Job, id: &str, class: &str) -> Option<Value> {
    match class {
        "SaveImageWebsocket" => {
            let mut frame = vec![0, 0, 0, 1, 0, 0, 0, 2];
            frame.extend_from_slice(PNG);
            ctl.send_raw(Some(&job.client_id), &Message::Binary(frame.into()));
            None
        }
        "SaveImage" | "PreviewImage" => {
            let prefix = job.workflow[id]["inputs"]["filename_prefix"]
                .as_str()
                .unwrap_or("ComfyUI");
            let (sub, base) = prefix.rsplit_once('/').unwrap_or(("", prefix));
            let kind = if class == "SaveImage" { "output" } else { "temp" };
            let mut s = ctl.lock();
            s.counter += 1;
            let filename = format!("{base}_{:05}_.png", s.counter);
            s.files
                .insert((sub.to_owned(), filename.clone(), kind.to_owned()));
            Some(json!([{"filename": filename, "subfolder": sub, "type": kind}]))
        }
        _ => None,
    }
}
