//! Bad input gets a clear error naming the file, field or value, and a distinct exit code
//! (2 usage/config, 3 models, 4 input data, 5 fetch).

use crate::common::*;
use std::path::Path;

/// A models dir with the real manifest and (optionally) copies of the model files.
fn models_copy(dir: &Path, with_files: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let (m, _) = assets();
    std::fs::copy(m.join("manifest.yaml"), dir.join("manifest.yaml")).unwrap();
    if with_files {
        for f in [
            "lm_model0_opt.stdops.onnx",
            "yunet_n_320_320.onnx",
            "iris_landmark.onnx",
        ] {
            std::fs::copy(m.join(f), dir.join(f)).unwrap();
        }
    }
}

#[test]
fn missing_model_names_the_file_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let md = tmp.path().join("models");
    models_copy(&md, false);
    let err = run_err(
        bin()
            .arg("track")
            .arg(data("takeo.ppm"))
            .args(["-o", "/dev/null", "--set"])
            .arg(format!("models.dir={}", md.display())),
        3,
    );
    assert!(
        err.contains("lm_model0_opt.stdops.onnx") && err.contains("models fetch"),
        "{err}"
    );
}

#[test]
fn corrupt_model_is_a_sha_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let md = tmp.path().join("models");
    models_copy(&md, true);
    let p = md.join("yunet_n_320_320.onnx");
    let mut b = std::fs::read(&p).unwrap();
    b[1000] ^= 0xff;
    std::fs::write(&p, b).unwrap();
    let err = run_err(
        bin()
            .args(["validate", "--set"])
            .arg(format!("models.dir={}", md.display())),
        3,
    );
    assert!(
        err.contains("yunet_n_320_320.onnx") && err.contains("sha256 mismatch"),
        "{err}"
    );
}

#[test]
fn output_shape_that_contradicts_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let md = tmp.path().join("models");
    models_copy(&md, true);
    let m = md.join("manifest.yaml");
    let text = std::fs::read_to_string(&m).unwrap().replace(
        "{ channels: 198, height: 28, width: 28 }",
        "{ channels: 198, height: 32, width: 32 }",
    );
    std::fs::write(&m, text).unwrap();
    let err = run_err(
        bin()
            .args(["validate", "--set"])
            .arg(format!("models.dir={}", md.display())),
        3,
    );
    assert!(
        err.contains("lm_model0_opt.stdops.onnx")
            && err.contains("[1, 198, 28, 28]")
            && err.contains("[1, 198, 32, 32]"),
        "{err}"
    );
}

/// An eye refiner that is not one (here: the detector's file, declared as the refiner) is a
/// model error that names the file and the manifest field it contradicts.
#[test]
fn eye_refiner_with_wrong_outputs_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let md = tmp.path().join("models");
    models_copy(&md, true);
    let m = md.join("manifest.yaml");
    let manifest = steadyface::models::Manifest::load(&m).unwrap();
    let iris = manifest.model("mediapipe-iris").unwrap();
    let yunet = manifest.model("yunet-n-320").unwrap();
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace(&format!("file: {}", iris.file), &format!("file: {}", yunet.file))
        .replace(&iris.sha256, &yunet.sha256);
    std::fs::write(&m, text).unwrap();
    let err = run_err(
        bin()
            .args(["validate", "--set"])
            .arg(format!("models.dir={}", md.display())),
        3,
    );
    // Its declared input (320×320) already contradicts the entry's io.input (64×64).
    assert!(
        err.contains("yunet_n_320_320.onnx") && err.contains("eye refiner") && err.contains("io.input"),
        "{err}"
    );
    // Turned off, the same models dir runs.
    run_ok(
        bin()
            .args(["validate", "--no-environment", "--set"])
            .arg(format!("models.dir={}", md.display()))
            .args(["--set", "models.eye_refiner=null"]),
    );
}

#[test]
fn not_an_onnx_model() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("junk.onnx");
    std::fs::write(&p, b"definitely not protobuf").unwrap();
    let e = steadyface::runtime::OnnxModel::load(&p, 3, 224, 224)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("junk.onnx") && e.contains("not a loadable ONNX model"),
        "{e}"
    );
}

#[test]
fn truncated_y4m_names_the_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("cut.y4m");
    let mut b = b"YUV4MPEG2 W64 H48 F30:1 C420jpeg\nFRAME\n".to_vec();
    b.extend(vec![128u8; 64 * 48 * 3 / 2]);
    b.extend_from_slice(b"FRAME\n");
    b.extend(vec![128u8; 1000]);
    std::fs::write(&p, b).unwrap();
    let err = run_err(
        bin().arg("track").arg(&p).args(["-o"]).arg(tmp.path().join("o.jsonl")),
        4,
    );
    assert!(
        err.contains("cut.y4m") && err.contains("truncated") && err.contains("frame 1") && err.contains("1000 of 4608"),
        "{err}"
    );
}

#[test]
fn unreadable_image_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("frames");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(data("takeo.ppm"), dir.join("000.ppm")).unwrap();
    std::fs::write(dir.join("001.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let err = run_err(
        bin()
            .arg("track")
            .arg(&dir)
            .args(["-o"])
            .arg(tmp.path().join("o.jsonl")),
        4,
    );
    assert!(err.contains("001.png") && err.contains("unreadable image"), "{err}");
}

/// A log level that is not one is refused with its value named. It used to be taken as a filter
/// for a module of that name, which silenced every other line, errors included.
#[test]
fn unknown_log_level_is_refused() {
    let err = run_err(bin().args(["--log", "loud", "validate", "--no-environment"]), 2);
    assert!(err.contains("'loud'") && err.contains("--log"), "{err}");
    // The last of two counts: bin() gives one already.
    run_ok(bin().args(["--log", "error", "validate", "--no-environment"]));
}

#[test]
fn unknown_config_field_and_bad_values_all_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c.yaml");
    std::fs::write(
        &c,
        "detector:\n  interval: 0\n  treshold: 0.5\ndecoder:\n  method: median\n",
    )
    .unwrap();
    let err = run_err(bin().args(["validate", "--no-environment", "--config"]).arg(&c), 2);
    for want in [
        "c.yaml",
        "detector.treshold: unknown field",
        "detector.interval: must be at least 1",
        "decoder.method",
    ] {
        assert!(err.contains(want), "missing {want:?}: {err}");
    }
    // The signals and clips sections, all at once.
    std::fs::write(
        &c,
        "signals:\n  closed_openness: 0.9\n  yawn_mar: 9\n  blink_max_s: 3\nclips:\n  max_ring_mb: 4096\n  seconds: 0\n",
    )
    .unwrap();
    let err = run_err(bin().args(["validate", "--no-environment", "--config"]).arg(&c), 2);
    for want in [
        "signals.closed_openness (0.9) must be below signals.open_openness (0.6)",
        "signals.yawn_mar: 9 is out of range",
        "signals.blink_max_s (3) must be below signals.eyes_closed_alarm_s (2)",
        "clips.max_total_mb (2048) must be at least clips.max_ring_mb (4096)",
        "clips.seconds: 0 is out of range",
    ] {
        assert!(err.contains(want), "missing {want:?}: {err}");
    }
    // A clip directory that cannot be created is named by field and path.
    std::fs::write(tmp.path().join("file"), "").unwrap();
    let bad = tmp.path().join("file/clips");
    let err = run_err(
        bin()
            .args(["validate", "--set", "clips.enabled=true", "--set"])
            .arg(format!("clips.dir={}", bad.display())),
        2,
    );
    assert!(
        err.contains("clips.dir: cannot write clips in") && err.contains("file/clips"),
        "{err}"
    );
    let err = run_err(
        bin().args(["track", "x.y4m", "-o", "/dev/null", "--stabilizer", "kalman"]),
        2,
    );
    assert!(
        err.contains("--stabilizer")
            && err.contains("\"kalman\" is not one of none, one-euro")
            && err.contains("convlstm+shape-one-euro"),
        "{err}"
    );
    // The config says it in the same words, by path.
    let err = run_err(
        bin().args(["validate", "--no-environment", "--set", "stabilizer.method=kalman"]),
        2,
    );
    assert!(
        err.contains("stabilizer.method: \"kalman\" is not one of none, one-euro"),
        "{err}"
    );
}

#[test]
fn missing_input_and_missing_ffmpeg() {
    let err = run_err(bin().args(["track", "no/such/clip.mp4", "-o", "/dev/null"]), 4);
    assert!(
        err.contains("no/such/clip.mp4") && err.contains("no such file"),
        "{err}"
    );
    // With an empty PATH there is no ffmpeg: the error says what to install.
    let err = run_err(
        bin()
            .env("PATH", "")
            .arg("track")
            .arg(data("carphone_pristine.mp4"))
            .args(["-o", "/dev/null"]),
        4,
    );
    assert!(err.contains("carphone_pristine.mp4") && err.contains("ffmpeg"), "{err}");
}

#[test]
fn eval_rejects_mismatched_frame_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let pred = tmp.path().join("p.jsonl");
    std::fs::write(
        &pred,
        "{\"frame\":0,\"time_s\":0.0,\"faces\":[]}\n{\"frame\":1,\"time_s\":0.03,\"faces\":[]}\n",
    )
    .unwrap();
    let gt = tmp.path().join("g.json");
    std::fs::write(&gt, "{\"frames\": [null, null, null]}").unwrap();
    let err = run_err(bin().args(["eval", "--pred"]).arg(&pred).arg("--gt").arg(&gt), 4);
    assert!(
        err.contains("g.json") && err.contains("3 frames") && err.contains("has 2"),
        "{err}"
    );
    std::fs::write(&pred, "{\"frame\":0,\"faces\":[]}\n").unwrap();
    let err = run_err(bin().args(["eval", "--pred"]).arg(&pred).arg("--gt").arg(&gt), 4);
    assert!(err.contains("p.jsonl") && err.contains("line 1"), "{err}");
}

#[test]
fn fetch_verifies_and_fails_clearly_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let mirror = tmp.path().join("mirror");
    std::fs::create_dir_all(mirror.join("x")).unwrap();
    std::fs::write(mirror.join("x/a.bin"), b"hello").unwrap();
    let asset = steadyface::models::Asset {
        name: "a".into(),
        file: "a.bin".into(),
        mirror_path: "x/a.bin".into(),
        sha256: "0".repeat(64),
        url: Some("http://127.0.0.1:9/a.bin".into()),
        upstream_sha256: None,
        derive: None,
        derived_sha256: None,
        license: "test".into(),
    };
    let dest = tmp.path().join("dest");
    let e = steadyface::models::fetch(
        &asset,
        &dest,
        &steadyface::models::Source::Mirror(mirror.clone()),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("sha256 mismatch"), "{e}");
    assert!(!dest.join("a.bin").exists(), "a bad file is never moved into place");
    let good = steadyface::models::Asset {
        sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into(),
        ..asset.clone()
    };
    assert_eq!(
        steadyface::models::fetch(&good, &dest, &steadyface::models::Source::Mirror(mirror), false).unwrap(),
        steadyface::models::Fetched::Copied
    );
    // Port 9 (discard) on loopback is closed: the download fails and says what to do.
    let e = steadyface::models::fetch(
        &asset,
        &tmp.path().join("d2"),
        &steadyface::models::Source::Upstream,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("127.0.0.1:9") && e.contains("STEADYFACE_MIRROR"), "{e}");
}

/// The fetch step's `FusedConv` rewrite of each upstream backbone computes what the asset
/// maintainers' standard-ops file computes, and its bytes are what the manifest pins.
#[test]
fn derived_backbones_match_the_maintainers_stdops() {
    let manifest = steadyface::models::Manifest::load(&assets().0.join("manifest.yaml")).unwrap();
    for (name, upstream, fused, (c, side)) in [
        ("openseeface-lm0", "lm_model0_opt.onnx", 20, (3, 224)),
        ("openseeface-snv2", "snv2_opt_fast.onnx", 0, (1, 112)),
    ] {
        let upstream = std::fs::read(data(upstream)).unwrap();
        let (bytes, n) = steadyface::onnx_rewrite::fusedconv_to_standard(&upstream).unwrap();
        if fused > 0 {
            assert_eq!(n, fused, "{name}: FusedConv nodes");
        }
        let tmp = tempfile::tempdir().unwrap();
        let ours = tmp.path().join("derived.onnx");
        std::fs::write(&ours, &bytes).unwrap();
        let sha = steadyface::models::sha256_file(&ours).unwrap();
        let entry = manifest.model(name).unwrap();
        assert_eq!(
            Some(&sha),
            entry.derived_sha256.as_ref(),
            "{name}: derived bytes changed"
        );
        let mut a = steadyface::runtime::OnnxModel::load(&ours, c, side, side).unwrap();
        let mut b = steadyface::runtime::OnnxModel::load(&assets().0.join(&entry.file), c, side, side).unwrap();
        for (i, (x, y)) in a.input_mut().iter_mut().zip(b.input_mut().iter_mut()).enumerate() {
            let v = ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 4.0;
            (*x, *y) = (v, v);
        }
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        a.run(|_, s| oa.extend_from_slice(s)).unwrap();
        b.run(|_, s| ob.extend_from_slice(s)).unwrap();
        assert_eq!(oa.len(), 198 * 28 * 28);
        let max = oa.iter().zip(&ob).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(max < 1e-4, "{name}: max |diff| {max}");
    }
}

/// Without a mirror, fetch downloads the upstream lm0 (here from a one-shot HTTP server on
/// loopback), checks its sha256, derives the standard-ops graph and accepts its pinned sha.
#[test]
fn upstream_fetch_derives_lm0() {
    use std::io::{Read, Write};
    let upstream = std::fs::read(data("lm_model0_opt.onnx")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = [0u8; 4096];
        let _ = s.read(&mut req).unwrap();
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            upstream.len()
        )
        .unwrap();
        s.write_all(&upstream).unwrap();
    });
    let manifest = steadyface::models::Manifest::load(&assets().0.join("manifest.yaml")).unwrap();
    let mut asset = manifest.model("openseeface-lm0").unwrap().asset();
    asset.url = Some(format!("http://127.0.0.1:{port}/lm_model0_opt.onnx"));
    let dir = tempfile::tempdir().unwrap();
    let how = steadyface::models::fetch(&asset, dir.path(), &steadyface::models::Source::Upstream, false).unwrap();
    server.join().unwrap();
    assert_eq!(how, steadyface::models::Fetched::Downloaded);
    let got = steadyface::models::sha256_file(&dir.path().join(&asset.file)).unwrap();
    assert_eq!(Some(got), asset.derived_sha256);
    // The derived file passes the model check and loads as a backbone.
    let entry = manifest.model("openseeface-lm0").unwrap();
    entry.verify(&dir.path().join(&asset.file)).unwrap();
}

/// A backbone whose manifest input disagrees with the file (snv2 declared RGB, its file is
/// grey) is a model error naming the file and the manifest field, on every CPU engine.
#[test]
fn declared_input_that_contradicts_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let md = tmp.path().join("models");
    models_copy(&md, true);
    std::fs::copy(
        assets().0.join("snv2_opt_fast.stdops.onnx"),
        md.join("snv2_opt_fast.stdops.onnx"),
    )
    .unwrap();
    let m = md.join("manifest.yaml");
    let text = std::fs::read_to_string(&m).unwrap().replace(
        "input: { width: 112, height: 112, channels: grey",
        "input: { width: 112, height: 112, channels: rgb",
    );
    std::fs::write(&m, text).unwrap();
    for engine in ["native", "tract"] {
        let err = run_err(
            bin()
                .arg("track")
                .arg(data("takeo.ppm"))
                .args(["-o", "/dev/null", "--set", "models.backbone=openseeface-snv2", "--set"])
                .arg(format!("models.cpu_engine={engine}"))
                .arg("--set")
                .arg(format!("models.dir={}", md.display())),
            3,
        );
        assert!(
            err.contains("snv2_opt_fast.stdops.onnx") && err.contains("io.input") && err.contains("[?, 1, 112, 112]"),
            "{engine}: {err}"
        );
    }
}

/// An unknown backbone name is a config error listing the manifest's backbones; the libtorch
/// engine in a build without libtorch says what build it needs.
#[test]
fn unknown_backbone_and_libtorch_without_torch() {
    let dir = format!("models.dir={}", assets().0.display());
    let err = run_err(
        bin().args(["validate", "--set", "models.backbone=resnet", "--set", &dir]),
        2,
    );
    assert!(
        err.contains("models.backbone") && err.contains("openseeface-lm0, openseeface-snv2") && !err.contains("yunet"),
        "{err}"
    );
    if !steadyface::backend::HAS_TORCH {
        let err = run_err(
            bin().args(["validate", "--set", "models.cpu_engine=libtorch", "--set", &dir]),
            2,
        );
        assert!(
            err.contains("models.cpu_engine") && err.contains("--features torch"),
            "{err}"
        );
    }
}

/// A TorchScript backbone (`.pt`) in a build without libtorch is a model error that names the
/// file and the build it needs.
#[test]
fn torchscript_backbone_needs_the_torch_build() {
    if steadyface::backend::HAS_TORCH {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let md = tmp.path().join("models");
    models_copy(&md, true);
    // Any bytes do: the file is refused for what it is before it is read.
    let pt = md.join("lm0.pt");
    std::fs::copy(md.join("lm_model0_opt.stdops.onnx"), &pt).unwrap();
    let sha = steadyface::models::sha256_file(&pt).unwrap();
    let m = md.join("manifest.yaml");
    let text = std::fs::read_to_string(&m).unwrap().replace(
        "models:\n",
        &format!(
            "models:\n  - name: lm0-torchscript\n    kind: backbone\n    file: lm0.pt\n    mirror_path: none/lm0.pt\n    \
             sha256: {sha}\n    license: test\n    io:\n      input: {{ width: 224, height: 224, channels: rgb, scale: 1.0, \
             mean: [0.0, 0.0, 0.0], std: [1.0, 1.0, 1.0] }}\n      output: {{ channels: 198, height: 28, width: 28 }}\n      \
             heatmaps: {{ first: 0, count: 66 }}\n      scheme: osf66\n"
        ),
    );
    std::fs::write(&m, text).unwrap();
    let err = run_err(
        bin()
            .arg("track")
            .arg(data("takeo.ppm"))
            .args([
                "-o",
                "/dev/null",
                "--stabilizer",
                "one-euro",
                "--set",
                "models.backbone=lm0-torchscript",
                "--set",
            ])
            .arg(format!("models.dir={}", md.display())),
        3,
    );
    assert!(err.contains("lm0.pt") && err.contains("--features torch"), "{err}");
}

/// Hostile inputs that used to panic (found by a probe of malformed files and values) end in a
/// clean error with the documented exit code, and never in a panic message.
#[test]
fn hostile_inputs_end_in_clean_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let no_panic = |err: &str| assert!(!err.contains("panicked"), "{err}");
    // A Y4M header token that starts with a multi-byte character, and one with an infinite rate.
    for (name, header) in [
        ("utf8.y4m", "YUV4MPEG2 W8 H8 \u{e9}x F25:1 C420\n"),
        ("inf.y4m", "YUV4MPEG2 W8 H8 F1:inf C420\n"),
    ] {
        let p = tmp.path().join(name);
        let mut b = header.as_bytes().to_vec();
        b.extend_from_slice(b"FRAME\n");
        b.extend_from_slice(&[128u8; 8 * 8 * 3 / 2]);
        std::fs::write(&p, b).unwrap();
        let o = bin().arg("track").arg(&p).args(["-o", "/dev/null"]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        no_panic(&err);
        assert!(
            o.status.code().is_some_and(|c| c == 0 || c == 4),
            "{name}: {:?} {err}",
            o.status
        );
    }
    // A .pts whose '}' comes before its '{'.
    let pts = tmp.path().join("odd.pts");
    std::fs::write(&pts, "version: 1\nn_points: 1\n}\n{\n1 2\n").unwrap();
    let pred = tmp.path().join("p.jsonl");
    std::fs::write(&pred, "").unwrap();
    let err = run_err(bin().args(["eval", "--pred"]).arg(&pred).arg("--gt").arg(&pts), 4);
    no_panic(&err);
    assert!(err.contains("odd.pts") && err.contains("'}'"), "{err}");
    // A dlib part index near 2^64 (it used to size a vector).
    let xml = tmp.path().join("huge.xml");
    std::fs::write(
        &xml,
        "<dataset><images><image file='a.jpg'><box top='0' left='0' width='9' height='9'>\
         <part name='18446744073709551615' x='1' y='2'/></box></image></images></dataset>",
    )
    .unwrap();
    let err = run_err(bin().args(["eval", "--pred"]).arg(&pred).arg("--gt").arg(&xml), 4);
    no_panic(&err);
    assert!(
        err.contains("huge.xml") && err.contains("18446744073709551615"),
        "{err}"
    );
    // Manifest indices near 2^64 and an iBUG map beyond 68 points: `validate` says so.
    let md = tmp.path().join("models");
    models_copy(&md, true);
    let m = md.join("manifest.yaml");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replacen(
            "heatmaps: { first: 0, count: 66 }",
            "heatmaps: { first: 18446744073709551615, count: 66 }",
            1,
        )
        .replacen(
            "49, 50, 51, 52, 53, 55, 56, 57, 58, 59, 48, 61",
            "49, 50, 51, 52, 53, 55, 56, 57, 58, 59, 480, 61",
            1,
        );
    std::fs::write(&m, text).unwrap();
    let err = run_err(
        bin()
            .args(["validate", "--set"])
            .arg(format!("models.dir={}", md.display())),
        3,
    );
    no_panic(&err);
    assert!(
        err.contains("heatmaps 18446744073709551615 + 66") && err.contains("index 480"),
        "{err}"
    );
    // A daemon frame cap so small that its frame time overflows; a watch timeout of inf.
    let err = run_err(
        bin().args(["validate", "--no-environment", "--set", "daemon.max_fps=1e-300"]),
        2,
    );
    assert!(err.contains("daemon.max_fps"), "{err}");
    let err = run_err(bin().args(["watch", "--once", "--timeout", "inf"]), 2);
    no_panic(&err);
    assert!(err.contains("--timeout"), "{err}");
    // A full stdout is an error, not a panic.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let o = bin().arg("generate-config").stdout(full).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    no_panic(&err);
    assert!(!o.status.success() && err.contains("<stdout>"), "{:?} {err}", o.status);
}

/// A decoder that writes far more to stderr than a pipe holds (a corrupt file can make ffmpeg
/// print megabytes) before its video does not stall `track`: stderr is drained as it comes.
/// The "ffmpeg" here is a script on PATH that prints 1 MB of errors, then a real Y4M clip.
#[test]
fn a_chatty_decoder_does_not_stall_the_source() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let clip = tmp.path().join("clip.y4m");
    let mut y4m = b"YUV4MPEG2 W64 H48 F25:1 C420\n".to_vec();
    for i in 0..5u8 {
        y4m.extend_from_slice(b"FRAME\n");
        y4m.extend(std::iter::repeat_n(40 + 20 * i, 64 * 48 * 3 / 2));
    }
    std::fs::write(&clip, y4m).unwrap();
    let bin_dir = tmp.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let fake = bin_dir.join("ffmpeg");
    let line = "x".repeat(999);
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ni=0\nwhile [ $i -lt 1000 ]; do echo '{line}' >&2; i=$((i+1)); done\nexec cat '{}'\n",
            clip.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let video = tmp.path().join("any.mkv");
    std::fs::write(&video, b"not read by the fake").unwrap();
    let mut child = bin()
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
        .arg("track")
        .arg(&video)
        .args(["-o", "/dev/null"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("track stalled behind the decoder's stderr");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status:?}: {err}");
}

/// Inputs that used to be scored, accepted or failed with the wrong exit code: each class
/// ends with its documented code (2 config or command line, 3 model, 4 data) and names what
/// was wrong.
#[test]
fn wrong_inputs_end_with_their_class_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // Predictions with one real face, against truth that cannot be scored.
    let clip = t.join("clip.y4m");
    write_y4m(&clip, &carphone_frames()[..1]);
    let pred = t.join("p.jsonl");
    run_ok(bin().arg("track").arg(&clip).arg("-o").arg(&pred));
    let pts = |name: &str, rows: &str, n: usize| {
        let p = t.join(name);
        std::fs::write(&p, format!("version: 1\nn_points: {n}\n{{\n{rows}}}\n")).unwrap();
        p
    };
    let short = pts("short.pts", "1 2\n3 4\n5 6\n", 3);
    let err = run_err(bin().args(["eval", "--pred"]).arg(&pred).arg("--gt").arg(&short), 4);
    assert!(err.contains("short.pts") && err.contains("3 points"), "{err}");
    let nan = pts("nan.pts", &"nan 1\n".repeat(68), 68);
    let err = run_err(bin().args(["eval", "--pred"]).arg(&pred).arg("--gt").arg(&nan), 4);
    assert!(err.contains("nan.pts") && err.contains("not a finite number"), "{err}");
    let err = run_err(
        bin()
            .args(["eval", "--pred"])
            .arg(&pred)
            .arg("--gt")
            .arg(t.join("absent.pts")),
        4,
    );
    assert!(err.contains("absent.pts"), "{err}");
    // Config: not UTF-8, or endless.
    let bad = t.join("bad.yaml");
    std::fs::write(&bad, b"\xff\xfe").unwrap();
    let err = run_err(bin().args(["validate", "--no-environment", "--config"]).arg(&bad), 2);
    assert!(err.contains("bad.yaml") && err.contains("not UTF-8"), "{err}");
    let err = run_err(bin().args(["validate", "--no-environment", "--config", "/dev/zero"]), 2);
    assert!(err.contains("/dev/zero") && err.contains("larger than 1 MiB"), "{err}");
    let err = run_err(
        bin().args([
            "validate",
            "--no-environment",
            "--set",
            "decoder.pdc.window=18446744073709551615",
        ]),
        2,
    );
    assert!(err.contains("decoder.pdc.window"), "{err}");
    // `track` refuses to write over its own input.
    let err = run_err(
        bin()
            .arg("track")
            .arg(&clip)
            .arg("-o")
            .arg(t.join(".").join("clip.y4m")),
        2,
    );
    assert!(err.contains("is the input itself"), "{err}");
    assert!(std::fs::metadata(&clip).unwrap().len() > 30_000, "the clip is intact");
    // An image that claims more than a board should decode (9000 × 9000, a few KB as PNG).
    let frames = t.join("frames");
    std::fs::create_dir(&frames).unwrap();
    image::GrayImage::new(9000, 9000).save(frames.join("000.png")).unwrap();
    let err = run_err(bin().arg("track").arg(&frames).arg("-o").arg(t.join("y.jsonl")), 4);
    assert!(err.contains("000.png") && err.contains("limit"), "{err}");
    // A model path that is a directory is a model problem.
    let md = t.join("models");
    models_copy(&md, true);
    let backbone = md.join("lm_model0_opt.stdops.onnx");
    std::fs::remove_file(&backbone).unwrap();
    std::fs::create_dir(&backbone).unwrap();
    let err = run_err(
        bin()
            .arg("track")
            .arg(&clip)
            .arg("-o")
            .arg(t.join("x.jsonl"))
            .arg("--set")
            .arg(format!("models.dir={}", md.display())),
        3,
    );
    assert!(
        err.contains("lm_model0_opt.stdops.onnx") && err.contains("directory"),
        "{err}"
    );
}
