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
//! face, so registration noise does not move the state). Border padding: a cell that comes into
//! view takes the state of the nearest edge, exactly as libtorch's
//! `grid_sample(align_corners = true, padding_mode = border)`, which `tune` uses. Zero padding
//! was tried first and is wrong for this state: the offset maps' running mean sits near 0.5,
//! not 0, so a half-zero edge cell decoded a landmark near the crop's edge (the jaw) several
//! cells away, and the jump moved the next crop, which moved the jaw again.
//!
//! Two transports ([`Transport`], recorded in the weights, which were trained with one):
//! bilinear ([`WarpTaps`]), and whole cells with the rest carried by the offset maps
//! ([`CellTaps`], [`OffsetRest`]). The state moves every frame, so bilinear's blur compounds:
//! up to a quarter cell² of variance per frame on a shake, against a heatmap blob of about one
//! cell², and the widened blob lets PDC's window take in its flank. A whole-cell move does not
//! blur; the rounding's rest moves each offset map's state instead, and the decoder, which adds
//! every cell's offset to its position, moves the point by the exact warp.
//!
//! Moving the state, rather than placing the next crop by the registered motion so that the
//! face holds still in it, leaves the crop and so the backbone's input exactly as without the
//! stage, and costs one pass over `h` and `c` (taps computed once per frame for all landmarks).

use crate::backbone::BackboneSpec;
use crate::geometry::{CropTransform, Point, Similarity};

crate::choice::choice! {
    /// How the cell's state follows the face from one frame's maps to the next.
    pub enum Transport {
        /// Every state plane resampled bilinearly (border padding).
        Bilinear = "bilinear",
        /// Every cell takes the state of the nearest source cell, and the rounding's rest moves
        /// the offset maps' state ([`OffsetRest`]): no blur. Needs offset maps and the
        /// smoothing start's read-out on them.
        Cells = "cells",
    }
}

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

impl MapWarp {
    /// Where cell `(x, y)` of a `w × h` map samples the previous maps with whole cells, for a
    /// state whose heatmap sits `rho` cells off the grid ([`CellTaps`]): the source cell
    /// `(xs, ys)`, the nearest to the warped position minus `rho` (`floor(q + ½)`, as the trainer
    /// rounds; libtorch's round goes half to even), and what the offset maps must take, the
    /// warped position minus that cell. Border padding and NaN as [`MapWarp::source`].
    #[inline]
    pub fn nearest(&self, x: usize, y: usize, w: usize, h: usize, rho: [f32; 2]) -> (usize, usize, f32, f32) {
        let [a, b, c, d, e, f] = self.0;
        let (lx, ly) = (w.saturating_sub(1) as f32, h.saturating_sub(1) as f32);
        let sx = (a * x as f32 + b * y as f32 + c).clamp(0.0, lx);
        let sy = (d * x as f32 + e * y as f32 + f).clamp(0.0, ly);
        let (sx, sy) = if sx.is_finite() && sy.is_finite() {
            (sx, sy)
        } else {
            (x as f32, y as f32)
        };
        let xs = (sx - rho[0] + 0.5).floor().clamp(0.0, lx);
        let ys = (sy - rho[1] + 0.5).floor().clamp(0.0, ly);
        (xs as usize, ys as usize, sx - xs, sy - ys)
    }

    /// The heatmap's offset from the grid after a whole-cell move from `rho`: the rounding's
    /// rest at the maps' centre cell (one value for the whole state, so that every landmark and
    /// the windowed kernel agree), within (−½, ½].
    pub fn carried_rho(&self, w: usize, h: usize, rho: [f32; 2]) -> [f32; 2] {
        let (_, _, ox, oy) = self.nearest(w / 2, h / 2, w, h, rho);
        // With q = s − ρ rounded to xs and o = s − xs, the heatmap now sits at xs − q = ρ − o
        // (clamped: past the maps' edge the rounding is not free).
        [(rho[0] - ox).clamp(-0.5, 0.5), (rho[1] - oy).clamp(-0.5, 0.5)]
    }
}

/// The rest of a whole-cell move, carried by the offset maps' state.
///
/// With the smoothing start's read-out on an offset map (one hidden unit, `s = w·h`, the output
/// gate a constant `σ(b)`, no skip), the unit's output is `v = w·h`, the running mean of the
/// map's values. An offset `logit(v)·scale` cells (lm0, snv2) moves by `−r` cells when
/// `v ← σ(logit(v) − r/scale) = v / (v + (1 − v)·e^{r/scale})`; plain offsets (`v·scale`) by
/// `v ← v − r/scale`. `h = σ(b)·tanh(c)` and `c` is small (the start keeps `tanh` linear over
/// the state's range), so `h` and `c` scale together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OffsetRest {
    /// The hidden units of the x and y offset maps, and their read-out weights `w`.
    pub unit: [usize; 2],
    pub out_w: [f32; 2],
    /// Their output gates' constant `σ(b)`: `h = σ(b)·tanh(c)`.
    pub gate: [f32; 2],
    /// 1 / (cells per stored offset unit), per axis.
    pub inv_scale: [f32; 2],
    pub logit: bool,
}

impl OffsetRest {
    /// For weights `w` on maps with offsets scaled by `scale` (cells per unit, and whether
    /// logit-encoded: [`crate::decode::offset_scale_cells`]); why not, when the read-out is not
    /// the smoothing start's on the offset maps.
    pub fn new(w: &super::ConvLstmWeights, scale: ((f32, f32), bool)) -> Result<Self, String> {
        let m = &w.meta;
        let (hd, cin, kk) = (m.hidden, m.cin, m.kernel * m.kernel);
        if cin != 3 {
            return Err("the cells transport needs offset maps (3 input channels per landmark)".into());
        }
        if hd < cin {
            return Err(format!(
                "the cells transport needs a hidden unit per input map ({hd} < {cin})"
            ));
        }
        let row = (cin + hd) * kk;
        let mut out_w = [0f32; 2];
        let mut gate = [0f32; 2];
        for (a, j) in [1usize, 2].into_iter().enumerate() {
            let ow = &w.out_w[j * hd..(j + 1) * hd];
            let o_gate = &w.gates_w[(3 * hd + j) * row..(3 * hd + j + 1) * row];
            if ow.iter().enumerate().any(|(q, v)| q != j && *v != 0.0)
                || !ow[j].is_finite()
                || ow[j] <= 0.0
                || w.skip[j] != 0.0
                || w.out_b[j] != 0.0
                || o_gate.iter().any(|v| *v != 0.0)
            {
                return Err(format!(
                    "the cells transport needs the smoothing start's read-out on offset map {j} \
                     (its own hidden unit only, no skip or bias, a constant output gate)"
                ));
            }
            out_w[a] = ow[j];
            gate[a] = super::sigmoid(w.gates_b[3 * hd + j]);
        }
        let ((sx, sy), logit) = scale;
        if !(sx > 0.0 && sy > 0.0) {
            return Err(format!("offset scale ({sx}, {sy}) is not positive"));
        }
        Ok(Self {
            unit: [1, 2],
            out_w,
            gate,
            inv_scale: [1.0 / sx, 1.0 / sy],
            logit,
        })
    }

    /// The per-cell term for a rest of `r` cells along `axis` (0: x): `e^{r/scale}`, or
    /// `r/scale` for plain offsets.
    #[inline]
    pub fn term(&self, axis: usize, r: f32) -> f32 {
        let q = r * self.inv_scale[axis];
        if self.logit {
            q.exp()
        } else {
            q
        }
    }

    /// Move the offset maps' state of one landmark: `h` and `c` are its `hd` planes of `n`
    /// cells each, `tx`/`ty` the per-cell terms ([`OffsetRest::term`]) of the same cells.
    pub fn apply(&self, h: &mut [f32], c: &mut [f32], n: usize, tx: &[f32], ty: &[f32]) {
        for (a, t) in [tx, ty].into_iter().enumerate() {
            let (u, ow, g) = (self.unit[a], self.out_w[a], self.gate[a]);
            let (h, c) = (&mut h[u * n..(u + 1) * n], &mut c[u * n..(u + 1) * n]);
            for ((h, c), t) in h.iter_mut().zip(c.iter_mut()).zip(&t[..n]) {
                if self.logit {
                    let v = (ow * *h).clamp(0.0, 1.0);
                    let f = 1.0 / (v + (1.0 - v) * t);
                    *h *= f;
                    *c *= f;
                } else {
                    *h -= t / ow;
                    *c -= t / (ow * g);
                }
            }
        }
    }
}

/// The whole-cell taps of one warp over a `w × h` map: per cell, its source cell and the
/// rest's terms for [`OffsetRest::apply`]. Allocated once per stage.
///
/// Rounding every frame on its own would leave the heatmap behind a steady motion (at half a
/// cell per frame, every frame rounds to no move, and the offsets alone would follow): so the
/// state keeps `rho`, how far its heatmap sits off the grid, and each move rounds the warped
/// position minus `rho` (error diffusion). The heatmap then stays within half a cell of the
/// face, and the offset maps, corrected by the whole rest, stay exact.
#[derive(Debug, Clone)]
pub struct CellTaps {
    src: Vec<u32>,
    tx: Vec<f32>,
    ty: Vec<f32>,
    tmp: Vec<f32>,
}

impl CellTaps {
    pub fn new(n: usize) -> Self {
        Self {
            src: vec![0; n],
            tx: vec![0.0; n],
            ty: vec![0.0; n],
            tmp: vec![0.0; n],
        }
    }

    /// Compute the taps of `warp` over a `w × h` map for a heatmap `rho` off the grid.
    pub fn set(&mut self, warp: &MapWarp, w: usize, h: usize, rho: [f32; 2], rest: &OffsetRest) {
        for i in 0..w * h {
            let (xs, ys, rx, ry) = warp.nearest(i % w, i / w, w, h, rho);
            self.src[i] = (ys * w + xs) as u32;
            (self.tx[i], self.ty[i]) = (rest.term(0, rx), rest.term(1, ry));
        }
    }

    /// Per cell, its source cell (row-major) and the rest's terms along x and y.
    pub fn taps(&self) -> (&[u32], &[f32], &[f32]) {
        (&self.src, &self.tx, &self.ty)
    }

    /// Move a whole-map state (`k` landmarks of `hd` planes of `h` and of `c`) by the taps.
    pub fn apply(&mut self, h: &mut [f32], c: &mut [f32], hd: usize, rest: &OffsetRest) {
        let n = self.src.len();
        for p in h.chunks_exact_mut(n).chain(c.chunks_exact_mut(n)) {
            for (o, &s) in self.tmp.iter_mut().zip(&self.src) {
                *o = p[s as usize];
            }
            p.copy_from_slice(&self.tmp);
        }
        for (h, c) in h.chunks_exact_mut(hd * n).zip(c.chunks_exact_mut(hd * n)) {
            rest.apply(h, c, n, &self.tx, &self.ty);
        }
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
    fn nearest_rounds_half_up_and_keeps_the_rest() {
        let close = |a: (usize, usize, f32, f32), b: (usize, usize, f32, f32)| {
            a.0 == b.0 && a.1 == b.1 && (a.2 - b.2).abs() < 1e-6 && (a.3 - b.3).abs() < 1e-6
        };
        let wp = MapWarp([1.0, 0.0, 0.5, 0.0, 1.0, -0.3]);
        let got = wp.nearest(2, 2, 8, 8, [0.0; 2]);
        assert!(close(got, (3, 2, -0.5, -0.3)), "{got:?}");
        // Beyond the maps: the edge, and no rest past it.
        let got = wp.nearest(7, 0, 8, 8, [0.0; 2]);
        assert!(close(got, (7, 0, 0.0, 0.0)), "{got:?}");
        // A heatmap already half a cell behind: this move rounds the other way.
        let got = wp.nearest(2, 2, 8, 8, [0.4, 0.0]);
        assert!(close(got, (2, 2, 0.5, -0.3)), "{got:?}");
    }

    /// A steady drift of half a cell per frame: rounding each frame alone would never move the
    /// heatmap; carrying its offset from the grid moves it every other frame, never more than
    /// half a cell behind.
    #[test]
    fn a_steady_drift_moves_the_heatmap_within_half_a_cell() {
        let wp = MapWarp([1.0, 0.0, -0.5, 0.0, 1.0, 0.0]);
        let (mut rho, mut moved) = ([0f32; 2], 0usize);
        for t in 1..=10 {
            let (xs, _, _, _) = wp.nearest(10, 10, 28, 28, rho);
            moved += 10 - xs;
            rho = wp.carried_rho(28, 28, rho);
            // The face moved 0.5·t cells; the heatmap moved `moved` and sits rho off the grid.
            let behind = 0.5 * t as f32 - moved as f32;
            assert!(
                (behind - rho[0]).abs() < 1e-5 && rho[0].abs() <= 0.5,
                "t {t}: moved {moved}, rho {rho:?}"
            );
        }
        assert_eq!(moved, 5);
    }

    /// The rest moves a logit-encoded offset by exactly −r cells, and `h` and `c` together.
    #[test]
    fn offset_rest_moves_a_logit_offset_by_the_rest() {
        let spec = crate::backbone::BackboneSpec::synthetic(1, 8, 8, true);
        let m = super::super::ConvLstmMeta::for_backbone(&spec, 4, 1);
        let w = super::super::ConvLstmWeights::smoothing(m, 0.3).unwrap();
        let scale = crate::decode::offset_scale_cells(&spec);
        let rest = OffsetRest::new(&w, scale).unwrap();
        let ((sx, _), _) = scale;
        let logit = |v: f32| (v / (1.0 - v)).ln();
        // Unit 1 (x offsets) at v = 0.6: offset logit(0.6)·sx cells.
        let (n, hd) = (1, 4);
        let v0 = 0.6f32;
        let mut h = vec![0f32; hd * n];
        let mut c = vec![0f32; hd * n];
        h[n] = v0 / rest.out_w[0];
        c[n] = (h[n] / rest.gate[0]).atanh();
        let r = 0.37;
        rest.apply(&mut h, &mut c, n, &[rest.term(0, r)], &[rest.term(1, 0.0)]);
        let v1 = rest.out_w[0] * h[n];
        let moved = logit(v1) * sx - logit(v0) * sx;
        assert!((moved + r).abs() < 1e-4, "offset moved by {moved}, not {}", -r);
        // c follows h through the output gate, to tanh's linearity at this scale.
        assert!(
            (rest.gate[0] * c[n].tanh() - h[n]).abs() < 1e-3 * h[n],
            "{} {}",
            c[n],
            h[n]
        );
        // A read-out that is not the smoothing start's is refused, by name.
        let mut all = w.clone();
        all.out_w[hd + 2] = 0.1;
        assert!(OffsetRest::new(&all, scale).unwrap_err().contains("offset map 1"));
    }

    #[test]
    fn theta_matches_grid_sample_conventions() {
        // A one-cell shift on 28 maps is 2/27 in normalised units.
        let t = MapWarp([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]).to_theta(28, 28);
        assert!((t[2] - 2.0 / 27.0).abs() < 1e-6 && t[5].abs() < 1e-6, "{t:?}");
        assert_eq!(MapWarp::IDENTITY.to_theta(28, 20), [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    }
}
