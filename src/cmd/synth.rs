use std::path::PathBuf;
use steadyface::synth::SynthKind;
use steadyface::Error;

#[derive(clap::Args)]
pub struct Args {
    /// The image (PNG, JPEG, PNM).
    image: PathBuf,
    /// Its landmarks: a menpo .pts file (one face).
    #[arg(long)]
    pts: PathBuf,
    /// still, slow, vibration or lowlight.
    #[arg(long)]
    kind: SynthKind,
    #[arg(long, default_value_t = 90)]
    frames: usize,
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Noise seed (the same seed gives the same clip everywhere).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The clip (.y4m).
    #[arg(long, short)]
    output: PathBuf,
    /// The truth per frame, as `eval --gt` reads it ({"frames": [[[x, y], ...], ...]}).
    #[arg(long)]
    truth: PathBuf,
}

pub fn run(a: Args) -> Result<(), Error> {
    let frame = steadyface::capture::read_image(&a.image)?;
    let t = steadyface::truth::load_pts(&a.pts)?;
    let face = t
        .faces
        .first()
        .ok_or_else(|| Error::Usage(format!("{}: no face", a.pts.display())))?;
    if !(1.0..=240.0).contains(&a.fps) || a.frames == 0 {
        return Err(Error::Usage(format!(
            "--fps {} / --frames {}: need 1..240 fps and at least one frame",
            a.fps, a.frames
        )));
    }
    let clip = steadyface::synth::make(&frame, face, a.kind, a.frames, a.fps, a.seed)?;
    let file = std::fs::File::create(&a.output).map_err(|e| Error::io(&a.output, e))?;
    let mut f = std::io::BufWriter::new(file);
    steadyface::capture::write_y4m_444(&mut f, &clip.frames, (a.fps * 1000.0).round() as u32, 1000)
        .map_err(|e| Error::io(&a.output, e))?;
    let frames_json: Vec<Vec<[f32; 2]>> = clip
        .truth
        .iter()
        .map(|t| t.iter().map(|p| [p.x, p.y]).collect())
        .collect();
    std::fs::write(&a.truth, serde_json::json!({ "frames": frames_json }).to_string())
        .map_err(|e| Error::io(&a.truth, e))?;
    outln!(
        "{} {} frames ({}x{}) into {}; truth in {}",
        a.frames,
        a.kind,
        frame.width,
        frame.height,
        a.output.display(),
        a.truth.display()
    );
    Ok(())
}
