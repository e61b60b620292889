//! Where the face deforms, the stage steps aside: a landmark that moves against the rest of the
//! face gets the raw frame's position instead of the stage's lag.
//!
//! The state is carried by the face's registered motion ([`super::warp`]), a similarity: it
//! holds the whole head, but not a jaw that drops in speech or a nose that turns with the head
//! out of the image plane. Against such motion the cell is a running mean and trails the
//! landmark by a few frames (on the talking in-car clip, +5% NME for the cell alone, +10% with
//! the point filter after it). The trained gates did not learn to open there (too few talking
//! sequences), so this decides per landmark and frame, outside the cell, from what the stage
//! shows: the *lag*, the raw frame's point less the stage's.
//!
//! - The face's common lag (its mean over the landmarks) is left out: a whole face that moves
//!   is the registration's and the point filter's business, and in the dark the backbone's
//!   points jump together for a frame, which is noise the cell should keep out.
//! - The lag is smoothed over frames (noise changes sign from frame to frame; a deformation's
//!   lag builds up) and measured against the landmark's own noise level, read from the lag's
//!   second difference, which a lag that builds up smoothly hardly moves. So the test is the same
//!   on a sharp face and in the dark, and sustained speech does not raise its own threshold.
//! - Beyond `gate` levels the output is moved by a share of the smoothed lag that reaches all
//!   of it `ramp` levels further. The state is left as it is and catches up at its own rate, so
//!   the gate closes again as the lag shrinks.
//!
//! Both positions come from the final decoder (the raw maps are decoded before the stage
//! rewrites them), so the gate fully open gives the raw frame's point exactly. The quick raw
//! decoder ([`crate::pipeline::RAW_DECODER`]) was tried first: its argmax flips between nearly
//! equal cells, which the gate passed on as 0.1 px jumps that differed between runtimes.

use crate::geometry::{Point, MAX_POINTS};

/// When a landmark's lag counts as deformation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeformGateParams {
    /// Smoothed lag, in noise levels, below which the stage's output stands.
    pub gate: f32,
    /// Levels beyond `gate` over which the share of the lag handed back rises from 0 to 1.
    pub ramp: f32,
    /// Per-frame rate of the running noise levels (after the first `1 / noise_rate` frames,
    /// which are averaged plainly).
    pub noise_rate: f32,
    /// Weight of a new frame in the smoothed lag.
    pub lag_rate: f32,
}

/// Chosen on the talking in-car clip and the stability bench (docs/stabilizers.md, "What it
/// costs on real speech, and the deformation gate"): at 2 the gate opened on the dark shake's
/// noise, at 4 it gave back a quarter of the clip's gain, and 2.5 scored as 3.
pub const DEFORM_GATE: DeformGateParams = DeformGateParams {
    gate: 3.0,
    ramp: 2.0,
    noise_rate: 0.05,
    lag_rate: 0.5,
};

/// A floor under the noise levels (crop px), so that a noiseless (synthetic) face does not read
/// rounding as lag.
const LEVEL_FLOOR: f32 = 0.05;
/// The mean |second difference| of white noise is about three times its per-axis deviation
/// (√6 · √(π/2)): dividing by it puts the level in the noise's own units.
const SECOND_DIFFERENCE_GAIN: f32 = 3.0;

/// One track's gate.
#[derive(Debug, Clone)]
pub struct DeformGate {
    params: DeformGateParams,
    /// Per landmark: the noise level (crop px), the smoothed lag (image px), the last two lags.
    level: [f32; MAX_POINTS],
    lag: [Point; MAX_POINTS],
    prev: [[Point; 2]; MAX_POINTS],
    /// Frames seen since the track started.
    frames: u32,
}

impl DeformGate {
    pub fn new(params: DeformGateParams) -> Self {
        Self {
            params,
            level: [0.0; MAX_POINTS],
            lag: [Point::default(); MAX_POINTS],
            prev: [[Point::default(); 2]; MAX_POINTS],
            frames: 0,
        }
    }

    /// A new track starts here.
    pub fn reset(&mut self) {
        *self = Self::new(self.params);
    }

    /// `raw` and `out` are the final decoder's points on the backbone's maps and on the stage's
    /// (image px; `px` image px per crop px); `out` is moved toward the raw frame where the stage
    /// trails a deforming face. Returns how many landmarks it moved.
    pub fn apply(&mut self, raw: &[Point], out: &mut [Point], px: f32) -> usize {
        let p = self.params;
        let scale = if px.is_finite() && px > 0.0 { px } else { 1.0 };
        let finite = |q: Point| q.x.is_finite() && q.y.is_finite();
        // The face's common lag.
        let (mut common, mut n) = (Point::default(), 0.0f32);
        for (r, s) in raw.iter().zip(out.iter()) {
            let d = Point::new(r.x - s.x, r.y - s.y);
            if finite(d) {
                common = Point::new(common.x + d.x, common.y + d.y);
                n += 1.0;
            }
        }
        if n > 0.0 {
            common = Point::new(common.x / n, common.y / n);
        }
        // The level needs two earlier lags; it is a plain mean until `1 / noise_rate` of them.
        let levels_seen = self.frames.saturating_sub(2) as f32;
        let (rate, clip) = if levels_seen * p.noise_rate < 1.0 {
            (1.0 / (levels_seen + 1.0), f32::INFINITY)
        } else {
            // Clipped at three levels, so that a deformation's onset lifts it only a little.
            (p.noise_rate, 3.0)
        };
        let have_level = self.frames >= 2;
        self.frames = self.frames.saturating_add(1);
        let mut moved = 0;
        let state = self.level.iter_mut().zip(self.lag.iter_mut()).zip(self.prev.iter_mut());
        for (r, (o, ((level, lag), prev))) in raw.iter().zip(out.iter_mut().zip(state)) {
            let now = Point::new(r.x - o.x - common.x, r.y - o.y - common.y);
            // A non-finite point (the model's) leaves the output and the state as they are.
            if !finite(now) {
                continue;
            }
            *lag = Point::new(
                lag.x + p.lag_rate * (now.x - lag.x),
                lag.y + p.lag_rate * (now.y - lag.y),
            );
            let d2 = Point::new(now.x - 2.0 * prev[0].x + prev[1].x, now.y - 2.0 * prev[0].y + prev[1].y);
            *prev = [now, prev[0]];
            if !have_level {
                continue;
            }
            let d2 = d2.x.hypot(d2.y) / scale / SECOND_DIFFERENCE_GAIN;
            *level += rate * (d2.min(clip * *level) - *level);
            let surprise = lag.x.hypot(lag.y) / scale / level.max(LEVEL_FLOOR);
            let share = ((surprise - p.gate) / p.ramp).clamp(0.0, 1.0);
            if share > 0.0 {
                moved += 1;
                *o = Point::new(o.x + share * lag.x, o.y + share * lag.y);
            }
        }
        moved
    }
}

impl Default for DeformGate {
    fn default() -> Self {
        Self::new(DEFORM_GATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face of `k` landmarks on a 10 px grid.
    fn face(k: usize) -> Vec<Point> {
        (0..k)
            .map(|i| Point::new((i % 8) as f32 * 10.0, (i / 8) as f32 * 10.0))
            .collect()
    }

    /// Deterministic noise in ±`a`.
    fn noise(seed: &mut u32, a: f32) -> f32 {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (*seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 * a - a
    }

    /// Noise alone, and a whole face that the stage trails, leave the stage's output alone; one
    /// landmark that moves against the face, trailed by the stage as a running mean trails it,
    /// is handed the raw position within a few frames.
    #[test]
    fn opens_for_a_landmark_that_moves_against_the_face_only() {
        let (k, mut seed) = (20, 7u32);
        let base = face(k);
        let mut gate = DeformGate::default();
        let mut state = base.clone();
        let mut moved_at_rest = 0;
        for t in 0..200 {
            // The whole face drifts (the registration's business) while every point is noisy.
            let shift = t as f32 * 0.5;
            let raw: Vec<Point> = base
                .iter()
                .map(|p| Point::new(p.x + shift + noise(&mut seed, 1.0), p.y + noise(&mut seed, 1.0)))
                .collect();
            // A running mean of each point, as the cell is against motion it is not carried by.
            for (s, r) in state.iter_mut().zip(&raw) {
                *s = Point::new(s.x + 0.3 * (r.x - s.x), s.y + 0.3 * (r.y - s.y));
            }
            let mut out = state.clone();
            moved_at_rest += gate.apply(&raw, &mut out, 1.0);
        }
        assert!(
            moved_at_rest <= 200 * k / 100,
            "{moved_at_rest} landmark-frames moved at rest"
        );
        // Landmark 5 now moves 2 px per frame against the face for 10 frames.
        let mut err = (0.0, 0.0);
        for t in 0..10 {
            let raw: Vec<Point> = base
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let shift = (200 + t) as f32 * 0.5;
                    Point::new(p.x + shift + if i == 5 { 2.0 * (t + 1) as f32 } else { 0.0 }, p.y)
                })
                .collect();
            for (s, r) in state.iter_mut().zip(&raw) {
                *s = Point::new(s.x + 0.3 * (r.x - s.x), s.y + 0.3 * (r.y - s.y));
            }
            let mut out = state.clone();
            gate.apply(&raw, &mut out, 1.0);
            if t == 9 {
                err = ((out[5].x - raw[5].x).abs(), (state[5].x - raw[5].x).abs());
            }
        }
        assert!(
            err.0 < 0.3 * err.1,
            "output {} px behind, the stage {} px",
            err.0,
            err.1
        );
    }

    /// A non-finite point leaves that landmark's output as it is and the others unharmed.
    #[test]
    fn a_non_finite_point_passes() {
        let base = face(10);
        let mut gate = DeformGate::default();
        for t in 0..30 {
            let mut raw = base.clone();
            raw[3] = Point::new(f32::NAN, 0.0);
            raw[4].x += t as f32 * 3.0;
            let mut out = base.clone();
            gate.apply(&raw, &mut out, 1.0);
            assert!(out[3] == base[3], "{:?}", out[3]);
            assert!(out
                .iter()
                .enumerate()
                .all(|(i, p)| i == 3 || (p.x.is_finite() && p.y.is_finite())));
        }
    }
}
