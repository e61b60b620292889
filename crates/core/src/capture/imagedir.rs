//! A directory of still images (PNG, JPEG, PNM), read in file-name order.

use super::{FrameMeta, FrameSource, SourceInfo};
use crate::error::{Error, Result};
use crate::frame::Frame;
use std::path::{Path, PathBuf};

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "ppm", "pgm", "pnm"];

/// Frames from image files; all must have the size of the first.
pub struct ImageDirSource {
    files: Vec<PathBuf>,
    info: SourceInfo,
    next: usize,
}

/// Whether a path looks like an image this source reads.
pub(crate) fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Largest image side decoded (pixels): a 420 KB PNG can claim 20k × 20k and take over a
/// gigabyte to decode, too much for a 4 GB board; no camera frame comes near this.
pub const MAX_IMAGE_SIDE: u32 = 8192;
/// Most memory one decode may allocate.
pub const MAX_IMAGE_ALLOC: u64 = 256 << 20;

/// Decode one image file into RGB, within [`MAX_IMAGE_SIDE`] and [`MAX_IMAGE_ALLOC`].
pub fn read_image(path: &Path) -> Result<Frame> {
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| Error::input(path, format!("cannot read: {e}")))?
        .with_guessed_format()
        .map_err(|e| Error::input(path, format!("cannot read: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| Error::input(path, format!("unreadable image: {e}")))?;
    Ok(Frame::from_rgb_image(&img.to_rgb8()))
}

impl ImageDirSource {
    pub fn open(dir: &Path, fps: f64) -> Result<Self> {
        let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut files = Vec::new();
        for e in rd {
            let p = e.map_err(|e| Error::io(dir, e))?.path();
            if p.is_file() && is_image(&p) {
                files.push(p);
            }
        }
        files.sort();
        let Some(first) = files.first() else {
            return Err(Error::input(
                dir,
                format!("no image files ({}) in directory", EXTENSIONS.join(", ")),
            ));
        };
        let f = read_image(first)?;
        Ok(Self {
            info: SourceInfo {
                width: f.width,
                height: f.height,
                fps: Some(fps),
                description: format!("{} images in {}", files.len(), dir.display()),
            },
            files,
            next: 0,
        })
    }

    /// The file behind frame `index`.
    pub fn file(&self, index: usize) -> Option<&Path> {
        self.files.get(index).map(|p| p.as_path())
    }
}

impl FrameSource for ImageDirSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }
    fn next_frame(&mut self, frame: &mut Frame) -> Result<Option<FrameMeta>> {
        let Some(path) = self.files.get(self.next) else {
            return Ok(None);
        };
        *frame = read_image(path)?;
        let meta = FrameMeta {
            index: self.next as u64,
            time_s: self.next as f64 / self.info.fps.unwrap_or(super::DEFAULT_FPS),
        };
        self.next += 1;
        Ok(Some(meta))
    }
}
