//! The Jitter loss of §3.2, with the gradients a trainer needs.
//!
//! For one landmark and two adjacent frames `t−1`, `t`:
//! - **Eq. 7**, the pixel loss (Geman–McClure): `L_pixel = mean_ij (s − ŝ)² / ((s − ŝ)² + Θ²)`
//!   over the heatmap's pixels ([`pixel_loss`]);
//! - **Eq. 6**, `u_t = PostProcessing(s_t)`: PDC made differentiable ([`soft_pdc`]): the
//!   centroid of `max(s − Θ_PDC·max s, 0)`, with the threshold held constant for the gradient
//!   (it moves only with the peak, which the centroid already follows);
//! - **Eq. 3** (≡ Eq. 4), the modulation: `Ψ = min(‖e_t − e_{t−1}‖ / (‖û_t − û_{t−1}‖ + ξ), Θ)`
//!   with `e = u − û` ([`psi`]);
//! - **Eq. 2**: `L_Jitter = Ψ · L_pixel(s_t, ŝ_t)` ([`jitter_loss`]).
//!
//! Eq. 2 alone is zero for a prediction whose error is constant over time however large it is;
//! the paper's Eq. 8 reads the loss as `λ·L_pixel + ‖e_t − e_{t−1}‖·L_pixel`, so
//! [`JitterParams::lambda`] adds that floor: `Ψ' = λ + Ψ` (`λ = 0` is Eq. 2 exactly).
//!
//! Coordinates are heatmap cells (`x` = column, `y` = row); ξ is in cells too.

/// Θ, ξ, Θ_PDC and λ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterParams {
    /// Θ: the jitter threshold (Eq. 3's cap) and the pixel loss's scale (Eq. 7). Paper: 1.
    pub theta: f32,
    /// ξ: keeps Eq. 3 finite when the true landmark does not move (cells).
    pub xi: f32,
    /// Θ_PDC: PDC's threshold as a fraction of the heatmap's peak. Paper: 0.2.
    pub theta_pdc: f32,
    /// λ: Eq. 8's weight of the plain pixel loss (0: Eq. 2 exactly).
    pub lambda: f32,
}

impl Default for JitterParams {
    fn default() -> Self {
        Self {
            theta: 1.0,
            xi: 0.1,
            theta_pdc: 0.2,
            lambda: 1.0,
        }
    }
}

/// Eq. 7 averaged over the pixels of one heatmap; with `grad`, adds `∂L/∂s` into it.
pub fn pixel_loss(s: &[f32], gt: &[f32], theta: f32, grad: Option<&mut [f32]>) -> f32 {
    let n = s.len().max(1) as f32;
    let t2 = theta * theta;
    let mut sum = 0.0;
    let mut g = grad;
    for (i, (&a, &b)) in s.iter().zip(gt).enumerate() {
        let d = a - b;
        let d2 = d * d;
        sum += d2 / (d2 + t2);
        if let Some(g) = g.as_deref_mut() {
            // d/dd [d²/(d²+Θ²)] = 2dΘ²/(d²+Θ²)².
            g[i] += 2.0 * d * t2 / ((d2 + t2) * (d2 + t2)) / n;
        }
    }
    sum / n
}

/// Eq. 6 through differentiable PDC on a `w`×`h` heatmap: the landmark `(x, y)` in cells and,
/// with `jac`, `∂x/∂s` and `∂y/∂s` per pixel (`jac[0]`, `jac[1]`, each `w·h` long).
pub fn soft_pdc(s: &[f32], w: usize, h: usize, theta_pdc: f32, jac: Option<[&mut [f32]; 2]>) -> [f32; 2] {
    let peak = s.iter().copied().fold(f32::MIN, f32::max);
    let tau = theta_pdc * peak;
    let (mut sw, mut sx, mut sy) = (0.0f32, 0.0f32, 0.0f32);
    for r in 0..h {
        for c in 0..w {
            let v = (s[r * w + c] - tau).max(0.0);
            sw += v;
            sx += v * c as f32;
            sy += v * r as f32;
        }
    }
    if sw <= 0.0 {
        // A flat map: no centroid; the peak's cell (first) and no gradient.
        let i = s.iter().position(|&v| v == peak).unwrap_or(0);
        return [(i % w.max(1)) as f32, (i / w.max(1)) as f32];
    }
    let (ux, uy) = (sx / sw, sy / sw);
    if let Some([jx, jy]) = jac {
        for r in 0..h {
            for c in 0..w {
                let i = r * w + c;
                let on = s[i] > tau;
                jx[i] = if on { (c as f32 - ux) / sw } else { 0.0 };
                jy[i] = if on { (r as f32 - uy) / sw } else { 0.0 };
            }
        }
    }
    [ux, uy]
}

/// Eq. 3: `Ψ` and `∂Ψ/∂e_t` (`∂Ψ/∂e_{t−1}` is its negative; 0 where Ψ is capped at Θ).
pub fn psi(e_t: [f32; 2], e_prev: [f32; 2], truth_move: [f32; 2], p: &JitterParams) -> (f32, [f32; 2]) {
    let d = [e_t[0] - e_prev[0], e_t[1] - e_prev[1]];
    let nd = (d[0] * d[0] + d[1] * d[1]).sqrt();
    let den = (truth_move[0] * truth_move[0] + truth_move[1] * truth_move[1]).sqrt() + p.xi;
    let raw = nd / den;
    if raw >= p.theta {
        return (p.theta, [0.0; 2]);
    }
    let g = if nd > 0.0 {
        [d[0] / (nd * den), d[1] / (nd * den)]
    } else {
        [0.0; 2]
    };
    (raw, g)
}

/// One landmark's heatmaps in two adjacent frames, predicted and true, with the true points.
pub struct Pair<'a> {
    pub w: usize,
    pub h: usize,
    pub s_t: &'a [f32],
    pub s_prev: &'a [f32],
    pub gt_t: &'a [f32],
    /// True landmark positions (cells) at `t` and `t−1`.
    pub u_gt_t: [f32; 2],
    pub u_gt_prev: [f32; 2],
}

/// Both halves of a Jacobian buffer (`None` when it is empty: no gradient wanted).
fn halves(v: &mut [f32], n: usize) -> Option<[&mut [f32]; 2]> {
    if v.is_empty() {
        return None;
    }
    let (a, b) = v.split_at_mut(n);
    Some([a, b])
}

/// Eq. 2 (with Eq. 8's λ floor) for one landmark; with `grads = (∂L/∂s_t, ∂L/∂s_{t−1})`, the
/// gradients are added into them.
pub fn jitter_loss(x: &Pair, p: &JitterParams, grads: Option<(&mut [f32], &mut [f32])>) -> f32 {
    let n = x.w * x.h;
    let want = grads.is_some();
    let (mut jt, mut jp) = (
        vec![0.0; if want { 2 * n } else { 0 }],
        vec![0.0; if want { 2 * n } else { 0 }],
    );
    let u_t = soft_pdc(x.s_t, x.w, x.h, p.theta_pdc, halves(&mut jt, n));
    let u_p = soft_pdc(x.s_prev, x.w, x.h, p.theta_pdc, halves(&mut jp, n));
    let e_t = [u_t[0] - x.u_gt_t[0], u_t[1] - x.u_gt_t[1]];
    let e_p = [u_p[0] - x.u_gt_prev[0], u_p[1] - x.u_gt_prev[1]];
    let mv = [x.u_gt_t[0] - x.u_gt_prev[0], x.u_gt_t[1] - x.u_gt_prev[1]];
    let (psi_v, dpsi) = psi(e_t, e_p, mv, p);
    let modulation = p.lambda + psi_v;
    let Some((g_t, g_p)) = grads else {
        return modulation * pixel_loss(x.s_t, x.gt_t, p.theta, None);
    };
    let mut g_pix = vec![0.0; n];
    let lp = pixel_loss(x.s_t, x.gt_t, p.theta, Some(&mut g_pix));
    for i in 0..n {
        // ∂/∂s_t: the pixel term, plus Ψ's dependence through u_t = PDC(s_t).
        g_t[i] += modulation * g_pix[i] + lp * (dpsi[0] * jt[i] + dpsi[1] * jt[n + i]);
        // ∂/∂s_{t−1}: only through u_{t−1}, with ∂Ψ/∂e_{t−1} = −∂Ψ/∂e_t.
        g_p[i] -= lp * (dpsi[0] * jp[i] + dpsi[1] * jp[n + i]);
    }
    modulation * lp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Gaussian heatmap of σ = 1.5 cells at (x, y) on a w×h grid.
    fn blob(w: usize, h: usize, x: f32, y: f32) -> Vec<f32> {
        (0..w * h)
            .map(|i| {
                let (c, r) = ((i % w) as f32, (i / w) as f32);
                (-((c - x).powi(2) + (r - y).powi(2)) / (2.0 * 1.5 * 1.5)).exp()
            })
            .collect()
    }

    #[test]
    fn eq7_by_hand() {
        // d = 1, Θ = 1: 1/2; d = 0: 0; d = 2, Θ = 1: 4/5. Mean of the three = 13/30.
        let l = pixel_loss(&[1.0, 0.5, 2.0], &[0.0, 0.5, 0.0], 1.0, None);
        assert!((l - 13.0 / 30.0).abs() < 1e-6, "{l}");
        // Gradient at d = 1, Θ = 1: 2·1·1/(2²) = 0.5, over 3 pixels.
        let mut g = [0.0; 3];
        pixel_loss(&[1.0, 0.5, 2.0], &[0.0, 0.5, 0.0], 1.0, Some(&mut g));
        assert!((g[0] - 0.5 / 3.0).abs() < 1e-6 && g[1] == 0.0, "{g:?}");
        // The gradient peaks where |d| = Θ/√3 (the inflection of Geman–McClure) and then falls.
        let gd = |d: f32| {
            let mut g = [0.0];
            pixel_loss(&[d], &[0.0], 1.0, Some(&mut g));
            g[0]
        };
        assert!(gd(0.577) > gd(0.3) && gd(0.577) > gd(1.5));
    }

    #[test]
    fn eq3_by_hand() {
        let p = JitterParams {
            theta: 1.0,
            xi: 0.0,
            ..JitterParams::default()
        };
        // Errors (1, 0) then (0, 0): inconsistency 1; the truth moved (0, 2): Ψ = 1/2.
        let (v, g) = psi([1.0, 0.0], [0.0, 0.0], [0.0, 2.0], &p);
        assert!((v - 0.5).abs() < 1e-6);
        // ∂Ψ/∂e_t = (e_t − e_{t−1}) / (‖·‖ (‖c‖ + ξ)) = (1, 0)/2.
        assert!((g[0] - 0.5).abs() < 1e-6 && g[1] == 0.0);
        // Jitter criterion (Eq. 5): inconsistency above Θ·‖c‖ is capped at Θ, with no gradient.
        let (v, g) = psi([3.0, 0.0], [0.0, 0.0], [0.0, 2.0], &p);
        assert_eq!((v, g), (1.0, [0.0, 0.0]));
        // ξ keeps a still truth finite: inconsistency 0.05 over ξ = 0.1 is 0.5.
        let (v, _) = psi([0.05, 0.0], [0.0, 0.0], [0.0, 0.0], &JitterParams { xi: 0.1, ..p });
        assert!((v - 0.5).abs() < 1e-5);
    }

    #[test]
    fn soft_pdc_finds_a_blob_and_its_gradient_matches_finite_differences() {
        let (w, h) = (12, 10);
        let s = blob(w, h, 5.3, 4.6);
        let mut jx = vec![0.0; w * h];
        let mut jy = vec![0.0; w * h];
        let u = soft_pdc(&s, w, h, 0.2, Some([&mut jx, &mut jy]));
        assert!((u[0] - 5.3).abs() < 0.1 && (u[1] - 4.6).abs() < 0.1, "{u:?}");
        let eps = 1e-3;
        for i in [5 * w + 5, 4 * w + 6, 3 * w + 4] {
            let mut a = s.clone();
            a[i] += eps;
            let mut b = s.clone();
            b[i] -= eps;
            let (ua, ub) = (soft_pdc(&a, w, h, 0.2, None), soft_pdc(&b, w, h, 0.2, None));
            let fd = [(ua[0] - ub[0]) / (2.0 * eps), (ua[1] - ub[1]) / (2.0 * eps)];
            // The peak pixel also moves the threshold, which the analytic gradient holds fixed.
            if i != 5 * w + 5 {
                assert!(
                    (fd[0] - jx[i]).abs() < 2e-3 && (fd[1] - jy[i]).abs() < 2e-3,
                    "pixel {i}: {fd:?} vs {}, {}",
                    jx[i],
                    jy[i]
                );
            }
        }
    }

    #[test]
    fn eq2_gradients_match_finite_differences() {
        let (w, h) = (12, 10);
        let p = JitterParams {
            theta: 1.0,
            xi: 0.1,
            theta_pdc: 0.2,
            lambda: 0.5,
        };
        // Predictions jitter: off by (0.8, −0.3) then (−0.4, 0.2) while the truth moves by (1, 0).
        let (gt_p, gt_t) = ([4.0, 5.0], [5.0, 5.0]);
        let s_p = blob(w, h, 4.8, 4.7);
        let s_t = blob(w, h, 4.6, 5.2);
        let gh_t = blob(w, h, gt_t[0], gt_t[1]);
        let pair = |s_t: &[f32], s_p: &[f32]| -> f32 {
            let x = Pair {
                w,
                h,
                s_t,
                s_prev: s_p,
                gt_t: &gh_t,
                u_gt_t: gt_t,
                u_gt_prev: gt_p,
            };
            jitter_loss(&x, &p, None)
        };
        let l0 = pair(&s_t, &s_p);
        assert!(l0 > 0.0);
        let (mut g_t, mut g_p) = (vec![0.0; w * h], vec![0.0; w * h]);
        let x = Pair {
            w,
            h,
            s_t: &s_t,
            s_prev: &s_p,
            gt_t: &gh_t,
            u_gt_t: gt_t,
            u_gt_prev: gt_p,
        };
        let l1 = jitter_loss(&x, &p, Some((&mut g_t, &mut g_p)));
        assert!((l0 - l1).abs() < 1e-7);
        let eps = 1e-3;
        let peaks = [
            s_t.iter().copied().fold(0.0, f32::max),
            s_p.iter().copied().fold(0.0, f32::max),
        ];
        let mut checked = 0;
        for i in (0..w * h).step_by(7) {
            for which in 0..2 {
                let base = if which == 0 { &s_t } else { &s_p };
                if base[i] == peaks[which] {
                    continue; // the peak moves PDC's threshold, which the gradient holds fixed
                }
                let mut a = base.clone();
                a[i] += eps;
                let mut b = base.clone();
                b[i] -= eps;
                let fd = if which == 0 {
                    (pair(&a, &s_p) - pair(&b, &s_p)) / (2.0 * eps)
                } else {
                    (pair(&s_t, &a) - pair(&s_t, &b)) / (2.0 * eps)
                };
                let an = if which == 0 { g_t[i] } else { g_p[i] };
                assert!(
                    (fd - an).abs() < 2e-4 + 0.02 * an.abs(),
                    "{} pixel {i}: fd {fd} vs {an}",
                    ["s_t", "s_prev"][which]
                );
                checked += 1;
            }
        }
        assert!(checked > 20);
        // A prediction that tracks the truth exactly has no jitter term: only λ·pixel remains.
        let still = Pair {
            w,
            h,
            s_t: &gh_t,
            s_prev: &blob(w, h, gt_p[0], gt_p[1]),
            gt_t: &gh_t,
            u_gt_t: gt_t,
            u_gt_prev: gt_p,
        };
        assert!(jitter_loss(&still, &p, None).abs() < 1e-6);
    }
}
