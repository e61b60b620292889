//! `steadyface`: the command-line front end. All logic lives in the library; each command in
//! `cmd/` only parses its flags, calls it, and prints; here errors become exit codes.

use clap::Parser;
use std::process::ExitCode;

mod cmd;

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
    /// Log level: off, error, warn, info, debug, trace (RUST_LOG, when set, wins and may name
    /// modules). Given twice, the last one counts.
    #[arg(long, global = true, default_value = "info", overrides_with = "log")]
    log: log::LevelFilter,
    #[command(subcommand)]
    cmd: cmd::Cmd,
}

/// Log to journald when systemd connected our stderr to the journal (structured fields,
/// priorities), else to stderr.
fn init_logging(level: log::LevelFilter) {
    let filter = std::env::var("RUST_LOG").unwrap_or(level.to_string());
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(j) = systemd_journal_logger::JournalLog::new() {
            if j.with_syslog_identifier("steadyface".into()).install().is_ok() {
                // The journal takes one level: RUST_LOG's when it is one, else `--log`'s.
                log::set_max_level(filter.parse().unwrap_or(level));
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
    init_logging(cli.log);
    match cli.cmd.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
