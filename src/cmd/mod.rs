//! The subcommands, one file each: its `Args` (clap) and its `run`. Everything they do is a
//! library call; here are only flags, output formatting and exit codes.

use clap::Subcommand;
use std::path::PathBuf;
use steadyface::{config::Config, Error};

/// `print!` to stdout, but a closed pipe or a full disk is an error naming stdout, not a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| steadyface::Error::io("<stdout>", e))?
    }};
}

/// `println!`, likewise.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| steadyface::Error::io("<stdout>", e))?
    }};
}

mod bench;
mod eval;
mod generate_config;
mod models;
mod render;
mod run;
mod synth;
mod track;
mod tune;
mod validate;
mod watch;

/// `--config FILE` and `--set KEY=VALUE`, shared by every command that reads the config.
#[derive(clap::Args)]
pub struct ConfigArgs {
    /// Config file (YAML), e.g. /etc/steadyface/steadyface.yaml; built-in defaults when absent.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Override a config key, e.g. --set detector.interval=5 (repeatable); checked like the file.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// Load and validate the file with the overrides (every problem at once).
    pub fn load(&self) -> Result<Config, Error> {
        Config::load(self.config.as_deref(), &self.set)
    }

    /// [`load`](Self::load) with `models.threads` overridden (validated like `--set`).
    pub fn load_with_threads(&self, threads: Option<usize>) -> Result<Config, Error> {
        let mut set = self.set.clone();
        set.extend(threads.map(|t| format!("models.threads={t}")));
        Config::load(self.config.as_deref(), &set)
    }
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Track faces in a video, Y4M file or image directory; write landmarks as JSON lines.
    Track(track::Args),
    /// Compare predicted landmarks with ground truth: NME, NRMSE, AUC, FR, MCV, MAV, jitter, lag.
    Eval(eval::Args),
    /// Time the per-frame pipeline on a clip by stage (median, p90), with fps and peak RSS.
    Bench(bench::Args),
    /// Model management.
    Models {
        #[command(subcommand)]
        cmd: models::Cmd,
    },
    /// Run the daemon: capture from a camera (or replay a clip), publish landmarks over MQTT
    /// and/or stdout. Stops on SIGTERM/SIGINT; SIGHUP reloads the config.
    Run(ConfigArgs),
    /// Check a config file (every problem at once), then what it points at: models, the
    /// camera or clip, TLS and password files, and the broker (connect and log in).
    Validate(validate::Args),
    /// Print the commented default configuration.
    GenerateConfig,
    /// Draw landmark sets on the video they came from: one colour per set, boxes, ids and
    /// scores, optional trails. Output: a directory of PNGs, one .png, .y4m, or .mp4 (ffmpeg).
    Render(render::Args),
    /// Make a clip with exact truth from a still image with landmarks: the image is warped
    /// along a known path (still, slow sway, vibration with motion blur, low light), and the
    /// truth moves with it. For measuring stability: `track` it, then `eval` against the truth.
    Synth(synth::Args),
    /// Train the ConvLSTM stabilizer for the configured backbone (frozen) with the Jitter loss.
    /// Needs a build with `--features torch`; uses CUDA when present. Writes
    /// OUT/stabilizer.safetensors (what `track` and `run` load), OUT/stabilizer.onnx (the same
    /// cell for any ONNX runtime), OUT/train.json (command, data, metrics per epoch) and
    /// OUT/checkpoint.safetensors (after every epoch; --resume continues from it).
    Tune(tune::Args),
    /// Watch running daemons through their broker: status, fps, latency, drops, jitter, the
    /// drowsiness state, recent events and a braille face outline. Ctrl-C stops.
    Watch(watch::Args),
}

impl Cmd {
    pub fn run(self) -> Result<(), Error> {
        match self {
            Cmd::Track(a) => track::run(a),
            Cmd::Eval(a) => eval::run(a),
            Cmd::Bench(a) => bench::run(a),
            Cmd::Models { cmd } => models::run(cmd),
            Cmd::Run(c) => run::run(c),
            Cmd::Validate(a) => validate::run(a),
            Cmd::GenerateConfig => generate_config::run(),
            Cmd::Render(a) => render::run(a),
            Cmd::Synth(a) => synth::run(a),
            Cmd::Tune(a) => tune::run(a),
            Cmd::Watch(a) => watch::run(a),
        }
    }
}
