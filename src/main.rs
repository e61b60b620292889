//! `steadyface`: the command-line front end. All logic lives in the library; this file
//! only parses arguments, calls it, and maps errors to exit codes.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
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
landmarks over MQTT; `steadyface run --config config/demo.yaml` tries it on the bundled clip.\n\n\
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
        /// Temporal stabilizer (overrides stabilizer.method): none or one-euro.
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
    /// Compare predicted landmarks with ground truth: NME, NRMSE, AUC, FR, MCV, MAV, jitter.
    Eval {
        /// Landmark JSONL written by `track`.
        #[arg(long)]
        pred: PathBuf,
        /// Truth: {"frames": [[[x,y]...]...]} JSON, a menpo .pts file or directory of them, or dlib XML.
        #[arg(long)]
        gt: PathBuf,
        /// Directory of manifest.yaml (for landmark schemes).
        #[arg(long, default_value = "models")]
        models_dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Time the per-frame pipeline on a clip by stage (median, p90), with fps and peak RSS.
    Bench {
        /// A .y4m file, image directory or video; looped until --frames are done.
        input: PathBuf,
        /// Frames to time (after 5 warm-up frames).
        #[arg(long, default_value_t = 300)]
        frames: usize,
        /// Threads for tract's matrix products.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Temporal stabilizer: none or one-euro.
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
        #[arg(long, default_value_t = 1)]
        threads: usize,
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
            let s = app::track(&cfg, &input, &output, signals)?;
            println!(
                "{} frames ({} with a face, {} face observations, mean score {:.3}) in {:.2} s = {:.1} fps; decoder {}; detector ran {} times; tracks started {}, lost {}; wrote {}",
                s.frames, s.frames_with_face, s.faces_seen, s.mean_score, s.seconds, s.fps, s.decoder, s.stats.detector_runs, s.stats.tracks_started, s.stats.tracks_lost, s.output
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
            let cfg = Config::load(config.as_deref(), &set)?;
            let r = steadyface::bench::bench(&cfg, &input, frames, threads.max(1))?;
            if json {
                println!("{}", serde_json::to_string(&r).expect("report serialises"));
            } else {
                print!("{}", steadyface::bench::format(&r));
            }
            Ok(())
        }
        Cmd::Eval {
            pred,
            gt,
            models_dir,
            json,
        } => {
            let manifest = models::Manifest::load(&models::manifest_path(&models_dir))?;
            let r = app::eval(&pred, &gt, &manifest)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).expect("report serialises"));
            } else {
                print!("{}", app::format_report(&r));
            }
            Ok(())
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
                    println!("{name}: {how:?}");
                }
                Ok(())
            }
            ModelsCmd::Time {
                runs,
                threads,
                config,
                set,
            } => {
                let cfg = Config::load(config.as_deref(), &set)?;
                let t = steadyface::bench::time_models(&cfg, runs.max(1), threads.max(1))?;
                println!("{}", serde_json::to_string(&t).expect("times serialise"));
                Ok(())
            }
            ModelsCmd::Verify { dir } => {
                let m = models::Manifest::load(&models::manifest_path(&dir))?;
                for e in &m.models {
                    e.verify(&dir.join(&e.file))?;
                    println!("{}: ok", e.name);
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
            println!("configuration ok");
            Ok(())
        }
        Cmd::GenerateConfig => {
            print!("{}", Config::default_yaml());
            Ok(())
        }
    }
}
