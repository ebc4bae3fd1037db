//! The storage panel: buckets with object counts, bytes, lifecycle rules and the
//! latest expirations; Enter browses a bucket one folder at a time, and Enter on
//! an object presigns its URL (copied to the terminal's clipboard with OSC 52 and
//! shown in full).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};

use super::boxed;
use super::fmt::{self, Theme};
use crate::dash::state::{Browse, State};

pub fn draw(state: &State, theme: Theme, frame: &mut Frame, area: Rect) {
    match &state.storage_view.browse {
        Some(b) => browse(state, b, theme, frame, area),
        None => buckets(state, theme, frame, area),
    }
}

fn buckets(state: &State, theme: Theme, frame: &mut Frame, area: Rect) {
    let buckets = state
        .snapshot
        .as_ref()
        .map(|s| s.buckets.as_slice())
        .unwrap_or_default();
    let width = usize::from(area.width);
    let items: Vec<ListItem> = buckets
        .iter()
        .map(|b| {
            let mut lines = vec![Line::from(vec![
                Span::styled(format!("{:<28}", fmt::fit(&b.name, 28)), theme.title()),
                Span::raw(format!("{:>9} objects  {:>10}", b.objects, fmt::bytes(b.bytes))),
            ])];
            for rule in &b.lifecycle {
                lines.push(Line::styled(
                    fmt::fit(&format!("    lifecycle: {rule}"), width),
                    theme.dim(),
                ));
            }
            ListItem::new(lines)
        })
        .collect();
    let expirations: Vec<Line> = buckets
        .iter()
        .flat_map(|b| b.recent_expirations.iter())
        .rev()
        .take(5)
        .map(|e| {
            Line::styled(
                fmt::fit(
                    &format!("{}  expired {}/{}", fmt::clock(e.at_ms), e.bucket, e.key),
                    width,
                ),
                theme.dim(),
            )
        })
        .collect();
    let exp_rows = if expirations.is_empty() {
        0
    } else {
        u16::try_from(expirations.len() + 1).unwrap_or(6)
    };
    let [list_area, exp_area] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(exp_rows)]).areas(area);
    let title = format!(" Buckets ({}) — Enter to browse ", buckets.len());
    selectable(frame, list_area, items, title, state.storage_view.selected, theme);
    if !expirations.is_empty() {
        frame.render_widget(
            Paragraph::new(expirations).block(boxed(" Recent expirations ".into())),
            exp_area,
        );
    }
}

fn browse(state: &State, b: &Browse, theme: Theme, frame: &mut Frame, area: Rect) {
    let url_rows = if b.url.is_some() { 4 } else { 0 };
    let [list_area, url_area] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(url_rows)]).areas(area);
    let title = format!(" {}/{} — Enter open/presign, Esc up ", b.bucket, b.prefix);
    let items: Vec<ListItem> = match (&b.page, &b.error) {
        (_, Some(e)) => vec![ListItem::new(Line::styled(e.clone(), theme.bad()))],
        (None, None) => vec![ListItem::new(Line::styled("loading…", theme.dim()))],
        (Some(page), None) => {
            let mut items: Vec<ListItem> = page
                .prefixes
                .iter()
                .map(|p| {
                    ListItem::new(Line::styled(
                        format!("▸ {}", &p[b.prefix.len()..]),
                        theme.accent(),
                    ))
                })
                .collect();
            let name_width = usize::from(area.width).saturating_sub(24).max(10);
            items.extend(page.objects.iter().map(|o| {
                let name = fmt::fit(&o.key[b.prefix.len()..], name_width);
                ListItem::new(Line::raw(format!(
                    "  {name:<name_width$} {:>10}  {}",
                    fmt::bytes(o.size),
                    fmt::age(state.now_ms - o.last_modified_ms)
                )))
            }));
            if items.is_empty() {
                items.push(ListItem::new(Line::styled("(empty)", theme.dim())));
            }
            if page.truncated {
                items.push(ListItem::new(Line::styled(
                    "… more keys (use S3 for the rest)",
                    theme.dim(),
                )));
            }
            items
        }
    };
    selectable(frame, list_area, items, title, b.selected, theme);
    if let Some((key, url)) = &b.url {
        frame.render_widget(
            Paragraph::new(url.clone())
                .block(boxed(format!(" presigned URL of {key} ")))
                .wrap(Wrap { trim: false }),
            url_area,
        );
    }
}

/// A titled list with a selected row.
fn selectable(
    frame: &mut Frame,
    area: Rect,
    items: Vec<ListItem>,
    title: String,
    selected: usize,
    theme: Theme,
) {
    let mut list_state = ListState::default().with_selected(Some(selected));
    let list = List::new(items)
        .block(boxed(title))
        .highlight_style(theme.selected())
        .highlight_symbol("▶ ");
    frame.render_stateful_widget(list, area, &mut list_state);
}
