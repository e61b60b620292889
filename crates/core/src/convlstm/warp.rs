//! Keeping the cell's state on the face: before each step, `h` and `c` are resampled so that
//! each map cell holds the state of the *same point of the face* in the previous frame.
//!
//! The cell filters each map cell over time. Without this, the face moves under it: the crop
//! follows the landmarks (in steps, past the tracker's deadband) and the head moves inside the
//! crop, so one cell sees the heatmap's flank in one frame and its peak in the next. Any
//! smoothing then smears real motion, and the loss is lowest near the identity: trained on
//! unaligned maps, the cell learned to do almost nothing. In the paper's setting the crops came
//! from stable boxes, so the maps were aligned.
//!
//! The alignment composes what is known exactly (the two crops) with what the face's pixels
//! tell ([`crate::face::motion`]: the registered similarity, already shrunk to zero on a still
//! face, so registration noise does not move the state). Bilinear, with border padding: a cell
//! that comes into view takes the state of the nearest edge, exactly as libtorch's
//! `grid_sample(align_corners = true, padding_mode = border)`, which `tune` uses. Zero padding
//! was tried first and is wrong for this state: the offset maps' running mean sits near 0.5,
//! not 0, so a half-zero edge cell decoded a landmark near the crop's edge (the jaw) several
//! cells away, and the jump moved the next crop, which moved the jaw again.
//!
//! Warping the state, rather than placing the next crop by the registered motion so that the
//! face holds still in it, leaves the crop and so the backbone's input exactly as without the
//! stage, and costs one bilinear pass over `h` and `c` (taps computed once per frame for all
//! landmarks).

use crate::backbone::BackboneSpec;
use crate::geometry::{CropTransform, Point, Similarity};

/// Where this frame's map cell `(x, y)` was in the previous frame's maps:
/// `(m[0]·x + m[1]·y + m[2], m[3]·x + m[4]·y + m[5])`, in map cells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapWarp(pub [f32; 6]);

impl Default for MapWarp {
    fn default() -> Self {
        Self::IDENTITY
    }
}

impl MapWarp {
    pub const IDENTITY: MapWarp = MapWarp([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);

    /// The warp between the maps of a crop `prev` and of the next frame's crop `cur`, given
    /// the face's image motion `motion` (previous frame → this frame; `None`: still).
    /// Identity when the chain is degenerate (a zero-size crop, a collapsing motion).
    pub fn between(
        spec: &BackboneSpec,
        prev: &CropTransform,
        cur: &CropTransform,
        motion: Option<&Similarity>,
    ) -> Self {
        let back = match motion.map(Similarity::inverse) {
            Some(Some(m)) => m,
            Some(None) => return Self::IDENTITY,
            None => Similarity::IDENTITY,
        };
        // heatmap cell ↔ input pixel is affine per axis: two points give it.
        let (a0, b0) = spec.heatmap_to_input(0.0, 0.0);
        let (a1, b1) = spec.heatmap_to_input(1.0, 1.0);
        let (da, db) = (a1 - a0, b1 - b0);
        if !(da.abs() > 1e-9 && db.abs() > 1e-9) {
            return Self::IDENTITY;
        }
        let chain = |x: f32, y: f32| {
            let img = cur.to_image(Point::new(a0 + x * da, b0 + y * db));
            let q = prev.to_input(back.apply(img));
            ((q.x - a0) / da, (q.y - b0) / db)
        };
        // The chain is affine: its value at three points fixes it.
        let (o, ex, ey) = (chain(0.0, 0.0), chain(1.0, 0.0), chain(0.0, 1.0));
        let m = [ex.0 - o.0, ey.0 - o.0, o.0, ex.1 - o.1, ey.1 - o.1, o.1];
        if m.iter().all(|v| v.is_finite()) {
            MapWarp(m)
        } else {
            Self::IDENTITY
        }
    }

    /// Whether resampling by it would change nothing (the common case of a still face whose
    /// crop did not move): the step then skips the pass.
    pub fn is_identity(&self) -> bool {
        let [a, b, c, d, e, f] = self.0;
        (a - 1.0).abs() < 1e-6
            && b.abs() < 1e-6
            && c.abs() < 1e-4
            && d.abs() < 1e-6
            && (e - 1.0).abs() < 1e-6
            && f.abs() < 1e-4
    }

    /// The same warp in `grid_sample`'s normalised coordinates (`align_corners = true`) for
    /// `w × h` maps: the `theta` of `affine_grid`, row-major `2 × 3`.
    pub fn to_theta(&self, w: usize, h: usize) -> [f32; 6] {
        let [a, b, c, d, e, f] = self.0;
        let (sw, sh) = ((w.max(2) - 1) as f32, (h.max(2) - 1) as f32);
        // x = (xn + 1)·(W − 1)/2 in, xn = 2x/(W − 1) − 1 out.
        [
            a,
            b * sh / sw,
            a + b * sh / sw + 2.0 * c / sw - 1.0,
            d * sw / sh,
            e,
            d * sw / sh + e + 2.0 * f / sh - 1.0,
        ]
    }
}

impl MapWarp {
    /// Where cell `(x, y)` of a `w × h` map (both ≥ 2) samples the previous maps: the top-left
    /// tap `(x0, y0)`, kept inside so that all four taps are (a position on the last row or
    /// column gets weight 0 or 1 exactly there), and the fractions `(fx, fy)`. Border padding:
    /// a position beyond the maps takes the nearest edge's state; a NaN (a degenerate warp)
    /// keeps the cell's own state.
    #[inline]
    pub fn source(&self, x: usize, y: usize, w: usize, h: usize) -> (usize, usize, f32, f32) {
        let [a, b, c, d, e, f] = self.0;
        let sx = (a * x as f32 + b * y as f32 + c).clamp(0.0, (w - 1) as f32);
        let sy = (d * x as f32 + e * y as f32 + f).clamp(0.0, (h - 1) as f32);
        let (sx, sy) = if sx.is_finite() && sy.is_finite() {
            (sx, sy)
        } else {
            (x as f32, y as f32)
        };
        let (x0, y0) = ((sx as usize).min(w - 2), (sy as usize).min(h - 2));
        (x0, y0, sx - x0 as f32, sy - y0 as f32)
    }
}

/// The bilinear taps of one warp over a `w × h` map, as runs of cells whose four source taps
/// are contiguous too (same source rows, same offset along the row), so that resampling a
/// plane is a few vectorisable loops instead of a gather per cell: 528 planes per face, and a
/// gather per cell cost more than the cell's step itself. A near-identity warp (the usual
/// case) has one to four runs per row. Allocated once per stage.
#[derive(Debug, Clone)]
pub struct WarpTaps {
    w: usize,
    h: usize,
    /// Bilinear weights per destination cell: top-left, top-right, bottom-left, bottom-right.
    w00: Vec<f32>,
    w01: Vec<f32>,
    w10: Vec<f32>,
    w11: Vec<f32>,
    /// `(destination start, length, source start)`: cells `dst..dst + len` read the source
    /// from `src + i` (top-left tap), `+ 1`, `+ w` and `+ w + 1`.
    runs: Vec<(u32, u32, u32)>,
    tmp: Vec<f32>,
}

impl WarpTaps {
    pub fn new(w: usize, h: usize) -> Self {
        let n = w * h;
        Self {
            w,
            h,
            w00: vec![0.0; n],
            w01: vec![0.0; n],
            w10: vec![0.0; n],
            w11: vec![0.0; n],
            runs: Vec::with_capacity(n),
            tmp: vec![0.0; n],
        }
    }

    /// Compute the taps for `warp`.
    pub fn set(&mut self, warp: &MapWarp) {
        let (w, h) = (self.w, self.h);
        self.runs.clear();
        // A map one cell wide or high has nothing to interpolate between: `apply` keeps it.
        if w < 2 || h < 2 {
            return;
        }
        for y in 0..h {
            for x in 0..w {
                let (x0, y0, fx, fy) = warp.source(x, y, w, h);
                let i = y * w + x;
                (self.w00[i], self.w01[i]) = ((1.0 - fx) * (1.0 - fy), fx * (1.0 - fy));
                (self.w10[i], self.w11[i]) = ((1.0 - fx) * fy, fx * fy);
                let src = (y0 * w + x0) as u32;
                match self.runs.last_mut() {
                    // Continues the run: the next destination cell reads the next source cell.
                    Some((d0, len, s0)) if x > 0 && *d0 + *len == i as u32 && *s0 + *len == src => *len += 1,
                    _ => self.runs.push((i as u32, 1, src)),
                }
            }
        }
    }

    /// Resample every `w × h` plane of `data` in place by the taps.
    pub fn apply(&mut self, data: &mut [f32]) {
        let (w, plane) = (self.w, self.w * self.h);
        if self.w < 2 || self.h < 2 {
            return;
        }
        for p in data.chunks_exact_mut(plane) {
            for &(d0, len, s0) in &self.runs {
                let (d0, len, s0) = (d0 as usize, len as usize, s0 as usize);
                let out = &mut self.tmp[d0..d0 + len];
                let (a, b) = (&p[s0..s0 + len], &p[s0 + 1..s0 + 1 + len]);
                let (c, e) = (&p[s0 + w..s0 + w + len], &p[s0 + w + 1..s0 + w + 1 + len]);
                let (w00, w01) = (&self.w00[d0..d0 + len], &self.w01[d0..d0 + len]);
                let (w10, w11) = (&self.w10[d0..d0 + len], &self.w11[d0..d0 + len]);
                for i in 0..len {
                    out[i] = w00[i] * a[i] + w01[i] * b[i] + w10[i] * c[i] + w11[i] * e[i];
                }
            }
            p.copy_from_slice(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BBox;

    #[test]
    fn a_crop_moved_by_one_map_cell_shifts_the_state_by_one_cell() {
        let spec = crate::backbone::BackboneSpec::synthetic(1, 8, 8, false);
        // 8 × 8 maps over an 8-pixel crop: one image pixel is one map cell.
        let prev = CropTransform::new(BBox::new(0.0, 0.0, 8.0, 8.0), spec.input_w, spec.input_h);
        let cur = CropTransform::new(BBox::new(1.0, 0.0, 9.0, 8.0), spec.input_w, spec.input_h);
        let wp = MapWarp::between(&spec, &prev, &cur, None);
        let want = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        assert!(wp.0.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5), "{wp:?}");
        // The face moving with the crop leaves the maps where they were.
        let along = Similarity {
            tx: 1.0,
            ..Similarity::IDENTITY
        };
        assert!(MapWarp::between(&spec, &prev, &cur, Some(&along)).is_identity());

        let mut taps = WarpTaps::new(8, 8);
        taps.set(&MapWarp([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]));
        let mut plane: Vec<f32> = (0..64).map(|i| i as f32).collect();
        taps.apply(&mut plane);
        assert_eq!(plane[0], 1.0);
        assert_eq!(plane[6], 7.0);
        // Beyond the previous maps: the edge's value, as grid_sample's border padding.
        assert_eq!(plane[7], 7.0);
        assert_eq!(plane[63], 63.0);
    }

    #[test]
    fn a_map_one_cell_high_keeps_its_state() {
        let mut taps = WarpTaps::new(5, 1);
        taps.set(&MapWarp([1.0, 0.0, 0.5, 0.0, 1.0, 0.0]));
        let mut plane = vec![1.0, 2.0, 3.0, 4.0, 5.0];
        taps.apply(&mut plane);
        assert_eq!(plane, [1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn theta_matches_grid_sample_conventions() {
        // A one-cell shift on 28 maps is 2/27 in normalised units.
        let t = MapWarp([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]).to_theta(28, 28);
        assert!((t[2] - 2.0 / 27.0).abs() < 1e-6 && t[5].abs() < 1e-6, "{t:?}");
        assert_eq!(MapWarp::IDENTITY.to_theta(28, 20), [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    }
}
