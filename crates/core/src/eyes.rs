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
//! no filter can delay or flatten a blink in the signals; the output lids get a light filter of
//! their own ([`LID_FILTER`], whenever any stabilizer runs) that opens within a frame when the
//! lids move fast.

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

/// Smoothing of each eye's lids and iris, in crop coordinates (levelled, 64 px wide): the crop
/// already follows the filtered corners, so this only takes out the refiner's own noise. A
/// blink moves the lids by 10–20 crop px in a frame, far above that noise; with a fast speed
/// estimate (`d_cutoff`) the cutoff opens within the frame, so the output lids keep the
/// blink's depth and onset. Openness is read before this filter, so the signals never wait
/// for it.
pub const LID_FILTER: OneEuroParams = OneEuroParams {
    min_cutoff: 1.0,
    beta: 20.0,
    d_cutoff: 30.0,
};

/// One track's lid filters, one per eye ([`LID_FILTER`]).
#[derive(Debug, Clone)]
pub struct LidFilters([OneEuro; 2]);

impl LidFilters {
    pub fn new() -> Self {
        Self([OneEuro::new(LID_FILTER), OneEuro::new(LID_FILTER)])
    }
}

impl Default for LidFilters {
    fn default() -> Self {
        Self::new()
    }
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
                f.0[side].apply(&mut pts, t, SIDE as f32);
                lids.copy_from_slice(&pts[..LID_POINTS]);
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
