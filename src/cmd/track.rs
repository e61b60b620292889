use super::ConfigArgs;
use std::path::PathBuf;
use steadyface::decode::DecoderMethod;
use steadyface::stabilizer::StabilizerMethod;
use steadyface::Error;

#[derive(clap::Args)]
pub struct Args {
    /// A .y4m file, a directory of PNG/JPEG frames (name order), or any video ffmpeg reads.
    input: PathBuf,
    /// Where to write one JSON object per input frame.
    #[arg(long, short)]
    output: PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
    /// Heatmap decoder (overrides decoder.method): argmax, offset, pdc or soft-argmax.
    #[arg(long)]
    decoder: Option<DecoderMethod>,
    /// Temporal stabilizer (overrides stabilizer.method): none, one-euro, shape-one-euro,
    /// convlstm, convlstm+one-euro or convlstm+shape-one-euro.
    #[arg(long)]
    stabilizer: Option<StabilizerMethod>,
    /// Also write a JSON summary here.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Add each face's drowsiness signals (EAR, blinks, PERCLOS, yawns; see `signals` in the
    /// config) to every record, and count the signal events in the summary.
    #[arg(long)]
    signals: bool,
}

pub fn run(a: Args) -> Result<(), Error> {
    let mut cfg = a.config.load()?;
    if let Some(d) = a.decoder {
        cfg.decoder.method = d;
    }
    if let Some(s) = a.stabilizer {
        cfg.stabilizer.method = s;
    }
    steadyface::bench::set_threads(cfg.models.threads);
    let s = steadyface::track::track(&cfg, &a.input, &a.output, a.signals)?;
    outln!(
        "{} frames ({} with a face, {} face observations, mean score {:.3}) in {:.2} s = {:.1} fps; decoder {}; detector ran {} times; tracks started {}, lost {}; face registrations refused {} of {}; wrote {}",
        s.frames, s.frames_with_face, s.faces_seen, s.mean_score, s.seconds, s.fps, s.decoder, s.stats.detector_runs, s.stats.tracks_started, s.stats.tracks_lost, s.stats.registrations_refused, s.stats.registrations, s.output
    );
    if let Some(p) = a.summary {
        let text = serde_json::to_string_pretty(&s).expect("summary serialises");
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}
