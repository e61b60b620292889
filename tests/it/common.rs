//! Shared helpers: asset fetching, running the binary, small image utilities.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use steadyface::frame::Frame;
use steadyface::models;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fetch models and data once per test run; returns (models dir, data dir).
pub fn assets() -> (PathBuf, PathBuf) {
    static ONCE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    ONCE.get_or_init(|| {
        let (m, d) = (root().join("models"), root().join("data"));
        let source = models::default_source(&root());
        steadyface::models::fetch_all(&m, Some(&d), &source, false).expect("fetching test assets");
        (m, d)
    })
    .clone()
}

pub fn data(name: &str) -> PathBuf {
    assets().1.join(name)
}

/// The binary under test. `STEADYFACE_BIN_RUNNER` (e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`,
/// set by `cross/test.sh`) runs a cross-built binary under emulation, as cargo's target runner
/// does for the test binary itself.
pub fn bin() -> Command {
    let exe = env!("CARGO_BIN_EXE_steadyface");
    let runner = std::env::var("STEADYFACE_BIN_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut c = match words.next() {
        Some(prog) => {
            // Resolved now: some tests run the binary with an empty PATH.
            let prog = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join(prog))
                .find(|p| p.is_file())
                .unwrap_or_else(|| PathBuf::from(prog));
            let mut c = Command::new(prog);
            c.args(words).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    c.current_dir(root()).arg("--log").arg("warn");
    c
}

pub fn run_ok(c: &mut Command) -> Output {
    let o = c.output().expect("run steadyface");
    assert!(
        o.status.success(),
        "steadyface failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Run and expect failure with `code`; returns stderr.
pub fn run_err(c: &mut Command, code: i32) -> String {
    let o = c.output().expect("run steadyface");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        o.status.code(),
        Some(code),
        "stderr: {err}\nstdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    err
}

/// `track INPUT` with extra args; returns the JSONL records.
pub fn track(input: &Path, out: &Path, extra: &[&str]) -> Vec<steadyface::records::FrameRecord> {
    run_ok(bin().arg("track").arg(input).arg("--output").arg(out).args(extra));
    steadyface::records::read_jsonl(out).unwrap()
}

/// `synth` of takeo under `kind` (still, slow, vibration, lowlight): the clip and its truth.
pub fn synth_takeo(kind: &str, frames: usize, clip: &Path, truth: &Path) {
    run_ok(
        bin()
            .arg("synth")
            .arg(data("takeo.ppm"))
            .arg("--pts")
            .arg(data("takeo.pts"))
            .args(["--kind", kind, "--frames", &frames.to_string(), "-o"])
            .arg(clip)
            .arg("--truth")
            .arg(truth),
    );
}

/// `eval --json`, parsed.
pub fn eval(pred: &Path, gt: &Path) -> serde_json::Value {
    let o = run_ok(bin().args(["eval", "--json", "--pred"]).arg(pred).arg("--gt").arg(gt));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Decode the carphone clip (H.264) into RGB frames through the ffmpeg source.
pub fn carphone_frames() -> Vec<Frame> {
    static F: OnceLock<Vec<Frame>> = OnceLock::new();
    F.get_or_init(|| {
        let mut src = steadyface::capture::open(&data("carphone_pristine.mp4")).expect("open carphone (needs ffmpeg)");
        let mut out = Vec::new();
        let mut f = Frame::default();
        while src.next_frame(&mut f).unwrap().is_some() {
            out.push(f.clone());
        }
        out
    })
    .clone()
}

/// dlib pseudo-label CSV → truth JSON file.
pub fn carphone_truth(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(data("carphone_pristine.dlib68_pseudolabels.csv")).unwrap();
    let frames: Vec<Vec<[f32; 2]>> = text
        .lines()
        .skip(1)
        .map(|l| {
            let v: Vec<f32> = l.split(',').skip(1).map(|x| x.parse().unwrap()).collect();
            v.chunks(2).map(|c| [c[0], c[1]]).collect()
        })
        .collect();
    let p = dir.join("carphone_dlib68.json");
    std::fs::write(&p, serde_json::json!({ "frames": frames }).to_string()).unwrap();
    p
}

/// Write frames as 4:4:4 Y4M.
pub fn write_y4m(path: &Path, frames: &[Frame]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    steadyface::capture::write_y4m_444(&mut f, frames, 30000, 1001).unwrap();
}

pub fn f64_of(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} missing in {v}"))
}
