//! Snapshot tests of every panel (ratatui's `TestBackend`, insta) at 80x24 and
//! 160x48 with realistic state: two GPUs, none, 50 jobs in mixed states, a firing
//! critical alert, a bucket being browsed, a terminal too small. A change to what
//! a person sees shows up as a snapshot diff (`INSTA_UPDATE=always` rewrites them).

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;

use super::{Theme, draw};
use crate::dash::form::Form;
use crate::dash::state::{Browse, Data, Modal, Panel, State};
use std::sync::Arc;

use crate::events::Event;
use crate::events::test_support::{RawEvent, event};
use crate::queue::Job;
use crate::status::StatusSnapshot;

/// 2026-12-02 12:00:00 UTC.
pub const NOW: i64 = 1_796_212_800_000;

pub(super) fn render(state: &State, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| {
        draw(state, Theme { color: false }, f);
    })
    .unwrap();
    t.backend().to_string()
}

fn gpu(
    index: u32,
    name: &str,
    util: f64,
    used_gib: u64,
    temp: u32,
    procs: &serde_json::Value,
) -> serde_json::Value {
    json!({
        "index": index, "name": name, "uuid": format!("GPU-0000000{index}-aaaa-bbbb-cccc-ddddeeeeffff"),
        "up": true, "utilization_ratio": util, "memory_total_bytes": 24u64 << 30,
        "memory_used_bytes": used_gib << 30, "memory_free_bytes": (24 - used_gib) << 30,
        "temperature_celsius": temp, "power_watts": 287.5, "power_limit_watts": 450.0,
        "fan_ratio": 0.62, "sm_clock_hz": 2_520_000_000u64, "memory_clock_hz": 10_501_000_000u64,
        "processes": procs,
    })
}

fn snapshot(gpus: bool) -> StatusSnapshot {
    let gpus = if gpus {
        json!({"source": "nvml", "driver_version": "550.54.14", "at_ms": NOW, "devices": [
            gpu(0, "NVIDIA GeForce RTX 4090", 0.97, 22, 78, &json!([{"pid": 4242, "used_memory_bytes": 21u64 << 30, "name": "python3", "backend": "http://127.0.0.1:8188"}])),
            gpu(1, "NVIDIA GeForce RTX 4090", 0.12, 3, 41, &json!([])),
        ]})
    } else {
        json!({"source": "none", "unavailable": "NVML: libnvidia-ml.so.1 not found or not loadable — is the NVIDIA driver installed?", "at_ms": NOW, "devices": []})
    };
    serde_json::from_value(json!({
        "version": "0.1.0", "at_ms": NOW, "last_event_id": 41,
        "gpus": gpus,
        "queue": {"counts": {"queued": 12, "scheduled": 1, "running": 2, "succeeded": 30, "failed": 3, "cancelled": 2},
                  "oldest_queued_seconds": 84.0, "jobs_per_minute": 14.2, "failure_ratio": 0.06,
                  "p50_seconds": 3.4, "p95_seconds": 9.8, "cache_hit_ratio": 0.21},
        "backends": [
            {"url": "http://127.0.0.1:8188", "healthy": true, "in_flight": 1, "max_in_flight": 1, "completed": 25, "failed": 1},
            {"url": "http://10.0.0.7:8188", "healthy": false, "in_flight": 0, "max_in_flight": 1, "completed": 5, "failed": 2,
             "last_error": "cannot reach ComfyUI at http://10.0.0.7:8188: connection refused"},
        ],
        "output_store": {"backend": "embedded", "reachable": true},
        "buckets": [
            {"name": "comfyui-outputs", "objects": 93, "bytes": 187_000_000u64,
             "lifecycle": ["expire `jobs/` after 7 days [outputs-7d]"],
             "recent_expirations": [{"bucket": "comfyui-outputs", "key": "jobs/01JOLD/ComfyUI_00001_.png", "at_ms": NOW - 60_000}]},
            {"name": "darkchannel-temp", "objects": 4, "bytes": 9_100, "lifecycle": ["expire every object after 1 day"]},
        ],
        "cache": {"entries": 20, "bytes": 5_000_000, "max_bytes": 1_073_741_824u64, "hits": 9, "misses": 34, "evictions": 0},
        "alerts": [],
    }))
    .unwrap()
}

/// Whose the fixture's jobs are, in turn.
const OWNERS: [&str; 3] = ["ana", "n8n-flow", "admin"];

pub(super) fn job(n: u64, status: &str) -> Job {
    let id = ulid::Ulid::from_parts(
        u64::try_from(NOW).unwrap() - 600_000 + n * 10_000,
        u128::from(n) * 7_919,
    );
    let created = NOW - 600_000 + i64::try_from(n).unwrap() * 10_000;
    let template = if n.is_multiple_of(3) { "txt2img" } else { "noop" };
    let mut j = json!({
        "id": id.to_string(), "queue": "comfyui", "priority": 0, "status": status,
        "payload": {"template": template, "params": {"prompt": "a lighthouse at dusk", "seed": 1234 + n, "steps": 30}},
        "attempts": u32::from(status != "queued"), "max_attempts": 3, "timeout_ms": 600_000, "created_ms": created,
        "owner": OWNERS[usize::try_from(n % 3).unwrap()],
    });
    match status {
        "running" => {
            j["started_ms"] = json!(created + 2_000);
            j["backend"] = json!("http://10.0.0.7:8188");
            j["progress"] = json!({"fraction": 0.4, "message": "node 3 (KSampler)", "at_ms": NOW});
        }
        "succeeded" => {
            j["started_ms"] = json!(created + 1_000);
            j["finished_ms"] = json!(created + 4_200);
            j["result"] = json!({"cache_hit": false, "backend": "http://127.0.0.1:8188", "outputs": [
                {"bucket": "comfyui-outputs", "key": format!("jobs/{id}/ComfyUI_00001_.png"), "size": 1_234_567, "content_type": "image/png",
                 "url": format!("http://127.0.0.1:9000/comfyui-outputs/jobs/{id}/ComfyUI_00001_.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600")}]});
        }
        "failed" => {
            j["attempts"] = json!(3);
            j["started_ms"] = json!(created + 1_000);
            j["finished_ms"] = json!(created + 9_000);
            j["errors"] = json!([
                {"attempt": 1, "at_ms": created + 3_000, "kind": "error", "message": "ComfyUI refused the prompt: node 4 (CheckpointLoaderSimple): ckpt_name 'sdxl.safetensors' not in list"},
                {"attempt": 2, "at_ms": created + 6_000, "kind": "timed_out", "message": "ran past its 600 s timeout"},
                {"attempt": 3, "at_ms": created + 9_000, "kind": "lease_expired", "message": "the worker stopped heartbeating"},
            ]);
        }
        _ => {}
    }
    serde_json::from_value(j).unwrap()
}

fn jobs50() -> Vec<Job> {
    let statuses = [
        "succeeded",
        "succeeded",
        "failed",
        "queued",
        "succeeded",
        "cancelled",
        "queued",
        "running",
    ];
    (0..50)
        .map(|n| job(n, statuses[usize::try_from(n).unwrap() % statuses.len()]))
        .collect()
}

pub(super) fn state(gpus: bool) -> State {
    let mut s = State::new("local", true, false);
    s.tick(NOW);
    s.apply(Data::Full {
        snapshot: Box::new(snapshot(gpus)),
        jobs: jobs50(),
        templates: crate::dash::form::tests::templates(),
    });
    // A minute of GPU history for the sparklines.
    for i in 0..60u32 {
        let mut report = snapshot(gpus).gpus;
        for d in &mut report.devices {
            d.utilization_ratio = Some(f64::from((i * 7 + d.index * 30) % 100) / 100.0);
        }
        s.apply(Data::Event(event(RawEvent {
            id: 42 + u64::from(i),
            at_ms: NOW,
            kind: "gpu".into(),
            data: serde_json::to_value(report).unwrap(),
        })));
    }
    s.apply(Data::Logs {
        lines: vec![
            log_line(
                1,
                "INFO",
                "darkroom::daemon",
                "HTTP API listening addr=127.0.0.1:9080",
            ),
            log_line(
                2,
                "WARN",
                "darkroom::dispatch::run",
                "job attempt failed job=01JX backend=http://10.0.0.7:8188 error=connection refused",
            ),
            log_line(
                3,
                "INFO",
                "darkroom::storage::lifecycle",
                "lifecycle: object expired bucket=comfyui-outputs key=jobs/01JOLD/ComfyUI_00001_.png",
            ),
        ],
        reset: true,
    });
    s
}

fn log_line(seq: u64, level: &str, target: &str, message: &str) -> crate::telemetry::LogLine {
    crate::telemetry::LogLine {
        seq,
        at_ms: NOW - 30_000,
        level: level.parse().unwrap(),
        target: target.into(),
        message: message.into(),
    }
}

fn firing() -> Arc<Event> {
    event(RawEvent {
        id: 200,
        at_ms: NOW,
        kind: "alert".into(),
        data: json!({"change": "firing", "alert": {
            "name": "vram_high", "instance": "http://127.0.0.1:8188", "severity": "critical", "state": "firing",
            "value": 0.97, "threshold": 0.95, "active_since_ms": NOW - 180_000, "firing_since_ms": NOW - 60_000,
            "summary": "VRAM 97% used on http://127.0.0.1:8188 (threshold 95%)"}}),
    })
}

#[test]
fn overview() {
    let s = state(true);
    insta::assert_snapshot!("overview_80x24", render(&s, 80, 24));
    insta::assert_snapshot!("overview_160x48", render(&s, 160, 48));
    insta::assert_snapshot!("overview_no_gpu_80x24", render(&state(false), 80, 24));
}

/// A first start: no backend yet, generated S3 credentials. The overview says
/// where S3 and the API listen, the access key, where the secret is, and how to
/// add a ComfyUI.
#[test]
fn overview_of_a_first_start() {
    let mut s = state(false);
    let snapshot = s.snapshot.as_mut().unwrap();
    snapshot.backends.clear();
    snapshot.endpoints = Some(crate::status::Endpoints {
        api_url: "http://127.0.0.1:9080".into(),
        s3_url: Some("http://127.0.0.1:9000".into()),
        s3_access_key: Some("K7Q2M4TZ8N1VX5RB3LCW".into()),
        s3_secret_in: Some("./data/credentials.toml".into()),
    });
    s.jobs.clear();
    let screen = render(&s, 80, 24);
    for expected in [
        "S3   http://127.0.0.1:9000  access key K7Q2M4TZ8N1VX5RB3LCW",
        "secret key in ./data/credentials.toml",
        "API  http://127.0.0.1:9080",
        "no ComfyUI backend configured (comfyui.backends or --comfyui URL)",
    ] {
        assert!(screen.contains(expected), "{expected:?} missing:\n{screen}");
    }
    insta::assert_snapshot!("overview_first_start_80x24", screen);
}

#[test]
fn overview_on_shared_redis_and_s3() {
    let mut s = state(true);
    let snapshot = s.snapshot.as_mut().unwrap();
    let redis = crate::stores::StoreHealth {
        backend: crate::stores::StoreKind::Redis,
        endpoint: Some("redis://redis:6379/0".into()),
        reachable: true,
        latency_ms: Some(0.4),
        error: None,
    };
    snapshot.queue_store = redis.clone();
    snapshot.cache_store = redis;
    snapshot.output_store = crate::stores::StoreHealth {
        backend: crate::stores::StoreKind::S3,
        endpoint: Some("http://minio:9000".into()),
        reachable: false,
        latency_ms: None,
        error: Some("connection refused".into()),
    };
    insta::assert_snapshot!("overview_shared_stores_160x48", render(&s, 160, 48));
}

#[test]
fn overview_shows_the_last_backup_and_a_failing_one() {
    let mut s = state(true);
    let now = s.now_ms;
    let report = crate::backup::BackupReport {
        id: "2026-12-07T03-30-00.000Z".into(),
        dest: "/backups".into(),
        created_at: String::new(),
        files: 3,
        blobs: 40,
        blobs_copied: 2,
        bytes: 3 << 30,
        bytes_copied: 5 << 20,
        seconds: 12.0,
        writes_paused_ms: 4,
        pruned: Vec::new(),
    };
    let mut status = crate::backup::BackupStatus {
        dest: Some("/backups".into()),
        interval_seconds: Some(86_400),
        next_ms: Some(now + 22 * 3_600_000),
        keep: 7,
        state: crate::backup::BackupState {
            last_success_ms: Some(now - 2 * 3_600_000),
            last: Some(report),
            ..crate::backup::BackupState::default()
        },
    };
    s.snapshot.as_mut().unwrap().backup = Some(status.clone());
    let screen = render(&s, 160, 48);
    assert!(
        screen.contains("backup: last good 2h ago (3.0 GiB, 5.0 MiB copied); next in 22h to /backups"),
        "{screen}"
    );
    status.state.last_error = Some("backup destination /backups: disk full".into());
    s.snapshot.as_mut().unwrap().backup = Some(status);
    let screen = render(&s, 160, 48);
    assert!(
        screen.contains("backup: FAILED (backup destination /backups: disk full); last good 2h ago"),
        "{screen}"
    );
}

#[test]
fn jobs_table_and_details() {
    let mut s = state(true);
    s.panel = Panel::Jobs;
    s.jobs_view.selected = 3;
    insta::assert_snapshot!("jobs_80x24", render(&s, 80, 24));
    insta::assert_snapshot!("jobs_160x48", render(&s, 160, 48));
    let failed = s
        .visible_jobs()
        .into_iter()
        .find(|j| j.status == crate::queue::JobStatus::Failed)
        .unwrap()
        .id;
    s.jobs_view.detail = Some(failed);
    insta::assert_snapshot!("job_failed_80x24", render(&s, 80, 24));
    let done = s
        .visible_jobs()
        .into_iter()
        .find(|j| j.status == crate::queue::JobStatus::Succeeded)
        .unwrap()
        .id;
    s.jobs_view.detail = Some(done);
    insta::assert_snapshot!("job_succeeded_160x48", render(&s, 160, 48));
    // A running job names the backend running it before it has a result.
    let running = s
        .visible_jobs()
        .into_iter()
        .find(|j| j.status == crate::queue::JobStatus::Running)
        .unwrap()
        .id;
    s.jobs_view.detail = Some(running);
    insta::assert_snapshot!("job_running_80x24", render(&s, 80, 24));
    s.jobs_view.detail = None;
    s.jobs_view.filter = "txt2img".into();
    s.jobs_view.filtering = true;
    insta::assert_snapshot!("jobs_filtered_80x24", render(&s, 80, 24));
}

#[test]
fn gpus() {
    let mut s = state(true);
    s.panel = Panel::Gpus;
    insta::assert_snapshot!("gpus_80x24", render(&s, 80, 24));
    insta::assert_snapshot!("gpus_160x48", render(&s, 160, 48));
    let mut none = state(false);
    none.panel = Panel::Gpus;
    insta::assert_snapshot!("gpus_none_80x24", render(&none, 80, 24));
}

#[test]
fn storage_buckets_and_browser() {
    let mut s = state(true);
    s.panel = Panel::Storage;
    insta::assert_snapshot!("storage_80x24", render(&s, 80, 24));
    let page = serde_json::from_value(json!({
        "bucket": "comfyui-outputs", "prefix": "jobs/01JX/", "truncated": false,
        "prefixes": ["jobs/01JX/thumbs/"],
        "objects": [
            {"key": "jobs/01JX/ComfyUI_00001_.png", "size": 1_234_567, "last_modified_ms": NOW - 120_000, "content_type": "image/png"},
            {"key": "jobs/01JX/metadata.json", "size": 2_048, "last_modified_ms": NOW - 120_000, "content_type": "application/json"},
        ]})).unwrap();
    s.storage_view.browse = Some(Browse {
        bucket: "comfyui-outputs".into(),
        prefix: "jobs/01JX/".into(),
        page: Some(page),
        error: None,
        selected: 1,
        url: Some((
            "jobs/01JX/ComfyUI_00001_.png".into(),
            "http://127.0.0.1:9000/comfyui-outputs/jobs/01JX/ComfyUI_00001_.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=darkroom%2F20261202%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Expires=3600".into(),
        )),
    });
    insta::assert_snapshot!("storage_browse_80x24", render(&s, 80, 24));
}

#[test]
fn a_firing_critical_alert_shows_a_banner() {
    let mut s = state(true);
    s.apply(Data::Event(firing()));
    insta::assert_snapshot!("alert_banner_overview_80x24", render(&s, 80, 24));
    s.panel = Panel::Alerts;
    insta::assert_snapshot!("alerts_160x48", render(&s, 160, 48));
}

#[test]
fn log_dialogs_and_a_tiny_terminal() {
    let mut s = state(true);
    s.panel = Panel::Log;
    insta::assert_snapshot!("log_80x24", render(&s, 80, 24));
    s.modal = Some(Modal::Help);
    insta::assert_snapshot!("help_80x24", render(&s, 80, 24));
    let mut form = Form::new(s.templates.clone());
    form.next_row();
    form.type_char('7');
    s.modal = Some(Modal::Form(form));
    insta::assert_snapshot!("form_80x24", render(&s, 80, 24));
    let id = s.visible_jobs()[0].id;
    s.modal = Some(Modal::ConfirmCancel(id));
    insta::assert_snapshot!("confirm_cancel_80x24", render(&s, 80, 24));
    s.modal = None;
    s.conn = crate::dash::state::Conn::Disconnected {
        reason: "cannot reach darkroom at http://10.0.0.2:9080/api/v1/status".into(),
    };
    s.frozen = true;
    insta::assert_snapshot!("disconnected_frozen_80x24", render(&s, 80, 24));
    insta::assert_snapshot!("too_small_40x10", render(&s, 40, 10));
}

#[test]
fn a_selection_past_the_end_draws_without_panicking() {
    let mut s = state(true);
    s.jobs_view.selected = 1_000;
    s.alerts_selected = 1_000;
    s.storage_view.selected = 1_000;
    s.log_scroll = 1_000;
    for panel in Panel::ALL {
        s.panel = panel;
        let screen = render(&s, 80, 24);
        assert!(screen.contains("darkroom"), "{panel:?}");
    }
}

#[test]
fn a_catalog_job_shows_its_model_eta_and_placement() {
    let mut snap = snapshot(true);
    snap.backends[0].loaded_model = Some("sd_xl_turbo_1.0_fp16.safetensors".into());
    snap.backends[0].swaps = 2;
    let mut running = job(7, "running");
    running.payload["model"] = json!({"name": "sdxl-turbo", "file": "sd_xl_turbo_1.0_fp16.safetensors",
        "folder": "checkpoints", "vram_gb": 4.0, "quality": "fast", "reason": "urgency:immediate"});
    running.routing = Some(json!({"model": "sdxl-turbo", "placement": "loaded",
        "rejected": [{"backend": "http://10.0.0.7:8188", "why": "down"}]}));
    running.eta = Some(crate::service::models::Eta {
        start_ms: None,
        finish_ms: NOW + 90_000,
    });
    let id = running.id;
    let mut s = State::new("local", true, false);
    s.tick(NOW);
    s.apply(Data::Full {
        snapshot: Box::new(snap),
        jobs: vec![running],
        templates: crate::dash::form::tests::templates(),
    });
    let overview = render(&s, 160, 48);
    assert!(
        overview.contains("model sd_xl_turbo_1.0_fp16.safetensors  swaps 2"),
        "{overview}"
    );
    s.panel = Panel::Jobs;
    s.jobs_view.detail = Some(id);
    let details = render(&s, 160, 48);
    for want in [
        "model  sdxl-turbo (sd_xl_turbo_1.0_fp16.safetensors)  urgency:immediate",
        "eta  finish ~",
        "placed  loaded (1 backends could not take it)",
    ] {
        assert!(details.contains(want), "{want:?} not in:\n{details}");
    }
}
