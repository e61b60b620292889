//! criterion benches for the pure per-frame stages: decoders (incl. PDC), resampling and
//! the stabilizer steps (One Euro, and the ConvLSTM's CPU kernel at the shipped and the
//! 3×3 sizes).
//! Run: `cargo bench --bench stages`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use steadyface::backbone::BackboneSpec;
use steadyface::convlstm::{ConvLstm, ConvLstmBank, ConvLstmMeta, ConvLstmWeights, MapStabilizer, MapWarp};
use steadyface::decode::Decoder;
use steadyface::face::FaceMotion;
use steadyface::frame::{resample_planar, Border, Frame, InputLut, Normalize, Sampling};
use steadyface::geometry::{BBox, CropTransform, Point};
use steadyface::models::{Align, OffsetEncoding, OffsetSpec};
use steadyface::pdc::{HeatmapNorm, Pdc};
use steadyface::stabilizer::{OneEuro, OneEuroParams};

/// lm0's geometry: 66 heatmaps + 132 offset maps of 28×28 over a 224 input.
fn lm0_spec() -> BackboneSpec {
    BackboneSpec {
        name: "lm0".into(),
        input_c: 3,
        input_w: 224,
        input_h: 224,
        normalize: Normalize {
            scale: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            bgr: false,
            grey: false,
        },
        out_c: 198,
        out_h: 28,
        out_w: 28,
        heatmap_first: 0,
        k: 66,
        offsets: Some(OffsetSpec {
            y_first: 66,
            x_first: 132,
            encoding: OffsetEncoding::Logit16,
        }),
        align: Align::Corners,
        scheme: "osf66".into(),
        crop_expand: [0.1, 0.125],
        cell_shift: [0.0, 0.0],
        confidence: steadyface::backbone::DEFAULT_CONFIDENCE,
    }
}

/// Gaussian blobs at pseudo-random places, offsets near 0.5 (as lm0 outputs).
fn lm0_like_output() -> Vec<f32> {
    let mut out = vec![0.5f32; 198 * 784];
    for k in 0..66 {
        let (cy, cx) = ((k * 7 % 24 + 2) as f32, (k * 11 % 24 + 2) as f32);
        for r in 0..28 {
            for c in 0..28 {
                let d2 = (r as f32 - cy).powi(2) + (c as f32 - cx).powi(2);
                // Real lm0 maps hold exact zeros far from the peak, never subnormals; a
                // subnormal tail here would time the CPU's microcode assists instead.
                let v = 0.9 * (-d2 / 1.5).exp();
                out[k * 784 + r * 28 + c] = if v < 1e-20 { 0.0 } else { v };
            }
        }
    }
    out
}

fn decoders(c: &mut Criterion) {
    let spec = lm0_spec();
    let out = lm0_like_output();
    let crop = CropTransform::new(BBox::new(100.0, 80.0, 300.0, 320.0), 224, 224);
    let mut pts = vec![Point::default(); 66];
    let mut conf = vec![0.0; 66];
    let pdc = Pdc {
        threshold: 0.2,
        norm: HeatmapNorm::Peak,
        window: Some(2),
        use_offsets: true,
    };
    for (name, d) in [
        ("argmax", Decoder::Argmax),
        ("offset", Decoder::Offset),
        ("pdc", Decoder::Pdc(pdc)),
        ("pdc-paper", Decoder::Pdc(Pdc::PAPER)),
        ("soft-argmax", Decoder::SoftArgmax { beta: 20.0 }),
    ] {
        c.bench_function(&format!("decode_66/{name}"), |b| {
            b.iter(|| d.decode_all(&spec, black_box(&out), &crop, &mut pts, &mut conf))
        });
    }
}

/// A camera frame (YUYV, NV12) at 640×480 into RGB: the daemon's `convert` stage.
fn convert(c: &mut Criterion) {
    use steadyface::capture::convert::{to_rgb, PixelFormat};
    let (w, h) = (640, 480);
    for (name, fmt, stride) in [("yuyv", PixelFormat::Yuyv, 2 * w), ("nv12", PixelFormat::Nv12, w)] {
        let src: Vec<u8> = (0..fmt.min_bytes(stride, h)).map(|i| (i * 31 % 251) as u8).collect();
        let mut f = Frame::default();
        c.bench_function(&format!("convert_{name}_640x480"), |b| {
            b.iter(|| to_rgb(fmt, black_box(&src), stride, w, h, false, &mut f))
        });
    }
}

fn resample(c: &mut Criterion) {
    let mut f = Frame::new(640, 480);
    for (i, v) in f.data.iter_mut().enumerate() {
        *v = (i * 31 % 251) as u8;
    }
    let spec = lm0_spec();
    let lut = InputLut::new(&spec.normalize);
    let mut buf = vec![0.0f32; 3 * 224 * 224];
    c.bench_function("crop_224_from_640x480", |b| {
        b.iter(|| {
            resample_planar(
                black_box(&f),
                BBox::new(200.0, 120.0, 380.0, 340.0),
                224,
                224,
                &spec.normalize,
                &lut,
                Sampling::plain(Border::Clamp),
                &mut buf,
            )
        })
    });
    let yunet = Normalize {
        scale: 1.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        bgr: true,
        grey: false,
    };
    let lut = InputLut::new(&yunet);
    let mut buf = vec![0.0f32; 3 * 320 * 320];
    c.bench_function("letterbox_320_from_640x480", |b| {
        b.iter(|| {
            resample_planar(
                black_box(&f),
                BBox::new(-0.5, -0.5, 639.5, 639.5),
                320,
                320,
                &yunet,
                &lut,
                Sampling::plain(Border::Constant(0)),
                &mut buf,
            )
        })
    });
}

fn stabilizer(c: &mut Criterion) {
    let mut f = OneEuro::new(OneEuroParams::default());
    let mut pts: Vec<Point> = (0..66).map(|k| Point::new(k as f32, 2.0 * k as f32)).collect();
    let mut t = 0.0;
    c.bench_function("one_euro_66", |b| {
        b.iter(|| {
            t += 1.0 / 30.0;
            f.apply(black_box(&mut pts), t, 120.0)
        })
    });
    // The ConvLSTM's cost depends only on its shape, not on trained values.
    let spec = lm0_spec();
    for (hidden, kernel) in [(6, 1), (2, 3)] {
        let meta = ConvLstmMeta::for_backbone(&spec, hidden, kernel);
        let mut cell =
            ConvLstm::new(ConvLstmWeights::identity(meta), &spec, std::path::Path::new("bench")).expect("fits");
        let mut st = cell.new_state();
        let mut out = lm0_like_output();
        c.bench_function(&format!("convlstm_66/hidden{hidden}_k{kernel}"), |b| {
            b.iter(|| cell.step(black_box(&mut out), &mut st))
        });
    }
    // The stage as the pipeline runs it: the shipped shape (hidden 4, 1×1) on the 9×9 squares
    // around the peaks (PDC's reach plus two), its state carried by a sub-cell warp.
    let meta = ConvLstmMeta::for_backbone(&spec, 4, 1);
    let cell = ConvLstm::new(
        ConvLstmWeights::smoothing(meta, 0.3).expect("hidden 4 fits"),
        &spec,
        std::path::Path::new("bench"),
    )
    .expect("fits");
    let mut bank = ConvLstmBank::new(cell, 1).windowed(Some(4));
    let mut out = lm0_like_output();
    let warp = MapWarp([1.0, 0.01, 0.3, -0.01, 1.0, -0.2]);
    c.bench_function(
        &format!("convlstm_66/windowed_{}", bank.runtime().replace(' ', "_")),
        |b| b.iter(|| bank.step(black_box(&mut out), 0, &warp).expect("slot 0")),
    );
}

/// The face registration behind `stabilizer.motion`: one Lucas–Kanade step plus the next
/// template, for a face of ~250 px in a 640×480 frame (as in `bench` on the 640×480 clip),
/// alternating between two frames 1.5 px apart.
fn registration(c: &mut Criterion) {
    let tex = |x: f32, y: f32| {
        128.0
            + 40.0 * (x * 0.11).sin() * (y * 0.07).cos()
            + 30.0 * (x * 0.031 + y * 0.05).sin()
            + 20.0 * (x * 0.23 - y * 0.19).cos()
    };
    let frame = |dx: f32, dy: f32| {
        let mut f = Frame::new(640, 480);
        for y in 0..480 {
            for x in 0..640 {
                let i = 3 * (y * 640 + x);
                f.data[i..i + 3].fill(tex(x as f32 - dx, y as f32 - dy) as u8);
            }
        }
        f
    };
    let ring = |dx: f32, dy: f32| -> Vec<Point> {
        (0..66)
            .map(|k| {
                let a = k as f32 * std::f32::consts::TAU / 66.0;
                Point::new(320.0 + dx + 110.0 * a.cos(), 240.0 + dy + 130.0 * a.sin())
            })
            .collect()
    };
    let (a, b) = (frame(0.0, 0.0), frame(1.3, -0.7));
    let (pa, pb) = (ring(0.0, 0.0), ring(1.3, -0.7));
    let mut m = FaceMotion::new();
    let mut flip = false;
    c.bench_function("face_registration_250px", |bch| {
        bch.iter(|| {
            flip = !flip;
            if flip {
                m.step(black_box(&b), &pb)
            } else {
                m.step(black_box(&a), &pa)
            }
        })
    });
}

criterion_group!(benches, decoders, convert, resample, stabilizer, registration);
criterion_main!(benches);
