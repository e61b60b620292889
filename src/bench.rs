//! `steadyface bench`: the per-frame pipeline on a clip, minus the network, timed by stage.
//!
//! Stages: `convert` (read + YUV→RGB), `detect` (its time on the frames where it ran, 0
//! elsewhere; `mean_ms` is the amortised cost), `crop`, `backbone`, `decode`,
//! `stabilizer` (0 with `--stabilizer none`), `eyes` (the eye refiner on both eyes, 0 with
//! `models.eye_refiner: null`), `signals` (drowsiness, when `signals.enabled`).
//! Reported as median and p90 over the
//! measured frames, plus overall fps and peak RSS. Timings are for reading, not for
//! asserting: absolute times drift on shared machines, so compare ratios from one run.

use crate::assembly::Models;
use crate::capture;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::geometry::{CropTransform, Point};
use crate::pipeline::Faces;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Median and 90th percentile of one stage.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct StageStat {
    pub median_ms: f64,
    pub p90_ms: f64,
    /// Mean over all frames: the amortised cost of stages that skip frames (detection).
    pub mean_ms: f64,
}

/// The `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub frames: usize,
    pub fps: f64,
    pub rss_mb: f64,
    pub threads: usize,
    /// The instruction set the engine's kernels run with on this machine.
    pub isa: String,
    pub stages: BTreeMap<&'static str, StageStat>,
    /// The temporal stage's budget: `stabilizer` + `decode` medians over the `backbone`
    /// median (the stabilizer's stage is to cost at most 15% of the backbone); `None` without
    /// backbone runs.
    pub stabilizer_share: Option<f64>,
}

/// What the temporal stage may cost, as a share of the backbone: `stabilizer` + `decode`.
pub const STABILIZER_BUDGET: f64 = 0.15;

/// Frames run before timing starts (model warm-up, first detection).
const WARMUP: usize = 5;

fn stat(mut v: Vec<Duration>) -> StageStat {
    v.sort_unstable();
    let mean_ms = v.iter().map(|d| d.as_secs_f64() * 1e3).sum::<f64>() / v.len().max(1) as f64;
    let at = |q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    StageStat {
        median_ms: at(0.5),
        p90_ms: at(0.9),
        mean_ms,
    }
}

/// Peak resident set size of this process in MB (Linux `VmHWM`), 0 elsewhere.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| {
                    l.strip_prefix("VmHWM:")
                        .map(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                })
                .flatten()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Use `threads` threads for tract's matrix products, a process-wide setting (1 = the
/// calling thread only). The native engine takes its count per network (`models.threads`).
pub fn set_threads(threads: usize) {
    // tract's executor owns its threads: make a new one only when the count changes.
    static TRACT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    if threads > 1 && TRACT.swap(threads, std::sync::atomic::Ordering::Relaxed) != threads {
        tract_linalg::multithread::set_default_executor(tract_linalg::multithread::Executor::multithread(threads));
    }
}

/// Run `frames` frames of `input` (looping the clip) through the pipeline.
pub fn bench(cfg: &Config, input: &Path, frames: usize, threads: usize) -> Result<BenchReport> {
    if frames == 0 {
        return Err(Error::Usage("--frames must be at least 1".into()));
    }
    set_threads(threads);
    let models = Models::resolve(cfg)?;
    let mut pipeline = models.pipeline(cfg)?;
    let mut signals = cfg.signals.enabled.then(|| models.signals(cfg)).transpose()?;
    let (mut sig_out, mut sig_ev) = (crate::signals::Outputs::new(), crate::signals::Events::new());
    let mut source = capture::open(input)?;
    let mut frame = Frame::default();
    let mut faces = Faces::new();
    let names = [
        "convert",
        "detect",
        "crop",
        "backbone",
        "stabilizer",
        "decode",
        "eyes",
        "signals",
    ];
    let mut series: Vec<Vec<Duration>> = names.iter().map(|_| Vec::with_capacity(frames)).collect();
    let mut started = None;
    for i in 0..frames + WARMUP {
        if i == WARMUP {
            started = Some(Instant::now());
        }
        let t = Instant::now();
        let time_s = i as f64 / source.info().fps.unwrap_or(capture::DEFAULT_FPS);
        if source.next_frame(&mut frame)?.is_none() {
            // Loop the clip; tracks continue as if the video went on.
            source = capture::open(input)?;
            if source.next_frame(&mut frame)?.is_none() {
                return Err(Error::input(input, "has no frames"));
            }
        }
        let convert = t.elapsed();
        pipeline.process(&frame, time_s, &mut faces)?;
        let t = Instant::now();
        if let Some(s) = signals.as_mut() {
            s.update(&faces, time_s, &mut sig_out, &mut sig_ev);
        }
        let sig = t.elapsed();
        if i >= WARMUP {
            let st = pipeline.last_times();
            for (s, d) in series.iter_mut().zip([
                convert,
                st.detect,
                st.crop,
                st.backbone,
                st.stabilizer,
                st.decode,
                st.eyes,
                sig,
            ]) {
                s.push(d);
            }
        }
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let stages: BTreeMap<_, _> = names.iter().copied().zip(series.into_iter().map(stat)).collect();
    Ok(BenchReport {
        frames,
        fps: frames as f64 / secs.max(1e-9),
        rss_mb: peak_rss_mb(),
        threads,
        isa: isa_name(),
        stabilizer_share: share(&stages),
        stages,
    })
}

/// Inference-only timings of the configured backbone and detector on fixed inputs.
#[derive(Debug, Clone, Serialize)]
pub struct ModelTimes {
    pub runs: usize,
    pub threads: usize,
    pub backbone: StageStat,
    pub detector: StageStat,
}

/// Time `runs` inferences of each model (after 10 warm-up runs), for side-by-side
/// comparisons with other runtimes on the same files (`scripts/ort-compare.sh`).
pub fn time_models(cfg: &Config, runs: usize, threads: usize) -> Result<ModelTimes> {
    set_threads(threads);
    let models = Models::resolve(cfg)?;
    let mut backbone = models.load_backbone(cfg)?;
    let mut out = vec![0.0; backbone.spec().output_len()];
    test_pattern(backbone.input_mut());
    let bb = time_runs(runs, || backbone.run(&mut out))?;
    let mut det = models.load_detector(cfg)?;
    let mut f = Frame::new(320, 320);
    for (i, v) in f.data.iter_mut().enumerate() {
        *v = (i * 31 % 251) as u8;
    }
    let mut dets = heapless::Vec::new();
    let dt = time_runs(runs, || det.detect(&f, &crate::exposure::Levels::IDENTITY, &mut dets))?;
    Ok(ModelTimes {
        runs,
        threads,
        backbone: bb,
        detector: dt,
    })
}

/// One runtime against the native engine (`models parity`).
#[derive(Debug, Clone, Serialize)]
pub struct Parity {
    pub runtime: &'static str,
    /// Largest heatmap-output difference, relative to `1 + |native|`.
    pub max_rel_output: f32,
    /// Largest difference of a decoded landmark, in image pixels.
    pub max_landmark_px: f32,
    /// Median time of one backbone run (input upload and output download included).
    pub median_ms: f64,
}

/// The configured backbone on every runtime of [`crate::backend::runtimes`], fed the same
/// crops: the faces the native pipeline tracks in the first `frames` frames of `input`.
/// Returns how many crops were compared, and one row per runtime (the native engine first).
pub fn parity(cfg: &Config, input: &Path, frames: usize) -> Result<(usize, Vec<Parity>)> {
    let models = Models::resolve(cfg)?;
    let spec = models.backbone_spec.clone();
    let mut native_cfg = cfg.clone();
    native_cfg.models.backend = crate::backend::Backend::Cpu;
    native_cfg.models.cpu_engine = crate::runtime::CpuEngine::Native;
    let mut pipeline = models.pipeline(&native_cfg)?;
    let mut src = capture::open(input)?;
    let (mut f, mut faces) = (Frame::default(), Faces::new());
    let mut crops = Vec::new();
    while crops.len() < frames {
        if src.next_frame(&mut f)?.is_none() {
            break;
        }
        pipeline.process(&f, crops.len() as f64 / 30.0, &mut faces)?;
        if let Some(face) = faces.first() {
            crops.push((f.clone(), face.bbox.expand(spec.crop_expand[0], spec.crop_expand[1])));
        }
    }
    if crops.is_empty() {
        return Err(Error::data(input, "no face found to compare the runtimes on"));
    }
    let decoder = cfg.decoder();
    let lut = crate::frame::InputLut::new(&spec.normalize);
    let sampling = crate::frame::Sampling::plain(crate::frame::Border::Clamp);
    // Per runtime: its outputs and decoded points per crop, and its median time.
    struct Run {
        label: &'static str,
        outs: Vec<Vec<f32>>,
        pts: Vec<Vec<Point>>,
        ms: f64,
    }
    let mut runs = Vec::new();
    for (label, device, engine) in crate::backend::runtimes() {
        let mut b = crate::backend::backbone(&models.backbone_path, spec.clone(), device, engine, cfg.models.threads)?;
        let (mut outs, mut pts, mut times) = (Vec::new(), Vec::new(), Vec::new());
        for (f, crop) in &crops {
            crate::frame::resample_planar(
                f,
                *crop,
                spec.input_w,
                spec.input_h,
                &spec.normalize,
                &lut,
                sampling,
                b.input_mut(),
            );
            let mut out = vec![0.0; spec.output_len()];
            let t = Instant::now();
            b.run(&mut out)?;
            times.push(t.elapsed());
            let ct = CropTransform::new(*crop, spec.input_w, spec.input_h);
            let (mut p, mut c) = (vec![Point::default(); spec.k], vec![0.0; spec.k]);
            decoder.decode_all(&spec, &out, &ct, &mut p, &mut c);
            outs.push(out);
            pts.push(p);
        }
        runs.push(Run {
            label,
            outs,
            pts,
            ms: stat(times).median_ms,
        });
    }
    let (ref_out, ref_pts) = (&runs[0].outs, &runs[0].pts);
    let report = runs
        .iter()
        .map(|Run { label, outs, pts, ms }| {
            let mut rel = 0f32;
            for (o, r) in outs.iter().zip(ref_out) {
                rel = o
                    .iter()
                    .zip(r)
                    .fold(rel, |w, (x, y)| w.max((x - y).abs() / (1.0 + y.abs())));
            }
            let mut px = 0f32;
            for (p, r) in pts.iter().zip(ref_pts) {
                px = p
                    .iter()
                    .zip(r)
                    .fold(px, |w, (a, b)| w.max((a.x - b.x).abs().max((a.y - b.y).abs())));
            }
            Parity {
                runtime: label,
                max_rel_output: rel,
                max_landmark_px: px,
                median_ms: *ms,
            }
        })
        .collect();
    Ok((crops.len(), report))
}

/// Per model: its label and the engine's mean time per step, slowest first.
pub type Profiles = Vec<(&'static str, Vec<(String, f64)>)>;

/// The native engine's kernels and time per step on the configured backbone, detector and eye
/// refiner (mean ms, slowest first), labelled `backbone`, `detector` and `eye refiner`; a
/// model the engine cannot run is left out.
pub fn profile_models(cfg: &Config, runs: usize) -> Result<(crate::nn::kernels::Isa, Profiles)> {
    let models = Models::resolve(cfg)?;
    let spec = &models.backbone_spec;
    let di = &models
        .manifest
        .model(&cfg.models.detector)
        .ok_or_else(|| Error::Usage(format!("no model {:?} in the manifest", cfg.models.detector)))?
        .io
        .input;
    let det = (3, di.width, di.height);
    let mut isa = crate::nn::kernels::Isa::detect();
    let mut out = Vec::new();
    let mut list = vec![
        (
            "backbone",
            &models.backbone_path,
            (spec.input_c, spec.input_w, spec.input_h),
        ),
        ("detector", &models.detector_path, det),
    ];
    if let Some((e, path)) = &models.eye_refiner {
        list.push(("eye refiner", path, (3, e.io.input.width, e.io.input.height)));
    }
    for (name, path, (c, w, h)) in list {
        let mut net = match crate::nn::Net::load(path, c, w, h) {
            Ok(mut n) => {
                n.set_threads(cfg.models.threads);
                n
            }
            Err(crate::nn::LoadError::Unsupported(_)) => continue,
            Err(e) => return Err(Error::model(path, e.to_string())),
        };
        test_pattern(net.input_mut());
        for _ in 0..10 {
            net.run();
        }
        isa = net.isa();
        out.push((name, net.profile(runs)));
    }
    Ok((isa, out))
}

/// A fixed input in [−1, 1] for inference-only timing (the same for every runtime).
fn test_pattern(input: &mut [f32]) {
    for (i, v) in input.iter_mut().enumerate() {
        *v = ((i % 251) as f32 / 251.0 - 0.5) * 2.0;
    }
}

/// Time `runs` calls of `f` after 10 untimed warm-up calls.
fn time_runs(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<StageStat> {
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 10 {
        let t = Instant::now();
        f()?;
        if i >= 10 {
            times.push(t.elapsed());
        }
    }
    Ok(stat(times))
}

/// The machine's architecture and the kernels' instruction set, e.g. `x86_64 AVX-512`.
pub fn isa_name() -> String {
    format!(
        "{} {}",
        std::env::consts::ARCH,
        crate::nn::kernels::Isa::detect().name()
    )
}

fn share(stages: &BTreeMap<&'static str, StageStat>) -> Option<f64> {
    let median = |k: &str| stages.get(k).map_or(0.0, |s| s.median_ms);
    (median("backbone") > 0.0).then(|| (median("stabilizer") + median("decode")) / median("backbone"))
}

/// Human-readable table.
pub fn format(r: &BenchReport) -> String {
    let mut s = format!(
        "{:<10} {:>10} {:>10} {:>10}\n",
        "stage", "median ms", "p90 ms", "mean ms"
    );
    for (k, v) in &r.stages {
        s += &format!("{k:<10} {:>10.3} {:>10.3} {:>10.3}\n", v.median_ms, v.p90_ms, v.mean_ms);
    }
    if let Some(share) = r.stabilizer_share {
        s += &format!(
            "stabilizer + decode: {:.0}% of the backbone (budget {:.0}%)\n",
            100.0 * share,
            100.0 * STABILIZER_BUDGET
        );
    }
    s += &format!(
        "{} frames, {:.1} fps, peak RSS {:.1} MB, {} thread(s), {}\n",
        r.frames, r.fps, r.rss_mb, r.threads, r.isa
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90_of_ten() {
        let v: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        let s = stat(v);
        // Index round(9·0.5)=5 → 6 ms (upper median); round(9·0.9)=8 → 9 ms; mean 5.5 ms.
        assert_eq!(
            s,
            StageStat {
                median_ms: 6.0,
                p90_ms: 9.0,
                mean_ms: 5.5
            }
        );
    }
}
