//! Synthetic clips with exact truth, for measuring stability: a still image with landmark truth
//! is warped along a known path, so the truth moves with it.
//!
//! Four conditions, each a real camera problem in a car:
//! - `still`: the face does not move; only sensor noise changes (any motion of the points is jitter);
//! - `slow`: a slow sway (±8% of the face size at 0.25 Hz) and a ±3° roll, plus noise;
//! - `vibration`: road vibration, a 9–13 Hz shake of ±2.5% of the face size, with the motion
//!   blur of the exposure (the frame is the mean of 8 sub-frames along the path), plus noise;
//! - `lowlight`: a slow sway in a dark cabin: ×0.25 gain and 3× the noise.
//!
//! The noise is seeded, so a clip is the same on every machine.

use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::geometry::Point;

crate::choice::choice! {
    /// The conditions a clip is made under (`synth --kind`).
    pub enum SynthKind {
        Still = "still",
        /// A slow sway: ±8% of the face size, ±3° roll.
        Slow = "slow",
        /// Road vibration at 7–13 Hz with motion blur.
        Vibration = "vibration",
        /// A smaller sway at a quarter of the light, with more noise.
        Lowlight = "lowlight",
    }
}

impl SynthKind {
    /// Every condition.
    pub const ALL: [SynthKind; 4] = [Self::Still, Self::Slow, Self::Vibration, Self::Lowlight];
}

/// A similarity transform about the image centre: rotate by `rot`, scale by `scale`, then shift.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pose {
    tx: f32,
    ty: f32,
    rot: f32,
    scale: f32,
}

impl Pose {
    fn apply(&self, p: Point, c: Point) -> Point {
        let (s, co) = self.rot.sin_cos();
        let (x, y) = (p.x - c.x, p.y - c.y);
        Point::new(
            c.x + self.scale * (co * x - s * y) + self.tx,
            c.y + self.scale * (s * x + co * y) + self.ty,
        )
    }
    /// The inverse map (output pixel → source pixel).
    fn invert(&self, q: Point, c: Point) -> Point {
        let (s, co) = self.rot.sin_cos();
        let (x, y) = ((q.x - c.x - self.tx) / self.scale, (q.y - c.y - self.ty) / self.scale);
        Point::new(c.x + co * x + s * y, c.y - s * x + co * y)
    }
}

/// xorshift64*: small, seeded, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32) / (1u64 << 24) as f32
    }
    /// Approximately normal (Irwin–Hall of 4), unit variance.
    fn gauss(&mut self) -> f32 {
        ((0..4).map(|_| self.next_f32()).sum::<f32>() - 2.0) * 3f32.sqrt()
    }
}

/// The pose of frame `t` (seconds) under `kind`, for a face of `size` pixels.
fn pose(kind: SynthKind, t: f32, size: f32) -> Pose {
    let tau = std::f32::consts::TAU;
    let sway = |amp: f32| Pose {
        tx: amp * size * (tau * 0.25 * t).sin(),
        ty: 0.5 * amp * size * (tau * 0.17 * t + 1.0).sin(),
        rot: 3f32.to_radians() * (tau * 0.2 * t).sin(),
        scale: 1.0 + 0.02 * (tau * 0.1 * t).sin(),
    };
    match kind {
        SynthKind::Still => Pose {
            tx: 0.0,
            ty: 0.0,
            rot: 0.0,
            scale: 1.0,
        },
        SynthKind::Slow => sway(0.08),
        SynthKind::Lowlight => sway(0.04),
        // Two incommensurate shakes per axis: road vibration is not one clean sine.
        SynthKind::Vibration => Pose {
            tx: 0.025 * size * (0.6 * (tau * 9.0 * t).sin() + 0.4 * (tau * 13.0 * t + 0.7).sin()),
            ty: 0.025 * size * (0.6 * (tau * 11.0 * t + 0.3).sin() + 0.4 * (tau * 7.0 * t + 2.0).sin()),
            rot: 0.5f32.to_radians() * (tau * 10.0 * t).sin(),
            scale: 1.0,
        },
    }
}

fn bilinear(src: &Frame, p: Point) -> [f32; 3] {
    let x = p.x.clamp(0.0, (src.width - 1) as f32);
    let y = p.y.clamp(0.0, (src.height - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(src.width - 1), (y0 + 1).min(src.height - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let mut out = [0.0; 3];
    for (c, o) in out.iter_mut().enumerate() {
        let g = |xx: usize, yy: usize| src.data[3 * (yy * src.width + xx) + c] as f32;
        *o = (g(x0, y0) * (1.0 - fx) + g(x1, y0) * fx) * (1.0 - fy) + (g(x0, y1) * (1.0 - fx) + g(x1, y1) * fx) * fy;
    }
    out
}

/// The times of a frame's `sub` sub-frames: the middle of each of `sub` equal slices of an
/// exposure of half the frame interval, centred on the frame's time `t`, so that the truth
/// (the pose at `t`) is the mid-exposure position. Their mean is `t` exactly; sampling each
/// slice's start instead would put the exposure 1/16 of it early, a lag that reads as error
/// jitter on the shake.
fn exposure_times(t: f32, sub: usize, fps: f64) -> impl Iterator<Item = f32> {
    (0..sub).map(move |j| t + ((j as f32 + 0.5) / sub as f32 - 0.5) * 0.5 / fps as f32)
}

/// One synthetic clip: frames and the truth of every frame.
pub struct Clip {
    pub frames: Vec<Frame>,
    pub truth: Vec<Vec<Point>>,
    pub fps: f64,
}

/// Make `n` frames at `fps` of `image` with truth `points` under condition `kind`.
pub fn make(image: &Frame, points: &[Point], kind: SynthKind, n: usize, fps: f64, seed: u64) -> Result<Clip> {
    make_from(image, points, kind, n, fps, seed, 0.0, false)
}

/// [`make`] starting at time `t0` (seconds into the path); with `clean`, the same poses
/// without noise, gain or motion blur (the training target's view of the frame).
#[allow(clippy::too_many_arguments)]
pub fn make_from(
    image: &Frame,
    points: &[Point],
    kind: SynthKind,
    n: usize,
    fps: f64,
    seed: u64,
    t0: f32,
    clean: bool,
) -> Result<Clip> {
    let bbox = crate::geometry::BBox::around(points).ok_or_else(|| Error::Usage("no truth points".into()))?;
    let size = bbox.width().max(bbox.height());
    let centre = Point::new((image.width as f32 - 1.0) / 2.0, (image.height as f32 - 1.0) / 2.0);
    let (gain, noise) = match kind {
        _ if clean => (1.0, 0.0),
        SynthKind::Lowlight => (0.25, 6.0),
        _ => (1.0, 2.0),
    };
    // Motion blur: the exposure is the mean of sub-frames over half the frame interval.
    let sub = if kind == SynthKind::Vibration && !clean { 8 } else { 1 };
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut frames = Vec::with_capacity(n);
    let mut truth = Vec::with_capacity(n);
    for k in 0..n {
        let t = t0 + k as f32 / fps as f32;
        let mut acc = vec![0.0f32; image.data.len()];
        for ts in exposure_times(t, sub, fps) {
            let ps = pose(kind, ts, size);
            for y in 0..image.height {
                for x in 0..image.width {
                    let v = bilinear(image, ps.invert(Point::new(x as f32, y as f32), centre));
                    let i = 3 * (y * image.width + x);
                    for c in 0..3 {
                        acc[i + c] += v[c] / sub as f32;
                    }
                }
            }
        }
        let mut f = Frame::new(image.width, image.height);
        for (o, a) in f.data.iter_mut().zip(&acc) {
            *o = (a * gain + noise * rng.gauss()).round().clamp(0.0, 255.0) as u8;
        }
        frames.push(f);
        // The truth at the frame's mid-exposure.
        let p = pose(kind, t, size);
        truth.push(points.iter().map(|&q| p.apply(q, centre)).collect());
    }
    Ok(Clip { frames, truth, fps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pose_inverse_round_trips_and_truth_follows_the_image() {
        let c = Point::new(50.0, 40.0);
        let p = Pose {
            tx: 3.0,
            ty: -2.0,
            rot: 0.1,
            scale: 1.05,
        };
        let q = Point::new(70.0, 20.0);
        let back = p.invert(p.apply(q, c), c);
        assert!((back.x - q.x).abs() < 1e-4 && (back.y - q.y).abs() < 1e-4);
        // A bright dot at a truth point lands where the warped truth says.
        let mut img = Frame::new(101, 81);
        for dy in 0..3 {
            for dx in 0..3 {
                let i = 3 * ((29 + dy) * 101 + 59 + dx);
                img.data[i..i + 3].fill(255);
            }
        }
        let clip = make(
            &img,
            &[Point::new(60.0, 30.0), Point::new(20.0, 60.0)],
            SynthKind::Slow,
            12,
            30.0,
            1,
        )
        .unwrap();
        for (f, t) in clip.frames.iter().zip(&clip.truth) {
            let (x, y) = (t[0].x.round() as usize, t[0].y.round() as usize);
            assert!(f.pixel(x, y)[0] > 150, "dot not at the truth {:?}", t[0]);
        }
        // Still: the truth never moves.
        let clip = make(
            &img,
            &[Point::new(60.0, 30.0), Point::new(20.0, 60.0)],
            SynthKind::Still,
            3,
            30.0,
            1,
        )
        .unwrap();
        assert!(clip.truth.iter().all(|t| t[0] == Point::new(60.0, 30.0)));
        assert!("earthquake".parse::<SynthKind>().is_err());
    }

    #[test]
    fn the_exposure_is_centred_on_the_truth() {
        for sub in [1, 8] {
            let times: Vec<f32> = exposure_times(2.0, sub, 30.0).collect();
            let mean = times.iter().sum::<f32>() / sub as f32;
            assert!((mean - 2.0).abs() < 1e-6, "{sub} sub-frames: mean time {mean}");
            // Half a frame interval, as a shutter at 1/60 s for 30 fps.
            let span = times[sub - 1] - times[0] + 0.5 / 30.0 / sub as f32;
            assert!((span - 0.5 / 30.0).abs() < 1e-6, "{sub} sub-frames: span {span}");
        }
    }
}
