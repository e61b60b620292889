//! The face's rigid image motion between two frames, measured on its pixels.
//!
//! A point filter cannot tell a shake of the whole face from landmark noise: both are
//! frame-to-frame motion of the points. Smoothing hard enough to remove the noise lags behind
//! the shake, which *adds* error jitter under road vibration. The face's pixels tell the two
//! apart: registering the previous frame's face region onto this frame gives the rigid motion
//! from over a thousand pixels, far more precisely than the landmarks' own motion. A filter
//! then carries its state along with that motion and smooths only what is left
//! ([`crate::stabilizer`]): noise, and non-rigid motion such as speech.
//!
//! The registration is Lucas–Kanade (inverse compositional, Baker & Matthews 2004) of a
//! [`GRID`]² luma template on a similarity (shift, roll, scale), with a brightness offset and
//! Huber weights so that blinks, speech and specular spots count less. It starts from the
//! similarity fitted to the raw landmarks, so it only has to refine by a pixel or two, and it
//! is refused (the filter then runs uncompensated) when it does not converge, loses the frame
//! or disagrees with the landmarks by more than [`MAX_DISAGREEMENT`] of the face size. Each
//! parameter is then shrunk by its signal-to-noise ratio, so that a still face's registration
//! noise does not pass into the output.
//!
//! Everything is in fixed arrays: a track allocates its [`FaceMotion`] once.

use super::MAX_POINTS;
use crate::frame::{luma_x256, Frame};
use crate::geometry::{BBox, Point, Similarity};

/// Side of the sampling grid over the face region.
pub const GRID: usize = 32;
const N: usize = GRID * GRID;
/// Part of the landmark box's mean side the grid covers: the face's interior, with little
/// background (which moves differently) at its corners.
const COVER: f32 = 0.8;
/// Gauss–Newton iterations at most, and the update (in grid cells) that counts as converged.
const MAX_ITER: usize = 20;
const CONVERGED: f64 = 0.02;
/// Largest difference, as a fraction of the face size, between the registered motion and the
/// landmarks' own motion at the face box's corners. The landmarks' similarity is noisy: in low
/// light its roll alone moves the corners by several percent (at 6%, most of einstein
/// low-light's frames were refused). Beyond 15% the registration has locked onto something
/// else (a hand, the background).
pub const MAX_DISAGREEMENT: f32 = 0.15;
/// Huber threshold in robust standard deviations.
const HUBER: f32 = 1.345;
/// The residuals of neighbouring cells share pixels (taps and bilinear footprints overlap), so
/// the covariance `σ²·H⁻¹`, which assumes independent cells, is optimistic by about this
/// factor. Measured on `scripts/stability.sh`: 1 → 4 lowers still-face jitter by 20% and
/// changes no other row; 16 starts to cost slow and vibration rows.
const VAR_SCALE: f64 = 4.0;

/// Registration state of one track: the previous frame's face template and landmarks.
#[derive(Debug, Clone)]
pub struct FaceMotion {
    template: [f32; N],
    gx: [f32; N],
    gy: [f32; N],
    warped: [f32; N],
    /// Grid centre (image px) and step (px per cell) of the template.
    centre: Point,
    step: f32,
    prev: [Point; MAX_POINTS],
    n: usize,
    valid: bool,
    /// Registrations tried and refused since the track started (summed into the pipeline's
    /// stats, which `track` and `bench` report).
    pub tried: u64,
    pub refused: u64,
}

impl Default for FaceMotion {
    fn default() -> Self {
        Self {
            template: [0.0; N],
            gx: [0.0; N],
            gy: [0.0; N],
            warped: [0.0; N],
            centre: Point::default(),
            step: 1.0,
            prev: [Point::default(); MAX_POINTS],
            n: 0,
            valid: false,
            tried: 0,
            refused: 0,
        }
    }
}

/// Rec.601 luma at a continuous position, bilinear; `None` outside the frame.
#[inline]
fn luma(f: &Frame, x: f32, y: f32) -> Option<f32> {
    if !(x >= 0.0 && y >= 0.0 && x <= (f.width - 1) as f32 && y <= (f.height - 1) as f32) {
        return None;
    }
    let (x0, y0) = (x as usize, y as usize);
    let (x1, y1) = ((x0 + 1).min(f.width - 1), (y0 + 1).min(f.height - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    // Integer Rec.601 weights (×256): a quarter of the cost of per-channel float products.
    let l = |xx: usize, yy: usize| {
        let i = 3 * (yy * f.width + xx);
        luma_x256(f.data[i], f.data[i + 1], f.data[i + 2]) as f32
    };
    let (a, b, c, d) = (l(x0, y0), l(x1, y0), l(x0, y1), l(x1, y1));
    let top = a + fx * (b - a);
    let bottom = c + fx * (d - c);
    Some((top + fy * (bottom - top)) * (1.0 / 256.0))
}

/// Luma averaged over a footprint of about one grid cell, so a grid coarser than the pixels does
/// not alias: two bilinear taps on the cell's diagonal. Four taps (2×2) gave the same stability
/// bench within 3% and cost 1.7× as much (`cargo bench --bench stages -- face_registration`:
/// 143 against 82 µs).
#[inline]
fn cell(f: &Frame, p: Point, q: f32) -> Option<f32> {
    Some(0.5 * (luma(f, p.x - q, p.y - q)? + luma(f, p.x + q, p.y + q)?))
}

/// Centred grid coordinate of cell index `i` along one axis.
#[inline]
fn g(i: usize) -> f32 {
    i as f32 - (GRID - 1) as f32 / 2.0
}

/// Solve the 4×4 symmetric system `h·x = b` (Gaussian elimination with partial pivoting);
/// `None` when it is singular (a flat patch).
fn solve4(mut h: [[f64; 4]; 4], mut b: [f64; 4]) -> Option<[f64; 4]> {
    for c in 0..4 {
        let p = (c..4).max_by(|&i, &j| h[i][c].abs().total_cmp(&h[j][c].abs()))?;
        if h[p][c].abs() < 1e-9 {
            return None;
        }
        h.swap(c, p);
        b.swap(c, p);
        for r in c + 1..4 {
            let f = h[r][c] / h[c][c];
            let pivot = h[c];
            for (v, p) in h[r].iter_mut().zip(pivot).skip(c) {
                *v -= f * p;
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = [0.0; 4];
    for c in (0..4).rev() {
        let s: f64 = (c + 1..4).map(|k| h[c][k] * x[k]).sum();
        x[c] = (b[c] - s) / h[c][c];
    }
    Some(x)
}

impl FaceMotion {
    pub fn new() -> Self {
        Self::default()
    }

    /// The similarity that carries the previous frame's face onto `frame`'s, whose raw
    /// landmarks are `points`; then this frame becomes the template for the next call.
    /// `None` on a track's first frame, and when the registration is refused.
    pub fn step(&mut self, frame: &Frame, points: &[Point]) -> Option<Similarity> {
        let n = points.len().min(MAX_POINTS);
        let out = if self.valid && self.n == n && n >= 2 {
            self.tried += 1;
            let w = self.register(frame, &points[..n]);
            if w.is_none() {
                self.refused += 1;
            }
            w
        } else {
            None
        };
        self.store(frame, &points[..n]);
        out
    }

    /// Sample the template around `points` and its gradients.
    fn store(&mut self, frame: &Frame, points: &[Point]) {
        self.valid = false;
        let Some(b) = BBox::around(points) else { return };
        let side = (b.width().max(1.0) * b.height().max(1.0)).sqrt();
        self.centre = b.center();
        self.step = COVER * side / GRID as f32;
        self.n = points.len();
        self.prev[..self.n].copy_from_slice(points);
        let q = 0.25 * self.step;
        for j in 0..GRID {
            for i in 0..GRID {
                let p = Point::new(self.centre.x + self.step * g(i), self.centre.y + self.step * g(j));
                // Cells off the frame (a face at its edge) are NaN and never used.
                self.template[j * GRID + i] = cell(frame, p, q).unwrap_or(f32::NAN);
            }
        }
        // Gradients in grid units; the border ring, and cells next to one off the frame, keep
        // zero gradient (unused).
        for j in 0..GRID {
            for i in 0..GRID {
                let k = j * GRID + i;
                let inner = i > 0 && j > 0 && i + 1 < GRID && j + 1 < GRID;
                let t = &self.template;
                (self.gx[k], self.gy[k]) = if inner
                    && t[k - GRID - 1..=k - GRID + 1]
                        .iter()
                        .chain(&t[k - 1..=k + 1])
                        .chain(&t[k + GRID - 1..=k + GRID + 1])
                        .all(|v| v.is_finite())
                {
                    // Sobel: the cross-smoothing keeps sensor noise out of the Hessian, which
                    // would otherwise shrink every step (measured: 12+ iterations in low light).
                    (
                        0.125
                            * (2.0 * (t[k + 1] - t[k - 1]) + t[k + 1 - GRID] - t[k - 1 - GRID] + t[k + 1 + GRID]
                                - t[k - 1 + GRID]),
                        0.125
                            * (2.0 * (t[k + GRID] - t[k - GRID]) + t[k + GRID - 1] - t[k - GRID - 1] + t[k + GRID + 1]
                                - t[k - GRID + 1]),
                    )
                } else {
                    (0.0, 0.0)
                };
            }
        }
        self.valid = true;
    }

    /// Register the template onto `frame`, starting from the landmarks' own similarity.
    fn register(&mut self, frame: &Frame, points: &[Point]) -> Option<Similarity> {
        let lm = Similarity::fit(&self.prev[..points.len()], points)?;
        let (c, s) = (self.centre, self.step);
        // The warp in centred grid units: V(u) = m·u + t, with W(x) = c + s·V((x − c)/s).
        let (mut mr, mut mi) = (lm.a as f64, lm.b as f64);
        let at_c = lm.apply(c);
        let (mut tx, mut ty) = (((at_c.x - c.x) / s) as f64, ((at_c.y - c.y) / s) as f64);
        let q = 0.25 * s;
        let mut converged = false;
        // The last iteration's Hessian and residual variance: the estimate's covariance.
        let (mut last_h, mut sigma2) = ([[0.0f64; 4]; 4], 0.0f64);
        for _ in 0..MAX_ITER {
            // Warp this frame onto the grid; residuals against the template.
            let mut bias = 0.0f64;
            let mut count = 0usize;
            for j in 1..GRID - 1 {
                for i in 1..GRID - 1 {
                    let (u, v) = (g(i) as f64, g(j) as f64);
                    let p = Point::new(
                        c.x + s * (mr * u - mi * v + tx) as f32,
                        c.y + s * (mi * u + mr * v + ty) as f32,
                    );
                    let k = j * GRID + i;
                    self.warped[k] = cell(frame, p, q).map_or(f32::NAN, |w| w - self.template[k]);
                    if self.warped[k].is_finite() {
                        bias += self.warped[k] as f64;
                        count += 1;
                    }
                }
            }
            // Most of the face must stay in view.
            if count < (GRID - 2) * (GRID - 2) * 3 / 4 {
                return None;
            }
            let bias = (bias / count as f64) as f32;
            let mut spread = 0.0f64;
            for j in 1..GRID - 1 {
                for i in 1..GRID - 1 {
                    let r = self.warped[j * GRID + i] - bias;
                    if r.is_finite() {
                        spread += r.abs() as f64;
                    }
                }
            }
            // Mean absolute residual × 1.25 ≈ σ for Gaussian residuals.
            let huber = (HUBER as f64 * 1.25 * spread / count as f64).max(1e-3);
            sigma2 = 0.0;
            let mut h = [[0.0f64; 4]; 4];
            let mut rhs = [0.0f64; 4];
            for j in 1..GRID - 1 {
                for i in 1..GRID - 1 {
                    let k = j * GRID + i;
                    let r = (self.warped[k] - bias) as f64;
                    if !r.is_finite() {
                        continue;
                    }
                    let w = if r.abs() <= huber { 1.0 } else { huber / r.abs() };
                    sigma2 += w * r * r;
                    let (u, v) = (g(i) as f64, g(j) as f64);
                    let (gx, gy) = (self.gx[k] as f64, self.gy[k] as f64);
                    let sd = [gx * u + gy * v, gy * u - gx * v, gx, gy];
                    for a in 0..4 {
                        rhs[a] += w * sd[a] * r;
                        for b in a..4 {
                            h[a][b] += w * sd[a] * sd[b];
                        }
                    }
                }
            }
            // Mirror the upper triangle.
            for (a, b) in [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)] {
                h[a][b] = h[b][a];
            }
            sigma2 /= (count - 4) as f64;
            last_h = h;
            let d = solve4(h, rhs)?;
            // Inverse compositional: V ← V ∘ ΔV⁻¹ with ΔV(u) = (1 + d0 + i·d1)·u + (d2 + i·d3),
            // i.e. m ← m / mδ and t ← t − m·tδ / mδ (complex arithmetic).
            let (dr, di) = (1.0 + d[0], d[1]);
            let den = dr * dr + di * di;
            if den < 1e-6 {
                return None;
            }
            let (nr, ni) = ((mr * dr + mi * di) / den, (mi * dr - mr * di) / den);
            tx -= nr * d[2] - ni * d[3];
            ty -= nr * d[3] + ni * d[2];
            (mr, mi) = (nr, ni);
            let corner = (GRID / 2) as f64;
            let upd = d[2].abs() + d[3].abs() + corner * (d[0].abs() + d[1].abs());
            if upd < CONVERGED {
                converged = true;
                break;
            }
        }
        if !converged {
            return None;
        }
        // Shrink each parameter by its signal-to-noise ratio p²/(p² + var), var = σ²·(H⁻¹)ᵢᵢ.
        // A still face's registration is pure noise (~0.05 px) and would pass straight into
        // the output; real motion is far above the noise and passes whole.
        let mut p = [mr - 1.0, mi, tx, ty];
        for (i, v) in p.iter_mut().enumerate() {
            let mut e = [0.0; 4];
            e[i] = 1.0;
            let var = VAR_SCALE * sigma2 * solve4(last_h, e)?[i];
            *v *= *v * *v / (*v * *v + var).max(1e-30);
        }
        let [mr, mi, tx, ty] = p;
        let (mr, mi) = (1.0 + mr as f32, mi as f32);
        // Back to image coordinates: W(x) = m·x + (c − m·c + s·t).
        let w = Similarity {
            a: mr,
            b: mi,
            tx: c.x - (mr * c.x - mi * c.y) + s * tx as f32,
            ty: c.y - (mi * c.x + mr * c.y) + s * ty as f32,
        };
        let scale = (mr * mr + mi * mi).sqrt();
        if !(0.8..1.25).contains(&scale) {
            return None;
        }
        // It must agree with the landmarks at the corners of the face box.
        let b = BBox::around(&self.prev[..points.len()])?;
        let side = (b.width().max(1.0) * b.height().max(1.0)).sqrt();
        let corners = [
            Point::new(b.x0, b.y0),
            Point::new(b.x1, b.y0),
            Point::new(b.x0, b.y1),
            Point::new(b.x1, b.y1),
        ];
        let worst = corners
            .iter()
            .map(|&p| w.apply(p).dist(lm.apply(p)))
            .fold(0.0f32, f32::max);
        (worst <= MAX_DISAGREEMENT * side).then_some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth random texture (Gaussian blobs of 3–9 px), seen through `w`: the pixel at `x`
    /// shows the texture at `w⁻¹(x)`.
    fn texture(seed: u64, w: Similarity) -> Frame {
        let mut s = seed;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 10_000) as f32 / 10_000.0
        };
        let blobs: Vec<(f32, f32, f32, f32)> = (0..120)
            .map(|_| {
                (
                    20.0 + 160.0 * next(),
                    20.0 + 160.0 * next(),
                    3.0 + 6.0 * next(),
                    160.0 * next() - 80.0,
                )
            })
            .collect();
        let det = w.a * w.a + w.b * w.b;
        let mut f = Frame::new(200, 200);
        for y in 0..200 {
            for x in 0..200 {
                // w⁻¹(x) = conj(m)·(x − t) / |m|².
                let (dx, dy) = (x as f32 - w.tx, y as f32 - w.ty);
                let (u, v) = ((w.a * dx + w.b * dy) / det, (w.a * dy - w.b * dx) / det);
                let val: f32 = blobs
                    .iter()
                    .map(|&(bx, by, r, c)| c * (-((u - bx).powi(2) + (v - by).powi(2)) / (2.0 * r * r)).exp())
                    .sum();
                let i = 3 * (y * 200 + x);
                f.data[i..i + 3].fill((128.0 + val).clamp(0.0, 255.0) as u8);
            }
        }
        f
    }

    /// 30 points on an ellipse: a face-sized landmark set.
    fn ring() -> Vec<Point> {
        (0..30)
            .map(|k| {
                let a = k as f32 * std::f32::consts::TAU / 30.0;
                Point::new(100.0 + 45.0 * a.cos(), 100.0 + 55.0 * a.sin())
            })
            .collect()
    }

    #[test]
    fn registration_recovers_a_known_similarity_better_than_noisy_landmarks() {
        let truth = Similarity {
            a: 1.02 * 1.5f32.to_radians().cos(),
            b: 1.02 * 1.5f32.to_radians().sin(),
            tx: 0.0,
            ty: 0.0,
        };
        // Rotate and scale about the face centre, then shift by (2.3, −1.7).
        let c = truth.apply(Point::new(100.0, 100.0));
        let truth = Similarity {
            tx: 100.0 - c.x + 2.3,
            ty: 100.0 - c.y - 1.7,
            ..truth
        };
        let (f0, f1) = (texture(7, Similarity::IDENTITY), texture(7, truth));
        let p0 = ring();
        // The landmarks carry ±2 px of noise, as a backbone's do in low light.
        let mut seed = 5u64;
        let mut noise = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 4001) as f32 / 1000.0 - 2.0
        };
        let p1: Vec<Point> = p0
            .iter()
            .map(|&p| {
                let q = truth.apply(p);
                Point::new(q.x + noise(), q.y + noise())
            })
            .collect();
        let mut m = FaceMotion::new();
        assert!(m.step(&f0, &p0).is_none(), "no motion on a track's first frame");
        let w = m.step(&f1, &p1).expect("registration refused");
        let err = |s: &Similarity| {
            p0.iter()
                .map(|&p| s.apply(p).dist(truth.apply(p)))
                .fold(0.0f32, f32::max)
        };
        let landmarks = Similarity::fit(&p0, &p1).unwrap();
        assert!(err(&w) < 0.05, "registered motion off by {} px", err(&w));
        assert!(err(&landmarks) > 0.2, "the landmarks alone: {} px", err(&landmarks));
        assert_eq!((m.tried, m.refused), (1, 0));
    }

    #[test]
    fn registration_is_refused_on_another_scene_or_a_flat_one() {
        let p = ring();
        let mut m = FaceMotion::new();
        m.step(&texture(7, Similarity::IDENTITY), &p);
        // Same landmarks, unrelated pixels (a hand in front of the face): no motion.
        assert!(m.step(&texture(99, Similarity::IDENTITY), &p).is_none());
        // Nothing to register on.
        let mut flat = Frame::new(200, 200);
        flat.data.fill(90);
        assert!(m.step(&flat, &p).is_none());
        assert!(m.step(&flat, &p).is_none());
        assert_eq!((m.tried, m.refused), (3, 3));
    }
}
