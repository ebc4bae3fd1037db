//! Drawing: a pure `draw(&State)` into a ratatui frame. The frame is a header
//! (target, connection, panel tabs), a banner while disconnected or while a
//! critical alert fires, the
//! current panel (each its own module), a footer (a message or the key hints),
//! and at most one dialog on top. Below [`MIN_WIDTH`] x [`MIN_HEIGHT`] it only
//! says the terminal is too small. Pictures ([`picture`]) are placed by key and
//! the keys placed are returned, so the loop can load what is missing.

use std::fmt::Write as _;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::keys::HELP;
use super::picture::Key;
use super::state::{Conn, Modal, Panel, State};

mod alerts;
pub mod fmt;
mod gallery;
mod gpus;
mod jobs;
mod log;
mod overview;
pub mod picture;
#[cfg(test)]
mod picture_tests;
mod prompts;
mod storage;
#[cfg(test)]
mod tests;
mod users;
#[cfg(test)]
mod users_tests;

pub use fmt::Theme;

/// The smallest terminal the dashboard draws in.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

/// Draws the whole screen; returns the pictures it placed.
pub fn draw(state: &State, theme: Theme, frame: &mut Frame) -> Vec<Key> {
    let mut wanted = Vec::new();
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "terminal too small: {}x{} (darkroom needs at least {MIN_WIDTH}x{MIN_HEIGHT})",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return wanted;
    }
    let width = usize::from(area.width);
    let mut banner = Vec::new();
    if let Conn::Disconnected { reason } = &state.conn {
        banner.push(Line::from(Span::styled(
            fmt::fit(&format!(" {reason}; showing the last data received "), width),
            theme.bad(),
        )));
    }
    if let Some(a) = state.critical_firing() {
        banner.push(Line::from(Span::styled(
            fmt::fit(&format!(" CRITICAL: {} ", a.summary), width),
            theme.bad().add_modifier(Modifier::REVERSED),
        )));
    }
    let [header, tabs, banner_area, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(u16::try_from(banner.len()).unwrap_or(0)),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_line(state, theme)), header);
    frame.render_widget(Paragraph::new(tab_line(state, theme, tabs.width)), tabs);
    frame.render_widget(Paragraph::new(banner), banner_area);
    match state.panel {
        Panel::Overview => overview::draw(state, theme, frame, body),
        Panel::Jobs => jobs::draw(state, theme, frame, body, &mut wanted),
        Panel::Gpus => gpus::draw(state, theme, frame, body),
        Panel::Storage => storage::draw(state, theme, frame, body, &mut wanted),
        Panel::Alerts => alerts::draw(state, theme, frame, body),
        Panel::Log => log::draw(state, theme, frame, body),
        Panel::Gallery => gallery::draw(state, theme, frame, body, &mut wanted),
        Panel::Prompts => prompts::draw(state, theme, frame, body, &mut wanted),
        Panel::Users => users::draw(state, theme, frame, body),
    }
    frame.render_widget(Paragraph::new(footer_line(state, theme)), footer);
    if let Some(modal) = &state.modal {
        draw_modal(state, modal, theme, frame, area);
    }
    wanted
}

fn header_line(state: &State, theme: Theme) -> Line<'static> {
    let version = state.snapshot.as_ref().map_or("", |s| s.version.as_str());
    let mut spans = vec![
        Span::styled(format!(" darkroom {version} "), theme.title()),
        Span::raw(format!("│ {} │ ", state.target)),
    ];
    spans.push(match &state.conn {
        Conn::Connecting => Span::styled("connecting…", theme.warn()),
        Conn::Connected => Span::styled("● connected", theme.good()),
        Conn::Disconnected { .. } => Span::styled("disconnected, retrying", theme.bad()),
    });
    if state.frozen {
        spans.push(Span::styled(
            "  [FROZEN: f resumes]",
            theme.warn().add_modifier(Modifier::BOLD),
        ));
    }
    if state.readonly {
        spans.push(Span::styled("  [read-only]", theme.dim()));
    }
    spans.push(Span::styled(
        format!("  {} UTC", fmt::clock(state.now_ms)),
        theme.dim(),
    ));
    Line::from(spans)
}

/// A panel's name where the tab line is short of room.
fn short_title(p: Panel) -> &'static str {
    match p {
        Panel::Overview => "Over",
        Panel::Storage => "Store",
        p => p.title(),
    }
}

/// The panels' tabs; narrower ones (`1:Overview`) when the roomy ones do not fit,
/// and with shorter names (`1:Over`) when even those do not.
fn tab_line(state: &State, theme: Theme, width: u16) -> Line<'static> {
    let labels_of = |title: fn(Panel) -> &'static str| -> Vec<(Panel, String)> {
        Panel::ALL
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut label = format!("{} {}", i + 1, title(*p));
                if *p == Panel::Alerts && !state.alerts.is_empty() {
                    let _ = write!(label, " ({})", state.alerts.len());
                }
                (*p, label)
            })
            .collect()
    };
    let room = |labels: &[(Panel, String)], pad: usize| -> usize {
        1 + labels.iter().map(|(_, l)| l.chars().count() + pad).sum::<usize>()
    };
    let width = usize::from(width);
    let mut labels = labels_of(Panel::title);
    let tight = room(&labels, 3) > width;
    if tight && room(&labels, 1) > width {
        labels = labels_of(short_title);
    }
    let mut spans = vec![Span::raw(" ")];
    for (p, label) in labels {
        let style = if p == state.panel {
            theme.selected().add_modifier(Modifier::BOLD)
        } else {
            theme.dim()
        };
        if tight {
            spans.push(Span::styled(label.replacen(' ', ":", 1), style));
        } else {
            spans.push(Span::styled(format!(" {label} "), style));
        }
        spans.push(Span::raw(" "));
    }
    Line::from(spans)
}

fn footer_line(state: &State, theme: Theme) -> Line<'static> {
    if let Some(f) = &state.flash {
        let style = if f.error { theme.bad() } else { theme.good() };
        return Line::from(Span::styled(format!(" {}", f.text), style));
    }
    let filter = if state.gallery.filtering {
        Some(&state.gallery.filter)
    } else {
        state.jobs_view.filtering.then_some(&state.jobs_view.filter)
    };
    if let Some(filter) = filter {
        return Line::from(vec![
            Span::styled(" filter: ", theme.accent()),
            Span::raw(format!("{filter}▏")),
            Span::styled("  (Enter keep, Esc clear)", theme.dim()),
        ]);
    }
    let details = state.jobs_view.detail.is_some();
    let hints = match (state.panel, state.readonly) {
        (Panel::Jobs, false) if details => {
            "?:help  Tab/←→:outputs  o:URL  c:cancel  r:retry  Esc:back  q:quit"
        }
        (Panel::Jobs, true) if details => "?:help  Tab/←→:outputs  o:URL  Esc:back  f:freeze  q:quit",
        (Panel::Jobs, false) => "?:help  Enter:details  c:cancel  r:retry  n:new  /:filter  f:freeze  q:quit",
        (Panel::Storage, _) => "?:help  Enter:open/presign  y:copy URL  Esc:back  f:freeze  q:quit",
        (Panel::Gallery, _) => "?:help  arrows:move  PgUp/PgDn:page  Enter:job  o:URL  /:filter  q:quit",
        (Panel::Prompts, false) => "?:help  Enter:versions  s:submit  r:reload  Esc:back  f:freeze  q:quit",
        (Panel::Prompts, true) => "?:help  Enter:versions  r:reload  Esc:back  f:freeze  q:quit",
        (Panel::Users, _) => "?:help  ↑↓:user and their days  r:reload  Tab/1-9:panels  f:freeze  q:quit",
        (_, false) => "?:help  Tab/1-9:panels  n:new job  /:filter jobs  f:freeze  q:quit",
        (_, true) => "?:help  Tab/1-9:panels  /:filter jobs  f:freeze  q:quit",
    };
    Line::from(Span::styled(format!(" {hints}"), theme.dim()))
}

/// A box of `w` x `h` centred in `area` (clamped to it).
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn draw_modal(state: &State, modal: &Modal, theme: Theme, frame: &mut Frame, area: Rect) {
    let (title, lines, w) = match modal {
        Modal::Help => {
            let lines = HELP
                .iter()
                .map(|(k, what)| {
                    Line::from(vec![
                        Span::styled(format!("{k:>10}  "), theme.accent()),
                        Span::raw(*what),
                    ])
                })
                .collect::<Vec<_>>();
            ("keys (any key closes)", lines, 76)
        }
        Modal::ConfirmCancel(id) => {
            let label = state
                .jobs
                .get(id)
                .map(super::state::job_label)
                .unwrap_or_default();
            let lines = vec![
                Line::raw(format!("Cancel job {} ({label})?", super::state::short_id(id))),
                Line::raw(""),
                Line::styled("y / Enter: cancel it    n / Esc: keep it", theme.dim()),
            ];
            ("cancel job", lines, 50)
        }
        Modal::ConfirmQuit => {
            let lines = vec![
                Line::raw("Quit and stop the daemon?"),
                Line::raw("Running jobs finish within the grace period, as on SIGTERM."),
                Line::raw(""),
                Line::styled("y / Enter: stop    n / Esc: stay", theme.dim()),
            ];
            ("quit", lines, 64)
        }
        Modal::Form(form) => ("submit a job", form_lines(form, theme), 70),
    };
    #[allow(clippy::cast_possible_truncation)]
    let h = lines.len() as u16 + 2;
    let rect = centered(area, w, h);
    frame.render_widget(Clear, rect);
    let block = Block::default().borders(Borders::ALL).title(format!(" {title} "));
    frame.render_widget(
        Paragraph::new(lines).block(block).wrap(Wrap { trim: false }),
        rect,
    );
}

fn form_lines(form: &super::form::Form, theme: Theme) -> Vec<Line<'static>> {
    let mark = |row: usize| {
        if form.row == row {
            theme.selected()
        } else {
            theme.title()
        }
    };
    let name = form.current().map_or("", |t| t.name.as_str()).to_owned();
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("{:>16} ", "template"), mark(0)),
            Span::raw(format!("◀ {name} ▶")),
        ]),
        Line::styled(
            format!(
                "{:>16} {}",
                "",
                form.current().map_or("", |t| t.description.as_str())
            ),
            theme.dim(),
        ),
    ];
    for (i, ((pname, spec), value)) in form.params().into_iter().zip(&form.values).enumerate() {
        let default = spec
            .default
            .as_ref()
            .map_or_else(|| "(not set)".to_owned(), |d| format!("{d}  (default)"));
        let mut spans = vec![Span::styled(format!("{:>16} ", fmt::fit(pname, 16)), mark(i + 1))];
        if value.is_empty() {
            spans.push(Span::styled(default, theme.dim()));
        } else {
            spans.push(Span::raw(value.clone()));
        }
        if form.row == i + 1 {
            spans.push(Span::raw("▏"));
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::raw(""));
    if let Some(e) = &form.error {
        lines.push(Line::styled(e.clone(), theme.bad()));
    }
    lines.push(Line::styled(
        "Tab/↑↓ field  ←→ template  Enter submit  Esc close",
        theme.dim(),
    ));
    lines
}

/// A panel's box with its title.
fn boxed(title: String) -> Block<'static> {
    Block::default().borders(Borders::TOP).title(title)
}
