//! Keys, in the k9s / htop tradition (all listed by `?`): what each does to the
//! [`State`] and which [`Command`] it asks for. Pure, so every binding is a unit
//! test.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::form::Form;
use super::state::{Browse, Command, Modal, Panel, State};
use crate::queue::JobStatus;

/// The help screen's lines: key, what it does.
pub const HELP: &[(&str, &str)] = &[
    (
        "Tab / 1-9",
        "switch panel (Overview, Jobs, GPUs, Storage, Alerts, Log, Gallery, Prompts, Users)",
    ),
    (
        "↑↓ / j k",
        "move (←→ h l too in the gallery); PgUp PgDn, g G: page, top, bottom",
    ),
    ("Enter", "open: job details, bucket, folder; presign an object"),
    ("Tab / ←→", "job details: the next / previous output's picture"),
    ("Esc / h", "back"),
    ("/", "filter jobs (id, template, status, backend), or the gallery"),
    (
        "Enter / s",
        "prompts: a prompt's versions and pictures; submit it (the version)",
    ),
    ("c", "cancel the selected job (asks first)"),
    ("r", "retry a failed or cancelled job; prompts, users: reload"),
    ("n", "submit a job from a template"),
    ("y / o", "copy the selected object's or output's presigned URL"),
    ("f", "freeze / unfreeze the display"),
    ("?", "this help"),
    ("q", "quit (local mode: stops the daemon, after asking)"),
];

/// Handles one key press; opening the prompts panel loads its listing, opening
/// the users panel the usage report.
pub fn handle(state: &mut State, key: KeyEvent) -> Option<Command> {
    let before = state.panel;
    let command = handle_key(state, key);
    if command.is_some() || state.panel == before {
        return command;
    }
    match state.panel {
        Panel::Prompts => Some(Command::LoadPrompts),
        Panel::Users => Some(state.ask_usage()),
        _ => None,
    }
}

fn handle_key(state: &mut State, key: KeyEvent) -> Option<Command> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && matches!(key.code, KeyCode::Char('c' | 'q')) {
        state.quit = true;
        return Some(Command::Quit);
    }
    if let Some(modal) = state.modal.take() {
        return modal_key(state, modal, key);
    }
    if state.jobs_view.filtering || state.gallery.filtering {
        filter_key(state, key);
        return None;
    }
    let in_details = state.panel == Panel::Jobs && state.jobs_view.detail.is_some();
    if in_details && matches!(key.code, KeyCode::Tab | KeyCode::BackTab) {
        return panel_key(state, key);
    }
    match key.code {
        KeyCode::Char('?') => state.modal = Some(Modal::Help),
        KeyCode::Char('q') => {
            if state.local {
                state.modal = Some(Modal::ConfirmQuit);
            } else {
                state.quit = true;
                return Some(Command::Quit);
            }
        }
        KeyCode::Tab => state.panel = Panel::ALL[(state.panel.index() + 1) % Panel::ALL.len()],
        KeyCode::BackTab => {
            state.panel = Panel::ALL[(state.panel.index() + Panel::ALL.len() - 1) % Panel::ALL.len()];
        }
        KeyCode::Char(c @ '1'..='9') => state.panel = Panel::ALL[(c as usize) - ('1' as usize)],
        KeyCode::Char('f') => {
            if state.frozen {
                state.thaw();
            } else {
                state.frozen = true;
            }
        }
        KeyCode::Char('n') => {
            if refuse_readonly(state) {
                return None;
            }
            if state.templates.is_empty() {
                state.warn("the daemon offers no templates".into());
            } else {
                state.modal = Some(Modal::Form(Form::new(state.templates.clone())));
            }
        }
        KeyCode::Char('/') if state.panel == Panel::Gallery => state.gallery.filtering = true,
        KeyCode::Char('/') => {
            state.panel = Panel::Jobs;
            state.jobs_view.detail = None;
            state.jobs_view.filtering = true;
        }
        _ => return panel_key(state, key),
    }
    None
}

fn refuse_readonly(state: &mut State) -> bool {
    if state.readonly {
        state.warn("read-only dashboard (--readonly): actions are off".into());
    }
    state.readonly
}

fn modal_key(state: &mut State, modal: Modal, key: KeyEvent) -> Option<Command> {
    let yes = matches!(key.code, KeyCode::Char('y' | 'Y') | KeyCode::Enter);
    let no = matches!(key.code, KeyCode::Char('n' | 'N') | KeyCode::Esc);
    match modal {
        Modal::Help => None,
        Modal::ConfirmCancel(id) if yes => Some(Command::Cancel(id.to_string())),
        Modal::ConfirmQuit if yes => {
            state.quit = true;
            Some(Command::Quit)
        }
        m @ (Modal::ConfirmCancel(_) | Modal::ConfirmQuit) => {
            if !no {
                state.modal = Some(m);
            }
            None
        }
        Modal::Form(mut form) => {
            match key.code {
                KeyCode::Esc => return None,
                KeyCode::Enter => match form.request() {
                    Ok(request) => return Some(Command::Submit(Box::new(request))),
                    Err(e) => form.error = Some(e),
                },
                KeyCode::Tab | KeyCode::Down => form.next_row(),
                KeyCode::BackTab | KeyCode::Up => form.prev_row(),
                KeyCode::Left => form.cycle_template(false),
                KeyCode::Right => form.cycle_template(true),
                KeyCode::Backspace => form.backspace(),
                KeyCode::Char(c) => form.type_char(c),
                _ => {}
            }
            state.modal = Some(Modal::Form(form));
            None
        }
    }
}

fn filter_key(state: &mut State, key: KeyEvent) {
    let (filter, filtering, selected) = if state.gallery.filtering {
        let g = &mut state.gallery;
        (&mut g.filter, &mut g.filtering, &mut g.selected)
    } else {
        let j = &mut state.jobs_view;
        (&mut j.filter, &mut j.filtering, &mut j.selected)
    };
    match key.code {
        KeyCode::Enter => *filtering = false,
        KeyCode::Esc => {
            *filtering = false;
            filter.clear();
        }
        KeyCode::Backspace => {
            filter.pop();
        }
        KeyCode::Char(c) => filter.push(c),
        _ => {}
    }
    *selected = 0;
}

/// Up/down/page moves as a signed step; `None` for other keys.
pub(super) fn movement(key: &KeyEvent) -> Option<isize> {
    Some(match key.code {
        KeyCode::Up | KeyCode::Char('k') => -1,
        KeyCode::Down | KeyCode::Char('j') => 1,
        KeyCode::PageUp => -10,
        KeyCode::PageDown => 10,
        KeyCode::Home | KeyCode::Char('g') => isize::MIN / 2,
        KeyCode::End | KeyCode::Char('G') => isize::MAX / 2,
        _ => return None,
    })
}

pub(super) fn step(at: usize, by: isize, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let max = isize::try_from(len - 1).unwrap_or(isize::MAX);
    usize::try_from(isize::try_from(at).unwrap_or(0).saturating_add(by).clamp(0, max)).unwrap_or(0)
}

fn panel_key(state: &mut State, key: KeyEvent) -> Option<Command> {
    match state.panel {
        Panel::Jobs => jobs_key(state, key),
        Panel::Storage => storage_key(state, key),
        Panel::Alerts => {
            if let Some(by) = movement(&key) {
                state.alerts_selected = step(state.alerts_selected, by, state.alerts.len());
            }
            None
        }
        Panel::Log => {
            if let Some(by) = movement(&key) {
                // Up goes back in time: the scroll counts lines from the newest.
                state.log_scroll = step(state.log_scroll, -by, state.logs.len());
            }
            None
        }
        Panel::Gallery => gallery_key(state, key),
        Panel::Prompts => super::prompts::key(state, key),
        Panel::Users => super::users::key(state, key),
        Panel::Overview | Panel::Gpus => None,
    }
}

fn gallery_key(state: &mut State, key: KeyEvent) -> Option<Command> {
    let grid = super::gallery::grid_of_screen(state.screen);
    let tiles = super::gallery::tiles(state);
    let cols = isize::try_from(grid.cols).unwrap_or(1);
    let page = isize::try_from(grid.per_page()).unwrap_or(1);
    let by = match key.code {
        KeyCode::Left | KeyCode::Char('h') => Some(-1),
        KeyCode::Right | KeyCode::Char('l') => Some(1),
        KeyCode::Up | KeyCode::Char('k') => Some(-cols),
        KeyCode::Down | KeyCode::Char('j') => Some(cols),
        KeyCode::PageUp => Some(-page),
        KeyCode::PageDown => Some(page),
        _ => movement(&key),
    };
    if let Some(by) = by {
        state.gallery.selected = step(state.gallery.selected, by, tiles.len());
        return None;
    }
    let tile = tiles.get(state.gallery.selected)?;
    let (id, output) = (tile.job.id, tile.output.clone());
    match key.code {
        KeyCode::Enter => {
            let n = output.as_ref().map_or(0, |(n, _)| *n);
            let index = super::gallery::image_outputs(tile.job)
                .iter()
                .position(|(i, _)| *i == n)
                .unwrap_or(0);
            state.panel = Panel::Jobs;
            state.jobs_view.detail = Some(id);
            state.jobs_view.detail_scroll = 0;
            state.jobs_view.output = index;
            None
        }
        KeyCode::Char('o' | 'y') => match output {
            Some((_, o)) => Some(Command::Presign {
                bucket: o.bucket,
                key: o.key,
            }),
            None => {
                state.warn("the job is still running: it has no output to presign yet".into());
                None
            }
        },
        _ => None,
    }
}

fn jobs_key(state: &mut State, key: KeyEvent) -> Option<Command> {
    let target = match state.jobs_view.detail {
        Some(id) => state.jobs.get(&id).map(|j| (j.id, j.status)),
        None => state.selected_job().map(|j| (j.id, j.status)),
    };
    if let Some(id) = state.jobs_view.detail {
        let outputs = state
            .jobs
            .get(&id)
            .map(super::gallery::image_outputs)
            .unwrap_or_default();
        let view = &mut state.jobs_view;
        match key.code {
            KeyCode::Tab | KeyCode::Right | KeyCode::Char('l') => {
                view.output = (view.output + 1) % outputs.len().max(1);
                return None;
            }
            KeyCode::BackTab | KeyCode::Left => {
                view.output = (view.output + outputs.len().max(1) - 1) % outputs.len().max(1);
                return None;
            }
            KeyCode::Char('o' | 'y') => {
                let Some((_, o)) = outputs.into_iter().nth(view.output) else {
                    state.warn("this job has no output to presign".into());
                    return None;
                };
                return Some(Command::Presign {
                    bucket: o.bucket,
                    key: o.key,
                });
            }
            _ => {}
        }
    }
    match key.code {
        KeyCode::Enter if state.jobs_view.detail.is_none() => {
            state.jobs_view.detail = target.map(|t| t.0);
            state.jobs_view.output = 0;
            state.jobs_view.detail_scroll = 0;
        }
        KeyCode::Esc | KeyCode::Char('h') => state.jobs_view.detail = None,
        KeyCode::Char('c') => {
            let (id, status) = target?;
            if refuse_readonly(state) {
                return None;
            }
            if status.is_terminal() {
                state.warn(format!("job {} already {status}", super::state::short_id(&id)));
            } else {
                state.modal = Some(Modal::ConfirmCancel(id));
            }
        }
        KeyCode::Char('r') => {
            let (id, status) = target?;
            if refuse_readonly(state) {
                return None;
            }
            if matches!(status, JobStatus::Failed | JobStatus::Cancelled) {
                return Some(Command::Retry(id.to_string()));
            }
            state.warn(format!(
                "only failed or cancelled jobs can be retried (this one is {status})"
            ));
        }
        _ => {
            let by = movement(&key)?;
            if state.jobs_view.detail.is_some() {
                let scroll = isize::try_from(state.jobs_view.detail_scroll)
                    .unwrap_or(0)
                    .saturating_add(by)
                    .clamp(0, 500);
                state.jobs_view.detail_scroll = u16::try_from(scroll).unwrap_or(0);
            } else {
                let len = state.visible_jobs().len();
                state.jobs_view.selected = step(state.jobs_view.selected, by, len);
            }
        }
    }
    None
}

fn storage_key(state: &mut State, key: KeyEvent) -> Option<Command> {
    let Some(browse) = &mut state.storage_view.browse else {
        let buckets = state
            .snapshot
            .as_ref()
            .map(|s| s.buckets.clone())
            .unwrap_or_default();
        if let Some(by) = movement(&key) {
            state.storage_view.selected = step(state.storage_view.selected, by, buckets.len());
        } else if key.code == KeyCode::Enter {
            let bucket = buckets.get(state.storage_view.selected)?.name.clone();
            state.storage_view.browse = Some(Browse {
                bucket: bucket.clone(),
                ..Browse::default()
            });
            return Some(Command::ListObjects {
                bucket,
                prefix: String::new(),
            });
        }
        return None;
    };
    let (prefixes, objects) = browse
        .page
        .as_ref()
        .map(|p| {
            (
                p.prefixes.clone(),
                p.objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
            )
        })
        .unwrap_or_default();
    if let Some(by) = movement(&key) {
        browse.selected = step(browse.selected, by, prefixes.len() + objects.len());
        return None;
    }
    match key.code {
        KeyCode::Esc | KeyCode::Left | KeyCode::Backspace | KeyCode::Char('h') => {
            if browse.prefix.is_empty() {
                state.storage_view.browse = None;
                return None;
            }
            // Up one folder: drop the last `name/`.
            let trimmed = browse.prefix.trim_end_matches('/');
            browse.prefix = trimmed
                .rfind('/')
                .map_or(String::new(), |i| trimmed[..=i].to_owned());
            Some(open_folder(browse))
        }
        KeyCode::Enter | KeyCode::Right | KeyCode::Char('l' | 'y') => {
            if let Some(p) = prefixes.get(browse.selected) {
                if key.code == KeyCode::Char('y') {
                    return None;
                }
                browse.prefix.clone_from(p);
                return Some(open_folder(browse));
            }
            let key = objects.get(browse.selected.checked_sub(prefixes.len())?)?.clone();
            Some(Command::Presign {
                bucket: browse.bucket.clone(),
                key,
            })
        }
        _ => None,
    }
}

fn open_folder(browse: &mut Browse) -> Command {
    browse.page = None;
    browse.selected = 0;
    browse.error = None;
    Command::ListObjects {
        bucket: browse.bucket.clone(),
        prefix: browse.prefix.clone(),
    }
}
