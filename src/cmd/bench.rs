use super::ConfigArgs;
use std::path::PathBuf;
use steadyface::stabilizer::StabilizerMethod;
use steadyface::Error;

#[derive(clap::Args)]
pub struct Args {
    /// A .y4m file, image directory or video; looped until --frames are done.
    input: PathBuf,
    /// Frames to time (after 5 warm-up frames).
    #[arg(long, default_value_t = 300)]
    frames: usize,
    /// CPU threads for inference (default: models.threads, which is 1).
    #[arg(long)]
    threads: Option<usize>,
    /// Temporal stabilizer (as for `track`).
    #[arg(long)]
    stabilizer: Option<StabilizerMethod>,
    #[command(flatten)]
    config: ConfigArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<(), Error> {
    let mut cfg = a.config.load_with_threads(a.threads)?;
    if let Some(s) = a.stabilizer {
        cfg.stabilizer.method = s;
    }
    let r = steadyface::bench::bench(&cfg, &a.input, a.frames, cfg.models.threads)?;
    if a.json {
        outln!("{}", serde_json::to_string(&r).expect("report serialises"));
    } else {
        out!("{}", steadyface::bench::format(&r));
    }
    Ok(())
}
