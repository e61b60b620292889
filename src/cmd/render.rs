use std::path::PathBuf;
use steadyface::viz::render::{self, labelled, Layout, RenderOptions};
use steadyface::Error;

#[derive(clap::Args)]
pub struct Args {
    /// The video, .y4m or image directory the landmarks were tracked on.
    input: PathBuf,
    /// A landmark JSONL (from `track`, or a field clip's landmarks.jsonl) as `[LABEL=]PATH`;
    /// repeat to compare sets.
    #[arg(long = "landmarks", required = true, value_name = "[LABEL=]PATH")]
    landmarks: Vec<String>,
    /// A directory (PNG per frame), a .png (the first frame drawn), a .y4m or an .mp4.
    #[arg(long, short)]
    output: PathBuf,
    /// Draw all sets on one picture instead of side by side.
    #[arg(long)]
    overlay: bool,
    /// Draw each point's path over the last N frames (makes jitter visible).
    #[arg(long, default_value_t = 0, value_name = "N")]
    trail: usize,
    /// Upscale factor (default: enough for 360 rows, at most 4).
    #[arg(long)]
    scale: Option<u32>,
    /// Only these frames, START:END (END exclusive), e.g. 60:61.
    #[arg(long, value_name = "START:END", value_parser = frame_range)]
    frames: Option<std::ops::Range<u64>>,
    /// Draw on a grey background instead of the video (for sharing results without the footage).
    #[arg(long)]
    no_video: bool,
}

fn frame_range(f: &str) -> Result<std::ops::Range<u64>, String> {
    f.split_once(':')
        .and_then(|(a, b)| Some(a.parse::<u64>().ok()?..b.parse::<u64>().ok()?))
        .filter(|r| r.start < r.end)
        .ok_or_else(|| format!("{f:?}: expected START:END with START < END, e.g. 60:61"))
}

pub fn run(a: Args) -> Result<(), Error> {
    let opts = RenderOptions {
        sets: a.landmarks.iter().map(|l| labelled(l)).collect(),
        layout: if a.overlay { Layout::Overlay } else { Layout::SideBySide },
        trail: a.trail,
        scale: a.scale,
        frames: a.frames,
        no_video: a.no_video,
    };
    let s = render::render(&a.input, &a.output, &opts)?;
    outln!(
        "drew {} of {} frames ({}x{}) into {}",
        s.frames_written,
        s.frames_read,
        s.width,
        s.height,
        s.output
    );
    Ok(())
}
