//! The alerts panel: firing and pending alerts, most severe first, with since when,
//! the value against the threshold and the summary.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::{Cell, Row, Table, TableState};

use super::boxed;
use super::fmt::{self, Theme};
use crate::alerts::{AlertState, Severity};
use crate::dash::state::State;

pub fn draw(state: &State, theme: Theme, frame: &mut Frame, area: Rect) {
    let rows: Vec<Row> = state
        .alerts
        .iter()
        .map(|a| {
            let sev = match a.severity {
                Severity::Critical => Cell::from("critical").style(theme.bad()),
                Severity::Warning => Cell::from("warning").style(theme.warn()),
            };
            let st = match a.state {
                AlertState::Firing => Cell::from("firing").style(theme.bad()),
                _ => Cell::from("pending").style(theme.warn()),
            };
            let since = a.firing_since_ms.unwrap_or(a.active_since_ms);
            Row::new(vec![
                sev,
                st,
                Cell::from(format!(
                    "{} ({})",
                    fmt::clock(since),
                    fmt::age(state.now_ms - since)
                )),
                Cell::from(a.name.clone()),
                Cell::from(a.summary.clone()),
            ])
        })
        .collect();
    let empty = rows.is_empty();
    let title = if empty {
        " Alerts: none firing or pending ".to_owned()
    } else {
        format!(" Alerts ({}) ", rows.len())
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(14),
            Constraint::Length(20),
            Constraint::Fill(1),
        ],
    )
    .header(Row::new(["SEVERITY", "STATE", "SINCE", "RULE", "SUMMARY"]).style(theme.title()))
    .row_highlight_style(theme.selected())
    .highlight_symbol("▶")
    .block(boxed(title));
    let mut ts = TableState::default().with_selected((!empty).then_some(state.alerts_selected));
    frame.render_stateful_widget(table, area, &mut ts);
}
