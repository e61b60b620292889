//! The runtimes against the reference, the native CPU engine (`models.cpu_engine: native`), on
//! the same ONNX files: one parity suite over every runtime this build and machine have
//! (`backend::runtimes()`: tract, libtorch on the CPU and on CUDA) and every model, from raw
//! outputs to tracked landmarks. A new runtime is one entry in `runtimes()`; a new backbone one
//! in [`BACKBONES`]; a new CPU model one line in `CPU_MODELS`.

use crate::common::*;
use steadyface::assembly::Models;
use steadyface::backbone::{Backbone, OnnxBackbone};
use steadyface::config::Config;
use steadyface::runtime::{CpuEngine, Device, OnnxGraph};

/// Every backbone in the manifest; each test below runs on all of them.
pub const BACKBONES: [&str; 2] = ["openseeface-lm0", "openseeface-snv2"];

fn models() -> Models {
    models_with(BACKBONES[0])
}

fn models_with(backbone: &str) -> Models {
    assets();
    let mut cfg = Config::default();
    cfg.models.dir = root().join("models");
    cfg.models.backbone = backbone.into();
    Models::resolve(&cfg).unwrap()
}

/// The crop of a real frame's face region as the pipeline makes it (grey for a grey backbone).
fn fill_crop(input: &mut [f32], spec: &steadyface::backbone::BackboneSpec, f: &steadyface::frame::Frame) {
    use steadyface::frame::{resample_planar, Border, InputLut, Sampling};
    // carphone's face sits in the middle-left of the 176×144 frame.
    let crop = steadyface::geometry::BBox::new(30.0, 10.0, 130.0, 120.0);
    let lut = InputLut::new(&spec.normalize);
    let (w, h) = (spec.input_w, spec.input_h);
    resample_planar(
        f,
        crop,
        w,
        h,
        &spec.normalize,
        &lut,
        Sampling::plain(Border::Clamp),
        input,
    );
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
    for c in 0..input.len() / (w * h) {
        for y in 0..h {
            for x in 0..w {
                let (sx, sy) = (x0 + x * f.height / w, y0 + y * f.height / h);
                input[(c * h + y) * w + x] = f.data[(sy * f.width + sx) * 3 + c] as f32 / 127.5 - 1.0;
            }
        }
    }
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
    let err = match steadyface::nn::Net::load(&path, 3, 320, 320) {
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
    let (m, snv2) = (models(), models_with(BACKBONES[1]));
    let frame = &carphone_frames()[60];
    for (path, c, w, h) in [
        (&m.backbone_path, 3, 224, 224),
        (&snv2.backbone_path, 1, 112, 112),
        (&m.detector_path, 3, 320, 320),
    ] {
        let mut multi = steadyface::nn::Net::load(path, c, w, h).unwrap();
        multi.set_threads(3);
        let mut single = steadyface::nn::Net::load(path, c, w, h).unwrap();
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

/// Each backbone's tracker thresholds, from its manifest entry, separate real faces from
/// non-faces on its own confidence scale: the 43 dlib faces (crops from their truth boxes, as
/// the tracker crops a followed face) pass `accept_confidence`, and crops of the same photos
/// that hold no face fall below `lost_confidence`.
#[test]
fn each_backbone_s_thresholds_separate_faces_from_non_faces() {
    use steadyface::frame::{resample_planar, Border, Frame, InputLut, Sampling};
    use steadyface::geometry::BBox;
    for name in BACKBONES {
        let m = models_with(name);
        let spec = m.backbone_spec.clone();
        let conf = spec.confidence;
        let mut net = OnnxBackbone::load(&m.backbone_path, spec.clone(), CpuEngine::Native, 1).unwrap();
        let mut out = vec![0.0; spec.output_len()];
        let lut = InputLut::new(&spec.normalize);
        let plane = spec.out_h * spec.out_w;
        let mut score = |f: &Frame, b: BBox| {
            let crop = b.expand(spec.crop_expand[0], spec.crop_expand[1]);
            let sampling = Sampling::plain(Border::Clamp);
            resample_planar(
                f,
                crop,
                spec.input_w,
                spec.input_h,
                &spec.normalize,
                &lut,
                sampling,
                net.input_mut(),
            );
            net.run(&mut out).unwrap();
            (0..spec.k)
                .map(|k| {
                    let c = (spec.heatmap_first + k) * plane;
                    out[c..c + plane].iter().copied().fold(f32::MIN, f32::max)
                })
                .sum::<f32>()
                / spec.k as f32
        };
        let (mut faces, mut others) = (Vec::new(), Vec::new());
        for xml in ["testing_with_face_landmarks.xml", "training_with_face_landmarks.xml"] {
            for t in steadyface::truth::load(&data(xml)).unwrap() {
                let img = image::open(data(t.file.as_deref().unwrap())).unwrap().to_rgb8();
                let f = Frame::from_rgb_image(&img);
                let boxes: Vec<BBox> = t.faces.iter().filter_map(|p| BBox::around(p)).collect();
                for b in &boxes {
                    faces.push(score(&f, *b));
                }
                // Non-faces: boxes of each face's size on a grid, touching no face.
                for b in &boxes {
                    let (w, h) = (b.width(), b.height());
                    let mut y = 0.0;
                    while y + h <= f.height as f32 {
                        let mut x = 0.0;
                        while x + w <= f.width as f32 {
                            let c = BBox::new(x, y, x + w, y + h);
                            if boxes.iter().all(|o| o.expand(0.3, 0.3).iou(&c) == 0.0) {
                                others.push(score(&f, c));
                            }
                            x += w;
                        }
                        y += h;
                    }
                }
            }
        }
        let pct = |v: &mut Vec<f32>, p: f32| {
            v.sort_by(f32::total_cmp);
            v[((v.len() - 1) as f32 * p).round() as usize]
        };
        let (f10, f50) = (pct(&mut faces, 0.1), pct(&mut faces, 0.5));
        let (o50, o90, o99) = (pct(&mut others, 0.5), pct(&mut others, 0.9), pct(&mut others, 0.99));
        eprintln!(
            "{name}: {} faces p10 {f10:.3} p50 {f50:.3} min {:.3}; {} non-faces p50 {o50:.3} p90 {o90:.3} \
             p99 {o99:.3} max {:.3}; thresholds lost {} accept {}",
            faces.len(),
            faces[0],
            others.len(),
            others[others.len() - 1],
            conf.lost_confidence,
            conf.accept_confidence
        );
        assert_eq!(faces.len(), 43, "{name}");
        assert!(others.len() >= 100, "{name}: only {} non-face crops", others.len());
        // At most 2 of 43 faces (tiny, profile) below accept; at most 5% of non-faces above lost.
        let low = faces.iter().filter(|&&s| s < conf.accept_confidence).count();
        let high = others.iter().filter(|&&s| s >= conf.lost_confidence).count();
        assert!(low <= 2, "{name}: {low} of 43 faces below accept_confidence");
        assert!(
            high * 20 <= others.len(),
            "{name}: {high} of {} non-faces reach lost_confidence",
            others.len()
        );
    }
}

/// Every runtime runs every backbone as the native engine does: the raw outputs on real crops
/// (≤ 1e-4 relative, every heatmap peaking in the same cell), then whole-clip tracking with that
/// runtime configured: the same faces, the raw landmarks within 0.1 px over carphone, and with
/// the default stabilizer within 0.2 px. Measured, the largest gaps: raw, 0.037 px (libtorch on
/// snv2; tract 0.010); the default, 0.070 px (tract on snv2; libtorch 0.001, lm0 0.003–0.004).
/// The map stage's deformation gate scales a landmark's lag by a share that rises with the lag
/// over its noise level, which multiplies a small difference in the raw points by up to ten or
/// so while the gate is half open.
#[test]
fn every_runtime_runs_every_backbone_like_the_native_engine() {
    let runtimes = steadyface::backend::runtimes();
    assert_eq!(runtimes[0].0, "native", "the reference comes first");
    let tmp = tempfile::tempdir().unwrap();
    let clip = data("carphone_pristine.mp4");
    let frames = carphone_frames();
    for name in BACKBONES {
        let m = models_with(name);
        let spec = m.backbone_spec.clone();
        let mut native = OnnxBackbone::load(&m.backbone_path, spec.clone(), CpuEngine::Native, 1).unwrap();
        assert!(native.is_native(), "{name} runs natively");
        let crops: Vec<&steadyface::frame::Frame> = frames.iter().step_by(40).take(4).collect();
        let reference: Vec<Vec<f32>> = crops
            .iter()
            .map(|f| {
                let mut out = vec![0.0; spec.output_len()];
                fill_crop(native.input_mut(), &spec, f);
                native.run(&mut out).unwrap();
                let range = out.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(range > 0.1, "{name}: flat output ({range}); the input did not reach it");
                out
            })
            .collect();
        let backbone = format!("models.backbone={name}");
        let tracked = |label: &str, device: Device, engine: CpuEngine, stabilizer: &str| {
            let backend = match device {
                Device::Cpu => "models.backend=cpu",
                Device::Cuda => "models.backend=cuda",
            };
            let engine = format!("models.cpu_engine={engine}");
            let out = tmp.path().join(format!("{name}-{label}-{stabilizer}.jsonl"));
            let args = [
                "--set",
                &engine,
                "--set",
                &backbone,
                "--set",
                backend,
                "--stabilizer",
                stabilizer,
            ];
            track(&clip, &out, &args)
        };
        const STABILIZERS: [(&str, f32); 2] = [("none", 0.1), ("convlstm+one-euro", 0.2)];
        let native_tracks: Vec<_> = STABILIZERS
            .iter()
            .map(|&(s, _)| tracked("native", Device::Cpu, CpuEngine::Native, s))
            .collect();
        let n = &native_tracks[1];
        let faces: usize = n.iter().map(|r| r.faces.len()).sum();
        assert!(
            faces * 10 >= n.len() * 9,
            "{name}: only {faces} faces in {} frames",
            n.len()
        );
        for &(label, device, engine) in &runtimes[1..] {
            let mut b = steadyface::backend::backbone(&m.backbone_path, spec.clone(), device, engine, 1).unwrap();
            let mut out = vec![0.0; spec.output_len()];
            let mut worst = 0f32;
            for (f, want) in crops.iter().zip(&reference) {
                fill_crop(b.input_mut(), &spec, f);
                b.run(&mut out).unwrap();
                worst = worst.max(relative_gap(&out, want));
                let cells = spec.out_h * spec.out_w;
                for k in 0..spec.k {
                    let argmax = |v: &[f32]| {
                        let m = &v[(spec.heatmap_first + k) * cells..][..cells];
                        (0..cells).max_by(|&i, &j| m[i].total_cmp(&m[j])).unwrap()
                    };
                    assert_eq!(argmax(&out), argmax(want), "{name} on {label}: heatmap {k}");
                }
            }
            assert!(worst < 1e-4, "{name}: {label} and native differ by {worst} (relative)");
            for (&(stabilizer, bound), n) in STABILIZERS.iter().zip(&native_tracks) {
                let t = tracked(label, device, engine, stabilizer);
                assert_eq!(n.len(), t.len(), "{name} on {label}");
                let mut px = 0f32;
                for (a, b) in n.iter().zip(&t) {
                    assert_eq!(a.faces.len(), b.faces.len(), "{name} on {label}: frame {}", a.frame);
                    for (fa, fb) in a.faces.iter().zip(&b.faces) {
                        for (p, q) in fa.points.iter().zip(&fb.points) {
                            px = px.max((p[0] - q[0]).abs().max((p[1] - q[1]).abs()));
                        }
                    }
                }
                assert!(
                    px < bound,
                    "{name} on {label} with {stabilizer}: landmarks differ by up to {px} px"
                );
            }
        }
    }
}

/// A model besides the backbone, which runs on the CPU engines only (native, else tract).
struct CpuModel {
    what: &'static str,
    file: fn(&Models) -> std::path::PathBuf,
    /// Input `(c, w, h)`.
    dims: (usize, usize, usize),
    /// Real inputs, as the pipeline feeds it.
    inputs: fn(&Models) -> Vec<Vec<f32>>,
}

const CPU_MODELS: [CpuModel; 2] = [
    CpuModel {
        what: "detector",
        file: |m| m.detector_path.clone(),
        dims: (3, 320, 320),
        inputs: detector_inputs,
    },
    CpuModel {
        what: "eye refiner",
        file: |m| m.eye_refiner.clone().expect("the default config has an eye refiner").1,
        dims: (3, 64, 64),
        inputs: eye_inputs,
    },
];

/// YuNet's input for three carphone frames (the centre square, stretched to 320×320).
fn detector_inputs(_: &Models) -> Vec<Vec<f32>> {
    carphone_frames()
        .iter()
        .step_by(50)
        .take(3)
        .map(|f| {
            let mut v = vec![0.0; 3 * 320 * 320];
            fill_from_frame(&mut v, 320, 320, f);
            v
        })
        .collect()
}

/// Both eyes of video2-512's face, open and shut (frame 78), as the eye refiner crops them.
fn eye_inputs(m: &Models) -> Vec<Vec<f32>> {
    use steadyface::eyes::EyeCrop;
    use steadyface::frame::{resample_affine, InputLut, Normalize};
    let mut cfg = Config::default();
    cfg.models.dir = root().join("models");
    cfg.models.eye_refiner = None;
    let mut pipeline = m.pipeline(&cfg).unwrap();
    let norm = Normalize {
        scale: 1.0 / 255.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        bgr: false,
        grey: false,
    };
    let lut = InputLut::new(&norm);
    let mut src = steadyface::capture::open(&data("video2-512.mp4")).unwrap();
    let (mut f, mut faces) = (steadyface::frame::Frame::default(), steadyface::pipeline::Faces::new());
    let mut inputs = Vec::new();
    for k in 0..80 {
        src.next_frame(&mut f).unwrap().unwrap();
        pipeline.process(&f, k as f64 / 30.0, &mut faces).unwrap();
        if [10, 60, 78].contains(&k) {
            let p = &faces[0].points;
            for (outer, inner, mirror) in [(36, 39, false), (45, 42, true)] {
                let c = EyeCrop::new(p[outer], p[inner], mirror);
                let mut v = vec![0.0; 3 * 64 * 64];
                resample_affine(&f, c.origin, c.ax, c.ay, 64, 64, &norm, &lut, &mut v);
                inputs.push(v);
            }
        }
    }
    assert_eq!(inputs.len(), 6);
    inputs
}

/// Every CPU engine runs the detector (MaxPool, nearest Resize, channels-last heads) and the
/// eye refiner (PRelu, channel Pad, dense 2×2 convolutions lowered to a GEMM) as the native
/// engine does: every output, on real inputs, ≤ 1e-4 relative.
#[test]
fn every_cpu_engine_runs_the_detector_and_eye_refiner_like_the_native_engine() {
    let m = models();
    for CpuModel {
        what,
        file,
        dims: (c, w, h),
        inputs,
    } in CPU_MODELS
    {
        let path = file(&m);
        let inputs = inputs(&m);
        let run = |engine: CpuEngine| -> Vec<Vec<Vec<f32>>> {
            let mut g = OnnxGraph::load(&path, (c, w, h), engine, 1, what).unwrap();
            match (&g, engine) {
                (OnnxGraph::Native(_), CpuEngine::Native) | (OnnxGraph::Tract(_), CpuEngine::Tract) => {}
                _ => panic!("the {what} did not load on {engine}"),
            }
            let sizes: Vec<usize> = g.outputs().iter().map(|(_, s)| s.iter().product()).collect();
            inputs
                .iter()
                .map(|x| {
                    g.input_mut().copy_from_slice(x);
                    let mut outs: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
                    g.run(&mut outs).unwrap();
                    outs
                })
                .collect()
        };
        let reference = run(CpuEngine::Native);
        let strongest = reference.iter().flatten().flatten().fold(0f32, |a, v| a.max(v.abs()));
        assert!(strongest > 0.5, "the {what}'s outputs are flat ({strongest})");
        for engine in [CpuEngine::Tract] {
            let got = run(engine);
            let mut worst = 0f32;
            for (a, b) in got.iter().flatten().zip(reference.iter().flatten()) {
                worst = worst.max(relative_gap(a, b));
            }
            assert!(
                worst < 1e-4,
                "the {what} on {engine} and native differ by {worst} (relative)"
            );
        }
    }
}

/// A TorchScript backbone (`.pt`, traced from the engine's graph on libtorch) runs as the
/// native engine does (≤ 1e-4 relative on real crops).
#[cfg(feature = "torch")]
#[test]
fn a_torchscript_backbone_runs_like_the_native_engine() {
    use steadyface::torch::{TchBackbone, TchGraphBackbone};
    let tmp = tempfile::tempdir().unwrap();
    for name in BACKBONES {
        let m = models_with(name);
        let spec = m.backbone_spec.clone();
        let mut native = OnnxBackbone::load(&m.backbone_path, spec.clone(), CpuEngine::Native, 1).unwrap();
        let graph =
            TchGraphBackbone::load(&m.backbone_path, spec.clone(), steadyface::torch::tch::Device::Cpu).unwrap();
        let pt = tmp.path().join(format!("{name}.pt"));
        graph.graph().trace().unwrap().save(&pt).unwrap();
        let mut script = TchBackbone::load(&pt, spec.clone(), Device::Cpu).unwrap();
        let n = spec.output_len();
        let (mut a, mut c) = (vec![0.0; n], vec![0.0; n]);
        let mut worst = 0f32;
        for f in carphone_frames().iter().step_by(40).take(4) {
            fill_crop(native.input_mut(), &spec, f);
            fill_crop(script.input_mut(), &spec, f);
            native.run(&mut a).unwrap();
            script.run(&mut c).unwrap();
            assert!(a.iter().any(|v| v.abs() > 0.1), "{name}: flat output");
            worst = worst.max(relative_gap(&c, &a));
        }
        assert!(worst < 1e-4, "{name}: TorchScript and native differ by {worst}");
    }
}
