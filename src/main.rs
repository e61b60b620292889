//! `steadyface`: the command-line front end. All logic lives in the library; this file
//! only parses arguments, calls it, and maps errors to exit codes.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use steadyface::convlstm::{CellInit, Trainable};
use steadyface::viz::plots::{self, Method};
use steadyface::viz::render::{self, labelled, Layout, RenderOptions};
use steadyface::viz::watch::{self, WatchOptions};
use steadyface::{app, config::Config, models, Error};

#[derive(Parser)]
#[command(
    name = "steadyface",
    version,
    about = "Stable facial landmarks from video: heatmap backbone + PDC decoding, as a tool and an MQTT daemon",
    long_about = "steadyface finds faces, tracks them with persistent ids and writes their landmarks.\n\n\
First run `steadyface models fetch` to get the models listed in models/manifest.yaml,\n\
then `steadyface track VIDEO --output landmarks.jsonl`.\n\n\
As a service, `steadyface run --config FILE` reads a camera (or replays a clip) and publishes\n\
landmarks over MQTT. To try it on the bundled clip, from the repository root:\n\
`steadyface models fetch --data data && steadyface run --config config/demo.yaml`.\n\n\
Coordinates are input-image pixels; the centre of the top-left pixel is (0, 0)."
)]
struct Cli {
    /// Log level: error, warn, info, debug, trace (or set RUST_LOG).
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum DecoderArg {
    Argmax,
    Offset,
    Pdc,
    SoftArgmax,
}

#[derive(Subcommand)]
enum Cmd {
    /// Track faces in a video, Y4M file or image directory; write landmarks as JSON lines.
    Track {
        /// A .y4m file, a directory of PNG/JPEG frames (name order), or any video ffmpeg reads.
        input: PathBuf,
        /// Where to write one JSON object per input frame.
        #[arg(long, short)]
        output: PathBuf,
        /// Config file (YAML); built-in defaults when absent.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override a config key, e.g. --set detector.interval=5 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Heatmap decoder (overrides decoder.method).
        #[arg(long, value_enum)]
        decoder: Option<DecoderArg>,
        /// Temporal stabilizer (overrides stabilizer.method): none, one-euro, shape-one-euro,
        /// convlstm, convlstm+one-euro or convlstm+shape-one-euro.
        #[arg(long)]
        stabilizer: Option<String>,
        /// Also write a JSON summary here.
        #[arg(long)]
        summary: Option<PathBuf>,
        /// Add each face's drowsiness signals (EAR, blinks, PERCLOS, yawns; see `signals` in the
        /// config) to every record, and count the signal events in the summary.
        #[arg(long)]
        signals: bool,
    },
    /// Compare predicted landmarks with ground truth: NME, NRMSE, AUC, FR, MCV, MAV, jitter, lag.
    Eval {
        /// Landmark JSONL written by `track`, as `[LABEL=]PATH` (repeatable: one per method,
        /// e.g. --pred none=a.jsonl --pred one-euro=b.jsonl).
        #[arg(long, required = true, value_name = "[LABEL=]PATH")]
        pred: Vec<String>,
        /// Truth: {"frames": [[[x,y]...]...]} JSON, a menpo .pts file or directory of them, or dlib XML.
        #[arg(long)]
        gt: PathBuf,
        /// Directory of manifest.yaml (for landmark schemes).
        #[arg(long, default_value = "models")]
        models_dir: PathBuf,
        /// Print JSON instead of a table (one object; with several --pred, keyed by label).
        #[arg(long)]
        json: bool,
        /// Also write plots here (created): error ellipses per landmark (the paper's Fig. 1),
        /// CED, error over time, and jitter against lag, one colour per --pred.
        #[arg(long, value_name = "DIR")]
        plots: Option<PathBuf>,
    },
    /// Time the per-frame pipeline on a clip by stage (median, p90), with fps and peak RSS.
    Bench {
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
        stabilizer: Option<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Model management.
    Models {
        #[command(subcommand)]
        cmd: ModelsCmd,
    },
    /// Run the daemon: capture from a camera (or replay a clip), publish landmarks over MQTT
    /// and/or stdout. Stops on SIGTERM/SIGINT; SIGHUP reloads the config.
    Run {
        /// Config file (YAML), e.g. /etc/steadyface/steadyface.yaml; built-in defaults when absent.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override a config key, e.g. --set mqtt.host=10.0.0.2 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Check a config file (every problem at once), then what it points at: models, the
    /// camera or clip, TLS and password files, and the broker (connect and log in).
    Validate {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Only check the file itself, not the models, devices and broker it names.
        #[arg(long)]
        no_environment: bool,
        /// Treat warnings (camera absent, broker unreachable) as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Print the commented default configuration.
    GenerateConfig,
    /// Draw landmark sets on the video they came from: one colour per set, boxes, ids and
    /// scores, optional trails. Output: a directory of PNGs, one .png, .y4m, or .mp4 (ffmpeg).
    Render {
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
        #[arg(long, value_name = "START:END")]
        frames: Option<String>,
        /// Draw on a grey background instead of the video (for sharing results without the footage).
        #[arg(long)]
        no_video: bool,
    },
    /// Make a clip with exact truth from a still image with landmarks: the image is warped
    /// along a known path (still, slow sway, vibration with motion blur, low light), and the
    /// truth moves with it. For measuring stability: `track` it, then `eval` against the truth.
    Synth {
        /// The image (PNG, JPEG, PNM).
        image: PathBuf,
        /// Its landmarks: a menpo .pts file (one face).
        #[arg(long)]
        pts: PathBuf,
        /// still, slow, vibration or lowlight.
        #[arg(long)]
        kind: String,
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
    },
    /// Train the ConvLSTM stabilizer for the configured backbone (frozen) with the Jitter loss.
    /// Needs a build with `--features torch`; uses CUDA when present. Writes
    /// OUT/stabilizer.safetensors (what `track` and `run` load), OUT/stabilizer.onnx (the same
    /// cell for any ONNX runtime), OUT/train.json (command, data, metrics per epoch) and
    /// OUT/checkpoint.safetensors (after every epoch; --resume continues from it).
    Tune(TuneCli),
    /// Watch running daemons through their broker: status, fps, latency, drops, jitter, the
    /// drowsiness state, recent events and a braille face outline. Ctrl-C stops.
    Watch {
        /// Broker as HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:1883")]
        broker: String,
        /// Topic prefix (mqtt.prefix of the daemons).
        #[arg(long, default_value = "steadyface")]
        prefix: String,
        /// Only this device (default: every device under the prefix).
        #[arg(long)]
        device: Option<String>,
        /// Print one snapshot once a device has sent status, state, metrics and landmarks, then exit.
        #[arg(long)]
        once: bool,
        /// With --once: give up after this many seconds.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
        #[arg(long)]
        username: Option<String>,
        /// Read the password from this file.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

/// `steadyface tune`'s flags (see `Cmd::Tune`).
#[derive(clap::Args)]
struct TuneCli {
    /// Training data, repeatable: images:FILE (.pts, a directory of .pts, dlib .xml: faces
    /// warped into sequences), clip:VIDEO=LABELS (labels .csv frame,x0,y0,... or truth
    /// .json), field:CLIP (a daemon clip directory or a video; pseudo-labels made here).
    #[arg(long, required = true, value_name = "KIND:PATH")]
    data: Vec<String>,
    /// Output directory (created).
    #[arg(long, short)]
    out: PathBuf,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Adam learning rate (the paper: 1e-4).
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Hidden channels per landmark (the convlstm module explains the default).
    #[arg(long, default_value_t = steadyface::convlstm::DEFAULT_HIDDEN)]
    hidden: usize,
    /// Gate kernel size: 1 (per heatmap cell) or 3.
    #[arg(long, default_value_t = steadyface::convlstm::DEFAULT_KERNEL)]
    kernel: usize,
    /// Where the cell starts: smoothing (a running mean of each map, which training shapes)
    /// or identity (s = x).
    #[arg(long, default_value = "smoothing")]
    init: CellInit,
    /// Start from these weights instead (e.g. the shipped ones, to fine-tune on field clips).
    #[arg(long, value_name = "WEIGHTS")]
    from: Option<PathBuf>,
    /// Which parameters train: gates (the input, forget and output gates: how much to smooth,
    /// where; the read-out stays a running mean) or all.
    #[arg(long, default_value = "gates")]
    trainable: Trainable,
    /// Weight of the point-error term beside Eq. 7's pixel loss (0: the paper's loss).
    #[arg(long, default_value_t = 1.0)]
    mu: f64,
    /// Eq. 8's λ: the weight of the plain pixel loss beside the jitter modulation Ψ.
    #[arg(long, default_value_t = 1.0)]
    lambda: f32,
    /// Θ: Eq. 3's cap on Ψ and Eq. 7's scale. The paper's 1 is in its own heatmap units;
    /// here ξ and Θ are in heatmap cells, where Θ = 1 caps Ψ on nearly every still frame
    /// and so removes its gradient (the convlstm module's notes).
    #[arg(long, default_value_t = 5.0)]
    theta: f32,
    /// ξ (cells): keeps Eq. 3 finite when the true point does not move.
    #[arg(long, default_value_t = 0.1)]
    xi: f32,
    /// Share of the faces/clips held out for validation.
    #[arg(long, default_value_t = 0.15)]
    val_fraction: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// cuda, cpu or auto (CUDA when libtorch sees a GPU).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Continue from OUT/checkpoint.safetensors.
    #[arg(long)]
    resume: bool,
    /// CPU threads for libtorch (0: its default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Where the backbone-output cache lives (reused by later runs on the same data).
    #[arg(long, default_value = "out/tune-cache")]
    cache: PathBuf,
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl TuneCli {
    /// Check the flags and load the config.
    fn into_args(self) -> Result<(Config, steadyface::train::TuneArgs), Error> {
        let cfg = Config::load(self.config.as_deref(), &self.set)?;
        let (hidden, kernel, batch, val_fraction, lr, theta, xi) = (
            self.hidden,
            self.kernel,
            self.batch,
            self.val_fraction,
            self.lr,
            self.theta,
            self.xi,
        );
        if !(1..=16).contains(&hidden)
            || !(kernel == 1 || kernel == 3)
            || batch == 0
            || !(0.0..1.0).contains(&val_fraction)
            || lr <= 0.0
            || theta <= 0.0
            || xi <= 0.0
        {
            return Err(Error::Usage(format!(
                "--hidden {hidden} (1..=16), --kernel {kernel} (1 or 3), --batch {batch} (≥ 1), --val-fraction {val_fraction} ([0, 1)), --lr {lr}, --theta {theta}, --xi {xi} (> 0)"
            )));
        }
        if self.init == CellInit::Identity && self.trainable == Trainable::Gates && self.from.is_none() {
            return Err(Error::Usage(
                "--init identity with --trainable gates has nothing to learn (the identity's read-out is zero): \
                 use --trainable all"
                    .into(),
            ));
        }
        let args = steadyface::train::TuneArgs {
            data: self.data,
            out: self.out,
            epochs: self.epochs,
            batch,
            lr,
            hidden,
            kernel,
            init: self.init,
            from: self.from,
            trainable: self.trainable,
            mu: self.mu,
            jitter: steadyface::jitter_loss::JitterParams {
                lambda: self.lambda,
                theta,
                xi,
                ..Default::default()
            },
            val_fraction,
            seed: self.seed,
            device: self.device,
            resume: self.resume,
            threads: self.threads,
            cache_dir: self.cache,
            command_line: std::iter::once("steadyface".to_string())
                .chain(std::env::args().skip(1))
                .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
                .collect::<Vec<_>>()
                .join(" "),
        };
        Ok((cfg, args))
    }
}

#[derive(Subcommand)]
enum ModelsCmd {
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
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
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
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Verify the models named in the manifest against their sha256.
    Verify {
        #[arg(long, default_value = "models")]
        dir: PathBuf,
    },
}

/// Log to journald when systemd connected our stderr to the journal (structured fields,
/// priorities), else to stderr.
fn init_logging(level: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or(level.to_string());
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(j) = systemd_journal_logger::JournalLog::new() {
            if j.with_syslog_identifier("steadyface".into()).install().is_ok() {
                log::set_max_level(filter.parse().unwrap_or(log::LevelFilter::Info));
                return;
            }
        }
    }
    env_logger::Builder::new()
        .parse_filters(&filter)
        .format_target(false)
        .init();
}

/// `print!` to stdout, but a closed pipe or a full disk is an error naming stdout, not a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| Error::Io { path: "<stdout>".into(), source: e })?
    }};
}

/// `println!`, likewise.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| Error::Io { path: "<stdout>".into(), source: e })?
    }};
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run(cmd: Cmd) -> Result<(), Error> {
    match cmd {
        Cmd::Track {
            input,
            output,
            config,
            mut set,
            decoder,
            stabilizer,
            summary,
            signals,
        } => {
            if let Some(d) = decoder {
                let name = match d {
                    DecoderArg::Argmax => "argmax",
                    DecoderArg::Offset => "offset",
                    DecoderArg::Pdc => "pdc",
                    DecoderArg::SoftArgmax => "soft-argmax",
                };
                set.push(format!("decoder.method={name}"));
            }
            if let Some(s) = stabilizer {
                set.push(format!("stabilizer.method={s}"));
            }
            let cfg = Config::load(config.as_deref(), &set)?;
            steadyface::bench::set_threads(cfg.models.threads);
            let s = app::track(&cfg, &input, &output, signals)?;
            outln!(
                "{} frames ({} with a face, {} face observations, mean score {:.3}) in {:.2} s = {:.1} fps; decoder {}; detector ran {} times; tracks started {}, lost {}; face registrations refused {} of {}; wrote {}",
                s.frames, s.frames_with_face, s.faces_seen, s.mean_score, s.seconds, s.fps, s.decoder, s.stats.detector_runs, s.stats.tracks_started, s.stats.tracks_lost, s.stats.registrations_refused, s.stats.registrations, s.output
            );
            if let Some(p) = summary {
                let text = serde_json::to_string_pretty(&s).expect("summary serialises");
                std::fs::write(&p, text).map_err(|e| Error::Io { path: p, source: e })?;
            }
            Ok(())
        }
        Cmd::Bench {
            input,
            frames,
            threads,
            stabilizer,
            config,
            mut set,
            json,
        } => {
            if let Some(s) = stabilizer {
                set.push(format!("stabilizer.method={s}"));
            }
            if let Some(t) = threads {
                set.push(format!("models.threads={t}"));
            }
            let cfg = Config::load(config.as_deref(), &set)?;
            let r = steadyface::bench::bench(&cfg, &input, frames, cfg.models.threads)?;
            if json {
                outln!("{}", serde_json::to_string(&r).expect("report serialises"));
            } else {
                out!("{}", steadyface::bench::format(&r));
            }
            Ok(())
        }
        Cmd::Eval {
            pred,
            gt,
            models_dir,
            json,
            plots,
        } => {
            let manifest = models::Manifest::load(&models::manifest_path(&models_dir))?;
            let preds: Vec<(String, PathBuf)> = pred.iter().map(|p| labelled(p)).collect();
            let mut results = Vec::new();
            for (label, path) in &preds {
                results.push((label.clone(), app::eval_series(path, &gt, &manifest)?));
            }
            if json {
                let v = if results.len() == 1 {
                    serde_json::to_value(&results[0].1 .0)
                } else {
                    serde_json::to_value(
                        results
                            .iter()
                            .map(|(l, (r, _))| (l, r))
                            .collect::<std::collections::BTreeMap<_, _>>(),
                    )
                };
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&v.expect("report serialises")).expect("json")
                );
            } else {
                for (label, (r, _)) in &results {
                    if results.len() > 1 {
                        outln!("== {label}");
                    }
                    out!("{}", app::format_report(r));
                }
            }
            if let Some(dir) = plots {
                let methods: Vec<Method> = results
                    .iter()
                    .map(|(l, (_, s))| Method { label: l, series: s })
                    .collect();
                for p in plots::write_all(&dir, &methods)? {
                    eprintln!("wrote {}", p.display());
                }
            }
            Ok(())
        }
        Cmd::Render {
            input,
            landmarks,
            output,
            overlay,
            trail,
            scale,
            frames,
            no_video,
        } => {
            let frames = frames
                .map(|f| {
                    f.split_once(':')
                        .and_then(|(a, b)| Some(a.parse::<u64>().ok()?..b.parse::<u64>().ok()?))
                        .filter(|r| r.start < r.end)
                        .ok_or_else(|| {
                            Error::Usage(format!(
                                "--frames {f:?}: expected START:END with START < END, e.g. 60:61"
                            ))
                        })
                })
                .transpose()?;
            let opts = RenderOptions {
                sets: landmarks.iter().map(|l| labelled(l)).collect(),
                layout: if overlay { Layout::Overlay } else { Layout::SideBySide },
                trail,
                scale,
                frames,
                no_video,
            };
            let s = render::render(&input, &output, &opts)?;
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
        Cmd::Tune(t) => {
            let (cfg, args) = t.into_args()?;
            steadyface::backend::tune(&cfg, &args)
        }
        Cmd::Synth {
            image,
            pts,
            kind,
            frames,
            fps,
            seed,
            output,
            truth,
        } => {
            let frame = steadyface::capture::read_image(&image)?;
            let t = steadyface::truth::load_pts(&pts)?;
            let face = t
                .faces
                .first()
                .ok_or_else(|| Error::Usage(format!("{}: no face", pts.display())))?;
            if !(1.0..=240.0).contains(&fps) || frames == 0 {
                return Err(Error::Usage(format!(
                    "--fps {fps} / --frames {frames}: need 1..240 fps and at least one frame"
                )));
            }
            let clip = steadyface::synth::make(&frame, face, &kind, frames, fps, seed)?;
            let mut f = std::io::BufWriter::new(std::fs::File::create(&output).map_err(|e| Error::Io {
                path: output.clone(),
                source: e,
            })?);
            steadyface::capture::write_y4m_444(&mut f, &clip.frames, (fps * 1000.0).round() as u32, 1000).map_err(
                |e| Error::Io {
                    path: output.clone(),
                    source: e,
                },
            )?;
            let frames_json: Vec<Vec<[f32; 2]>> = clip
                .truth
                .iter()
                .map(|t| t.iter().map(|p| [p.x, p.y]).collect())
                .collect();
            std::fs::write(&truth, serde_json::json!({ "frames": frames_json }).to_string()).map_err(|e| {
                Error::Io {
                    path: truth.clone(),
                    source: e,
                }
            })?;
            outln!(
                "{} {kind} frames ({}x{}) into {}; truth in {}",
                frames,
                frame.width,
                frame.height,
                output.display(),
                truth.display()
            );
            Ok(())
        }
        Cmd::Watch {
            broker,
            prefix,
            device,
            once,
            timeout,
            username,
            password_file,
        } => {
            // A day at most: `Duration::from_secs_f64` panics on inf, NaN and overflow.
            if !(0.0..=86_400.0).contains(&timeout) {
                return Err(Error::Usage(format!(
                    "--timeout {timeout}: expected seconds from 0 to 86400"
                )));
            }
            let (host, port) = broker
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                .ok_or_else(|| Error::Usage(format!("--broker {broker:?}: expected HOST:PORT, e.g. 127.0.0.1:1883")))?;
            let password = password_file
                .map(|p| {
                    steadyface::publish::mqtt::read_password_file(&p).map_err(|e| Error::Io { path: p, source: e })
                })
                .transpose()?;
            watch::watch(&WatchOptions {
                host,
                port,
                prefix,
                device,
                once,
                timeout: std::time::Duration::from_secs_f64(timeout.max(0.1)),
                username,
                password,
            })
        }
        Cmd::Models { cmd } => match cmd {
            ModelsCmd::Fetch { dir, data, mirror } => {
                let base = std::env::current_dir().map_err(|e| Error::Io {
                    path: ".".into(),
                    source: e,
                })?;
                let source = match mirror {
                    Some(m) => models::Source::Mirror(m),
                    None => models::default_source(&base),
                };
                match &source {
                    models::Source::Mirror(m) => eprintln!("fetching from mirror {}", m.display()),
                    models::Source::Upstream => {
                        eprintln!("no mirror found; downloading from upstream")
                    }
                }
                for (name, how) in app::fetch_all(&dir, data.as_deref(), &source, true)? {
                    outln!("{name}: {how:?}");
                }
                Ok(())
            }
            ModelsCmd::Time {
                runs,
                threads,
                profile,
                config,
                mut set,
            } => {
                if let Some(t) = threads {
                    set.push(format!("models.threads={t}"));
                }
                let cfg = Config::load(config.as_deref(), &set)?;
                let t = steadyface::bench::time_models(&cfg, runs.max(1), cfg.models.threads)?;
                outln!("{}", serde_json::to_string(&t).expect("times serialise"));
                if profile {
                    let (isa, models) = steadyface::bench::profile_models(&cfg, runs.max(1))?;
                    for (name, steps) in models {
                        let total: f64 = steps.iter().map(|s| s.1).sum();
                        eprintln!(
                            "{name} on the native engine ({isa:?} kernels), {} steps, {total:.3} ms in all:",
                            steps.len()
                        );
                        for (label, ms) in steps {
                            eprintln!("{ms:8.3} ms {:5.1}%  {label}", 100.0 * ms / total.max(1e-9));
                        }
                    }
                }
                Ok(())
            }
            ModelsCmd::Parity {
                input,
                frames,
                config,
                set,
            } => {
                let cfg = Config::load(config.as_deref(), &set)?;
                let (crops, report) = steadyface::bench::parity(&cfg, &input, frames.max(1))?;
                let v = serde_json::json!({
                    "backbone": cfg.models.backbone,
                    "crops": crops,
                    "runtimes": report,
                });
                outln!("{v}");
                Ok(())
            }
            ModelsCmd::Verify { dir } => {
                let m = models::Manifest::load(&models::manifest_path(&dir))?;
                for e in &m.models {
                    e.verify(&dir.join(&e.file))?;
                    outln!("{}: ok", e.name);
                    // Our own ConvLSTM weights have no upstream hash: they must load (shapes,
                    // finite values) and be made for this backbone.
                    if let Some(w) = &e.stabilizer {
                        let path = dir.join(w);
                        let weights = steadyface::convlstm::ConvLstmWeights::load(&path)?;
                        if weights.meta.backbone != e.name {
                            return Err(Error::Model {
                                reason: format!(
                                    "made for backbone {:?}, listed under {:?}",
                                    weights.meta.backbone, e.name
                                ),
                                path,
                            });
                        }
                        outln!("{} stabilizer {}: ok", e.name, w);
                    }
                }
                Ok(())
            }
        },
        Cmd::Run { config, set } => {
            steadyface::daemon::serve(config, set)?;
            Ok(())
        }
        Cmd::Validate {
            config,
            set,
            no_environment,
            strict,
        } => {
            let cfg = Config::load(config.as_deref(), &set)?;
            if !no_environment {
                let warnings = steadyface::daemon::check::environment(&cfg)?;
                for w in &warnings {
                    eprintln!("warning: {w}");
                }
                if strict && !warnings.is_empty() {
                    return Err(Error::Config {
                        origin: config,
                        problems: warnings,
                    });
                }
            }
            outln!("configuration ok");
            Ok(())
        }
        Cmd::GenerateConfig => {
            out!("{}", Config::default_yaml());
            Ok(())
        }
    }
}
