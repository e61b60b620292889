//! `steadyface render`: draw landmark sets on the frames they came from.
//!
//! Each set (a JSONL file written by `track` or saved with a field clip) gets its own colour,
//! with face boxes, ids and scores, and optionally a trail of each point's last positions, which
//! is what makes jitter visible. Sets go side by side (one panel each, same frame) or overlaid.
//! Output: a directory of PNGs, one `.png` (the first frame of `--frames`), a `.y4m`, or an
//! `.mp4` through ffmpeg.

use super::{colour, draw_err, fonts, save_png};
use crate::capture;
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::records::{read_jsonl, FrameRecord};
use plotters::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How several sets share the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One panel per set, left to right.
    SideBySide,
    /// All sets on one panel.
    Overlay,
}

/// What `render` does.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// (label, landmark file) per set.
    pub sets: Vec<(String, PathBuf)>,
    pub layout: Layout,
    /// Positions of each point drawn behind it (0: none).
    pub trail: usize,
    /// Upscale factor (small clips are hard to see); `None`: enough for 360 rows, at most 4.
    pub scale: Option<u32>,
    /// Frames to draw, `start..end` (all when `None`).
    pub frames: Option<std::ops::Range<u64>>,
    /// Draw on a plain grey background instead of the frames: the result can be shared when
    /// the footage cannot (a driver's face is personal data).
    pub no_video: bool,
}

/// What `render` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RenderSummary {
    pub frames_read: u64,
    pub frames_written: u64,
    pub width: u32,
    pub height: u32,
    pub output: String,
}

/// A label from `[LABEL=]PATH`: the given one, else the file stem.
pub fn labelled(arg: &str) -> (String, PathBuf) {
    match arg.split_once('=') {
        Some((l, p)) if !l.is_empty() && !l.contains('/') => (l.to_string(), PathBuf::from(p)),
        _ => {
            let p = PathBuf::from(arg);
            let l = p
                .file_stem()
                .map_or_else(|| arg.to_string(), |s| s.to_string_lossy().to_string());
            (l, p)
        }
    }
}

/// Image coordinates (pixel-centre convention) → panel pixel at `scale`.
pub fn to_panel(x: f32, y: f32, scale: u32) -> (i32, i32) {
    let s = scale as f32;
    (
        ((x + 0.5) * s - 0.5).round() as i32,
        ((y + 0.5) * s - 0.5).round() as i32,
    )
}

/// Where the output goes.
enum Sink {
    PngDir(PathBuf),
    Png(PathBuf),
    Y4m(std::io::BufWriter<std::fs::File>, PathBuf),
    Mp4(std::process::Child, PathBuf),
}

impl Sink {
    fn open(out: &Path, w: u32, h: u32, fps: f64) -> Result<Self> {
        let ext = out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => {
                check_parent(out)?;
                Ok(Sink::Png(out.to_path_buf()))
            }
            Some("y4m") => {
                check_parent(out)?;
                let mut f = std::io::BufWriter::new(std::fs::File::create(out).map_err(|e| Error::io(out, e))?);
                let (num, den) = ((fps * 1000.0).round() as u32, 1000);
                writeln!(f, "YUV4MPEG2 W{w} H{h} F{num}:{den} Ip A1:1 C444 XCOLORRANGE=FULL")
                    .map_err(|e| Error::io(out, e))?;
                Ok(Sink::Y4m(f, out.to_path_buf()))
            }
            Some("mp4") | Some("mkv") | Some("webm") => {
                check_parent(out)?;
                let child = std::process::Command::new("ffmpeg")
                    .args(["-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s"])
                    .arg(format!("{w}x{h}"))
                    .args(["-r", &format!("{fps:.3}"), "-i", "-", "-pix_fmt", "yuv420p"])
                    .arg(out)
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| {
                        Error::Usage(format!(
                            "writing {} needs ffmpeg on PATH ({e}); install it (apt install ffmpeg) or write .png frames or .y4m instead",
                            out.display()
                        ))
                    })?;
                Ok(Sink::Mp4(child, out.to_path_buf()))
            }
            Some(other) => Err(Error::Usage(format!(
                "--output {}: unknown extension .{other} (use a directory for PNG frames, .png, .y4m or .mp4)",
                out.display()
            ))),
            None => {
                std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
                // Fail now, not after decoding the video, when the directory is not writable.
                let probe = out.join(".steadyface-write-test");
                std::fs::write(&probe, b"").map_err(|e| Error::io(out, e))?;
                let _ = std::fs::remove_file(probe);
                Ok(Sink::PngDir(out.to_path_buf()))
            }
        }
    }

    fn write(&mut self, index: u64, w: u32, h: u32, rgb: Vec<u8>) -> Result<()> {
        match self {
            Sink::PngDir(d) => save_png(&d.join(format!("frame_{index:06}.png")), w, h, rgb),
            Sink::Png(p) => save_png(p, w, h, rgb),
            Sink::Y4m(f, p) => {
                let frame = Frame {
                    width: w as usize,
                    height: h as usize,
                    data: rgb,
                };
                crate::capture::y4m::write_y4m_444_frame(f, &frame).map_err(|e| Error::io(&*p, e))
            }
            Sink::Mp4(c, p) => c
                .stdin
                .as_mut()
                .expect("piped")
                .write_all(&rgb)
                .map_err(|e| Error::io(&*p, e)),
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Sink::Y4m(mut f, p) => f.flush().map_err(|e| Error::io(p, e)),
            Sink::Mp4(mut c, p) => {
                drop(c.stdin.take());
                let st = c.wait().map_err(|e| Error::io(&p, e))?;
                if st.success() {
                    Ok(())
                } else {
                    Err(Error::io(p, std::io::Error::other(format!("ffmpeg failed ({st})"))))
                }
            }
            _ => Ok(()),
        }
    }
}

fn check_parent(out: &Path) -> Result<()> {
    match out.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) if !p.is_dir() => Err(Error::io(
            out,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("directory {} does not exist", p.display()),
            ),
        )),
        _ => Ok(()),
    }
}

/// Read every set and check its frame numbering (`0, 1, 2, ...`, as `track` writes it).
fn load_sets(sets: &[(String, PathBuf)]) -> Result<Vec<(String, PathBuf, Vec<FrameRecord>)>> {
    if sets.is_empty() {
        return Err(Error::Usage("render needs at least one --landmarks file".into()));
    }
    sets.iter()
        .map(|(l, p)| {
            let recs = read_jsonl(p)?;
            if let Some((i, r)) = recs.iter().enumerate().find(|(i, r)| r.frame != *i as u64) {
                return Err(Error::data(
                    p,
                    format!(
                        "record {} is frame {}, expected frame {i}: render needs one record per video frame, in order",
                        i + 1,
                        r.frame
                    ),
                ));
            }
            Ok((l.clone(), p.clone(), recs))
        })
        .collect()
}

/// Draw one set's faces (points, box, id and score, trail) on a panel.
fn draw_set<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    recs: &[FrameRecord],
    index: usize,
    set: usize,
    opts: &RenderOptions,
    scale: u32,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let c = colour(set);
    let Some(rec) = recs.get(index) else {
        return Ok(());
    };
    let r = scale.max(1) as i32;
    for f in &rec.faces {
        // Trail: the same face's points over the previous frames, oldest faintest.
        if opts.trail > 0 {
            for k in 0..f.points.len() {
                let mut path: Vec<(i32, i32)> = (index.saturating_sub(opts.trail)..=index)
                    .filter_map(|j| recs[j].faces.iter().find(|g| g.id == f.id))
                    .filter_map(|g| g.points.get(k))
                    .map(|p| to_panel(p[0], p[1], scale))
                    .collect();
                path.dedup();
                if path.len() > 1 {
                    area.draw(&PathElement::new(path, c.mix(0.6).stroke_width(1)))?;
                }
            }
        }
        let (x0, y0) = to_panel(f.bbox[0], f.bbox[1], scale);
        let (x1, y1) = to_panel(f.bbox[2], f.bbox[3], scale);
        area.draw(&Rectangle::new([(x0, y0), (x1, y1)], c.stroke_width(1)))?;
        let font = ("sans-serif", (6 * r + 4) as f64).into_font().color(&c);
        area.draw(&Text::new(
            format!("#{} {:.2}", f.id, f.score),
            (x0, (y0 - 8 * r - 4).max(0)),
            font,
        ))?;
        for p in &f.points {
            area.draw(&Circle::new(to_panel(p[0], p[1], scale), r, c.filled()))?;
        }
    }
    Ok(())
}

/// Upscale a frame into an RGB buffer (bilinear; nearest would make the points' pixels blocky).
fn panel(frame: &Frame, scale: u32) -> Vec<u8> {
    let img = image::RgbImage::from_raw(frame.width as u32, frame.height as u32, frame.data.clone())
        .expect("frame buffer matches its size");
    if scale == 1 {
        return img.into_raw();
    }
    image::imageops::resize(
        &img,
        img.width() * scale,
        img.height() * scale,
        image::imageops::FilterType::Triangle,
    )
    .into_raw()
}

/// Render `input` with the landmark sets to `output`.
pub fn render(input: &Path, output: &Path, opts: &RenderOptions) -> Result<RenderSummary> {
    fonts();
    let sets = load_sets(&opts.sets)?;
    let mut src = capture::open(input)?;
    let info = src.info().clone();
    let scale = opts
        .scale
        .unwrap_or_else(|| (360u32.div_ceil(info.height.max(1) as u32)).clamp(1, 4));
    if scale == 0 || scale > 16 {
        return Err(Error::Usage(format!("--scale {scale}: must be 1..16")));
    }
    let (pw, ph) = (info.width as u32 * scale, info.height as u32 * scale);
    let panels = if opts.layout == Layout::SideBySide {
        sets.len() as u32
    } else {
        1
    };
    let (w, h) = (pw * panels, ph);
    let single = output.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let mut sink = Sink::open(output, w, h, info.fps.unwrap_or(capture::DEFAULT_FPS))?;
    let mut frame = Frame::default();
    let (mut read, mut written) = (0u64, 0u64);
    while let Some(meta) = src.next_frame(&mut frame)? {
        read += 1;
        let wanted = opts.frames.as_ref().is_none_or(|r| r.contains(&meta.index)) && !(single && written > 0);
        if !wanted {
            continue;
        }
        for (_, path, recs) in &sets {
            if recs.len() as u64 <= meta.index {
                return Err(Error::data(
                    path,
                    format!(
                        "has {} landmark frames, but {} has more (frame {} has no record)",
                        recs.len(),
                        input.display(),
                        meta.index
                    ),
                ));
            }
        }
        let base = if opts.no_video {
            vec![96u8; (pw * ph * 3) as usize]
        } else {
            panel(&frame, scale)
        };
        let mut buf = vec![0u8; (w * h * 3) as usize];
        for p in 0..panels as usize {
            for y in 0..ph as usize {
                let dst = (y * w as usize + p * pw as usize) * 3;
                buf[dst..dst + pw as usize * 3].copy_from_slice(&base[y * pw as usize * 3..(y + 1) * pw as usize * 3]);
            }
        }
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            let panes: Vec<_> = if panels > 1 {
                root.split_evenly((1, panels as usize))
            } else {
                vec![root.clone()]
            };
            for (si, (label, _, recs)) in sets.iter().enumerate() {
                let pane = &panes[if panels > 1 { si } else { 0 }];
                let i = meta.index as usize;
                draw_set(pane, recs, i, si, opts, scale).map_err(draw_err(output))?;
                // The label on a dark band at the bottom (faces are rarely there), so it reads on
                // any frame.
                let y = ph as i32 - 22 * (if panels > 1 { 1 } else { si as i32 + 1 });
                let band = Rectangle::new(
                    [(0, y), (10 + 11 * label.chars().count() as i32, y + 22)],
                    BLACK.mix(0.6).filled(),
                );
                pane.draw(&band).map_err(draw_err(output))?;
                let font = ("sans-serif", 18.0).into_font().color(&colour(si));
                pane.draw(&Text::new(label.clone(), (5, y + 2), font))
                    .map_err(draw_err(output))?;
            }
            root.present().map_err(draw_err(output))?;
        }
        sink.write(meta.index, w, h, buf)?;
        written += 1;
    }
    // Every set must cover the whole clip, not just the frames drawn.
    for (_, path, recs) in &sets {
        if recs.len() as u64 != read {
            return Err(Error::data(
                path,
                format!(
                    "has {} landmark frames, but {} has {read} frames",
                    recs.len(),
                    input.display()
                ),
            ));
        }
    }
    sink.finish()?;
    if written == 0 {
        return Err(Error::Usage(format!(
            "--frames {:?}: no frame of {} ({read} frames) is in that range",
            opts.frames,
            input.display()
        )));
    }
    Ok(RenderSummary {
        frames_read: read,
        frames_written: written,
        width: w,
        height: h,
        output: output.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panel_coordinates_keep_pixel_centres() {
        assert_eq!(to_panel(10.0, 20.0, 1), (10, 20));
        // Pixel 10's centre at ×3 is the middle of panel pixels 30..32.
        assert_eq!(to_panel(10.0, 20.0, 3), (31, 61));
    }

    #[test]
    fn labels_default_to_the_file_stem() {
        assert_eq!(
            labelled("out/none.jsonl"),
            ("none".into(), PathBuf::from("out/none.jsonl"))
        );
        assert_eq!(
            labelled("One Euro=x/a.jsonl"),
            ("One Euro".into(), PathBuf::from("x/a.jsonl"))
        );
    }
}
