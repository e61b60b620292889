//! The ConvLSTM stabilizer on real data: the shipped weights in `models/lm0-convlstm/`, the
//! pipeline with them, their ONNX export under tract, and the errors for weights, data and
//! builds that do not fit.

use crate::common::*;
use std::path::PathBuf;
use steadyface::backbone::BackboneSpec;
use steadyface::convlstm::onnx::{self, TractConvLstm};
use steadyface::convlstm::{ConvLstm, ConvLstmWeights};

fn shipped() -> PathBuf {
    root().join("models/lm0-convlstm/stabilizer.safetensors")
}

fn lm0_spec() -> BackboneSpec {
    let (m, _) = assets();
    let path = m.join("manifest.yaml");
    let manifest = steadyface::models::Manifest::load(&path).unwrap();
    BackboneSpec::from_entry(manifest.model("openseeface-lm0").unwrap(), &path).unwrap()
}

/// The shipped weights fit lm0, and the committed ONNX graph is the same cell: tract and the
/// CPU kernel agree to 1e-4 over a sequence of real-shaped maps.
#[test]
fn shipped_stabilizer_onnx_matches_the_kernel() {
    let spec = lm0_spec();
    let w = ConvLstmWeights::load(&shipped()).unwrap();
    assert!(w.meta.command.starts_with("steadyface tune"), "{}", w.meta.command);
    // The committed .onnx is what `tune` exported from these weights.
    let committed = std::fs::read(shipped().with_extension("onnx")).unwrap();
    assert_eq!(committed, onnx::export(&w), "stabilizer.onnx is stale: re-export it");
    let m = w.meta.clone();
    let mut graph = TractConvLstm::new(&committed, &w, &spec, &shipped()).unwrap();
    let mut cell = ConvLstm::new(w, &spec, &shipped()).unwrap();
    let mut st = cell.new_state();
    let plane = m.h * m.w;
    let mut worst = 0f32;
    for t in 0..6 {
        // A peak per landmark moving a little each frame, offsets near 0.5 (logit 0).
        let raw: Vec<f32> = (0..spec.output_len())
            .map(|i| {
                let (ch, p) = (i / plane, i % plane);
                if ch < m.k {
                    let (r, col) = ((p / m.w) as f32, (p % m.w) as f32);
                    let (cx, cy) = (5.0 + (ch % 18) as f32 + 0.3 * t as f32, 6.0 + (ch / 18) as f32 * 4.0);
                    (-((col - cx).powi(2) + (r - cy).powi(2)) / 2.0).exp()
                } else {
                    0.5 + 0.05 * ((i * 7 + t) as f32).sin()
                }
            })
            .collect();
        let (mut a, mut b) = (raw.clone(), raw);
        cell.step(&mut a, &mut st);
        graph.step(&mut b).unwrap();
        worst = a.iter().zip(&b).fold(worst, |w, (x, y)| w.max((x - y).abs()));
    }
    assert!(worst < 1e-4, "max |tract − kernel| = {worst}");
}

/// `track --stabilizer convlstm` on the in-car clip: every frame keeps its face, the
/// confidence is the backbone's own (the tracker's thresholds depend on it), and the points
/// stay within a few pixels of the unstabilized ones. The clip is talking, and its jaw and nose
/// move against the registered face: without the deformation gate the stage's lag cost 5% NME
/// against the dlib pseudo-labels (0.0481 against 0.0457); with it, 1.3% (0.0463).
#[test]
fn convlstm_tracks_the_carphone_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("none.jsonl"), tmp.path().join("convlstm.jsonl"));
    let ra = track(&data("carphone_pristine.mp4"), &a, &["--stabilizer", "none"]);
    let rb = track(&data("carphone_pristine.mp4"), &b, &["--stabilizer", "convlstm"]);
    assert_eq!(ra.len(), 120);
    assert!(rb.iter().all(|r| r.faces.len() == 1), "a frame lost its face");
    let (mut d, mut n) = (0f32, 0);
    for (x, y) in ra.iter().zip(&rb) {
        let (fx, fy) = (&x.faces[0], &y.faces[0]);
        assert!(fy.score > 0.5 && fy.score <= 1.0, "score {}", fy.score);
        for (p, q) in fx.points.iter().zip(&fy.points) {
            d += ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt();
            n += 1;
        }
    }
    let mean = d / n as f32;
    assert!(mean < 2.0, "mean shift {mean} px from the raw points");
    let truth = carphone_truth(tmp.path());
    let (raw, cell) = (
        f64_of(&eval(&a, &truth), "nme_iod"),
        f64_of(&eval(&b, &truth), "nme_iod"),
    );
    assert!(
        cell <= 1.03 * raw,
        "convlstm NME {cell:.4} against raw {raw:.4}: the stage lags speech"
    );
}

#[test]
fn stabilizer_for_another_backbone_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = ConvLstmWeights::load(&shipped()).unwrap();
    w.meta.backbone = "some-68-point-net".into();
    w.meta.k = 68;
    let p = tmp.path().join("other.safetensors");
    w.save(&p).unwrap();
    // `track --stabilizer convlstm` with these weights: exit 3 and the message.
    let with_weights = |w: &std::path::Path| {
        run_err(
            bin()
                .arg("track")
                .arg(data("takeo.ppm"))
                .args(["-o", "/dev/null", "--stabilizer", "convlstm", "--set"])
                .arg(format!("stabilizer.weights={}", w.display())),
            3,
        )
    };
    let err = with_weights(&p);
    assert!(
        err.contains("other.safetensors")
            && err.contains("K = 68 landmarks, the backbone has 66")
            && err.contains("some-68-point-net"),
        "{err}"
    );
    let err = with_weights(&tmp.path().join("none.safetensors"));
    assert!(
        err.contains("none.safetensors") && err.contains("steadyface tune"),
        "{err}"
    );
}

#[test]
fn tune_names_a_dataset_with_the_wrong_landmark_count() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(data("takeo.ppm"), tmp.path().join("face.ppm")).unwrap();
    let pts = tmp.path().join("face.pts");
    std::fs::write(&pts, "version: 1\nn_points: 5\n{\n1 2\n3 4\n5 6\n7 8\n9 10\n}\n").unwrap();
    let err = run_err(
        bin()
            .arg("tune")
            .arg("--data")
            .arg(format!("images:{}", pts.display()))
            .arg("-o")
            .arg(tmp.path().join("out")),
        4,
    );
    assert!(
        err.contains("face.pts") && err.contains("5 landmarks") && err.contains("66"),
        "{err}"
    );
}

/// `tune` on one face's image into `out`, with `extra` flags: the refusals below need no more.
fn tune_one_face(out: &std::path::Path, extra: &[&str]) -> std::process::Command {
    let mut c = bin();
    c.arg("tune")
        .arg("--data")
        .arg(format!("images:{}", data("breakingbad.pts").display()))
        .args(extra)
        .arg("-o")
        .arg(out);
    c
}

#[cfg(not(feature = "torch"))]
#[test]
fn tune_without_libtorch_says_how_to_build_it() {
    let tmp = tempfile::tempdir().unwrap();
    let err = run_err(&mut tune_one_face(&tmp.path().join("out"), &[]), 2);
    assert!(
        err.contains("--features torch") && err.contains("libtorch-cpu.sh"),
        "{err}"
    );
}

/// Sequences must outlast their warm-up and the frames they may lose the face on, and the
/// refusal names the flags (before any work, on every build).
#[test]
fn tune_refuses_a_warmup_or_lost_frames_as_long_as_its_sequences() {
    let tmp = tempfile::tempdir().unwrap();
    let err = run_err(
        &mut tune_one_face(&tmp.path().join("out"), &["--seq-len", "8", "--warmup", "8"]),
        2,
    );
    assert!(
        err.contains("--seq-len 8") && err.contains("--warmup 8 (< --seq-len)"),
        "{err}"
    );
    // Nor may the frames a sequence loses the face on be all it scores.
    let err = run_err(
        &mut tune_one_face(
            &tmp.path().join("out"),
            &["--seq-len", "8", "--warmup", "4", "--lost-frames", "4"],
        ),
        2,
    );
    assert!(err.contains("--lost-frames 4 (< --seq-len − --warmup)"), "{err}");
}

/// The cells transport needs the read-out and output gate left as they start: training them
/// is refused up front, naming both flags.
#[test]
fn tune_refuses_the_cells_transport_with_a_trained_read_out() {
    let tmp = tempfile::tempdir().unwrap();
    for trainable in ["gates", "all"] {
        let err = run_err(
            &mut tune_one_face(
                &tmp.path().join("out"),
                &["--transport", "cells", "--trainable", trainable],
            ),
            2,
        );
        assert!(
            err.contains("--transport cells") && err.contains(&format!("--trainable {trainable}")),
            "{err}"
        );
    }
}

/// The same refusal when the cells transport comes from `--from`'s file (lm0's shipped cell)
/// rather than the flag: up front, before any backbone runs.
#[test]
fn tune_refuses_a_cells_file_with_a_trained_read_out() {
    let tmp = tempfile::tempdir().unwrap();
    let from = root().join("models/lm0-convlstm/stabilizer.safetensors");
    let err = run_err(
        &mut tune_one_face(
            &tmp.path().join("out"),
            &["--from", from.to_str().unwrap(), "--trainable", "gates"],
        ),
        2,
    );
    assert!(
        err.contains("kept from --from's file") && err.contains("--trainable gates"),
        "{err}"
    );
    assert!(
        !tmp.path().join("out").exists(),
        "nothing was written before the refusal"
    );
}

/// `tune` end to end on real data (one face, one epoch), then `--resume`, then a checkpoint
/// from another backbone refused.
#[cfg(feature = "torch")]
#[test]
fn torch_tune_trains_resumes_and_refuses_a_foreign_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let tune = |extra: &[&str]| {
        let mut c = bin();
        c.arg("tune")
            .arg("--data")
            .arg(format!("images:{}", data("breakingbad.pts").display()))
            .arg("-o")
            .arg(&out)
            .arg("--cache")
            .arg(tmp.path().join("cache"))
            .args(["--device", "cpu", "--threads", "1", "--val-fraction", "0"])
            .args(extra);
        c
    };
    let o = run_ok(&mut tune(&["--epochs", "1"]));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("no validation set"), "{e}");
    for f in [
        "stabilizer.safetensors",
        "stabilizer.onnx",
        "train.json",
        "checkpoint.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let w = ConvLstmWeights::load(&out.join("stabilizer.safetensors")).unwrap();
    assert!(w.meta.command.contains("tune") && w.meta.backbone == "openseeface-lm0");
    // No validation set: every sequence trains and the trained epoch is the result, not the
    // start.
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("train.json")).unwrap()).unwrap();
    let report = &record["report"];
    assert!(
        report["val_sequences"] == 0 && report["best"].is_null() && report["best_epoch"] == 1,
        "{report}"
    );
    let start = ConvLstmWeights::smoothing(w.meta.clone(), steadyface::convlstm::SMOOTHING_ALPHA).unwrap();
    assert_ne!(w.gates_b, start.gates_b);
    let o = run_ok(&mut tune(&["--epochs", "2", "--resume"]));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("resuming") && e.contains("epoch 2/2") && !e.contains("epoch 1/2"),
        "{e}"
    );
    let mut foreign = ConvLstmWeights::load(&out.join("checkpoint.safetensors")).unwrap();
    foreign.meta.backbone = "another".into();
    foreign.save(&out.join("checkpoint.safetensors")).unwrap();
    let err = run_err(&mut tune(&["--epochs", "3", "--resume"]), 3);
    assert!(err.contains("checkpoint") && err.contains("another"), "{err}");
}

/// A recorded field clip in the daemon's format (`frames.y4m` + `landmarks.jsonl`) is training
/// data as it is: pseudo-labels made here, one epoch run. The records only place a window's
/// first crop, so a frame where the tracker lost the face (as in the dark) costs only the
/// window it starts, and that window is counted; a recording that gives no window at all is
/// warned about by name.
#[cfg(feature = "torch")]
#[test]
fn torch_tune_runs_on_a_recorded_field_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = tmp.path().join("clip-0001");
    std::fs::create_dir_all(&clip).unwrap();
    synth_takeo("slow", 48, &clip.join("frames.y4m"), &tmp.path().join("truth.json"));
    let records = clip.join("landmarks.jsonl");
    track(&clip.join("frames.y4m"), &records, &[]);
    let tracked = std::fs::read_to_string(&records).unwrap();
    // The tracked records with the face taken out of the frames `lost` picks.
    let without_face = |lost: &dyn Fn(u64) -> bool| -> String {
        tracked
            .lines()
            .map(|l| {
                let mut r: serde_json::Value = serde_json::from_str(l).unwrap();
                if r["frame"].as_u64().is_some_and(lost) {
                    r["faces"] = serde_json::json!([]);
                }
                r.to_string() + "\n"
            })
            .collect()
    };
    // No face on frame 20 (inside the second and third windows) or 32 (the fifth's first).
    std::fs::write(&records, without_face(&|f| matches!(f, 20 | 32))).unwrap();
    // A second recording in which the tracker never found the face trains nothing: it is
    // counted, and warned about by name, while the first one trains.
    let blind = tmp.path().join("clip-0002");
    std::fs::create_dir_all(&blind).unwrap();
    std::fs::copy(clip.join("frames.y4m"), blind.join("frames.y4m")).unwrap();
    std::fs::write(blind.join("landmarks.jsonl"), without_face(&|_| true)).unwrap();
    let out = tmp.path().join("out");
    let o = run_ok(
        bin()
            .arg("tune")
            .arg("--data")
            .arg(format!("field:{}", clip.display()))
            .arg("--data")
            .arg(format!("field:{}", blind.display()))
            .arg("-o")
            .arg(&out)
            .arg("--cache")
            .arg(tmp.path().join("cache"))
            .args(["--device", "cpu", "--threads", "1", "--epochs", "1"]),
    );
    let e = String::from_utf8_lossy(&o.stderr);
    // 48 frames: five 16-frame windows, one every 8 frames, the fifth without a face to
    // start from.
    assert!(
        e.contains(&format!(
            "field:{}: 4 sequences (0 repeated for a window's lost copies), 1 left out",
            clip.display()
        )),
        "{e}"
    );
    let blind = format!("field:{}", blind.display());
    assert!(
        e.contains(&format!(
            "{blind}: 0 sequences (0 repeated for a window's lost copies), 5 left out"
        )) && e.contains(&format!("{blind}: no sequence from this source")),
        "{e}"
    );
    assert!(out.join("stabilizer.safetensors").is_file());
}

/// The field loop end to end: a recorded clip of a face (a daemon clip directory), the shipped
/// weights fine-tuned on it with pseudo-labels, and the result used on another clip of that
/// face. The fine-tuned cell must still steady it (error jitter well under raw) at no cost in
/// NME.
#[cfg(feature = "torch")]
#[test]
fn torch_field_fine_tuning_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = tmp.path().join("clip-0001");
    std::fs::create_dir_all(&clip).unwrap();
    synth_takeo(
        "slow",
        48,
        &clip.join("frames.y4m"),
        &tmp.path().join("field-truth.json"),
    );
    track(&clip.join("frames.y4m"), &clip.join("landmarks.jsonl"), &[]);
    let out = tmp.path().join("out");
    let o = run_ok(
        bin()
            .arg("tune")
            .arg("--data")
            .arg(format!("field:{}", clip.display()))
            .arg("--from")
            .arg(shipped())
            .arg("-o")
            .arg(&out)
            .arg("--cache")
            .arg(tmp.path().join("cache"))
            .args([
                "--device",
                "cpu",
                "--threads",
                "1",
                "--epochs",
                "1",
                "--lr",
                "1e-4",
                "--nu",
                "1",
                "--lr-schedule",
                "cosine",
                "--field-degradations",
                "all",
            ]),
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("starting from") && e.contains("epoch 1/1"), "{e}");
    // Each window comes under all three degradations (a lost copy is made up by a survivor).
    let n: usize = e
        .split_once(&format!("field:{}: ", clip.display()))
        .and_then(|(_, r)| r.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no sequence count in {e}"));
    assert!(
        n > 0 && n.is_multiple_of(3),
        "{n} sequences from whole windows of three: {e}"
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("train.json")).unwrap()).unwrap();
    assert_eq!(record["params"]["lr_schedule"], "cosine", "{record}");
    let (test, truth) = (tmp.path().join("still.y4m"), tmp.path().join("still.json"));
    synth_takeo("still", 40, &test, &truth);
    let score = |args: &[&str]| {
        let p = tmp
            .path()
            .join(format!("{}.jsonl", args.join("_").replace(['/', '='], "_")));
        track(&test, &p, args);
        let v = eval(&p, &truth);
        (f64_of(&v, "nme_iod"), f64_of(&v, "jitter"))
    };
    let tuned = format!("stabilizer.weights={}", out.join("stabilizer.safetensors").display());
    let raw = score(&["--stabilizer", "none"]);
    let ours = score(&["--stabilizer", "convlstm", "--set", &tuned]);
    assert!(ours.1 <= 0.6 * raw.1, "error jitter {} against raw {}", ours.1, raw.1);
    assert!(ours.0 <= raw.0 * 1.01, "NME {} against raw {}", ours.0, raw.0);
}
