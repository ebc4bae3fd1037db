//! The prompts panel (8): the saved prompts with uses, success rate, mean and
//! p95 time and mean rating; Enter opens one — its versions with the same
//! figures each (↑↓ picks one, its parameters shown under them) and the pictures
//! of its latest succeeded runs; `s` submits the prompt (in the details, the
//! chosen version).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState, Wrap};

use super::fmt::{self, Theme};
use super::{boxed, picture};
use crate::dash::picture::{Key, Source};
use crate::dash::prompts::recent_pictures;
use crate::dash::state::{State, short_id};
use crate::prompts::Stats;
use crate::service::prompts::PromptDetails;

/// How many pictures of recent runs the details show at most.
const PICTURES: usize = 4;

pub fn draw(state: &State, theme: Theme, frame: &mut Frame, area: Rect, wanted: &mut Vec<Key>) {
    match (&state.prompts.open, &state.prompts.detail) {
        (Some(_), Some(Ok(d))) => details(state, d, theme, frame, area, wanted),
        (Some(name), Some(Err(e))) => note(frame, area, &format!(" {name} "), e, theme),
        (Some(name), None) => note(frame, area, &format!(" {name} "), "loading…", theme),
        (None, _) => listing(state, theme, frame, area),
    }
}

fn note(frame: &mut Frame, area: Rect, title: &str, text: &str, theme: Theme) {
    let block = boxed(title.to_owned());
    let body = block.inner(area);
    frame.render_widget(block, area);
    frame.render_widget(
        Paragraph::new(text.to_owned())
            .style(theme.dim())
            .wrap(Wrap { trim: true }),
        body,
    );
}

fn stat_cells(s: &Stats) -> [String; 5] {
    let pct = s.success_rate.map_or_else(|| "-".into(), fmt::percent);
    let secs = |x: Option<f64>| x.map_or_else(|| "-".into(), fmt::seconds);
    let rating = s
        .mean_rating
        .map_or_else(|| "-".into(), |r| format!("{r:.1} ({})", s.ratings));
    [
        s.uses.to_string(),
        pct,
        secs(s.mean_seconds),
        secs(s.p95_seconds),
        rating,
    ]
}

const STAT_HEAD: [&str; 5] = ["USES", "OK", "MEAN", "P95", "RATING"];

fn stat_widths() -> [Constraint; 5] {
    [
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(9),
    ]
}

fn listing(state: &State, theme: Theme, frame: &mut Frame, area: Rect) {
    let list = match &state.prompts.list {
        None => return note(frame, area, " Prompts ", "loading…", theme),
        Some(Err(e)) => return note(frame, area, " Prompts ", e, theme),
        Some(Ok(list)) => list,
    };
    let title = format!(" Prompts ({}) — Enter versions, s submit, r reload ", list.len());
    if list.is_empty() {
        let text = "No saved prompts yet: `darkroom prompts save NAME --template T -p prompt=...` \
                    or POST /api/v1/prompts.";
        return note(frame, area, &title, text, theme);
    }
    let rows = list.iter().map(|p| {
        let star = if p.favourite { "*" } else { "" };
        let mut cells = vec![
            format!("{}{star}", p.name),
            format!("@{}", p.latest_version),
            p.template.clone(),
        ];
        cells.extend(stat_cells(&p.stats));
        Row::new(cells)
    });
    let mut widths = vec![Constraint::Fill(1), Constraint::Length(4), Constraint::Length(10)];
    widths.extend(stat_widths());
    let mut head = vec!["PROMPT", "V", "TEMPLATE"];
    head.extend(STAT_HEAD);
    let table = Table::new(rows, widths)
        .header(Row::new(head).style(theme.title()))
        .row_highlight_style(theme.selected())
        .highlight_symbol("▶")
        .column_spacing(1)
        .block(boxed(title));
    let mut ts = TableState::default().with_selected(Some(state.prompts.selected));
    frame.render_stateful_widget(table, area, &mut ts);
}

fn details(
    state: &State,
    d: &PromptDetails,
    theme: Theme,
    frame: &mut Frame,
    area: Rect,
    wanted: &mut Vec<Key>,
) {
    let jobs = recent_pictures(d);
    let picture_rows = if jobs.is_empty() || state.graphics.is_none() {
        0
    } else {
        (area.height / 3).max(5)
    };
    let version_rows = u16::try_from(d.versions.len())
        .unwrap_or(u16::MAX)
        .saturating_add(2)
        .min(area.height / 3);
    let [about, versions, params, runs, pictures] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(version_rows),
        Constraint::Length(3),
        Constraint::Min(0),
        Constraint::Length(picture_rows),
    ])
    .areas(area);

    let mut facts = vec![Span::styled(d.description.clone(), theme.accent())];
    if let Some(c) = &d.category {
        facts.push(Span::styled(format!("  category {c}"), theme.dim()));
    }
    if !d.tags.is_empty() {
        facts.push(Span::styled(format!("  tags {}", d.tags.join(", ")), theme.dim()));
    }
    let fav = if d.favourite { " *" } else { "" };
    let title = format!(" {}{fav} — ↑↓ version, s submit it, r reload, Esc back ", d.name);
    let block = boxed(title);
    frame.render_widget(Paragraph::new(Line::from(facts)).block(block), about);

    let rows = d.versions.iter().map(|v| {
        let mut cells = vec![format!("@{}", v.version.version), v.version.template.clone()];
        cells.extend(stat_cells(&v.stats));
        Row::new(cells)
    });
    let mut widths = vec![Constraint::Length(5), Constraint::Fill(1)];
    widths.extend(stat_widths());
    let mut head = vec!["VERSION", "TEMPLATE"];
    head.extend(STAT_HEAD);
    let table = Table::new(rows, widths)
        .header(Row::new(head).style(theme.title()))
        .row_highlight_style(theme.selected())
        .highlight_symbol("▶")
        .column_spacing(1);
    let mut ts = TableState::default().with_selected(Some(state.prompts.version));
    frame.render_stateful_widget(table, versions, &mut ts);

    if let Some(v) = d.versions.get(state.prompts.version) {
        let text = serde_json::to_string(&v.version.params).unwrap_or_default();
        frame.render_widget(
            Paragraph::new(text).style(theme.dim()).wrap(Wrap { trim: true }),
            params,
        );
    }

    let lines: Vec<Line> = d
        .recent
        .iter()
        .map(|r| {
            let status = r.status.map_or_else(|| "gone".to_owned(), |s| s.to_string());
            let style = r.status.map_or(theme.dim(), |s| theme.status(s));
            let mut spans = vec![
                Span::raw(format!("{}  @{:<3} ", short_id(&r.job_id), r.version)),
                Span::styled(format!("{status:<10}"), style),
            ];
            if let Some(s) = r.seconds {
                spans.push(Span::raw(format!(" {:>7}", fmt::seconds(s))));
            }
            if let Some(x) = r.rating {
                spans.push(Span::styled(
                    format!("  {}", "★".repeat(usize::from(x))),
                    theme.warn(),
                ));
            }
            if let Some(c) = &r.campaign {
                spans.push(Span::styled(format!("  campaign {c}"), theme.dim()));
            }
            Line::from(spans)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(boxed(" latest runs ".into())), runs);

    if picture_rows > 0 {
        let n = jobs.len().min(PICTURES);
        let slots = Layout::horizontal(vec![Constraint::Fill(1); n]).split(pictures);
        for (job, slot) in jobs.iter().zip(slots.iter()) {
            picture::draw(
                state,
                Source::Output { job: *job, n: 0 },
                *slot,
                frame,
                theme,
                wanted,
            );
        }
    }
}
