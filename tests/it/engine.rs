//! The native CPU engine (`models.cpu_engine: native`) against tract on the same ONNX file:
//! the parity test per backend, from raw heatmaps to tracked landmarks.

use crate::common::*;
use steadyface::app::Models;
use steadyface::backbone::{Backbone, NativeBackbone, TractBackbone};
use steadyface::config::Config;

fn models() -> Models {
    assets();
    let mut cfg = Config::default();
    cfg.models.dir = root().join("models");
    Models::resolve(&cfg).unwrap()
}

/// The largest difference between two runs' outputs, relative to `1 + |reference|`.
fn relative_gap(a: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(a.len(), reference.len(), "output lengths differ");
    a.iter()
        .zip(reference)
        .fold(0f32, |w, (x, y)| w.max((x - y).abs() / (1.0 + y.abs())))
}

/// Fill a backbone input from the centre of a real frame, scaled to [−1, 1].
fn fill_from_frame(input: &mut [f32], w: usize, h: usize, f: &steadyface::frame::Frame) {
    let (x0, y0) = ((f.width - f.height) / 2, 0);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let (sx, sy) = (x0 + x * f.height / w, y0 + y * f.height / h);
                input[(c * h + y) * w + x] = f.data[(sy * f.width + sx) * 3 + c] as f32 / 127.5 - 1.0;
            }
        }
    }
}

#[test]
fn native_engine_matches_tract_on_real_crops() {
    let m = models();
    let spec = m.backbone_spec.clone();
    let mut native = NativeBackbone::load(&m.backbone_path, spec.clone(), 1)
        .unwrap()
        .expect("lm0 runs natively");
    let mut tract = TractBackbone::load(&m.backbone_path, spec.clone()).unwrap();
    let frames = carphone_frames();
    let (mut a, mut b) = (vec![0.0; spec.output_len()], vec![0.0; spec.output_len()]);
    let mut worst = 0f32;
    for f in frames.iter().step_by(40).take(4) {
        fill_from_frame(native.input_mut(), spec.input_w, spec.input_h, f);
        fill_from_frame(tract.input_mut(), spec.input_w, spec.input_h, f);
        native.run(&mut a).unwrap();
        tract.run(&mut b).unwrap();
        let range = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            range > 0.1,
            "tract's output is flat ({range}); the input did not reach it"
        );
        worst = worst.max(relative_gap(&a, &b));
        // Every heatmap peaks in the same cell.
        let cells = spec.out_h * spec.out_w;
        for k in 0..spec.k {
            let argmax = |v: &[f32]| {
                let m = &v[(spec.heatmap_first + k) * cells..][..cells];
                (0..cells).max_by(|&i, &j| m[i].total_cmp(&m[j])).unwrap()
            };
            assert_eq!(argmax(&a), argmax(&b), "heatmap {k}");
        }
    }
    assert!(worst < 1e-4, "native and tract differ by {worst} (relative)");
}

/// The whole pipeline on the real clip: same landmarks from either engine.
#[test]
fn native_and_tract_track_the_carphone_clip_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = data("carphone_pristine.mp4");
    let n = track(
        &clip,
        &tmp.path().join("native.jsonl"),
        &["--set", "models.cpu_engine=native"],
    );
    let t = track(
        &clip,
        &tmp.path().join("tract.jsonl"),
        &["--set", "models.cpu_engine=tract"],
    );
    assert_eq!(n.len(), t.len());
    let mut worst = 0f32;
    let mut faces = 0;
    for (a, b) in n.iter().zip(&t) {
        assert_eq!(a.faces.len(), b.faces.len(), "frame {}", a.frame);
        for (fa, fb) in a.faces.iter().zip(&b.faces) {
            faces += 1;
            for (p, q) in fa.points.iter().zip(&fb.points) {
                worst = worst.max((p[0] - q[0]).abs().max((p[1] - q[1]).abs()));
            }
        }
    }
    assert!(faces * 10 >= n.len() * 9, "only {faces} faces in {} frames", n.len());
    assert!(worst < 0.01, "landmarks differ by up to {worst} px");
}

/// YuNet on the engine (MaxPool, nearest Resize, channels-last output heads) against tract:
/// all twelve outputs, on real frames.
#[test]
fn native_engine_runs_yunet_like_tract() {
    let m = models();
    let mut native = steadyface::nn::Net::load(&m.detector_path, 320, 320).expect("YuNet runs natively");
    let mut tract = steadyface::runtime::OnnxModel::load(&m.detector_path, 320, 320).unwrap();
    let names = |o: &[(String, Vec<usize>)]| {
        o.iter()
            .map(|(n, s)| (n.clone(), s.iter().product::<usize>()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&native.outputs()), names(tract.outputs()));
    let mut worst = 0f32;
    for f in carphone_frames().iter().step_by(50).take(3) {
        fill_from_frame(native.input_mut(), 320, 320, f);
        fill_from_frame(tract.input_mut(), 320, 320, f);
        native.run();
        let mut best_score = 0f32;
        tract
            .run(|i, t| {
                worst = worst.max(relative_gap(native.output(i), t));
                if i == 0 {
                    best_score = t.iter().fold(0f32, |m, v| m.max(*v));
                }
            })
            .unwrap();
        assert!(
            best_score > 0.5,
            "no confident cell ({best_score}): the face did not reach the model"
        );
    }
    assert!(worst < 1e-4, "native and tract differ by {worst} (relative)");
}

/// The eye refiner on the engine (PRelu, channel Pad, dense 2×2 convolutions lowered to a
/// GEMM) against tract: both outputs, on real eye crops of video2-512, open and shut (frame 78).
#[test]
fn native_engine_runs_the_eye_refiner_like_tract() {
    use steadyface::eyes::EyeCrop;
    use steadyface::frame::{resample_affine, InputLut, Normalize};
    let m = models();
    let (_, path) = m.eye_refiner.clone().expect("the default config has an eye refiner");
    let mut native = steadyface::nn::Net::load(&path, 64, 64).expect("the refiner runs natively");
    let mut tract = steadyface::runtime::OnnxModel::load(&path, 64, 64).unwrap();
    let mut cfg = Config::default();
    cfg.models.dir = root().join("models");
    cfg.models.eye_refiner = None;
    let mut pipeline = m.pipeline(&cfg).unwrap();
    let norm = Normalize {
        scale: 1.0 / 255.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        bgr: false,
    };
    let lut = InputLut::new(&norm);
    let mut src = steadyface::capture::open(&data("video2-512.mp4")).unwrap();
    let (mut f, mut faces) = (steadyface::frame::Frame::default(), steadyface::pipeline::Faces::new());
    let mut worst = 0f32;
    let mut crops = 0;
    for k in 0..80 {
        src.next_frame(&mut f).unwrap().unwrap();
        pipeline.process(&f, k as f64 / 30.0, &mut faces).unwrap();
        if ![10, 60, 78].contains(&k) {
            continue;
        }
        let p = &faces[0].points;
        for (outer, inner, mirror) in [(36, 39, false), (45, 42, true)] {
            let c = EyeCrop::new(p[outer], p[inner], mirror);
            for input in [native.input_mut(), tract.input_mut()] {
                resample_affine(&f, c.origin, c.ax, c.ay, 64, 64, &norm, &lut, input);
            }
            native.run();
            tract
                .run(|i, t| worst = worst.max(relative_gap(native.output(i), t)))
                .unwrap();
            crops += 1;
        }
    }
    assert_eq!(crops, 6);
    assert!(worst < 1e-4, "native and tract differ by {worst} (relative)");
}

/// A graph with an operator the engine lacks is refused by name (the loaders then fall back
/// to tract): YuNet with one MaxPool renamed to LpPool.
#[test]
fn native_engine_names_what_it_cannot_run() {
    use prost::Message;
    let m = models();
    let mut model = tract_onnx::pb::ModelProto::decode(std::fs::read(&m.detector_path).unwrap().as_slice()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let node = graph.node.iter_mut().find(|n| n.op_type == "MaxPool").unwrap();
    node.op_type = "LpPool".into();
    let name = node.name.clone();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("odd.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let err = match steadyface::nn::Net::load(&path, 320, 320) {
        Err(steadyface::nn::LoadError::Unsupported(e)) => e,
        Err(e) => panic!("expected Unsupported, got {e}"),
        Ok(_) => panic!("LpPool should need tract"),
    };
    assert!(
        err.contains("odd.onnx") && err.contains(&format!("{name:?}")) && err.contains("LpPool is not implemented"),
        "{err}"
    );
}

/// Split across threads, both models give bit-for-bit the outputs of one thread: each part
/// computes whole output channels exactly as the single-threaded kernel does.
#[test]
fn threads_change_nothing_in_the_outputs() {
    let m = models();
    let spec = m.backbone_spec.clone();
    let frame = &carphone_frames()[60];
    for (path, w, h) in [
        (&m.backbone_path, spec.input_w, spec.input_h),
        (&m.detector_path, 320, 320),
    ] {
        let mut multi = steadyface::nn::Net::load(path, w, h).unwrap();
        multi.set_threads(3);
        let mut single = steadyface::nn::Net::load(path, w, h).unwrap();
        for net in [&mut multi, &mut single] {
            fill_from_frame(net.input_mut(), w, h, frame);
            net.run();
            net.run(); // twice: the workers' second run starts from a parked state
        }
        for i in 0..single.outputs().len() {
            assert!(single.output(i).iter().any(|v| *v != 0.0));
            assert_eq!(multi.output(i), single.output(i), "{} output {i}", path.display());
        }
    }
}
