//! Key handling and state updates as pure unit tests: each binding does what the
//! help says, actions ask for the right command (and are refused read-only), data
//! from the feed lands where the panels read it, freezing holds it back.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;

use super::keys::handle;
use super::state::{Command, Conn, Data, Modal, Outcome, Panel, State};
use crate::events::test_support::{RawEvent, event as typed};
use crate::queue::{Job, JobStatus};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

fn job(n: u64, status: &str) -> Job {
    serde_json::from_value(json!({
        "id": ulid::Ulid::from_parts(1_000 + n, 1).to_string(), "queue": "comfyui", "priority": 0,
        "status": status, "payload": {"template": "noop"}, "attempts": 1, "max_attempts": 3,
        "timeout_ms": 1000, "created_ms": 1_000,
    }))
    .unwrap()
}

fn connected(local: bool, readonly: bool) -> State {
    let mut s = State::new("local", local, readonly);
    let snapshot = serde_json::from_value(json!({
        "version": "0.1.0", "at_ms": 0, "last_event_id": 1,
        "gpus": {"source": "none", "at_ms": 0, "devices": []},
        "queue": {"counts": {"queued": 1, "scheduled": 0, "running": 1, "succeeded": 0, "failed": 1, "cancelled": 0},
                  "jobs_per_minute": 0.0, "failure_ratio": 0.0, "cache_hit_ratio": 0.0},
        "backends": [], "output_store": {"backend": "embedded", "reachable": true},
        "buckets": [{"name": "out", "objects": 1, "bytes": 10}],
        "cache": {"entries": 0, "bytes": 0, "max_bytes": 0, "hits": 0, "misses": 0, "evictions": 0},
        "alerts": [],
    }))
    .unwrap();
    s.apply(Data::Full {
        snapshot: Box::new(snapshot),
        jobs: vec![job(1, "failed"), job(2, "queued"), job(3, "running")],
        templates: super::form::tests::templates(),
    });
    s
}

#[test]
fn panels_switch_by_number_and_tab() {
    let mut s = connected(false, false);
    assert_eq!(s.conn, Conn::Connected);
    handle(&mut s, ch('4'));
    assert_eq!(s.panel, Panel::Storage);
    handle(&mut s, key(KeyCode::Tab));
    assert_eq!(s.panel, Panel::Alerts);
    handle(&mut s, key(KeyCode::BackTab));
    handle(&mut s, key(KeyCode::BackTab));
    assert_eq!(s.panel, Panel::Gpus);
    handle(&mut s, ch('?'));
    assert!(matches!(s.modal, Some(Modal::Help)));
    // Any key closes the help and does nothing else.
    handle(&mut s, ch('1'));
    assert!(s.modal.is_none());
    assert_eq!(s.panel, Panel::Gpus);
}

#[test]
fn the_table_orders_live_work_first_and_cancel_asks_first() {
    let mut s = connected(false, false);
    handle(&mut s, ch('2'));
    let order: Vec<JobStatus> = s.visible_jobs().iter().map(|j| j.status).collect();
    assert_eq!(order, [JobStatus::Running, JobStatus::Queued, JobStatus::Failed]);
    handle(&mut s, ch('j'));
    let queued = s.selected_job().unwrap().id;
    assert_eq!(handle(&mut s, ch('c')), None);
    assert!(matches!(s.modal, Some(Modal::ConfirmCancel(id)) if id == queued));
    // n keeps it; c then y cancels.
    assert_eq!(handle(&mut s, ch('n')), None);
    assert!(s.modal.is_none());
    handle(&mut s, ch('c'));
    assert_eq!(handle(&mut s, ch('y')), Some(Command::Cancel(queued.to_string())));
    // Retry only for failed or cancelled jobs.
    assert_eq!(handle(&mut s, ch('r')), None);
    assert!(
        s.flash
            .as_ref()
            .is_some_and(|f| f.error && f.text.contains("queued"))
    );
    handle(&mut s, ch('G'));
    let failed = s.selected_job().unwrap().id;
    assert_eq!(handle(&mut s, ch('r')), Some(Command::Retry(failed.to_string())));
    // Enter opens the details, c on a finished job says so.
    handle(&mut s, key(KeyCode::Enter));
    assert_eq!(s.jobs_view.detail, Some(failed));
    assert_eq!(handle(&mut s, ch('c')), None);
    assert!(
        s.flash
            .as_ref()
            .is_some_and(|f| f.text.contains("already failed"))
    );
    handle(&mut s, key(KeyCode::Esc));
    assert_eq!(s.jobs_view.detail, None);
}

#[test]
fn filter_narrows_the_table() {
    let mut s = connected(false, false);
    handle(&mut s, ch('/'));
    assert_eq!(s.panel, Panel::Jobs);
    for c in "fail".chars() {
        handle(&mut s, ch(c));
    }
    // While filtering, letters are text, not commands.
    assert!(s.modal.is_none());
    assert_eq!(s.visible_jobs().len(), 1);
    handle(&mut s, key(KeyCode::Enter));
    assert!(!s.jobs_view.filtering);
    assert_eq!(s.jobs_view.filter, "fail");
    handle(&mut s, ch('/'));
    handle(&mut s, key(KeyCode::Esc));
    assert_eq!(s.visible_jobs().len(), 3);
}

#[test]
fn read_only_refuses_actions() {
    let mut s = connected(false, true);
    handle(&mut s, ch('2'));
    assert_eq!(handle(&mut s, ch('c')), None);
    assert!(s.modal.is_none());
    assert_eq!(handle(&mut s, ch('n')), None);
    assert!(s.modal.is_none());
    assert!(s.flash.as_ref().is_some_and(|f| f.text.contains("read-only")));
}

#[test]
fn the_form_submits_a_template_request() {
    let mut s = connected(false, false);
    handle(&mut s, ch('n'));
    assert!(matches!(s.modal, Some(Modal::Form(_))));
    handle(&mut s, key(KeyCode::Down));
    handle(&mut s, ch('5'));
    let cmd = handle(&mut s, key(KeyCode::Enter));
    assert_eq!(
        cmd,
        Some(Command::Submit(Box::new(
            serde_json::from_value(json!({"template": "noop", "params": {"color": 5}})).unwrap()
        )))
    );
    // A template added while the dashboard runs is offered by the next form.
    let mut more = super::form::tests::templates();
    more.push(crate::service::TemplateInfo {
        name: "portrait".into(),
        ..crate::service::TemplateInfo::default()
    });
    s.apply(Data::Templates(more));
    assert!(s.templates.iter().any(|t| t.name == "portrait"));
    // A refused submit comes back as a message naming the field.
    s.outcome(Outcome::Submitted(Err(
        "must be at most 4096 (field `params.width`)".into(),
    )));
    assert!(
        s.flash
            .as_ref()
            .is_some_and(|f| f.error && f.text.contains("params.width"))
    );
}

#[test]
fn quit_asks_in_local_mode_only() {
    let mut remote = connected(false, false);
    assert_eq!(handle(&mut remote, ch('q')), Some(Command::Quit));
    assert!(remote.quit);
    let mut local = connected(true, false);
    assert_eq!(handle(&mut local, ch('q')), None);
    assert!(matches!(local.modal, Some(Modal::ConfirmQuit)));
    handle(&mut local, key(KeyCode::Esc));
    assert!(!local.quit);
    handle(&mut local, ch('q'));
    assert_eq!(handle(&mut local, key(KeyCode::Enter)), Some(Command::Quit));
    assert!(local.quit);
}

#[test]
fn events_update_jobs_and_alerts_and_freeze_holds_them() {
    let mut s = connected(false, false);
    let queued = s.visible_jobs()[1].id;
    let event = |id: u64, data: serde_json::Value| {
        Data::Event(typed(RawEvent {
            id,
            at_ms: 5,
            kind: "job".into(),
            data,
        }))
    };
    handle(&mut s, ch('f'));
    s.apply(event(2, json!({"id": queued.to_string(), "queue": "comfyui", "from": "queued", "to": "running",
        "progress": {"fraction": 0.5, "message": "node 3 (KSampler)", "at_ms": 5}, "cancel_requested": false, "at_ms": 5})));
    assert_eq!(
        s.jobs[&queued].status,
        JobStatus::Queued,
        "frozen: nothing changes"
    );
    handle(&mut s, ch('f'));
    assert_eq!(s.jobs[&queued].status, JobStatus::Running);
    assert!((s.jobs[&queued].progress.as_ref().unwrap().fraction - 0.5).abs() < f32::EPSILON);
    s.apply(Data::Event(typed(RawEvent {
        id: 3,
        at_ms: 6,
        kind: "alert".into(),
        data: json!({"change": "firing", "alert": {"name": "backend_down", "instance": "http://x", "severity": "critical",
            "state": "firing", "value": 1.0, "threshold": 1.0, "active_since_ms": 1, "firing_since_ms": 2, "summary": "backend down"}}),
    })));
    assert_eq!(
        s.critical_firing().map(|a| a.summary.as_str()),
        Some("backend down")
    );
    s.apply(Data::Event(typed(RawEvent {
        id: 4,
        at_ms: 7,
        kind: "alert".into(),
        data: json!({"change": "resolved", "resolved_ms": 7, "alert": {"name": "backend_down", "instance": "http://x",
            "severity": "critical", "state": "inactive", "value": 0.0, "threshold": 1.0, "active_since_ms": 1, "summary": "backend down"}}),
    })));
    assert!(s.alerts.is_empty());
    s.apply(Data::Disconnected("connection refused".into()));
    assert!(matches!(s.conn, Conn::Disconnected { .. }));
}

/// The top of bucket `out`: a folder and an object.
fn top_folder() -> crate::api::browse::ObjectPage {
    serde_json::from_value(json!({
        "bucket": "out", "prefix": "", "truncated": false, "prefixes": ["jobs/"],
        "objects": [{"key": "a.png", "size": 3, "last_modified_ms": 0, "content_type": "image/png"}]}))
    .unwrap()
}

#[test]
fn storage_browses_folders_and_presigns_objects() {
    let mut s = connected(false, false);
    handle(&mut s, ch('4'));
    assert_eq!(
        handle(&mut s, key(KeyCode::Enter)),
        Some(Command::ListObjects {
            bucket: "out".into(),
            prefix: String::new()
        })
    );
    s.outcome(Outcome::Objects(Ok(top_folder())));
    assert_eq!(
        handle(&mut s, key(KeyCode::Enter)),
        Some(Command::ListObjects {
            bucket: "out".into(),
            prefix: "jobs/".into()
        })
    );
    assert_eq!(
        handle(&mut s, key(KeyCode::Esc)),
        Some(Command::ListObjects {
            bucket: "out".into(),
            prefix: String::new()
        })
    );
    s.outcome(Outcome::Objects(Ok(top_folder())));
    handle(&mut s, ch('j'));
    assert_eq!(
        handle(&mut s, ch('y')),
        Some(Command::Presign {
            bucket: "out".into(),
            key: "a.png".into()
        })
    );
    s.outcome(Outcome::Presigned {
        key: "a.png".into(),
        result: Ok(
            serde_json::from_value(json!({"url": "http://h/out/a.png?sig", "expires_ms": 9})).unwrap(),
        ),
    });
    assert_eq!(s.clipboard.as_deref(), Some("http://h/out/a.png?sig"));
    handle(&mut s, key(KeyCode::Esc));
    assert!(s.storage_view.browse.is_none());
}

/// The backend is recorded just after a job starts running (a running -> running
/// event): the table learns it from that event, without re-reading the job.
#[test]
fn a_running_jobs_backend_arrives_with_its_event() {
    let mut s = connected(false, false);
    let queued = s.visible_jobs()[1].id;
    for (id, backend) in [(2, None), (3, Some("http://10.0.0.7:8188"))] {
        s.apply(Data::Event(typed(RawEvent {
            id,
            at_ms: 5,
            kind: "job".into(),
            data: json!({"id": queued.to_string(), "queue": "comfyui", "from": "running", "to": "running",
                "backend": backend, "cancel_requested": false, "at_ms": 5}),
        })));
    }
    assert_eq!(s.jobs[&queued].status, JobStatus::Running);
    assert_eq!(s.jobs[&queued].backend.as_deref(), Some("http://10.0.0.7:8188"));
}

/// A finished job with `outputs` PNG outputs (and its metadata, which is no picture).
fn done(n: u64, outputs: usize, template: &str) -> Job {
    let mut j = job(n, "succeeded");
    j.payload = json!({"template": template, "params": {"prompt": format!("prompt {n}")}});
    j.finished_ms = Some(2_000 + i64::try_from(n).unwrap());
    let mut list: Vec<serde_json::Value> = (0..outputs)
        .map(|i| json!({"bucket": "out", "key": format!("jobs/{n}/{}-x.png", i + 1), "size": 10, "content_type": "image/png"}))
        .collect();
    list.insert(0, json!({"bucket": "out", "key": format!("jobs/{n}/notes.txt"), "size": 1, "content_type": "text/plain"}));
    j.result = Some(json!({"outputs": list}));
    j
}

#[test]
fn the_gallery_moves_by_tile_row_and_page_and_opens_jobs() {
    let mut s = connected(false, false);
    for n in 10..30 {
        s.put_job(done(n, 1, if n % 2 == 0 { "txt2img" } else { "noop" }));
    }
    // 80x24: four tiles a row, two rows a page.
    s.screen = (80, 24);
    handle(&mut s, ch('7'));
    assert_eq!(s.panel, Panel::Gallery);
    let tiles = super::gallery::tiles(&s);
    // The running job's live preview first, then the outputs newest first
    // (notes.txt is no picture).
    assert_eq!(tiles.len(), 21);
    assert!(tiles[0].output.is_none() && tiles[0].job.status == JobStatus::Running);
    assert_eq!(tiles[1].job.finished_ms, Some(2_029));
    assert_eq!(tiles[1].output.as_ref().unwrap().0, 1);
    let newest = tiles[1].job.id;
    drop(tiles);
    for (k, at) in [
        (key(KeyCode::Left), 0),
        (key(KeyCode::Right), 1),
        (key(KeyCode::Down), 5),
        (key(KeyCode::PageDown), 13),
        (key(KeyCode::PageUp), 5),
        (ch('k'), 1),
        (ch('G'), 20),
        (key(KeyCode::PageDown), 20),
        (ch('g'), 0),
    ] {
        handle(&mut s, k);
        assert_eq!(s.gallery.selected, at, "after {k:?}");
    }
    // A running job has nothing to presign yet.
    assert_eq!(handle(&mut s, ch('o')), None);
    assert!(s.flash.as_ref().unwrap().error);
    handle(&mut s, ch('l'));
    assert_eq!(
        handle(&mut s, ch('o')),
        Some(Command::Presign {
            bucket: "out".into(),
            key: "jobs/29/1-x.png".into()
        })
    );
    // Enter opens the job's details on that picture.
    assert_eq!(handle(&mut s, key(KeyCode::Enter)), None);
    assert_eq!(
        (s.panel, s.jobs_view.detail, s.jobs_view.output),
        (Panel::Jobs, Some(newest), 0)
    );
}

#[test]
fn the_gallery_filters_by_template_prompt_or_status() {
    let mut s = connected(false, false);
    for n in 10..16 {
        s.put_job(done(n, 2, if n % 2 == 0 { "txt2img" } else { "noop" }));
    }
    handle(&mut s, ch('7'));
    handle(&mut s, key(KeyCode::Right));
    handle(&mut s, ch('/'));
    assert!(s.gallery.filtering && !s.jobs_view.filtering);
    assert_eq!(s.panel, Panel::Gallery);
    for c in "txt2".chars() {
        handle(&mut s, ch(c));
    }
    assert_eq!(s.gallery.selected, 0);
    let tiles = super::gallery::tiles(&s);
    assert_eq!(tiles.len(), 6);
    assert!(tiles.iter().all(|t| t.job.payload["template"] == "txt2img"));
    drop(tiles);
    handle(&mut s, key(KeyCode::Enter));
    assert!(!s.gallery.filtering);
    // The prompt and the status match too.
    s.gallery.filter = "prompt 13".into();
    assert_eq!(super::gallery::tiles(&s).len(), 2);
    s.gallery.filter = "running".into();
    assert_eq!(super::gallery::tiles(&s).len(), 1);
    handle(&mut s, ch('/'));
    handle(&mut s, key(KeyCode::Esc));
    assert!(s.gallery.filter.is_empty());
}

#[test]
fn job_details_page_through_outputs_with_tab_and_arrows() {
    let mut s = connected(false, false);
    s.put_job(done(40, 3, "noop"));
    handle(&mut s, ch('2'));
    let id = s
        .visible_jobs()
        .iter()
        .find(|j| j.status == JobStatus::Succeeded)
        .unwrap()
        .id;
    let row = s.visible_jobs().iter().position(|j| j.id == id).unwrap();
    s.jobs_view.selected = row;
    handle(&mut s, key(KeyCode::Enter));
    assert_eq!(s.jobs_view.detail, Some(id));
    for (k, at) in [
        (key(KeyCode::Tab), 1),
        (key(KeyCode::Right), 2),
        (key(KeyCode::Tab), 0),
        (key(KeyCode::Left), 2),
        (key(KeyCode::BackTab), 1),
    ] {
        handle(&mut s, k);
        assert_eq!((s.panel, s.jobs_view.output), (Panel::Jobs, at), "after {k:?}");
    }
    assert_eq!(
        handle(&mut s, ch('o')),
        Some(Command::Presign {
            bucket: "out".into(),
            key: "jobs/40/2-x.png".into()
        })
    );
    handle(&mut s, key(KeyCode::Esc));
    assert_eq!(s.jobs_view.detail, None);
    // Outside the details Tab switches panels again.
    handle(&mut s, key(KeyCode::Tab));
    assert_eq!(s.panel, Panel::Gpus);
}

#[test]
fn resizes_and_pictures_reach_the_state() {
    use crate::dash::picture::{Key, Loaded, Picture, Source};
    let mut s = connected(false, false);
    super::update(
        &mut s,
        super::Msg::Input(ratatui::crossterm::event::Event::Resize(120, 40)),
    );
    assert_eq!(s.screen, (120, 40));
    let key = Key {
        source: Source::Live {
            job: ulid::Ulid::nil(),
        },
        cols: 10,
        rows: 5,
    };
    // A live preview with no newer frame changes nothing.
    s.outcome(Outcome::Picture(Box::new(Loaded {
        key: key.clone(),
        picture: None,
    })));
    assert!(s.pictures.get(&key).is_none());
    s.outcome(Outcome::Picture(Box::new(Loaded {
        key: key.clone(),
        picture: Some(Picture::Failed("waiting for a preview frame…".into())),
    })));
    assert!(matches!(s.pictures.get(&key), Some(Picture::Failed(_))));
}
