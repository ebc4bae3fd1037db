//! Fitting an image into a slot of cells and encoding it for the terminal's
//! protocol (ratatui-image's fixed-size protocols: half blocks, sixel, kitty,
//! iTerm2). The image keeps its aspect ratio and is scaled up or down to the
//! largest size the slot holds; CPU-heavy, so it runs off the UI thread.

use image::DynamicImage;
use image::imageops::FilterType;
use ratatui::layout::Size;
use ratatui_image::picker::ProtocolType;
use ratatui_image::protocol::Protocol;
use ratatui_image::protocol::halfblocks::Halfblocks;
use ratatui_image::protocol::iterm2::Iterm2;
use ratatui_image::protocol::kitty::Kitty;
use ratatui_image::protocol::sixel::Sixel;

use super::Graphics;

/// The pixels an image of `w` x `h` takes to fill at most `max_w` x `max_h`,
/// keeping its aspect ratio (at least one pixel each way).
pub fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if w == 0 || h == 0 || max_w == 0 || max_h == 0 {
        return (1, 1);
    }
    let (w, h, max_w, max_h) = (u64::from(w), u64::from(h), u64::from(max_w), u64::from(max_h));
    // Scale by the tighter side: max_w / w or max_h / h, rounded to the nearest pixel.
    let (fw, fh) = if max_w * h <= max_h * w {
        (max_w, (h * max_w + w / 2) / w)
    } else {
        ((w * max_h + h / 2) / h, max_h)
    };
    let clamp = |v: u64, max: u64| u32::try_from(v.clamp(1, max)).unwrap_or(1);
    (clamp(fw, max_w), clamp(fh, max_h))
}

/// `image` fitted into `cols` x `rows` cells and encoded for `graphics`; the
/// protocol's size is the cells it covers (centre it in the slot).
pub fn encode(image: &DynamicImage, cols: u16, rows: u16, graphics: Graphics) -> Result<Protocol, String> {
    let (max_w, max_h) = graphics.pixels(cols, rows);
    let (w, h) = fit(image.width(), image.height(), max_w, max_h);
    let scaled = image.resize_exact(w, h, FilterType::Triangle);
    let cells = |px: u32, per: u16| u16::try_from(px.div_ceil(u32::from(per.max(1)))).unwrap_or(u16::MAX);
    let err = |e: ratatui_image::errors::Errors| e.to_string();
    match graphics.kind {
        ProtocolType::Halfblocks => {
            // One pixel per column, two per row (the upper and lower half block).
            let size = Size::new(cells(w, 1), cells(h, 2));
            Halfblocks::new(scaled, size)
                .map(Protocol::Halfblocks)
                .map_err(err)
        }
        kind => {
            let (fw, fh) = graphics.font;
            let size = Size::new(cells(w, fw), cells(h, fh));
            // Padded to whole cells with transparency, so the terminal does not stretch it.
            let mut canvas = DynamicImage::new_rgba8(
                u32::from(size.width) * u32::from(fw),
                u32::from(size.height) * u32::from(fh),
            );
            image::imageops::overlay(&mut canvas, &scaled, 0, 0);
            match kind {
                ProtocolType::Sixel => Sixel::new(canvas, size, graphics.tmux).map(Protocol::Sixel),
                ProtocolType::Kitty => {
                    Kitty::new(canvas, size, rand::random(), graphics.tmux, false).map(Protocol::Kitty)
                }
                _ => Iterm2::new(canvas, size, graphics.tmux).map(Protocol::ITerm2),
            }
            .map_err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_keeps_the_aspect_and_fills_one_side() {
        assert_eq!(fit(768, 768, 30, 20), (20, 20));
        assert_eq!(fit(400, 200, 30, 20), (30, 15));
        assert_eq!(fit(200, 400, 30, 20), (10, 20));
        // Small images grow to the slot.
        assert_eq!(fit(4, 2, 30, 20), (30, 15));
        assert_eq!(fit(1000, 1, 30, 20), (30, 1));
        assert_eq!(fit(0, 10, 30, 20), (1, 1));
    }

    #[test]
    fn half_blocks_cover_a_column_per_pixel_and_a_row_per_two() {
        let img = DynamicImage::new_rgb8(400, 200);
        let p = encode(&img, 30, 20, Graphics::halfblocks()).unwrap();
        assert_eq!(p.size(), Size::new(30, 8));
        let kitty = Graphics {
            kind: ProtocolType::Kitty,
            font: (10, 20),
            tmux: false,
        };
        let p = encode(&img, 30, 20, kitty).unwrap();
        // 300 x 150 pixels in 10 x 20 cells.
        assert_eq!(p.size(), Size::new(30, 8));
        let sixel = Graphics {
            kind: ProtocolType::Sixel,
            ..kitty
        };
        assert!(matches!(encode(&img, 10, 5, sixel).unwrap(), Protocol::Sixel(_)));
    }
}
