//! A picture slot on screen: the picture, centred in its area, once it is loaded;
//! "loading…" until then, or why there is none. Every slot drawn is reported
//! (its [`Key`]) so the loop loads what is missing; a slot smaller than
//! [`MIN_COLS`] x [`MIN_ROWS`] is not drawn at all.

use std::sync::Arc;

use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui_image::Image;

use super::fmt::Theme;
use crate::dash::picture::{Key, Picture, Ready, Source};
use crate::dash::state::State;

/// The smallest slot worth a picture.
pub const MIN_COLS: u16 = 6;
pub const MIN_ROWS: u16 = 3;

/// Whether a slot of this size gets a picture (pictures are on and it is large enough).
pub fn fits(state: &State, area: Rect) -> bool {
    state.graphics.is_some() && area.width >= MIN_COLS && area.height >= MIN_ROWS
}

/// Draws the picture of `source` in `area`; returns it when it is loaded.
pub fn draw(
    state: &State,
    source: Source,
    area: Rect,
    frame: &mut Frame,
    theme: Theme,
    wanted: &mut Vec<Key>,
) -> Option<Arc<Ready>> {
    if !fits(state, area) {
        return None;
    }
    let key = Key {
        source,
        cols: area.width,
        rows: area.height,
    };
    let picture = state.pictures.get(&key).cloned();
    wanted.push(key);
    match picture {
        Some(Picture::Ready(ready)) => {
            let size = ready.protocol.size();
            let w = size.width.min(area.width);
            let h = size.height.min(area.height);
            let rect = Rect::new(
                area.x + (area.width - w) / 2,
                area.y + (area.height - h) / 2,
                w,
                h,
            );
            frame.render_widget(Image::new(&ready.protocol), rect);
            Some(ready)
        }
        Some(Picture::Failed(why)) => {
            note(frame, area, &why, theme);
            None
        }
        None => {
            note(frame, area, "loading…", theme);
            None
        }
    }
}

/// A line of dim text in the middle of `area`.
fn note(frame: &mut Frame, area: Rect, text: &str, theme: Theme) {
    let rows = 3.min(area.height);
    let rect = Rect::new(area.x, area.y + (area.height - rows) / 2, area.width, rows);
    frame.render_widget(
        Paragraph::new(text.to_owned())
            .style(theme.dim())
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        rect,
    );
}
