//! The storage panel: buckets with object counts, bytes, lifecycle rules and the
//! latest expirations; Enter browses a bucket one folder at a time, and Enter on
//! an object presigns its URL (copied to the terminal's clipboard with OSC 52 and
//! shown in full). The selected object, when it is an image, is previewed beside
//! the listing (terminals at least [`PREVIEW_MIN_WIDTH`] wide).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Borders, List, ListItem, ListState, Paragraph, Wrap};

use super::fmt::{self, Theme};
use super::{boxed, picture};
use crate::dash::picture::load::MAX_OBJECT_BYTES;
use crate::dash::picture::{Key, Source};
use crate::dash::state::{Browse, State};
use crate::service::ObjectEntry;

/// The narrowest body that previews the selected image beside the listing.
pub const PREVIEW_MIN_WIDTH: u16 = 60;

pub fn draw(state: &State, theme: Theme, frame: &mut Frame, area: Rect, wanted: &mut Vec<Key>) {
    match &state.storage_view.browse {
        Some(b) => browse(state, b, theme, frame, area, wanted),
        None => buckets(state, theme, frame, area),
    }
}

/// The selected entry, when it is an object that looks like an image.
fn selected_image(b: &Browse) -> Option<&ObjectEntry> {
    let page = b.page.as_ref()?;
    let o = page.objects.get(b.selected.checked_sub(page.prefixes.len())?)?;
    let ext = o
        .key
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    (o.content_type.starts_with("image/") || matches!(ext.as_str(), "png" | "jpg" | "jpeg" | "webp"))
        .then_some(o)
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

fn browse(state: &State, b: &Browse, theme: Theme, frame: &mut Frame, area: Rect, wanted: &mut Vec<Key>) {
    let url_rows = if b.url.is_some() { 4 } else { 0 };
    let [list_area, url_area] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(url_rows)]).areas(area);
    let image = selected_image(b).filter(|_| state.graphics.is_some() && area.width >= PREVIEW_MIN_WIDTH);
    let list_area = match image {
        Some(o) => {
            let [list, pane] =
                Layout::horizontal([Constraint::Min(0), Constraint::Length(list_area.width * 2 / 5)])
                    .areas(list_area);
            preview(state, &b.bucket, o, frame, pane, theme, wanted);
            list
        }
        None => list_area,
    };
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
            let name_width = usize::from(list_area.width).saturating_sub(24).max(10);
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

/// The selected image beside the listing, its dimensions and size under it.
fn preview(
    state: &State,
    bucket: &str,
    o: &ObjectEntry,
    frame: &mut Frame,
    area: Rect,
    theme: Theme,
    wanted: &mut Vec<Key>,
) {
    let block = boxed(" preview ".into()).borders(Borders::TOP | Borders::LEFT);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [slot, label_area] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    let mut label = vec![fmt::bytes(o.size)];
    if o.size > MAX_OBJECT_BYTES {
        label.push("too large to preview".into());
    } else {
        let source = Source::Object {
            bucket: bucket.to_owned(),
            key: o.key.clone(),
        };
        if let Some(r) = picture::draw(state, source, slot, frame, theme, wanted) {
            label.insert(0, format!("{}x{}", r.width, r.height));
        }
    }
    frame.render_widget(
        Paragraph::new(Line::styled(
            fmt::fit(&format!(" {}", label.join(" · ")), usize::from(label_area.width)),
            theme.dim(),
        )),
        label_area,
    );
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
