//! The native CPU engine (`models.cpu_engine: native`) against tract on the same ONNX file:
//! the parity test per backend, from raw heatmaps to tracked landmarks.

use crate::common::*;
use steadyface::assembly::Models;
use steadyface::backbone::{Backbone, OnnxBackbone};
use steadyface::config::Config;
use steadyface::runtime::CpuEngine;

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

#[test]
fn native_engine_matches_tract_on_real_crops() {
    for name in BACKBONES {
        let m = models_with(name);
        let spec = m.backbone_spec.clone();
        let mut native = OnnxBackbone::load(&m.backbone_path, spec.clone(), CpuEngine::Native, 1).unwrap();
        assert!(native.is_native(), "{name} runs natively");
        let mut tract = OnnxBackbone::load(&m.backbone_path, spec.clone(), CpuEngine::Tract, 1).unwrap();
        let frames = carphone_frames();
        let (mut a, mut b) = (vec![0.0; spec.output_len()], vec![0.0; spec.output_len()]);
        let mut worst = 0f32;
        for f in frames.iter().step_by(40).take(4) {
            fill_crop(native.input_mut(), &spec, f);
            fill_crop(tract.input_mut(), &spec, f);
            native.run(&mut a).unwrap();
            tract.run(&mut b).unwrap();
            let range = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                range > 0.1,
                "{name}: tract's output is flat ({range}); the input did not reach it"
            );
            worst = worst.max(relative_gap(&a, &b));
            // Every heatmap peaks in the same cell.
            let cells = spec.out_h * spec.out_w;
            for k in 0..spec.k {
                let argmax = |v: &[f32]| {
                    let m = &v[(spec.heatmap_first + k) * cells..][..cells];
                    (0..cells).max_by(|&i, &j| m[i].total_cmp(&m[j])).unwrap()
                };
                assert_eq!(argmax(&a), argmax(&b), "{name}: heatmap {k}");
            }
        }
        assert!(worst < 1e-4, "{name}: native and tract differ by {worst} (relative)");
    }
}

/// The whole pipeline on the real clip: same landmarks from either engine, for every backbone.
#[test]
fn native_and_tract_track_the_carphone_clip_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = data("carphone_pristine.mp4");
    for name in BACKBONES {
        let backbone = format!("models.backbone={name}");
        let n = track(
            &clip,
            &tmp.path().join("native.jsonl"),
            &["--set", "models.cpu_engine=native", "--set", &backbone],
        );
        let t = track(
            &clip,
            &tmp.path().join("tract.jsonl"),
            &["--set", "models.cpu_engine=tract", "--set", &backbone],
        );
        assert_eq!(n.len(), t.len());
        let mut worst = 0f32;
        let mut faces = 0;
        for (a, b) in n.iter().zip(&t) {
            assert_eq!(a.faces.len(), b.faces.len(), "{name}: frame {}", a.frame);
            for (fa, fb) in a.faces.iter().zip(&b.faces) {
                faces += 1;
                for (p, q) in fa.points.iter().zip(&fb.points) {
                    worst = worst.max((p[0] - q[0]).abs().max((p[1] - q[1]).abs()));
                }
            }
        }
        assert!(
            faces * 10 >= n.len() * 9,
            "{name}: only {faces} faces in {} frames",
            n.len()
        );
        assert!(worst < 0.01, "{name}: landmarks differ by up to {worst} px");
    }
}

/// YuNet on the engine (MaxPool, nearest Resize, channels-last output heads) against tract:
/// all twelve outputs, on real frames.
#[test]
fn native_engine_runs_yunet_like_tract() {
    let m = models();
    let mut native = steadyface::nn::Net::load(&m.detector_path, 3, 320, 320).expect("YuNet runs natively");
    let mut tract = steadyface::runtime::OnnxModel::load(&m.detector_path, 3, 320, 320).unwrap();
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
    let mut native = steadyface::nn::Net::load(&path, 3, 64, 64).expect("the refiner runs natively");
    let mut tract = steadyface::runtime::OnnxModel::load(&path, 3, 64, 64).unwrap();
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

/// libtorch runs every backbone as the native engine does: the graph executed op by op on the
/// CPU (what CUDA runs) and its traced TorchScript module, against the native engine on real
/// crops (≤ 1e-4 relative), and whole-clip tracking with `models.cpu_engine: libtorch`
/// (same landmarks to 0.01 px over carphone).
#[cfg(feature = "torch")]
#[test]
fn libtorch_runs_every_backbone_like_the_native_engine() {
    use steadyface::torch::{TchBackbone, TchGraphBackbone};
    let tmp = tempfile::tempdir().unwrap();
    let clip = data("carphone_pristine.mp4");
    for name in BACKBONES {
        let m = models_with(name);
        let spec = m.backbone_spec.clone();
        let mut native = OnnxBackbone::load(&m.backbone_path, spec.clone(), CpuEngine::Native, 1).unwrap();
        let mut graph = TchGraphBackbone::load(&m.backbone_path, spec.clone(), tch::Device::Cpu).unwrap();
        let pt = tmp.path().join(format!("{name}.pt"));
        graph.graph().trace().unwrap().save(&pt).unwrap();
        let mut script = TchBackbone::load(&pt, spec.clone(), steadyface::backend::Device::Cpu).unwrap();
        let n = spec.output_len();
        let (mut a, mut b, mut c) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let (mut worst, mut worst_script) = (0f32, 0f32);
        for f in carphone_frames().iter().step_by(40).take(4) {
            fill_crop(native.input_mut(), &spec, f);
            fill_crop(graph.input_mut(), &spec, f);
            fill_crop(script.input_mut(), &spec, f);
            native.run(&mut a).unwrap();
            graph.run(&mut b).unwrap();
            script.run(&mut c).unwrap();
            assert!(a.iter().any(|v| v.abs() > 0.1), "{name}: flat output");
            worst = worst.max(relative_gap(&b, &a));
            worst_script = worst_script.max(relative_gap(&c, &a));
        }
        assert!(worst < 1e-4, "{name}: libtorch and native differ by {worst} (relative)");
        assert!(
            worst_script < 1e-4,
            "{name}: TorchScript and native differ by {worst_script}"
        );
        let backbone = format!("models.backbone={name}");
        let run = |engine: &str| {
            let out = tmp.path().join(format!("{engine}.jsonl"));
            let engine = format!("models.cpu_engine={engine}");
            track(
                &clip,
                &out,
                &["--set", &engine, "--set", &backbone, "--set", "models.backend=cpu"],
            )
        };
        let (n, t) = (run("native"), run("libtorch"));
        assert_eq!(n.len(), t.len());
        let mut px = 0f32;
        let mut faces = 0;
        for (x, y) in n.iter().zip(&t) {
            assert_eq!(x.faces.len(), y.faces.len(), "{name}: frame {}", x.frame);
            for (fa, fb) in x.faces.iter().zip(&y.faces) {
                faces += 1;
                for (p, q) in fa.points.iter().zip(&fb.points) {
                    px = px.max((p[0] - q[0]).abs().max((p[1] - q[1]).abs()));
                }
            }
        }
        assert!(
            faces * 10 >= n.len() * 9,
            "{name}: only {faces} faces in {} frames",
            n.len()
        );
        assert!(px < 0.01, "{name}: landmarks differ by up to {px} px");
    }
}
