//! The users panel: opening it loads the report, it is loaded again every
//! [`RELOAD_MS`] while shown (not elsewhere, not frozen), ↑↓ pick the user whose
//! days show and a reload keeps the cursor on them, and a refusal or a failure
//! says so instead of failing. The fixture report (`report`) is the snapshots' too.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;

use super::{NoReport, RELOAD_MS};
use crate::client::ClientError;
use crate::dash::keys::handle;
use crate::dash::link::LinkError;
use crate::dash::state::{Command, Outcome, Panel, State};
use crate::service::ServiceError;
use crate::service::quotas::UsageReport;

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// Limits as the daemon reports a user's and a viewer's (the planned defaults).
fn planned() -> serde_json::Value {
    json!({"generations_per_day": 100, "generations_per_month": 1000, "max_running": 3,
           "max_queued": 100, "max_pixels": 1_048_576, "max_steps": 150, "max_priority": 0,
           "storage_bytes": 5_000_000_000u64, "share": 1.0})
}

/// An admin (no limits), `ana` at her daily limit, and `kim`, a viewer who has
/// run nothing, on 2026-12-02.
pub(crate) fn report() -> UsageReport {
    serde_json::from_value(json!({
        "from": "2026-12-01", "to": "2026-12-02",
        "users": [
            {"user": "admin", "role": "admin", "limits": {"share": 1.0}, "generations_today": 0,
             "generations_this_month": 0, "waiting": 0, "running": 1, "stored_bytes": 9_500_000},
            {"user": "ana", "role": "user", "limits": planned(), "generations_today": 100,
             "generations_this_month": 163, "waiting": 4, "running": 2, "stored_bytes": 1_234_567_890},
            {"user": "kim", "role": "viewer", "limits": planned(), "generations_today": 0,
             "generations_this_month": 0, "waiting": 0, "running": 0, "stored_bytes": 0},
        ],
        "days": [
            {"user": "admin", "day": "2026-12-01", "jobs": {"succeeded": 5}, "submitted": 5,
             "gpu_seconds": 42.5, "images": 5, "bytes": 6_000_000},
            {"user": "ana", "day": "2026-12-01", "jobs": {"succeeded": 60, "failed": 2, "cancelled": 1},
             "submitted": 63, "gpu_seconds": 512.0, "images": 60, "bytes": 740_000_000},
            {"user": "admin", "day": "2026-12-02", "jobs": {"succeeded": 3, "running": 1},
             "submitted": 4, "gpu_seconds": 20.0, "images": 3, "bytes": 3_500_000},
            {"user": "ana", "day": "2026-12-02",
             "jobs": {"succeeded": 90, "failed": 3, "cancelled": 1, "queued": 4, "running": 2},
             "submitted": 100, "gpu_seconds": 1234.5, "images": 90, "bytes": 494_567_890},
        ],
    }))
    .unwrap()
}

fn render(state: &State) -> String {
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| {
        crate::dash::ui::draw(state, crate::dash::ui::fmt::Theme { color: false }, f);
    })
    .unwrap();
    t.backend().to_string()
}

fn loaded() -> State {
    let mut s = State::new("local", true, false);
    s.tick(1_000_000);
    assert_eq!(handle(&mut s, key(KeyCode::Char('9'))), Some(Command::LoadUsage));
    s.outcome(Outcome::Usage(Ok(Box::new(report()))));
    s
}

#[test]
fn the_panel_loads_and_picks_a_user_whose_days_show() {
    let mut s = State::new("local", true, false);
    assert_eq!(handle(&mut s, key(KeyCode::Char('9'))), Some(Command::LoadUsage));
    assert_eq!(s.panel, Panel::Users);
    assert!(render(&s).contains("loading…"));
    s.outcome(Outcome::Usage(Ok(Box::new(report()))));
    let screen = render(&s);
    assert!(screen.contains("9:Users"), "the tabs fit 80 columns:\n{screen}");
    assert!(
        screen.contains("100/100!"),
        "ana is at her daily limit:\n{screen}"
    );
    assert!(screen.contains("admin's days"), "{screen}");

    // ↓ picks ana: her days, newest first, and their total.
    handle(&mut s, key(KeyCode::Down));
    assert_eq!(s.users.current().map(|u| u.user.as_str()), Some("ana"));
    let days: Vec<&str> = s.users.days().iter().map(|d| d.day.as_str()).collect();
    assert_eq!(days, ["2026-12-02", "2026-12-01"]);
    let screen = render(&s);
    assert!(
        screen.contains("ana's days") && screen.contains("total"),
        "{screen}"
    );

    // The selection stops at the ends; kim has no days.
    handle(&mut s, key(KeyCode::End));
    handle(&mut s, key(KeyCode::Down));
    assert_eq!(s.users.current().map(|u| u.user.as_str()), Some("kim"));
    assert!(s.users.days().is_empty());
    assert!(render(&s).contains("No jobs from 2026-12-01 to 2026-12-02"));
    assert_eq!(handle(&mut s, key(KeyCode::Char('r'))), Some(Command::LoadUsage));
}

#[test]
fn a_reload_keeps_the_cursor_on_its_user() {
    let mut s = loaded();
    handle(&mut s, key(KeyCode::Down));
    // A new user sorts first: the cursor follows ana.
    let mut r = report();
    let mut bo = r.users[2].clone();
    bo.user = "bo".into();
    r.users.insert(0, bo);
    s.outcome(Outcome::Usage(Ok(Box::new(r))));
    assert_eq!(s.users.current().map(|u| u.user.as_str()), Some("ana"));
    // ana gone and fewer users: the cursor stays in the list.
    let mut r = report();
    r.users.truncate(1);
    handle(&mut s, key(KeyCode::End));
    s.outcome(Outcome::Usage(Ok(Box::new(r))));
    assert_eq!(s.users.selected, 0);
}

#[test]
fn the_report_is_read_again_every_ten_seconds_while_shown() {
    let mut s = loaded();
    let asked = s.now_ms;
    s.tick(asked + RELOAD_MS - 250);
    assert_eq!(s.due(), None);
    s.tick(asked + RELOAD_MS);
    assert_eq!(s.due(), Some(Command::LoadUsage));
    assert_eq!(s.due(), None, "asked once");

    // Not while frozen, nor on another panel.
    s.frozen = true;
    s.tick(asked + 3 * RELOAD_MS);
    assert_eq!(s.due(), None);
    s.frozen = false;
    handle(&mut s, key(KeyCode::Char('1')));
    assert_eq!(s.due(), None);
    // Coming back asks at once; Tab from the prompts panel does too, and wraps.
    handle(&mut s, key(KeyCode::Char('8')));
    assert_eq!(handle(&mut s, key(KeyCode::Tab)), Some(Command::LoadUsage));
    assert_eq!(s.due(), None);
    assert_eq!(handle(&mut s, key(KeyCode::Tab)), None);
    assert_eq!(s.panel, Panel::Overview);
}

#[test]
fn no_quotas_or_a_refusal_is_said_and_a_failure_keeps_the_last_report() {
    let local = LinkError::Local(ServiceError::NotFound("this server keeps no quotas".into()));
    assert!(matches!(NoReport::of(&local), NoReport::Refused(_)));
    let forbidden = LinkError::Local(ServiceError::Forbidden("admins only".into()));
    assert!(matches!(NoReport::of(&forbidden), NoReport::Refused(_)));
    // An older daemon without the route answers a bare 404.
    let bare = LinkError::Remote(ClientError::Api {
        status: 404,
        code: String::new(),
        message: "Not Found".into(),
        field: None,
    });
    assert!(matches!(NoReport::of(&bare), NoReport::Refused(_)));
    let down = LinkError::Remote(ClientError::Decode("eof".into()));
    assert!(matches!(NoReport::of(&down), NoReport::Failed(_)));

    let mut s = loaded();
    s.outcome(Outcome::Usage(Err(NoReport::of(&down))));
    let screen = render(&s);
    assert!(
        screen.contains("reload failed") && screen.contains("100/100!"),
        "{screen}"
    );
    s.outcome(Outcome::Usage(Err(NoReport::of(&local))));
    let screen = render(&s);
    assert!(
        screen.contains("No usage to show") && screen.contains("keeps no quotas"),
        "{screen}"
    );
    // Keys do nothing harmful without a report.
    assert_eq!(handle(&mut s, key(KeyCode::Down)), None);
    assert_eq!(s.users.selected, 0);
}
