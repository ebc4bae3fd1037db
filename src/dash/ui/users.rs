//! The users panel (9): each user in the usage report with their role and what
//! they used of their limits — generations today and this month, jobs waiting and
//! running, megabytes stored — a cell at or over its limit marked `!` (red in
//! colour) and, when the screen is wide, a bar of the limit they are nearest;
//! below, the selected user's days (jobs by status, GPU time, images, bytes).
//! Without a report it says why: loading, no quotas kept, refused, or failing.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};

use super::boxed;
use super::fmt::{self, Theme};
use crate::dash::state::State;
use crate::dash::users::{NoReport, RELOAD_MS, at_limit, ratio};
use crate::quotas::Limit;
use crate::quotas::usage::UsageDay;
use crate::service::quotas::{Standing, UsageReport};

/// The narrowest body that shows the bar of the nearest limit.
const BAR_MIN_WIDTH: u16 = 120;
const BAR_CELLS: usize = 10;
/// The widest the names' column gets.
const NAME_MAX: usize = 24;
/// The cells beside the names (the columns, their spacing, the cursor).
const FIXED_WIDTH: u16 = 6 + 9 + 11 + 8 + 7 + 14 + 7 + 1;

pub fn draw(state: &State, theme: Theme, frame: &mut Frame, area: Rect) {
    let view = &state.users;
    let Some((report, at_ms)) = &view.report else {
        let text = match &view.problem {
            None => "loading…".to_owned(),
            Some(NoReport::Refused(why)) => format!(
                "No usage to show: {why}. The daemon keeps the usage report only where quotas are \
                 kept, and shows it to admins (and each user their own)."
            ),
            Some(NoReport::Failed(why)) => format!(
                "Cannot read the usage: {why}. Trying again every {} s.",
                RELOAD_MS / 1000
            ),
        };
        return note(frame, area, " Users ", &text, theme);
    };
    let failed = match &view.problem {
        Some(NoReport::Failed(why)) => Some(why.as_str()),
        _ => None,
    };
    let n = u16::try_from(report.users.len()).unwrap_or(u16::MAX);
    let [table_area, problem_area, days_area] = Layout::vertical([
        Constraint::Length(n.saturating_add(2).min(area.height / 2).max(3)),
        Constraint::Length(u16::from(failed.is_some())),
        Constraint::Min(0),
    ])
    .areas(area);
    standings(state, report, *at_ms, theme, frame, table_area);
    if let Some(why) = failed {
        let text = fmt::fit(&format!(" reload failed: {why}"), usize::from(area.width));
        frame.render_widget(Paragraph::new(Span::styled(text, theme.bad())), problem_area);
    }
    days(state, report, theme, frame, days_area);
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

/// Megabytes (10^6 bytes, as `storage_bytes = 5000MB` is written).
fn mb(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let v = bytes as f64 / 1e6;
    if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn limit_text(limit: Option<Limit>, show: impl Fn(u64) -> String) -> String {
    match limit {
        Some(l) if !l.is_unlimited() => show(l.0),
        _ => "∞".to_owned(),
    }
}

/// `used/limit` (and a unit), marked `!` and red at or over the limit.
fn used_cell(
    theme: Theme,
    used: u64,
    limit: Option<Limit>,
    show: impl Fn(u64) -> String,
    unit: &str,
) -> Cell<'static> {
    let text = format!("{}/{}{unit}", show(used), limit_text(limit, &show));
    if at_limit(used, limit) {
        Cell::from(Span::styled(format!("{text}!"), theme.bad()))
    } else {
        Cell::from(text)
    }
}

/// The limit `s` is nearest, as a bar with its share and name.
fn nearest(theme: Theme, s: &Standing) -> Cell<'static> {
    let l = &s.limits;
    let counted = l.counts();
    let candidates = [
        (counted, s.generations_today, l.generations_per_day, "today"),
        (
            counted,
            s.generations_this_month,
            l.generations_per_month,
            "month",
        ),
        (counted, s.waiting, l.max_queued, "waiting"),
        (true, s.running, l.max_running, "running"),
        (true, s.stored_bytes, l.storage_bytes, "stored"),
    ];
    // Among equals, the first (`max_by` keeps the last).
    let top = candidates
        .iter()
        .rev()
        .filter(|c| c.0)
        .filter_map(|&(_, used, limit, name)| ratio(used, limit).map(|r| (r, name)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match top {
        Some((r, name)) => Cell::from(Line::from(vec![
            fmt::bar(theme, r, BAR_CELLS),
            Span::raw(format!(" {:>4} {name}", fmt::percent(r))),
        ])),
        None => Cell::from(Span::styled("no limits", theme.dim())),
    }
}

fn standings(state: &State, report: &UsageReport, at_ms: i64, theme: Theme, frame: &mut Frame, area: Rect) {
    let wide = area.width >= BAR_MIN_WIDTH;
    let plain = |n: u64| n.to_string();
    let rows = report.users.iter().map(|s| {
        let l = &s.limits;
        // Without a counted limit, the ledger skips the user: nothing to show.
        let counted = |used: u64, limit: Option<Limit>| {
            if l.counts() {
                used_cell(theme, used, limit, plain, "")
            } else {
                Cell::from(Span::styled("—", theme.dim()))
            }
        };
        let mut cells = vec![
            Cell::from(s.user.clone()),
            Cell::from(s.role.to_string()),
            counted(s.generations_today, l.generations_per_day),
            counted(s.generations_this_month, l.generations_per_month),
            counted(s.waiting, l.max_queued),
            used_cell(theme, s.running, l.max_running, plain, ""),
            used_cell(theme, s.stored_bytes, l.storage_bytes, mb, " MB"),
        ];
        if wide {
            cells.push(nearest(theme, s));
        }
        Row::new(cells)
    });
    // The names' column as wide as the longest (within reason); the rest fixed.
    let longest = report
        .users
        .iter()
        .map(|s| s.user.chars().count())
        .max()
        .unwrap_or(0);
    let name_width = longest
        .clamp(8, NAME_MAX)
        .min(usize::from(area.width.saturating_sub(FIXED_WIDTH)));
    let mut widths = vec![
        Constraint::Length(u16::try_from(name_width).unwrap_or(4)),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(14),
    ];
    let mut head = vec!["USER", "ROLE", "TODAY", "MONTH", "WAITING", "RUNNING", "STORED"];
    if wide {
        widths.push(Constraint::Length(u16::try_from(BAR_CELLS).unwrap_or(10) + 14));
        head.push("NEAREST LIMIT");
    }
    let title = format!(
        " Users ({}) — as of {} UTC; ! at a limit, — not counted, r reload ",
        report.users.len(),
        fmt::clock(at_ms)
    );
    let table = Table::new(rows, widths)
        .header(Row::new(head).style(theme.title()))
        .row_highlight_style(theme.selected())
        .highlight_symbol("▶")
        .column_spacing(1)
        .block(boxed(title));
    let mut ts = TableState::default().with_selected(Some(state.users.selected));
    frame.render_stateful_widget(table, area, &mut ts);
}

fn day_cells(label: String, d: &UsageDay) -> Vec<String> {
    let n = |k: &str| d.jobs.get(k).copied().unwrap_or(0);
    vec![
        label,
        format!("{:>4}", d.submitted),
        format!("{:>4}", n("succeeded")),
        format!("{:>6}", n("failed")),
        format!("{:>6}", n("cancelled")),
        format!("{:>4}", n("queued") + n("scheduled")),
        format!("{:>4}", n("running")),
        format!("{:>7}", fmt::seconds(d.gpu_seconds)),
        format!("{:>6}", d.images),
        format!("{:>9}", format!("{} MB", mb(d.bytes))),
    ]
}

fn days(state: &State, report: &UsageReport, theme: Theme, frame: &mut Frame, area: Rect) {
    let Some(user) = state.users.current() else {
        return;
    };
    let days = state.users.days();
    let title = format!(
        " {}'s days, {} to {} (UTC, newest first) ",
        user.user, report.from, report.to
    );
    if days.is_empty() {
        let text = format!("No jobs from {} to {}.", report.from, report.to);
        return note(frame, area, &title, &text, theme);
    }
    let mut total = UsageDay::default();
    for d in &days {
        for (k, v) in &d.jobs {
            *total.jobs.entry(k.clone()).or_default() += v;
        }
        total.submitted += d.submitted;
        total.gpu_seconds += d.gpu_seconds;
        total.images += d.images;
        total.bytes += d.bytes;
    }
    let mut rows: Vec<Row> = days
        .iter()
        .map(|d| Row::new(day_cells(d.day.clone(), d)))
        .collect();
    rows.push(Row::new(day_cells("total".into(), &total)).style(theme.title()));
    let widths = [
        Constraint::Length(10),
        Constraint::Length(4),
        Constraint::Length(4),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(4),
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(9),
    ];
    let head = [
        "DAY",
        "JOBS",
        "  OK",
        "FAILED",
        "CANCEL",
        "WAIT",
        " RUN",
        "    GPU",
        "IMAGES",
        "   STORED",
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(head).style(theme.title()))
        .column_spacing(1)
        .block(boxed(title));
    frame.render_widget(table, area);
}
