//! Frame sources: where frames come from.
//!
//! A [`FrameSource`] fills a caller-owned [`Frame`], so the per-frame path reuses one
//! buffer. Offline inputs are opened with [`open`]: a `.y4m` file, a directory of
//! images, or any other video through an `ffmpeg` subprocess that pipes Y4M. Cameras are
//! V4L2 devices (the `steadyface` crate's `v4l2`, Linux only), converted from their pixel formats
//! by [`convert`].

pub mod convert;
mod ffmpeg;
mod imagedir;
pub mod y4m;

pub use ffmpeg::FfmpegSource;
pub use imagedir::{read_image, ImageDirSource, MAX_IMAGE_ALLOC, MAX_IMAGE_SIDE};
pub use y4m::{write_y4m_444, Y4mSource};

use crate::error::{Error, Result};
use crate::frame::Frame;
use std::path::Path;

crate::choice::choice! {
    /// `source.kind`: where the daemon's frames come from.
    pub enum SourceKind {
        /// A V4L2 camera.
        V4l2 = "v4l2",
        /// A clip: .y4m, an image directory, or any video ffmpeg reads.
        Replay = "replay",
    }
}

crate::choice::choice! {
    /// `source.pace`: how fast a replayed clip plays.
    pub enum ReplayPace {
        /// The clip's own fps; frames are dropped when inference falls behind, as with a camera.
        Realtime = "realtime",
        /// As fast as inference goes, nothing dropped.
        Fast = "fast",
    }
}

/// Static facts about a source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    pub width: usize,
    pub height: usize,
    /// Frames per second, when the source knows it.
    pub fps: Option<f64>,
    /// Human-readable description for logs.
    pub description: String,
}

/// Per-frame metadata.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameMeta {
    /// 0-based index of the frame in the source.
    pub index: u64,
    /// Presentation time in seconds from the first frame.
    pub time_s: f64,
}

/// A source of RGB frames.
pub trait FrameSource: Send {
    fn info(&self) -> &SourceInfo;
    /// Read the next frame into `frame` (reshaping it if needed). `Ok(None)` at the end.
    fn next_frame(&mut self, frame: &mut Frame) -> Result<Option<FrameMeta>>;
}

/// Fallback frame rate for inputs that carry none (image directories).
pub const DEFAULT_FPS: f64 = 30.0;

/// Open an offline input: `.y4m`, a directory of PNG/JPEG/PNM frames, or any video via ffmpeg.
pub fn open(path: &Path) -> Result<Box<dyn FrameSource>> {
    if path.is_dir() {
        return Ok(Box::new(ImageDirSource::open(path, DEFAULT_FPS)?));
    }
    if !path.exists() {
        let reason = match crate::models::fetch_hint(path) {
            Some(hint) => format!("no such file or directory; {hint}"),
            None => "no such file or directory".to_string(),
        };
        return Err(Error::input(path, reason));
    }
    let is_y4m = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("y4m"));
    if is_y4m {
        Ok(Box::new(Y4mSource::open(path)?))
    } else {
        Ok(Box::new(FfmpegSource::open(path)?))
    }
}
