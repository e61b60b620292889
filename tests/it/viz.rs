//! `render`, `eval --plots` and `watch` on real data.

use crate::common::*;
use std::path::Path;
use steadyface::frame::Frame;

/// A 3-frame grey clip and a landmark file whose one face has a point at (20, 10).
fn tiny(dir: &Path, records: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut f = Frame::new(64, 48);
    f.data.fill(128);
    let clip = dir.join("grey.y4m");
    write_y4m(&clip, &[f.clone(), f.clone(), f]);
    let lines: Vec<String> = (0..records)
        .map(|i| {
            format!(
                r#"{{"frame": {i}, "time_s": {}, "faces": [{{"id": 7, "box": [10, 5, 40, 30], "score": 0.9, "points": [[20, 10], [35, 25]], "scheme": "osf66"}}]}}"#,
                i as f64 / 30.0
            )
        })
        .collect();
    let lm = dir.join("lm.jsonl");
    std::fs::write(&lm, lines.join("\n")).unwrap();
    (clip, lm)
}

/// `steadyface render CLIP --landmarks LM -o OUT`, to add options to.
fn render(clip: &Path, lm: &Path, out: &Path) -> std::process::Command {
    let mut c = bin();
    c.arg("render").arg(clip).arg("--landmarks").arg(lm).arg("-o").arg(out);
    c
}

fn png(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

#[test]
fn render_draws_a_known_point_at_the_exact_pixel() {
    let tmp = tempfile::tempdir().unwrap();
    let (clip, lm) = tiny(tmp.path(), 3);
    let red = image::Rgb([230, 25, 75]);
    let green = image::Rgb([60, 180, 75]);
    // Scale 1: the point (20, 10) is pixel (20, 10); a PNG per frame.
    let dir = tmp.path().join("frames");
    run_ok(render(&clip, &lm, &dir).args(["--scale", "1"]));
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let img = png(&dir.join("frame_000000.png"));
    assert_eq!((img.width(), img.height()), (64, 48));
    assert_eq!(*img.get_pixel(20, 10), red);
    assert_eq!(*img.get_pixel(35, 25), red);
    // Far from any drawing the frame is untouched.
    assert_eq!(*img.get_pixel(55, 45), image::Rgb([128, 128, 128]));
    // Scale 3, two sets side by side: pixel 20's centre is panel pixel 61 (pixel-centre
    // convention), and the second set's panel starts at x = 192.
    let out = tmp.path().join("two.png");
    run_ok(
        bin()
            .arg("render")
            .arg(&clip)
            .arg("--landmarks")
            .arg(format!("a={}", lm.display()))
            .arg("--landmarks")
            .arg(format!("b={}", lm.display()))
            .arg("-o")
            .arg(&out)
            .args(["--scale", "3", "--frames", "1:2"]),
    );
    let img = png(&out);
    assert_eq!((img.width(), img.height()), (384, 144));
    assert_eq!(*img.get_pixel(61, 31), red);
    assert_eq!(*img.get_pixel(192 + 61, 31), green);
    // The same as Y4M: 3 frames of 4:4:4 that our reader takes back.
    let y4m = tmp.path().join("out.y4m");
    run_ok(render(&clip, &lm, &y4m).args(["--scale", "1"]));
    let mut src = steadyface::capture::open(&y4m).unwrap();
    let mut f = Frame::default();
    let mut n = 0;
    while src.next_frame(&mut f).unwrap().is_some() {
        let p = f.pixel(20, 10);
        assert!(p[0] > 200 && p[1] < 60, "{p:?}");
        n += 1;
    }
    assert_eq!(n, 3);
}

#[test]
fn render_rejects_mismatched_frames_and_unwritable_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (clip, lm) = tiny(tmp.path(), 2);
    let err = run_err(&mut render(&clip, &lm, &tmp.path().join("o")), 4);
    assert!(
        err.contains("lm.jsonl: has 2 landmark frames, but") && err.contains("grey.y4m has more"),
        "{err}"
    );
    let (clip, lm) = tiny(tmp.path(), 3);
    std::fs::write(tmp.path().join("file"), "").unwrap();
    let err = run_err(&mut render(&clip, &lm, &tmp.path().join("file/out")), 1);
    assert!(err.contains("file/out"), "{err}");
    let err = run_err(&mut render(&clip, &lm, &tmp.path().join("x.gif")), 2);
    assert!(err.contains("unknown extension .gif"), "{err}");
    // MP4 needs ffmpeg; without it on PATH the error says so.
    let err = run_err(
        render(&clip, &lm, &tmp.path().join("x.mp4")).env("PATH", "/nonexistent"),
        2,
    );
    assert!(err.contains("needs ffmpeg on PATH"), "{err}");
}

#[test]
fn eval_plots_are_written_for_each_method() {
    let tmp = tempfile::tempdir().unwrap();
    let gt = carphone_truth(tmp.path());
    let (none, oe) = (tmp.path().join("none.jsonl"), tmp.path().join("oe.jsonl"));
    track(&data("carphone_pristine.mp4"), &none, &["--stabilizer", "none"]);
    track(&data("carphone_pristine.mp4"), &oe, &["--stabilizer", "one-euro"]);
    let plots = tmp.path().join("plots");
    let o = run_ok(
        bin()
            .args(["eval", "--json", "--gt"])
            .arg(&gt)
            .arg("--pred")
            .arg(format!("none={}", none.display()))
            .arg("--pred")
            .arg(format!("one-euro={}", oe.display()))
            .arg("--plots")
            .arg(&plots),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["none"]["nme_iod"].as_f64().unwrap() > 0.0 && v["one-euro"]["jitter"].is_number(),
        "{v}"
    );
    // Real speech: each point's clip-mean error is part of its error, never more.
    for m in ["none", "one-euro"] {
        let (nme, bias) = (f64_of(&v[m], "nme_iod"), f64_of(&v[m], "nme_bias"));
        assert!(bias > 0.0 && bias < nme, "{m}: bias NME {bias}, NME {nme}");
    }
    for (name, w, h) in [
        ("ellipses", 900, 900),
        ("ced", 800, 600),
        ("error_over_time", 1000, 500),
        ("tradeoff", 800, 600),
    ] {
        let img = png(&plots.join(format!("{name}.png")));
        assert_eq!((img.width(), img.height()), (w, h), "{name}");
        // Not blank: both methods' colours are on it.
        for c in [[230u8, 25, 75], [60, 180, 75]] {
            assert!(img.pixels().any(|p| p.0 == c), "{name}: no pixel of {c:?}");
        }
    }
    let err = run_err(
        bin()
            .args(["eval", "--gt"])
            .arg(&gt)
            .arg("--pred")
            .arg(&none)
            .arg("--plots")
            .arg(tmp.path().join("plots/ced.png/x")),
        1,
    );
    assert!(err.contains("ced.png/x"), "{err}");
}

/// Live `watch` with no broker: it says so and keeps retrying, and Ctrl-C ends it cleanly.
#[test]
fn watch_retries_a_dead_broker_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err_path = tmp.path().join("watch.err");
    let mut child = bin()
        .args(["watch", "--broker", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let want = format!("cannot reach the broker at 127.0.0.1:{port}");
    while !std::fs::read_to_string(&err_path).unwrap().contains(&want) {
        assert!(std::time::Instant::now() < end, "no retry message");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let t = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(t.elapsed().as_secs_f64() < 3.0);
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(err.contains("retrying (Ctrl-C to stop)"), "{err}");
    // One line per distinct failure, not one per retry.
    assert_eq!(err.matches("cannot reach").count(), 1, "{err}");
}
