//! The prompts panel: opening it loads the listing, Enter loads a prompt's
//! details, `s` submits the prompt (or the chosen version; refused read-only),
//! late details of another prompt are ignored, and both views draw their figures
//! at 80x24.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;

use crate::dash::keys::handle;
use crate::dash::state::{Command, Outcome, Panel, State};
use crate::service::prompts::{PromptDetails, PromptSummary};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn listing() -> Vec<PromptSummary> {
    serde_json::from_value(json!([
        {"name": "hero-shot", "favourite": true, "latest_version": 2, "template": "txt2img", "tags": [],
         "stats": {"uses": 12, "succeeded": 9, "failed": 1, "cancelled": 2, "success_rate": 0.9,
                   "mean_seconds": 8.25, "p95_seconds": 14.5, "ratings": 4, "mean_rating": 4.25}},
        {"name": "thumb", "latest_version": 1, "template": "noop", "tags": [],
         "stats": {"uses": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "ratings": 0}}
    ]))
    .unwrap()
}

fn details() -> PromptDetails {
    let stats = json!({"uses": 3, "succeeded": 3, "failed": 0, "cancelled": 0, "success_rate": 1.0,
                       "mean_seconds": 6.0, "p95_seconds": 7.0, "ratings": 1, "mean_rating": 5.0});
    serde_json::from_value(json!({
        "name": "hero-shot", "description": "product hero", "category": "product", "tags": ["web"],
        "favourite": true, "created_ms": 0, "updated_ms": 0, "stats": stats,
        "versions": [
            {"version": 1, "template": "txt2img", "params": {"prompt": "a red fox"}, "created_ms": 0, "stats": stats},
            {"version": 2, "template": "txt2img", "params": {"prompt": "a red fox, golden hour"}, "created_ms": 1, "stats": stats}
        ],
        "recent": [{"job_id": ulid::Ulid::from_parts(5, 1).to_string(), "version": 2, "status": "succeeded",
                    "seconds": 6.5, "rating": 5, "created_ms": 5}]
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

#[test]
fn the_panel_loads_lists_opens_and_submits() {
    let mut s = State::new("local", true, false);
    assert_eq!(
        handle(&mut s, key(KeyCode::Char('8'))),
        Some(Command::LoadPrompts)
    );
    assert_eq!(s.panel, Panel::Prompts);
    assert!(render(&s).contains("loading…"));
    s.outcome(Outcome::Prompts(Ok(listing())));
    let screen = render(&s);
    assert!(screen.contains("8:Prompts"), "the tabs fit 80 columns:\n{screen}");
    assert!(screen.contains("hero-shot*"), "{screen}");
    assert!(
        screen.contains("90%") && screen.contains("4.2 (4)") && screen.contains("14.5s"),
        "{screen}"
    );

    // s submits the latest version of the prompt under the cursor.
    handle(&mut s, key(KeyCode::Down));
    let Some(Command::Submit(r)) = handle(&mut s, key(KeyCode::Char('s'))) else {
        panic!("no submit")
    };
    assert_eq!(r.prompt.as_deref(), Some("thumb"));

    // Enter opens a prompt; details of another one arriving late are ignored.
    handle(&mut s, key(KeyCode::Up));
    assert_eq!(
        handle(&mut s, key(KeyCode::Enter)),
        Some(Command::LoadPrompt("hero-shot".into()))
    );
    let mut other = details();
    other.name = "thumb".into();
    s.outcome(Outcome::Prompt {
        name: "thumb".into(),
        result: Ok(Box::new(other)),
    });
    assert!(s.prompts.detail.is_none());
    s.outcome(Outcome::Prompt {
        name: "hero-shot".into(),
        result: Ok(Box::new(details())),
    });
    let screen = render(&s);
    assert!(
        screen.contains("@1") && screen.contains("@2") && screen.contains("golden hour"),
        "{screen}"
    );
    assert!(screen.contains("★★★★★"), "{screen}");

    // The cursor starts on the newest version; ↑ picks the first, s submits it.
    handle(&mut s, key(KeyCode::Up));
    let Some(Command::Submit(r)) = handle(&mut s, key(KeyCode::Char('s'))) else {
        panic!("no submit")
    };
    assert_eq!(r.prompt.as_deref(), Some("hero-shot@1"));
    assert_eq!(
        handle(&mut s, key(KeyCode::Char('r'))),
        Some(Command::LoadPrompt("hero-shot".into()))
    );
    handle(&mut s, key(KeyCode::Esc));
    assert!(s.prompts.open.is_none());
    assert_eq!(
        handle(&mut s, key(KeyCode::Char('r'))),
        Some(Command::LoadPrompts)
    );
}

#[test]
fn read_only_refuses_to_submit_and_errors_show() {
    let mut s = State::new("http://gpu:9080", false, true);
    handle(&mut s, key(KeyCode::Char('8')));
    s.outcome(Outcome::Prompts(Ok(listing())));
    assert_eq!(handle(&mut s, key(KeyCode::Char('s'))), None);
    assert!(
        s.flash
            .as_ref()
            .is_some_and(|f| f.error && f.text.contains("read-only"))
    );
    s.outcome(Outcome::Prompts(Err(
        "darkroom answered 503: prompt library: Redis down".into(),
    )));
    assert!(render(&s).contains("Redis down"));
}
