//! Heap allocations on the per-frame path, counted exactly by a wrapping global allocator
//! (per thread, so tests running in parallel do not disturb each other). Our own per-frame
//! stages must allocate nothing once warm; tract's inference is outside this claim.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use steadyface::face::FaceObs;
use steadyface::geometry::Point;
use steadyface::signals::{Events, Outputs, SignalPoints, Signals, SignalsConfig};
use steadyface::stabilizer::{OneEuroParams, StabilizerKind};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a thread-local Cell.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

/// A 68-point face drifting and blinking every 3 s, like a driver: 30-px eyes at EAR 0.3,
/// closing to EAR 0.1 for 4 frames.
fn face(t: usize) -> FaceObs {
    let mut o = FaceObs {
        id: 1,
        score: 0.8,
        ..FaceObs::default()
    };
    let dx = (t as f32 * 0.1).sin() * 5.0;
    for k in 0..68 {
        let a = k as f32 * 0.37;
        let _ = o
            .points
            .push(Point::new(320.0 + 60.0 * a.cos() + dx, 240.0 + 70.0 * a.sin()));
        let _ = o.conf.push(0.9);
    }
    let h = if t % 90 < 4 { 3.0 } else { 9.0 }; // lid gap: EAR = h / 30
    for (first, x0) in [(36, 280.0), (42, 330.0)] {
        let eye = [
            (0.0, 0.0),
            (10.0, -h / 2.0),
            (20.0, -h / 2.0),
            (30.0, 0.0),
            (20.0, h / 2.0),
            (10.0, h / 2.0),
        ];
        for (k, (x, y)) in eye.into_iter().enumerate() {
            o.points[first + k] = Point::new(x0 + x + dx, 220.0 + y);
        }
    }
    o
}

#[test]
fn signals_and_stabilizers_allocate_nothing_per_frame() {
    let faces: Vec<Vec<FaceObs>> = (0..700).map(|t| vec![face(t)]).collect();
    let mut sig = Signals::new(SignalsConfig::default(), SignalPoints::ibug68());
    let (mut out, mut ev) = (Outputs::new(), Events::new());
    let mut stabs: Vec<_> = [
        StabilizerKind::OneEuro(OneEuroParams::default()),
        StabilizerKind::ShapeOneEuro(OneEuroParams::default()),
    ]
    .iter()
    .map(|k| k.build())
    .collect();
    let mut pts = vec![Point::default(); 68];
    // Warm up: the first frames start a track (its state is allocated once, with the track).
    for (t, f) in faces.iter().enumerate().take(5) {
        sig.update(f, t as f64 / 30.0, &mut out, &mut ev);
    }
    let before = allocs();
    for (t, f) in faces.iter().enumerate().skip(5) {
        let time = t as f64 / 30.0;
        // 23 s: calibration ends at 10 s; the blink ring, PERCLOS buckets and calibration
        // buffer are all exercised.
        sig.update(f, time, &mut out, &mut ev);
        for s in &mut stabs {
            pts.copy_from_slice(&f[0].points);
            s.apply(&mut pts, time, 130.0, None);
        }
    }
    let n = allocs() - before;
    assert_eq!(n, 0, "{n} heap allocations in 695 frames");
    // The counter itself counts.
    let b = std::hint::black_box(Box::new(n));
    assert_eq!(allocs() - before, 1, "{b}");
    // The run did real work: blinks were seen and calibration finished.
    assert!(out[0].blinks >= 5 && out[0].calibrated, "{:?}", out[0]);
}

/// The ConvLSTM's CPU kernel with the shipped weights on lm0-sized maps: no allocation per step.
#[test]
fn convlstm_kernel_allocates_nothing_per_frame() {
    let (m, _) = crate::common::assets();
    let path = m.join("manifest.yaml");
    let manifest = steadyface::models::Manifest::load(&path).unwrap();
    let spec =
        steadyface::backbone::BackboneSpec::from_entry(manifest.model("openseeface-lm0").unwrap(), &path).unwrap();
    let wpath = crate::common::root().join("models/lm0-convlstm/stabilizer.safetensors");
    let w = steadyface::convlstm::ConvLstmWeights::load(&wpath).unwrap();
    let mut cell = steadyface::convlstm::ConvLstm::new(w, &spec, &wpath).unwrap();
    let mut st = cell.new_state();
    let mut out: Vec<f32> = (0..spec.output_len()).map(|i| (i % 97) as f32 / 97.0).collect();
    cell.step(&mut out, &mut st);
    let before = allocs();
    for _ in 0..20 {
        cell.step(&mut out, &mut st);
    }
    assert_eq!(allocs() - before, 0, "allocations in 20 ConvLSTM steps");
}

/// The whole per-frame pipeline on real video (crop → backbone on the native engine →
/// ConvLSTM → decode → face registration → stabilizer, and YuNet on the native engine when
/// `detect_every_frame`): no heap allocation per frame in steady state.
fn pipeline_allocations(detect_every_frame: bool, engine: &str, threads: usize) -> u64 {
    let frames = crate::common::carphone_frames();
    crate::common::assets();
    let mut cfg = steadyface::config::Config::default();
    cfg.models.dir = crate::common::root().join("models");
    cfg.models.cpu_engine = engine.parse().unwrap();
    cfg.models.threads = threads;
    cfg.detector.interval = if detect_every_frame { 1 } else { 100_000 };
    // The default: the ConvLSTM, then One Euro carried by the registered face motion, then the
    // eye refiner on both eyes.
    cfg.stabilizer.method = "convlstm+one-euro".parse().unwrap();
    assert!(cfg.stabilizer.motion);
    let models = steadyface::assembly::Models::resolve(&cfg).unwrap();
    let mut p = models.pipeline(&cfg).unwrap();
    let mut faces = steadyface::pipeline::Faces::new();
    for (i, f) in frames.iter().enumerate().take(10) {
        p.process(f, i as f64 / 30.0, &mut faces).unwrap();
    }
    assert_eq!(faces.len(), 1, "the face is tracked after warm-up");
    let before = allocs();
    for (i, f) in frames.iter().enumerate().skip(10).take(60) {
        p.process(f, i as f64 / 30.0, &mut faces).unwrap();
    }
    let n = allocs() - before;
    assert_eq!(faces.len(), 1, "the face stayed tracked");
    // The eye refiner (on by default) is part of the counted path.
    assert!(faces[0].eyes.is_some(), "the eye refiner ran");
    n
}

#[test]
fn pipeline_allocates_nothing_per_frame_between_detections() {
    let n = pipeline_allocations(false, "native", 1);
    assert_eq!(n, 0, "{n} heap allocations in 60 frames");
    // Split across two threads, the engine's hand-offs allocate nothing either. (The counter
    // is per thread, since tests run side by side; it sees the calling thread, which hands
    // out the parts and runs some of them. The worker runs the same kernels.)
    let n = pipeline_allocations(false, "native", 2);
    assert_eq!(n, 0, "{n} heap allocations in 60 frames on 2 threads");
}

/// Detection frames too, now that YuNet runs on the native engine. The same run under tract
/// allocates on every frame, which shows that the counter sees the detector.
#[test]
fn pipeline_allocates_nothing_per_frame_with_detection_on_every_frame() {
    let n = pipeline_allocations(true, "native", 1);
    assert_eq!(n, 0, "{n} heap allocations in 60 frames");
    let t = pipeline_allocations(true, "tract", 1);
    assert!(t >= 60, "tract allocated only {t} times in 60 frames");
}
