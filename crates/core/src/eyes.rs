//! The eye refiner: lid contours, iris and openness from a dedicated eye model.
//!
//! Why: a whole-face heatmap backbone places the eyelids from the face's shape more than from
//! the lids themselves. On real clips labelled by eye, lm0's eye aspect ratio stayed between
//! 0.24 and 0.30 through every blink, so no drowsiness signal could fire. MediaPipe's iris /
//! eye-contour model looks at one eye at a time, at 64×64, and its lids follow a blink to the
//! end.
//!
//! Per face and frame, for each eye:
//! 1. **Crop.** From the backbone's two eye corners: centred on their midpoint, rotated so that
//!    the corner line is level, a square of [`CROP_SCALE`] × the corner distance, resampled to
//!    64×64 ([`crate::frame::resample_affine`]). The image-right eye is mirrored, because the
//!    model was trained on one side (MediaPipe's iris graph does the same).
//! 2. **Refine.** The model gives 71 eye and brow points and 5 iris points in crop pixels.
//!    Points 0–8 are the lower lid from the outer to the inner corner, 9–15 the upper lid
//!    between the corners, outer to inner ([`Eye::lids`] keeps these 16).
//! 3. **Openness.** The mean gap between the lids, measured at the seven upper-lid points
//!    against the lower lid interpolated below each, divided by the corner distance (the
//!    *lid gap ratio*). Seven pairs average out noise that the six-point EAR's two pairs keep,
//!    and the ratio is scale- and roll-free because it is measured in the levelled crop. On the
//!    labelled clips it is 0.24–0.25 open and 0.03–0.11 at the shut frame of every blink.
//! 4. **Back to the face.** The backbone's six points of each eye (corners, two upper, two
//!    lower) are replaced by the refined lids, sampled at the same places (a third and two
//!    thirds along the corner line), so every consumer of the points sees the refined eyes.
//!
//! The refiner reads the frame as it is, after the point filter: the crop follows the
//! filtered corners (a steady crop). Openness is read from the model's lids as they come, so
//! no filter can delay or flatten a blink in the signals; the output lids get a filter of their
//! own whenever any stabilizer runs ([`LidFilter`]): held hard while nothing in the eye stands
//! out from its noise, open in the frame a blink starts.

use crate::error::{Error, Result};
use crate::exposure::Levels;
use crate::frame::{resample_affine, Frame, Normalize};
use crate::geometry::Point;
use crate::models::ModelEntry;
use crate::runtime::OnnxGraph;
use crate::stabilizer::{OneEuro, OneEuroParams};
use std::path::Path;

/// Crop side over the corner-to-corner distance (MediaPipe's iris graph uses 2.3).
pub const CROP_SCALE: f32 = 2.3;
/// The model's input side.
const SIDE: usize = 64;
/// Eye-and-brow points the model outputs, and iris points.
const CONTOUR_POINTS: usize = 71;
const IRIS_POINTS: usize = 5;
/// Lid points kept per eye: the lower lid (9, corners included) then the upper lid (7).
pub const LID_POINTS: usize = 16;

/// Per eye, where each of [`ear_points`]' six (outer corner, upper at 1/3 and 2/3 from it,
/// inner corner, lower at 2/3 and 1/3) sits in the scheme's EAR order. The image-right eye's
/// EAR order runs from its inner corner (iBUG 42, 43, 44, 45, 46, 47), so it is mirrored.
const EAR_FROM_OUTER: [[usize; 6]; 2] = [[0, 1, 2, 3, 4, 5], [3, 2, 1, 0, 5, 4]];

/// One refined eye, in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Eye {
    /// Lower lid from the outer corner to the inner one (0–8), then the upper lid from outer to
    /// inner without the corners (9–15).
    pub lids: [Point; LID_POINTS],
    /// Iris centre.
    pub iris: Point,
    /// Iris radius: mean distance from the centre to the four boundary points.
    pub iris_radius: f32,
    /// Lid gap ratio: the mean gap between the lids over the corner distance (see the module
    /// docs). About 0.25 open, near 0 shut.
    pub openness: f32,
    /// Corner-to-corner distance that placed the crop (the backbone's corners, before the
    /// refined ones replace them): the eye's size, which a blink does not change. The refined
    /// corners draw together a little as the lids close (9.1 → 7.6 px on carphone).
    pub width: f32,
}

/// Both eyes of a face: the image-left eye (the subject's right, iBUG 36–41), then the
/// image-right one (iBUG 42–47).
pub type Eyes = [Eye; 2];

/// The lid filter's settings ([`LidFilter`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LidFilterParams {
    /// Cutoff (Hz) while nothing in the frame stands out from the noise.
    pub min_cutoff: f32,
    /// Cutoff increase (Hz) per noise level of surprise beyond `gate`.
    pub gain: f32,
    /// Surprise, in noise levels, that noise alone reaches often: below it the cutoff stays at
    /// `min_cutoff`.
    pub gate: f32,
    /// Per-frame rate of the running noise levels.
    pub noise_rate: f32,
}

/// Chosen on the stability bench's eye points and the labelled blinks' output lids
/// (docs/stabilizers.md, "The eye points"): a gain of 3–6 and a gate of 2–3 all kept the
/// labelled blinks' depth and onset; 4 and 2 keep most of the partial blink on carphone.
pub const LID_FILTER: LidFilterParams = LidFilterParams {
    min_cutoff: 1.0,
    gain: 4.0,
    gate: 2.0,
    noise_rate: 0.05,
};

/// The iris keeps a per-point One Euro in crop coordinates (speeds in crop widths per second):
/// gaze moves it without changing the lids, so the lids' surprise cannot tell when to follow.
pub const IRIS_FILTER: OneEuroParams = OneEuroParams {
    min_cutoff: 1.0,
    beta: 20.0,
    d_cutoff: 30.0,
};

/// One track's lid filters, one per eye.
#[derive(Debug, Clone)]
pub struct LidFilters([LidFilter; 2]);

impl LidFilters {
    pub fn new() -> Self {
        Self([LidFilter::new(LID_FILTER), LidFilter::new(LID_FILTER)])
    }
}

impl Default for LidFilters {
    fn default() -> Self {
        Self::new()
    }
}

/// A low-pass on one eye's 16 lid points in crop coordinates, with one cutoff for the whole
/// eye that opens with the frame's *surprise*: how far the raw openness and the lids' mean
/// position are from the filter's output, each in units of its own running noise level.
///
/// Why not One Euro per point: the refiner's per-point noise (a crop pixel or two on a sharp
/// face, several in the dark) reads as speed, so the cutoff stayed open and the eye points were
/// the noisiest of the face (two to five times the rest under the default chain). Averaged over
/// seven lid pairs and sixteen points the noise is smaller, and measured against its own level
/// it separates a blink (tens of noise levels within its first frame) from noise on a sharp face
/// and in low light alike, so the lids are held hard at rest and follow a blink in the frame it
/// starts. The mean position's surprise keeps the lids with the eye when the crop, which follows
/// the point filter's corners, falls behind a fast head.
#[derive(Debug, Clone)]
pub struct LidFilter {
    params: LidFilterParams,
    lids: [Point; LID_POINTS],
    /// The output lids' openness.
    open: f32,
    /// Running noise levels of the openness (lid gap ratio) and of the lids' mean position (crop px).
    noise_open: f32,
    noise_mean: f32,
    last_t: Option<f64>,
    iris: OneEuro,
}

/// Starting noise levels, about a sharp face's; the running levels take over within a second.
const NOISE_OPEN_START: f32 = 0.005;
const NOISE_MEAN_START: f32 = 0.3;
/// Floors under the noise levels, so that a noiseless (synthetic) eye does not read every
/// rounding as surprise.
const NOISE_OPEN_FLOOR: f32 = 1e-3;
const NOISE_MEAN_FLOOR: f32 = 0.05;

impl LidFilter {
    pub fn new(params: LidFilterParams) -> Self {
        Self {
            params,
            lids: [Point::default(); LID_POINTS],
            open: 0.0,
            noise_open: NOISE_OPEN_START,
            noise_mean: NOISE_MEAN_START,
            last_t: None,
            iris: OneEuro::new(IRIS_FILTER),
        }
    }

    /// Filter one eye's `lids` (crop px; their raw lid gap ratio is `openness`) and `iris`
    /// points, observed at `t` seconds, in place. The first frame, or a time that did not
    /// advance, passes through and restarts.
    pub fn apply(&mut self, lids: &mut [Point; LID_POINTS], openness: f32, iris: &mut [Point], t: f64) {
        let dt = match self.last_t {
            Some(l) if t > l => (t - l) as f32,
            _ => {
                *self = Self::new(self.params);
                self.iris.apply(iris, t, SIDE as f32);
                self.lids = *lids;
                self.open = openness;
                self.last_t = Some(t);
                return;
            }
        };
        self.iris.apply(iris, t, SIDE as f32);
        self.last_t = Some(t);
        let p = self.params;
        let off_open = (openness - self.open).abs();
        let off_mean = mean(&lids[..]).dist(mean(&self.lids));
        let surprise =
            (off_open / self.noise_open.max(NOISE_OPEN_FLOOR)).max(off_mean / self.noise_mean.max(NOISE_MEAN_FLOOR));
        // A non-finite frame (the model's or the crop's) passes through, so the next finite one
        // restarts from itself instead of inheriting NaN.
        if !surprise.is_finite() {
            self.lids = *lids;
            self.open = openness;
            return;
        }
        // Clipped at three levels, so that a blink lifts the noise estimate only a little.
        self.noise_open += p.noise_rate * (off_open.min(3.0 * self.noise_open) - self.noise_open);
        self.noise_mean += p.noise_rate * (off_mean.min(3.0 * self.noise_mean) - self.noise_mean);
        let a = crate::stabilizer::alpha(p.min_cutoff + p.gain * (surprise - p.gate).max(0.0), dt);
        for (x, l) in self.lids.iter_mut().zip(lids.iter_mut()) {
            *x = Point::new(x.x + a * (l.x - x.x), x.y + a * (l.y - x.y));
            *l = *x;
        }
        self.open = lid_gap_ratio(&self.lids);
    }
}

fn mean(p: &[Point]) -> Point {
    let s = p.iter().fold(Point::default(), |a, q| Point::new(a.x + q.x, a.y + q.y));
    Point::new(s.x / p.len() as f32, s.y / p.len() as f32)
}

/// One eye's model instance and its raw outputs.
struct Slot {
    graph: OnnxGraph,
    contour: [f32; CONTOUR_POINTS * 3],
    iris: [f32; IRIS_POINTS * 3],
}

impl Slot {
    /// Crop the eye and run the model on it.
    fn run(&mut self, frame: &Frame, crop: &EyeCrop, norm: &Normalize, lut: &crate::frame::InputLut) -> Result<()> {
        resample_affine(
            frame,
            crop.origin,
            crop.ax,
            crop.ay,
            SIDE,
            SIDE,
            norm,
            lut,
            self.graph.input_mut(),
        );
        let mut outs = [&mut self.contour[..], &mut self.iris[..]];
        self.graph.run(&mut outs)
    }
}

/// The refiner: one model instance per eye, and where the eyes are in the backbone's scheme.
pub struct EyeRefiner {
    /// Image-left eye, image-right eye. Two instances so that the eyes can run at once.
    slots: [std::sync::Mutex<Slot>; 2],
    /// With `models.threads` ≥ 2: the two eyes run on two threads. The model is small
    /// (about 1.5 ms, most of it 1×1 convolutions at 32×32), so splitting its steps gains
    /// little, while the two eyes are independent work of the same size.
    pool: Option<crate::nn::pool::Pool>,
    norm: Normalize,
    /// Per eye, the backbone's six points in EAR order (iBUG 36–41 and 42–47).
    eye_points: [[usize; 6]; 2],
}

impl EyeRefiner {
    /// Load the refiner at `path`. Its outputs must be the 71 contour and 5 iris points;
    /// anything else is a model error naming the file. `eye_points` are the backbone's six
    /// points per eye, in EAR order.
    pub fn load(
        path: &Path,
        entry: &ModelEntry,
        eye_points: [[usize; 6]; 2],
        cpu_engine: crate::runtime::CpuEngine,
        threads: usize,
    ) -> Result<Self> {
        let i = &entry.io.input;
        if (i.width, i.height) != (SIDE, SIDE) {
            return Err(Error::model(
                path,
                format!(
                    "io.input is {}×{}; the eye refiner takes {SIDE}×{SIDE}",
                    i.width, i.height
                ),
            ));
        }
        let graph = OnnxGraph::load(path, (3, SIDE, SIDE), cpu_engine, 1, "eye refiner")?;
        let outs = graph.outputs();
        let lens: Vec<usize> = outs.iter().map(|(_, s)| s.iter().product()).collect();
        if lens != [CONTOUR_POINTS * 3, IRIS_POINTS * 3] {
            return Err(Error::model(
                path,
                format!(
                    "outputs {:?}; an eye refiner has two: {} contour values (71 points × 3) and {} iris values (5 × 3)",
                    outs.iter().map(|(n, s)| format!("{n} {s:?}")).collect::<Vec<_>>(),
                    CONTOUR_POINTS * 3,
                    IRIS_POINTS * 3
                ),
            ));
        }
        // The second instance is the same file, already checked.
        let second = OnnxGraph::load(path, (3, SIDE, SIDE), cpu_engine, 1, "eye refiner")?;
        let slot = |graph| {
            std::sync::Mutex::new(Slot {
                graph,
                contour: [0.0; CONTOUR_POINTS * 3],
                iris: [0.0; IRIS_POINTS * 3],
            })
        };
        Ok(Self {
            slots: [slot(graph), slot(second)],
            pool: (threads >= 2).then(|| crate::nn::pool::Pool::new(2)),
            norm: i.normalize(),
            eye_points,
        })
    }

    /// Refine both eyes of the face whose landmarks are `points` (the backbone's scheme), in
    /// `frame` (shown at `t` seconds) under exposure `levels`. Writes `out` and replaces the
    /// backbone's eye points by the refined lids, smoothed by `filters` when given. Allocation-free.
    pub fn refine(
        &mut self,
        frame: &Frame,
        levels: &Levels,
        t: f64,
        points: &mut [Point],
        mut filters: Option<&mut LidFilters>,
        out: &mut Eyes,
    ) -> Result<()> {
        let lut = levels.lut(&self.norm);
        // EAR order starts at the image-left corner for both eyes (iBUG 36 and 42), which is
        // the outer corner of the image-left eye but the inner one of the image-right eye.
        // Each eye's crop, and its width (the corner distance that placed the crop).
        let placed = [0, 1].map(|side| {
            let (idx, perm) = (self.eye_points[side], EAR_FROM_OUTER[side]);
            let (outer, inner) = (points[idx[perm[0]]], points[idx[perm[3]]]);
            (EyeCrop::new(outer, inner, side == 1), outer.dist(inner))
        });
        let crops = placed.map(|(c, _)| c);
        let (slots, norm) = (&self.slots, &self.norm);
        let run = |side: usize| {
            let mut slot = slots[side].lock().unwrap_or_else(|e| e.into_inner());
            slot.run(frame, &crops[side], norm, &lut)
        };
        match &self.pool {
            Some(pool) => {
                let results = [std::sync::Mutex::new(Ok(())), std::sync::Mutex::new(Ok(()))];
                pool.run(2, &|side, _| {
                    *results[side].lock().unwrap_or_else(|e| e.into_inner()) = run(side);
                });
                for r in results {
                    r.into_inner().unwrap_or_else(|e| e.into_inner())?;
                }
            }
            None => {
                run(0)?;
                run(1)?;
            }
        }
        for (side, idx) in self.eye_points.iter().enumerate() {
            let perm = EAR_FROM_OUTER[side];
            let crop = crops[side];
            let slot = self.slots[side].lock().unwrap_or_else(|e| e.into_inner());
            let eye = &mut out[side];
            eye.width = placed[side].1;
            let lid = |k: usize| Point::new(slot.contour[3 * k], slot.contour[3 * k + 1]);
            let iris = |k: usize| Point::new(slot.iris[3 * k], slot.iris[3 * k + 1]);
            // The lids, then the iris centre and its boundary.
            let mut pts = [Point::default(); LID_POINTS + IRIS_POINTS];
            for (k, l) in pts.iter_mut().enumerate() {
                *l = if k < LID_POINTS { lid(k) } else { iris(k - LID_POINTS) };
            }
            let mut lids = [Point::default(); LID_POINTS];
            lids.copy_from_slice(&pts[..LID_POINTS]);
            eye.openness = lid_gap_ratio(&lids);
            if let Some(f) = filters.as_deref_mut() {
                f.0[side].apply(&mut lids, eye.openness, &mut pts[LID_POINTS..], t);
            }
            let six = ear_points(&lids);
            for (&k, p) in perm.iter().zip(six) {
                points[idx[k]] = crop.to_image(p);
            }
            for (l, p) in eye.lids.iter_mut().zip(lids) {
                *l = crop.to_image(p);
            }
            let c = pts[LID_POINTS];
            eye.iris = crop.to_image(c);
            eye.iris_radius =
                pts[LID_POINTS + 1..].iter().map(|p| p.dist(c)).sum::<f32>() / (IRIS_POINTS - 1) as f32 * crop.scale;
        }
        Ok(())
    }
}

/// An eye crop's frame: crop pixel coordinates `(u, v)` in `0..64` (pixel `j` spans
/// `[j, j + 1]`) sit at `origin + u·ax + v·ay` in the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EyeCrop {
    pub origin: Point,
    pub ax: Point,
    pub ay: Point,
    /// Image pixels per crop pixel.
    pub scale: f32,
}

impl EyeCrop {
    /// The crop for an eye with these corners; `mirror` for the image-right eye, so that its
    /// outer corner lands on the crop's left like the other eye's.
    pub fn new(outer: Point, inner: Point, mirror: bool) -> Self {
        let c = Point::new((outer.x + inner.x) / 2.0, (outer.y + inner.y) / 2.0);
        // The corner line, pointing image-right for both eyes.
        let (dx, dy) = if mirror {
            (outer.x - inner.x, outer.y - inner.y)
        } else {
            (inner.x - outer.x, inner.y - outer.y)
        };
        let dist = (dx * dx + dy * dy).sqrt();
        // Degenerate corners (a collapsed or non-finite face) still give a finite crop.
        let (ux, uy, dist) = if dist.is_finite() && dist > 1e-3 {
            (dx / dist, dy / dist, dist)
        } else {
            (1.0, 0.0, 1.0)
        };
        let scale = CROP_SCALE * dist / SIDE as f32;
        let sx = if mirror { -scale } else { scale };
        let ax = Point::new(ux * sx, uy * sx);
        let ay = Point::new(-uy * scale, ux * scale);
        let half = SIDE as f32 / 2.0;
        let origin = Point::new(c.x - half * (ax.x + ay.x), c.y - half * (ax.y + ay.y));
        Self { origin, ax, ay, scale }
    }

    pub fn to_image(&self, p: Point) -> Point {
        Point::new(
            self.origin.x + p.x * self.ax.x + p.y * self.ay.x,
            self.origin.y + p.x * self.ax.y + p.y * self.ay.y,
        )
    }
}

/// The lower lid's height below crop x `x` (the lid from corner to corner, linear between
/// points; beyond the corners, the nearest corner).
fn lower_at(lids: &[Point; LID_POINTS], x: f32) -> f32 {
    let lower = &lids[..9];
    let (first, last) = (lower[0], lower[8]);
    let (lo, hi) = if first.x <= last.x {
        (first, last)
    } else {
        (last, first)
    };
    if x <= lo.x {
        return lo.y;
    }
    if x >= hi.x {
        return hi.y;
    }
    for w in lower.windows(2) {
        let (a, b) = if w[0].x <= w[1].x { (w[0], w[1]) } else { (w[1], w[0]) };
        if a.x <= x && x <= b.x {
            let t = if b.x > a.x { (x - a.x) / (b.x - a.x) } else { 0.0 };
            return a.y + t * (b.y - a.y);
        }
    }
    // A lid that folds back on itself: the nearest point.
    lower
        .iter()
        .min_by(|a, b| (a.x - x).abs().total_cmp(&(b.x - x).abs()))
        .map_or(0.0, |p| p.y)
}

/// The lid gap ratio of one eye's lids in crop coordinates (see [`Eye::openness`]). A lid that
/// crosses the other counts as shut (0).
pub fn lid_gap_ratio(lids: &[Point; LID_POINTS]) -> f32 {
    let width = lids[0].dist(lids[8]);
    // Also catches a NaN width.
    if width.is_nan() || width <= 1e-3 {
        return f32::NAN;
    }
    let gap: f32 = lids[9..]
        .iter()
        .map(|u| (lower_at(lids, u.x) - u.y).max(0.0))
        .sum::<f32>()
        / 7.0;
    gap / width
}

/// The six EAR points (outer corner, upper at 1/3 and 2/3, inner corner, lower at 2/3 and
/// 1/3 of the way from the outer corner) read off the refined lids, in crop coordinates.
fn ear_points(lids: &[Point; LID_POINTS]) -> [Point; 6] {
    let (outer, inner) = (lids[0], lids[8]);
    let mut upper = [Point::default(); 9];
    upper[0] = outer;
    upper[1..8].copy_from_slice(&lids[9..16]);
    upper[8] = inner;
    let along = |poly: &[Point], t: f32| {
        // Position along the corner line, then the polyline's point there.
        let x = outer.x + t * (inner.x - outer.x);
        for w in poly.windows(2) {
            let (a, b) = (w[0], w[1]);
            if (a.x - x) * (b.x - x) <= 0.0 && a.x != b.x {
                let s = (x - a.x) / (b.x - a.x);
                return Point::new(x, a.y + s * (b.y - a.y));
            }
        }
        let k = ((t * 8.0).round() as usize).min(8);
        poly[k]
    };
    [
        outer,
        along(&upper, 1.0 / 3.0),
        along(&upper, 2.0 / 3.0),
        inner,
        along(&lids[..9], 2.0 / 3.0),
        along(&lids[..9], 1.0 / 3.0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lids of an almond eye in crop pixels, `open` the half-height at the middle.
    fn almond(open: f32) -> [Point; LID_POINTS] {
        let mut l = [Point::default(); LID_POINTS];
        for (k, p) in l.iter_mut().take(9).enumerate() {
            let t = k as f32 / 8.0;
            *p = Point::new(18.0 + 28.0 * t, 32.0 + open * (std::f32::consts::PI * t).sin());
        }
        for k in 0..7 {
            let t = (k + 1) as f32 / 8.0;
            l[9 + k] = Point::new(18.0 + 28.0 * t, 32.0 - open * (std::f32::consts::PI * t).sin());
        }
        l
    }

    /// Feeds `f` 30 fps frames of `lids(k)` plus uniform noise of unit variance per coordinate
    /// (about the refiner's on a sharp face) for each of `frames`, and hands `each` the frame, its
    /// input and the output.
    fn feed(
        f: &mut LidFilter,
        rng: &mut u64,
        frames: std::ops::Range<usize>,
        lids: impl Fn(usize) -> [Point; LID_POINTS],
        mut each: impl FnMut(usize, &[Point; LID_POINTS], &[Point; LID_POINTS]),
    ) {
        let mut noise = || {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            ((*rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 12f32.sqrt()
        };
        for k in frames {
            let mut l = lids(k);
            for p in &mut l {
                *p = Point::new(p.x + noise(), p.y + noise());
            }
            let input = l;
            let mut iris = [Point::new(32.0, 32.0); IRIS_POINTS];
            f.apply(&mut l, lid_gap_ratio(&input), &mut iris, k as f64 / 30.0);
            each(k, &input, &l);
        }
    }

    /// A still eye is held: after a second, its points move a quarter as much as the input's or
    /// less (measured: 0.15). A blink is followed in the frame it starts (at least 80% of the
    /// step in openness; measured 0.91), and so is a 4 px slip of the whole eye in the crop,
    /// which is what a crop behind a fast head looks like (measured 0.87).
    #[test]
    fn lid_filter_holds_a_still_eye_and_follows_a_blink_and_a_slip() {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut f = LidFilter::new(LID_FILTER);
        let (mut moved_in, mut moved_out, mut last) = (0.0, 0.0, None);
        feed(
            &mut f,
            &mut rng,
            0..90,
            |_| almond(7.0),
            |k, i, o| {
                if let Some((pi, po)) = last.replace((*i, *o)) {
                    if k >= 30 {
                        let d = |a: &[Point; LID_POINTS], b: &[Point; LID_POINTS]| {
                            a.iter().zip(b).map(|(p, q)| p.dist(*q)).sum::<f32>()
                        };
                        moved_in += d(i, &pi);
                        moved_out += d(o, &po);
                    }
                }
            },
        );
        let held = moved_out / moved_in;
        eprintln!("held: {held}");
        assert!(held <= 0.25, "the output moved {held} of the input at rest");

        let (open, shut) = (lid_gap_ratio(&almond(7.0)), lid_gap_ratio(&almond(1.0)));
        let mut before = f.clone();
        let mut followed = 0.0;
        feed(
            &mut f,
            &mut rng,
            90..91,
            |_| almond(1.0),
            |_, _, o| {
                followed = (open - lid_gap_ratio(o)) / (open - shut);
            },
        );
        eprintln!("blink followed: {followed}");
        assert!(
            followed >= 0.8,
            "the blink's first frame followed {followed} of the step"
        );

        let slip = |k: usize| almond(7.0).map(|p| Point::new(p.x + 4.0 * (k >= 90) as u8 as f32, p.y));
        let mut shift = 0.0;
        feed(&mut before, &mut rng, 90..91, slip, |_, _, o| {
            shift = mean(o).x - mean(&almond(7.0)).x;
        });
        eprintln!("slip followed: {}", shift / 4.0);
        assert!(shift >= 0.8 * 4.0, "a 4 px slip moved the output {shift} px");
    }

    /// A frame of NaN lids (a degenerate crop) does not stick: the next finite frame comes out
    /// finite.
    #[test]
    fn lid_filter_recovers_from_a_non_finite_frame() {
        let mut f = LidFilter::new(LID_FILTER);
        let mut iris = [Point::new(32.0, 32.0); IRIS_POINTS];
        for k in 0..5 {
            let mut l = if k == 2 {
                [Point::new(f32::NAN, f32::NAN); LID_POINTS]
            } else {
                almond(7.0)
            };
            let o = lid_gap_ratio(&l);
            f.apply(&mut l, o, &mut iris, k as f64 / 30.0);
            if k > 2 {
                assert!(l.iter().all(|p| p.x.is_finite() && p.y.is_finite()), "frame {k}: {l:?}");
            }
        }
    }

    #[test]
    fn lid_gap_ratio_follows_the_opening() {
        let open = lid_gap_ratio(&almond(4.0));
        let half = lid_gap_ratio(&almond(2.0));
        let shut = lid_gap_ratio(&almond(0.0));
        // Mean of 2·4·sin over the seven inner points, over a 28 px width.
        let expect = (1..8)
            .map(|k| 8.0 * (std::f32::consts::PI * k as f32 / 8.0).sin())
            .sum::<f32>()
            / 7.0
            / 28.0;
        assert!((open - expect).abs() < 1e-5, "{open} vs {expect}");
        assert!((half - open / 2.0).abs() < 1e-5);
        assert_eq!(shut, 0.0);
        // Lids that cross count as shut, not negative.
        assert_eq!(lid_gap_ratio(&almond(-3.0)), 0.0);
        let mut degenerate = almond(4.0);
        degenerate[8] = degenerate[0];
        assert!(lid_gap_ratio(&degenerate).is_nan());
    }

    #[test]
    fn ear_points_sit_on_the_lids_at_thirds() {
        let l = almond(4.0);
        let p = ear_points(&l);
        assert_eq!((p[0], p[3]), (l[0], l[8]));
        let s = (std::f32::consts::PI / 3.0).sin() * 4.0;
        for (q, x, y) in [(p[1], 18.0 + 28.0 / 3.0, 32.0 - s), (p[5], 18.0 + 28.0 / 3.0, 32.0 + s)] {
            assert!((q.x - x).abs() < 1e-4 && (q.y - y).abs() < 0.2, "{q:?} vs ({x}, {y})");
        }
    }

    #[test]
    fn eye_crop_is_level_square_and_mirrored_for_the_right_eye() {
        // A face rolled by 30°: the corners are on a tilted line.
        let (a, b) = (
            Point::new(100.0, 100.0),
            Point::new(100.0 + 30.0 * 0.866, 100.0 + 30.0 * 0.5),
        );
        let left = EyeCrop::new(a, b, false);
        // The outer corner sits left of centre on the crop's middle row, at 32 ∓ 64/(2·2.3).
        let half = 32.0 / CROP_SCALE;
        let o = left.to_image(Point::new(32.0 - half, 32.0));
        let i = left.to_image(Point::new(32.0 + half, 32.0));
        assert!(o.dist(a) < 1e-3 && i.dist(b) < 1e-3, "{o:?} {i:?}");
        // The image-right eye: its outer corner is the right one, and lands on the crop's left.
        let right = EyeCrop::new(b, a, true);
        assert!(right.to_image(Point::new(32.0 - half, 32.0)).dist(b) < 1e-3);
        assert!(right.to_image(Point::new(32.0 + half, 32.0)).dist(a) < 1e-3);
        // Both crops' "down" is the face's down (perpendicular to the corner line).
        for c in [left, right] {
            assert!((c.ax.x * c.ay.x + c.ax.y * c.ay.y).abs() < 1e-4);
            assert!(c.ay.y > 0.0);
        }
        // Collapsed or non-finite corners still give a finite crop.
        for c in [
            EyeCrop::new(a, a, false),
            EyeCrop::new(Point::new(f32::NAN, 0.0), b, true),
        ] {
            assert!(c.ax.x.is_finite() && c.ay.y.is_finite() && c.scale > 0.0);
        }
    }
}
