use super::ConfigArgs;
use clap::Subcommand;
use std::path::PathBuf;
use steadyface::{models, Error};

#[derive(Subcommand)]
pub enum Cmd {
    /// Copy models from a mirror ($STEADYFACE_MIRROR, else ../shared/assets) or download
    /// them from upstream; verify every sha256.
    Fetch {
        /// Directory holding manifest.yaml; fetched files land beside it.
        #[arg(long, default_value = "models")]
        dir: PathBuf,
        /// Also fetch test/demo data into this directory.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Mirror directory (overrides $STEADYFACE_MIRROR and ../shared/assets).
        #[arg(long)]
        mirror: Option<PathBuf>,
    },
    /// Time inference alone for the configured backbone and detector (median, p90 ms).
    Time {
        #[arg(long, default_value_t = 200)]
        runs: usize,
        /// CPU threads for inference (default: models.threads, which is 1).
        #[arg(long)]
        threads: Option<usize>,
        /// Then print where the native engine spends each model's time, step by step,
        /// slowest first.
        #[arg(long)]
        profile: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Run the configured backbone on every runtime this build and machine have (native,
    /// tract, libtorch on the CPU and on CUDA) over the faces of a clip, and report each one's
    /// largest difference from the native engine (outputs and landmarks) and its median time.
    Parity {
        /// A clip or image directory with a face in it.
        input: PathBuf,
        /// Frames (with a face) to compare on.
        #[arg(long, default_value_t = 30)]
        frames: usize,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Verify the models named in the manifest against their sha256.
    Verify {
        #[arg(long, default_value = "models")]
        dir: PathBuf,
    },
}

pub fn run(cmd: Cmd) -> Result<(), Error> {
    match cmd {
        Cmd::Fetch { dir, data, mirror } => fetch(dir, data, mirror),
        Cmd::Time {
            runs,
            threads,
            profile,
            config,
        } => time(runs.max(1), threads, profile, config),
        Cmd::Parity { input, frames, config } => {
            let cfg = config.load()?;
            let (crops, report) = steadyface::bench::parity(&cfg, &input, frames.max(1))?;
            let v = serde_json::json!({
                "backbone": cfg.models.backbone,
                "crops": crops,
                "runtimes": report,
            });
            outln!("{v}");
            Ok(())
        }
        Cmd::Verify { dir } => {
            let m = models::Manifest::load(&models::manifest_path(&dir))?;
            steadyface::assembly::verify_all(&m, &dir, |what| {
                outln!("{what}: ok");
                Ok(())
            })
        }
    }
}

fn fetch(dir: PathBuf, data: Option<PathBuf>, mirror: Option<PathBuf>) -> Result<(), Error> {
    let base = std::env::current_dir().map_err(|e| Error::io(".", e))?;
    let source = match mirror {
        Some(m) => models::Source::Mirror(m),
        None => models::default_source(&base),
    };
    match &source {
        models::Source::Mirror(m) => eprintln!("fetching from mirror {}", m.display()),
        models::Source::Upstream => eprintln!("no mirror found; downloading from upstream"),
    }
    for (name, how) in models::fetch_all(&dir, data.as_deref(), &source, true)? {
        outln!("{name}: {how:?}");
    }
    Ok(())
}

fn time(runs: usize, threads: Option<usize>, profile: bool, config: ConfigArgs) -> Result<(), Error> {
    let cfg = config.load_with_threads(threads)?;
    let t = steadyface::bench::time_models(&cfg, runs, cfg.models.threads)?;
    outln!("{}", serde_json::to_string(&t).expect("times serialise"));
    if profile {
        let (isa, models) = steadyface::bench::profile_models(&cfg, runs)?;
        for (name, steps) in models {
            let total: f64 = steps.iter().map(|s| s.1).sum();
            eprintln!(
                "{name} on the native engine ({} kernels), {} steps, {total:.3} ms in all:",
                isa.name(),
                steps.len()
            );
            for (label, ms) in steps {
                eprintln!("{ms:8.3} ms {:5.1}%  {label}", 100.0 * ms / total.max(1e-9));
            }
        }
    }
    Ok(())
}
