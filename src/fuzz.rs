//! Fuzz entry points: one function per parser that reads outside data, each taking arbitrary
//! bytes and returning whether the parser accepted them. A parser may refuse anything; it may
//! not panic, hang, or allocate without bound. The libFuzzer harness (`crates/fuzz`) drives
//! these with coverage guidance; the test suite replays the committed corpus (seeds and every
//! input that once crashed) through the same functions, so a fixed crash stays fixed.
//!
//! The file-based parsers are fed through a real file (the daemon and the commands read
//! paths, and their errors name them): one scratch directory per process.

use crate::capture::FrameSource;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The parsers, by the name their corpus directory and the harness use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `steadyface.yaml`, then `--set` overrides: the input's first NUL byte splits the YAML
    /// from the overrides, one per line.
    Config,
    /// The model manifest (`models/manifest.yaml`).
    Manifest,
    /// A Y4M stream: header and up to 16 frames.
    Y4m,
    /// An ONNX model through the native engine: import, plan, and one run on a 1×3×32×32
    /// input (a planned graph must run whatever shapes it was planned for).
    Onnx,
    /// ConvLSTM weights (safetensors with metadata).
    Weights,
    /// Ground truth: the first byte picks `.pts`, dlib `.xml` or `.json`.
    Truth,
    /// Predictions, JSON Lines as `track` writes them.
    Predictions,
    /// An MQTT command payload, through the intake and the command parser.
    Command,
}

impl Target {
    pub const ALL: [Target; 8] = [
        Target::Config,
        Target::Manifest,
        Target::Y4m,
        Target::Onnx,
        Target::Weights,
        Target::Truth,
        Target::Predictions,
        Target::Command,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Config => "config",
            Target::Manifest => "manifest",
            Target::Y4m => "y4m",
            Target::Onnx => "onnx",
            Target::Weights => "weights",
            Target::Truth => "truth",
            Target::Predictions => "predictions",
            Target::Command => "command",
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Target::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
            format!("unknown fuzz target {s:?} (one of {})", names.join(", "))
        })
    }
}

/// Run one input through `target`: `true` when the parser accepted it.
pub fn run(target: Target, data: &[u8]) -> bool {
    match target {
        Target::Config => config(data),
        Target::Manifest => crate::models::Manifest::load(&scratch("manifest.yaml", data)).is_ok(),
        Target::Y4m => y4m(data),
        Target::Onnx => onnx(data),
        Target::Weights => crate::convlstm::ConvLstmWeights::load(&scratch("w.safetensors", data)).is_ok(),
        Target::Truth => truth(data),
        Target::Predictions => crate::records::read_jsonl(&scratch("p.jsonl", data)).is_ok(),
        Target::Command => command(data),
    }
}

fn config(data: &[u8]) -> bool {
    let (yaml, sets) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let sets: Vec<String> = String::from_utf8_lossy(sets)
        .lines()
        .take(8)
        .map(str::to_string)
        .collect();
    crate::config::Config::load(Some(&scratch("c.yaml", yaml)), &sets).is_ok()
}

fn onnx(data: &[u8]) -> bool {
    match crate::nn::Net::load(&scratch("model.onnx", data), 3, 32, 32) {
        Ok(mut net) => {
            net.input_mut().fill(0.5);
            net.run();
            true
        }
        Err(_) => false,
    }
}

fn y4m(data: &[u8]) -> bool {
    let path = Path::new("fuzz.y4m");
    let reader = Box::new(std::io::Cursor::new(data.to_vec()));
    let Ok(mut src) = crate::capture::y4m::Y4mSource::from_reader(reader, path) else {
        return false;
    };
    let mut frame = crate::frame::Frame::new(0, 0);
    for _ in 0..16 {
        match src.next_frame(&mut frame) {
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
    true
}

fn truth(data: &[u8]) -> bool {
    let Some((&first, rest)) = data.split_first() else {
        return false;
    };
    let name = match first % 3 {
        0 => "t.pts",
        1 => "t.xml",
        _ => "t.json",
    };
    crate::truth::load(&scratch(name, rest)).is_ok()
}

fn command(data: &[u8]) -> bool {
    let mut intake = crate::daemon::intake::Intake::default();
    match intake.check(data, false, std::time::Instant::now()) {
        crate::daemon::intake::Verdict::Admit(p) => crate::publish::schema::CommandMsg::parse(p).is_ok(),
        _ => false,
    }
}

/// Remove this process's scratch directory (made by the first file-based input), unless it was
/// given in `STEADYFACE_FUZZ_DIR`.
pub fn remove_scratch() {
    if std::env::var_os("STEADYFACE_FUZZ_DIR").is_none() {
        let _ = std::fs::remove_dir_all(own_scratch_dir());
    }
}

/// This process's scratch directory when none is given: in /dev/shm when there is one (the
/// fuzzer writes a file per input).
fn own_scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("steadyface-fuzz-{}", std::process::id()))
}

/// Write `data` to `name` in this process's scratch directory and return the path.
fn scratch(name: &str, data: &[u8]) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("STEADYFACE_FUZZ_DIR") {
            return PathBuf::from(d);
        }
        let d = own_scratch_dir();
        std::fs::create_dir_all(&d).expect("fuzz scratch directory");
        d
    });
    let p = dir.join(name);
    std::fs::write(&p, data).expect("fuzz scratch file");
    p
}
