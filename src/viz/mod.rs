//! Seeing the landmarks: `render` (overlays on video), `eval --plots` (stability plots) and
//! `watch` (a terminal view of a running daemon).
//!
//! Drawing goes through plotters' bitmap backend into plain RGB buffers; text uses DejaVu Sans
//! compiled in (ab_glyph), so nothing needs a system font or library; PNGs are encoded by `image`.

pub mod plots;
pub mod render;
pub mod watch;

use crate::error::{Error, Result};
use std::path::Path;

/// One colour per landmark set or method, in order (Sasha Trubetskoy's distinct colours).
pub const PALETTE: [(u8, u8, u8); 6] = [
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (255, 225, 25),
];

pub fn colour(i: usize) -> plotters::style::RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    plotters::style::RGBColor(r, g, b)
}

/// Register the compiled-in font as plotters' "sans-serif", once.
pub fn fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TTF shipped by the `dejavu` crate, so this cannot fail.
        let _ = plotters::style::register_font(
            "sans-serif",
            plotters::style::FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Encode an RGB buffer as PNG at `path`; the error names the file.
pub fn save_png(path: &Path, w: u32, h: u32, rgb: Vec<u8>) -> Result<()> {
    let img = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| Error::Usage("internal: RGB buffer size".into()))?;
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
}

/// Turn a plotters drawing error into ours, naming what was being drawn.
pub fn draw_err<E: std::fmt::Debug>(what: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::io(what, std::io::Error::other(format!("drawing failed: {e:?}")))
}
