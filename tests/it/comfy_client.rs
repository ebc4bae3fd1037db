//! The ComfyUI client against the fake ComfyUI (a real HTTP + WebSocket server
//! speaking the recorded shapes), and every recorded WebSocket session parsed.

use std::time::Duration;

use bytes::Bytes;
use darkroom::comfy::{
    ComfyClient, ComfyError, ComfyEvent, EventStream, ImageFormat, ImageType, PromptFailure, PromptState,
    Templates, wait_for_completion,
};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::fake_comfy::{FakeComfy, PNG};

const POLL: Duration = Duration::from_millis(20);

/// Connects and waits for the greeting `status`, so the fake has registered the
/// socket before anything is submitted.
async fn connect(client: &ComfyClient, client_id: &str) -> EventStream {
    let mut events = client.connect_events(client_id).await.unwrap();
    match events.next().await.unwrap().unwrap() {
        ComfyEvent::Status { sid, .. } => assert_eq!(sid.as_deref(), Some(client_id)),
        other => panic!("first frame was {other}"),
    }
    events
}

/// Collects events until the terminal one for `prompt_id`.
async fn until_done(events: &mut EventStream, prompt_id: &str) -> Vec<ComfyEvent> {
    let mut seen = Vec::new();
    while let Some(e) = events.next().await {
        let e = e.unwrap();
        let done = e.is_terminal() && e.prompt_id() == Some(prompt_id);
        seen.push(e);
        if done {
            return seen;
        }
    }
    panic!("socket closed before the prompt ended: {seen:?}")
}

fn noop(prefix: &str) -> Value {
    let mut p = Map::new();
    p.insert("filename_prefix".into(), json!(prefix));
    Templates::embedded()
        .unwrap()
        .render("noop", &p)
        .unwrap()
        .workflow
}

#[tokio::test]
async fn noop_runs_events_history_and_view() {
    let fake = FakeComfy::start().await;
    let client = ComfyClient::new(&fake.url).unwrap();
    let mut events = connect(&client, "c1").await;
    let sub = client.submit(&noop("smoke/noop"), "c1").await.unwrap();
    assert_eq!(sub.number, 0);
    let seen = until_done(&mut events, &sub.prompt_id).await;
    let kinds: Vec<&str> = seen
        .iter()
        .map(|e| match e {
            ComfyEvent::ExecutionStart { .. } => "start",
            ComfyEvent::ExecutionCached { .. } => "cached",
            ComfyEvent::Executing { .. } => "executing",
            ComfyEvent::ProgressState { .. } => "progress_state",
            ComfyEvent::Executed { .. } => "executed",
            ComfyEvent::ExecutionSuccess { .. } => "success",
            _ => "other",
        })
        .filter(|k| *k != "other" && *k != "progress_state")
        .collect();
    assert_eq!(
        kinds,
        [
            "start",
            "cached",
            "executing",
            "executing",
            "executing",
            "executing",
            "executed",
            "success"
        ]
    );
    let image = seen
        .iter()
        .find_map(|e| match e {
            ComfyEvent::Executed { images, node, .. } => Some((node.clone(), images[0].clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(image.0, "4");
    assert_eq!(image.1.subfolder, "smoke");
    assert_eq!(image.1.kind, ImageType::Output);

    let entry = client.history(&sub.prompt_id).await.unwrap().unwrap();
    assert!(entry.status.completed);
    let PromptState::Done(outputs) = client.poll_status(&sub.prompt_id).await.unwrap() else {
        panic!("not done")
    };
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].image, image.1);
    let png = client
        .view(&image.1.filename, &image.1.subfolder, image.1.kind)
        .await
        .unwrap();
    assert_eq!(&png[..], PNG);
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let missing = client.view("nope.png", "", ImageType::Output).await.unwrap_err();
    assert!(
        matches!(missing, ComfyError::Status { status: 404, .. }),
        "{missing}"
    );
    assert!(
        missing.to_string().contains("/view?filename=nope.png"),
        "{missing}"
    );
}

#[tokio::test]
async fn validation_errors_name_node_and_input() {
    let fake = FakeComfy::start().await;
    let client = ComfyClient::new(&fake.url).unwrap();
    let mut wf = noop("x/y");
    wf["3"]["inputs"]["width"] = json!(-5);
    let err = client.submit(&wf, "c").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ComfyError::Validation { .. }), "{text}");
    assert!(
        text.contains("node 3 (ImageScale) input `width`: Value -5 smaller than min of 1"),
        "{text}"
    );
    wf["3"]["class_type"] = json!("NoSuchNode");
    let text = client.submit(&wf, "c").await.unwrap_err().to_string();
    assert!(
        text.contains("node NoSuchNode does not exist") && text.contains("'#3'"),
        "{text}"
    );
    let err = client.submit(&json!("not a workflow"), "c").await.unwrap_err();
    assert!(err.to_string().contains("No prompt provided"), "{err}");
    assert_eq!(fake.ctl.prompts_received(), 3);
}

#[tokio::test]
async fn execution_error_is_surfaced_with_exception() {
    let fake = FakeComfy::start().await;
    let client = ComfyClient::new(&fake.url).unwrap();
    let mut events = connect(&client, "c").await;
    fake.ctl.fail_next("RuntimeError", "CUDA out of memory");
    let sub = client.submit(&noop("x/err"), "c").await.unwrap();
    let seen = until_done(&mut events, &sub.prompt_id).await;
    let Some(ComfyEvent::ExecutionError(e)) = seen.last() else {
        panic!("{seen:?}")
    };
    assert_eq!(
        (e.exception_type.as_str(), e.node_id.as_str()),
        ("RuntimeError", "2")
    );
    assert_eq!(e.node_type, "ImageInvert");
    let PromptState::Failed(PromptFailure::Error(h)) = client.poll_status(&sub.prompt_id).await.unwrap()
    else {
        panic!("not failed")
    };
    assert_eq!(h.exception_message, "CUDA out of memory");
    assert!(
        seen.last()
            .unwrap()
            .to_string()
            .contains("RuntimeError: CUDA out of memory")
    );
}

#[tokio::test]
async fn websocket_drop_is_recovered_by_reconnect_and_polling() {
    let fake = FakeComfy::start().await;
    let client = ComfyClient::new(&fake.url).unwrap();
    let mut events = connect(&client, "drop").await;
    fake.ctl.hold(true);
    fake.ctl.drop_ws_next();
    let sub = client.submit(&noop("x/drop"), "drop").await.unwrap();
    assert_eq!(fake.ctl.wait_held().await, sub.prompt_id);
    // The socket ends (with or without an error item) while the job runs.
    while let Some(item) = events.next().await {
        if let Err(e) = item {
            assert!(matches!(e, ComfyError::WebSocket { .. }), "{e}");
        }
    }
    assert_eq!(
        client.poll_status(&sub.prompt_id).await.unwrap(),
        PromptState::Running
    );
    let waiter = {
        let client = client.clone();
        let id = sub.prompt_id.clone();
        tokio::spawn(async move { wait_for_completion(&client, "drop", &id, POLL, None, |_| {}).await })
    };
    fake.ctl.release();
    let done = waiter.await.unwrap().unwrap();
    let PromptState::Done(outputs) = done.state else {
        panic!("{:?}", done.state)
    };
    assert_eq!(outputs[0].image.subfolder, "x");
}

#[tokio::test]
async fn restart_forgets_the_prompt() {
    let fake = FakeComfy::start().await;
    let client = ComfyClient::new(&fake.url).unwrap();
    fake.ctl.hold(true);
    let sub = client.submit(&noop("x/r"), "r").await.unwrap();
    fake.ctl.wait_held().await;
    let waiter = {
        let client = client.clone();
        let id = sub.prompt_id.clone();
        tokio::spawn(async move { wait_for_completion(&client, "r", &id, POLL, None, |_| {}).await })
    };
    fake.ctl.restart();
    let done = waiter.await.unwrap().unwrap();
    assert_eq!(done.state, PromptState::Unknown);
    assert!(client.history(&sub.prompt_id).await.unwrap().is_none());
}

#[tokio::test]
async fn queued_running_delete_and_interrupt() {
    let fake = FakeComfy::start().await;
    let client = ComfyClient::new(&fake.url).unwrap();
    fake.ctl.hold(true);
    let a = client.submit(&noop("x/a"), "q").await.unwrap();
    fake.ctl.wait_held().await;
    let b = client.submit(&noop("x/b"), "q").await.unwrap();
    // ComfyUI's history is {} while queued or running: /queue tells them apart.
    assert!(client.history(&a.prompt_id).await.unwrap().is_none());
    assert_eq!(
        client.poll_status(&a.prompt_id).await.unwrap(),
        PromptState::Running
    );
    assert_eq!(
        client.poll_status(&b.prompt_id).await.unwrap(),
        PromptState::Queued
    );
    let q = client.queue().await.unwrap();
    assert_eq!(q.running[0].prompt_id, a.prompt_id);
    assert_eq!(
        (q.pending[0].prompt_id.as_str(), q.pending[0].number),
        (b.prompt_id.as_str(), 1)
    );

    client
        .delete_from_queue(std::slice::from_ref(&b.prompt_id))
        .await
        .unwrap();
    assert_eq!(fake.ctl.deletes(), std::slice::from_ref(&b.prompt_id));
    assert_eq!(
        client.poll_status(&b.prompt_id).await.unwrap(),
        PromptState::Unknown
    );

    client.interrupt(&a.prompt_id).await.unwrap();
    assert_eq!(fake.ctl.interrupts(), [Some(a.prompt_id.clone())]);
    fake.ctl.wait_finished(1).await;
    let PromptState::Failed(PromptFailure::Interrupted(i)) = client.poll_status(&a.prompt_id).await.unwrap()
    else {
        panic!("not interrupted")
    };
    assert_eq!(i.node_id, "2");
    // Unknown ids are accepted, as ComfyUI does.
    client.interrupt("nope").await.unwrap();
    client.delete_from_queue(&["nope".into()]).await.unwrap();
}

#[tokio::test]
async fn ws_images_arrive_as_binary_frames() {
    let fake = FakeComfy::start().await;
    let client = ComfyClient::new(&fake.url).unwrap();
    let wf = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}
    });
    let sub = client.submit(&wf, "bin").await.unwrap();
    let done = wait_for_completion(&client, "bin", &sub.prompt_id, POLL, None, |_| {})
        .await
        .unwrap();
    // The prompt may finish before the socket is up; then history is all we get.
    assert!(matches!(done.state, PromptState::Done(ref o) if o.is_empty()));
    let mut events = connect(&client, "bin2").await;
    let sub = client.submit(&wf, "bin2").await.unwrap();
    let seen = until_done(&mut events, &sub.prompt_id).await;
    let img = seen
        .iter()
        .find_map(|e| match e {
            ComfyEvent::Binary(b) => Some(b.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((img.event, img.format), (1, Some(ImageFormat::Png)));
    assert_eq!(&img.bytes[..], PNG);
}

#[tokio::test]
async fn server_info_upload_and_unreachable() {
    let fake = FakeComfy::start().await;
    let client = ComfyClient::new(&format!("{}/api", fake.url)).unwrap();
    let stats = client.system_stats().await.unwrap();
    assert_eq!(stats.devices[0].name, "cpu");
    assert_eq!(stats.devices[0].vram_total, 25_276_510_208);
    assert_eq!(stats.system.comfyui_version.as_deref(), Some("0.3.64"));
    let info = client.object_info().await.unwrap();
    assert!(info["SaveImage"]["input"]["required"].is_object(), "{info}");
    let up = client
        .upload_image("in.png", "", Bytes::from_static(PNG))
        .await
        .unwrap();
    assert_eq!((up.name.as_str(), up.kind), ("in.png", ImageType::Input));
    assert_eq!(fake.ctl.uploads(), ["in.png"]);
    assert_eq!(
        &client.view("in.png", "", ImageType::Input).await.unwrap()[..],
        PNG
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = ComfyClient::new(&dead).unwrap();
    let err = client.system_stats().await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert!(err.to_string().contains(&dead), "{err}");
    assert!(client.connect_events("x").await.is_err());
}

/// Every recorded session parses; the only unknown type is `feature_flags`.
#[test]
fn every_recorded_ws_session_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/comfyui");
    let mut files = 0;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".ws.jsonl") {
            continue;
        }
        files += 1;
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let rec: Value = serde_json::from_str(line).unwrap();
            let event = if rec["binary"] == json!(true) {
                // The recording keeps the first 16 bytes; pad to the frame's length.
                let mut frame = hex::decode(rec["head_hex"].as_str().unwrap()).unwrap();
                frame.resize(rec["len"].as_u64().unwrap() as usize, 0);
                let event = ComfyEvent::from_binary(&Bytes::from(frame)).unwrap();
                let ComfyEvent::Binary(b) = &event else {
                    unreachable!()
                };
                assert_eq!(Some(b.event), rec["event"].as_u64().map(|e| e as u32));
                event
            } else if let Some(kind) = rec["type"].as_str() {
                ComfyEvent::from_frame(kind, rec["data"].clone())
                    .unwrap_or_else(|e| panic!("{}: {line}: {e}", path.display()))
            } else {
                continue; // an annotation of an HTTP call
            };
            if let ComfyEvent::Unknown(kind) = &event {
                assert_eq!(kind, "feature_flags", "{}", path.display());
            }
            let name = serde_json::to_value(&event).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned();
            *counts.entry(name).or_default() += 1;
            assert!(!event.to_string().is_empty());
        }
    }
    assert_eq!(files, 12);
    for kind in [
        "status",
        "execution_start",
        "execution_cached",
        "executing",
        "progress",
        "progress_state",
        "executed",
        "execution_success",
        "execution_error",
        "execution_interrupted",
        "binary",
        "unknown",
    ] {
        assert!(counts.contains_key(kind), "no {kind} in {counts:?}");
    }
}
