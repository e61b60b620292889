//! Accuracy and stability metrics (paper §4.1), each documented with its equation.
//!
//! Positions are in pixels; every metric is normalised by a face size so that numbers are
//! comparable across resolutions. Functions take predicted and true points already in
//! the same scheme (see [`crate::truth`] for the scheme mapping).
//!
//! # Definitions
//! - **NME** = (1/K) Σₖ ‖uₖ − ûₖ‖ / d, with d the inter-ocular distance (outer eye
//!   corners, iBUG 36–45) or the box size √(w·h) of the true landmarks' box.
//! - **NRMSE** = √((1/K) Σₖ ‖uₖ − ûₖ‖²) / d_iod (root of the mean squared error, so it
//!   weights outlying points more than NME).
//! - **AUC@L** = ∫₀ᴸ CED(e) de / L, with CED the fraction of samples with NME ≤ e;
//!   computed exactly as Σᵢ max(0, L − eᵢ) / (n·L). **FR@L** = fraction with NME > L.
//! - **MCV** (Eq. 9–10). The paper leaves the population of Eq. 9 loose, and a raw image
//!   coordinate's mean depends on where the origin is, so its CVar is meaningless. We
//!   take, per landmark k of a video, the samples xₜ = uₜ,ₖ − ûₜ,ₖ (the error vector)
//!   when truth exists, else xₜ = uₜ,ₖ − ūₜ (the point relative to the face's centroid,
//!   removing head translation). CVarₖ = √(Σₜ‖xₜ − x̄‖² / (N−1)) / d̄, where the
//!   denominator x̄ of Eq. 9 is replaced by the video's mean inter-ocular distance d̄ (the
//!   scale the spread is judged against). CVar of the video = meanₖ CVarₖ; MCV = mean
//!   over videos. Reported in percent.
//! - **MAV** (Eq. 11). AVarₖ = Σₜ ‖uₜ₊₁,ₖ − uₜ,ₖ‖² / (2(T−1)), divided by d̄² so it is
//!   resolution-free; AVar of the video = meanₖ; MAV = mean over videos, in units of
//!   (percent of IOD)².
//! - **Jitter** = mean over t ≥ 1 and k of ‖eₜ,ₖ − eₜ₋₁,ₖ‖ / dₜ, with eₜ = uₜ − ûₜ: how
//!   much the *error* moves from frame to frame, which real motion does not inflate.
//! - **Lag** = the shift s (frames) minimising the mean ‖c̃ₜ − g̃ₜ₋ₛ‖ over t, where c and g
//!   are the predicted and true face centroids and ~ removes each track's mean (a constant
//!   offset is error, not lag); g is interpolated linearly, s is searched over ±3 frames in
//!   quarter frames. Positive: the prediction follows the truth s frames late.
//! - **Bias NME** = (1/K) Σₖ ‖(1/T) Σₜ eₜ,ₖ / dₜ‖: the NME of each landmark's error averaged
//!   over the clip. By the triangle inequality no output whose errors keep those means has a
//!   lower NME, and a stabilizer that averages each point over time, carried along with the
//!   face, keeps them: so it is the NME floor of stabilizing that clip, and only a stage that
//!   corrects the backbone's own error goes below it.

pub mod eval;

use crate::geometry::{BBox, Point};

/// Inter-ocular distance between the two outer eye corners.
pub fn iod(points: &[Point], eye_corners: [usize; 2]) -> f32 {
    points[eye_corners[0]].dist(points[eye_corners[1]])
}

/// √(w·h) of the tight box around `points`.
pub fn box_size(points: &[Point]) -> f32 {
    BBox::around(points).map_or(0.0, |b| (b.width() * b.height()).max(0.0).sqrt())
}

/// Mean point-to-point error divided by `norm`.
pub fn nme(pred: &[Point], truth: &[Point], norm: f32) -> f32 {
    let n = pred.len().min(truth.len());
    if n == 0 || norm <= 0.0 {
        return f32::NAN;
    }
    pred.iter().zip(truth).map(|(p, t)| p.dist(*t)).sum::<f32>() / (n as f32 * norm)
}

/// Root-mean-square point error divided by `norm`.
pub fn nrmse(pred: &[Point], truth: &[Point], norm: f32) -> f32 {
    let n = pred.len().min(truth.len());
    if n == 0 || norm <= 0.0 {
        return f32::NAN;
    }
    (pred.iter().zip(truth).map(|(p, t)| p.dist(*t).powi(2)).sum::<f32>() / n as f32).sqrt() / norm
}

/// `(AUC@limit, FR@limit)` of a set of per-sample NMEs (NaN samples count as failures).
pub fn auc_fr(errors: &[f32], limit: f32) -> (f32, f32) {
    if errors.is_empty() {
        return (f32::NAN, f32::NAN);
    }
    let n = errors.len() as f32;
    let area: f32 = errors
        .iter()
        .map(|&e| if e.is_nan() { 0.0 } else { (limit - e).max(0.0) })
        .sum();
    let fails = errors.iter().filter(|e| e.is_nan() || **e > limit).count() as f32;
    (area / (n * limit), fails / n)
}

/// One video's per-frame predictions and, optionally, truth (same scheme, same length).
pub struct Track<'a> {
    pub pred: &'a [Vec<Point>],
    pub truth: Option<&'a [Vec<Point>]>,
    pub eye_corners: [usize; 2],
}

impl Track<'_> {
    fn mean_iod(&self) -> f32 {
        let src = self.truth.unwrap_or(self.pred);
        let v: Vec<f32> = src
            .iter()
            .map(|p| iod(p, self.eye_corners))
            .filter(|d| *d > 0.0)
            .collect();
        v.iter().sum::<f32>() / v.len().max(1) as f32
    }
    fn k(&self) -> usize {
        self.pred.first().map_or(0, |p| p.len())
    }
    /// The Eq. 9 sample of landmark k at frame t (see module docs).
    fn sample(&self, t: usize, k: usize) -> Point {
        let u = self.pred[t][k];
        match self.truth {
            Some(g) => Point::new(u.x - g[t][k].x, u.y - g[t][k].y),
            None => {
                let p = &self.pred[t];
                let n = p.len() as f32;
                let (cx, cy) = p.iter().fold((0.0, 0.0), |a, q| (a.0 + q.x, a.1 + q.y));
                Point::new(u.x - cx / n, u.y - cy / n)
            }
        }
    }
}

/// Coefficient of variation of one video (Eq. 9, averaged over landmarks), in percent.
pub fn cvar(track: &Track) -> f32 {
    let (n, k, d) = (track.pred.len(), track.k(), track.mean_iod());
    if n < 2 || k == 0 || d <= 0.0 {
        return f32::NAN;
    }
    let mut total = 0.0;
    for kk in 0..k {
        let (mx, my) = (0..n).fold((0.0, 0.0), |a, t| {
            let s = track.sample(t, kk);
            (a.0 + s.x, a.1 + s.y)
        });
        let m = Point::new(mx / n as f32, my / n as f32);
        let ss: f32 = (0..n).map(|t| track.sample(t, kk).dist(m).powi(2)).sum();
        total += (ss / (n - 1) as f32).sqrt() / d;
    }
    100.0 * total / k as f32
}

/// MCV (Eq. 10): mean CVar over videos, in percent.
pub fn mcv(tracks: &[Track]) -> f32 {
    mean(tracks.iter().map(cvar))
}

/// Allan variance of one video (Eq. 11), averaged over landmarks, in (% of IOD)².
pub fn avar(track: &Track) -> f32 {
    let (t_len, k, d) = (track.pred.len(), track.k(), track.mean_iod());
    if t_len < 2 || k == 0 || d <= 0.0 {
        return f32::NAN;
    }
    let mut total = 0.0;
    for kk in 0..k {
        let s: f32 = (0..t_len - 1)
            .map(|t| track.pred[t + 1][kk].dist(track.pred[t][kk]).powi(2))
            .sum();
        total += s / (2.0 * (t_len - 1) as f32);
    }
    1e4 * total / (k as f32 * d * d)
}

/// MAV: mean Allan variance over videos.
pub fn mav(tracks: &[Track]) -> f32 {
    mean(tracks.iter().map(avar))
}

/// Jitter of the error: mean ‖eₜ − eₜ₋₁‖ / IODₜ over frames t ≥ 1 and landmarks.
/// Without truth the error is the position itself (raw frame-to-frame displacement).
pub fn jitter(track: &Track) -> f32 {
    let (n, k) = (track.pred.len(), track.k());
    if n < 2 || k == 0 {
        return f32::NAN;
    }
    let mut acc = 0.0;
    let mut cnt = 0usize;
    for t in 1..n {
        let d = iod(track.truth.map_or(&track.pred[t], |g| &g[t]), track.eye_corners);
        if d <= 0.0 {
            continue;
        }
        for kk in 0..k {
            let e = |tt: usize| {
                let u = track.pred[tt][kk];
                track
                    .truth
                    .map_or(u, |g| Point::new(u.x - g[tt][kk].x, u.y - g[tt][kk].y))
            };
            acc += e(t).dist(e(t - 1)) / d;
            cnt += 1;
        }
    }
    if cnt == 0 {
        f32::NAN
    } else {
        acc / cnt as f32
    }
}

/// Bias NME (module docs): the NME of each landmark's clip-mean error. NaN without truth or
/// frames.
pub fn bias_nme(track: &Track) -> f32 {
    let k = track.k();
    let Some(truth) = track.truth else { return f32::NAN };
    let mut sum = vec![Point::default(); k];
    let mut frames = 0usize;
    for (pred, truth) in track.pred.iter().zip(truth) {
        let d = iod(truth, track.eye_corners);
        if d <= 0.0 {
            continue;
        }
        for ((acc, u), g) in sum.iter_mut().zip(pred).zip(truth) {
            *acc = Point::new(acc.x + (u.x - g.x) / d, acc.y + (u.y - g.y) / d);
        }
        frames += 1;
    }
    if frames == 0 || k == 0 {
        return f32::NAN;
    }
    sum.iter().map(|e| e.x.hypot(e.y)).sum::<f32>() / (k * frames) as f32
}

/// Lag of the prediction behind the truth, in frames (module docs). NaN without truth, on
/// clips shorter than 12 frames, or when the true centroid moves less than 1% of the IOD
/// (there is no motion to lag behind).
pub fn lag(track: &Track) -> f32 {
    const MAX: usize = 3;
    let Some(truth) = track.truth else { return f32::NAN };
    let n = track.pred.len().min(truth.len());
    let d = track.mean_iod();
    if n < 4 * MAX || d <= 0.0 {
        return f32::NAN;
    }
    let centroid = |p: &[Point]| {
        let s = p
            .iter()
            .fold((0.0f64, 0.0f64), |a, q| (a.0 + q.x as f64, a.1 + q.y as f64));
        (s.0 / p.len().max(1) as f64, s.1 / p.len().max(1) as f64)
    };
    let demeaned = |v: Vec<(f64, f64)>| {
        let m = v.iter().fold((0.0, 0.0), |a, c| (a.0 + c.0, a.1 + c.1));
        let m = (m.0 / v.len() as f64, m.1 / v.len() as f64);
        v.into_iter().map(|c| (c.0 - m.0, c.1 - m.1)).collect::<Vec<_>>()
    };
    let c = demeaned(track.pred[..n].iter().map(|p| centroid(p)).collect());
    let g = demeaned(truth[..n].iter().map(|p| centroid(p)).collect());
    let spread = (g.iter().map(|p| p.0 * p.0 + p.1 * p.1).sum::<f64>() / n as f64).sqrt();
    if spread < 0.01 * d as f64 {
        return f32::NAN;
    }
    let mut best = (f64::INFINITY, f32::NAN);
    for q in -(4 * MAX as i32)..=(4 * MAX as i32) {
        let s = q as f64 / 4.0;
        let cost: f64 = (MAX..n - MAX)
            .map(|t| {
                let i = t as f64 - s;
                let (i0, a) = (i.floor() as usize, i - i.floor());
                let i1 = (i0 + 1).min(n - 1);
                let (gx, gy) = (g[i0].0 + a * (g[i1].0 - g[i0].0), g[i0].1 + a * (g[i1].1 - g[i0].1));
                ((c[t].0 - gx).powi(2) + (c[t].1 - gy).powi(2)).sqrt()
            })
            .sum();
        if cost < best.0 {
            best = (cost, s as f32);
        }
    }
    best.1
}

fn mean(it: impl Iterator<Item = f32>) -> f32 {
    let v: Vec<f32> = it.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        f32::NAN
    } else {
        v.iter().sum::<f32>() / v.len() as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: f32, y: f32) -> Point {
        Point::new(x, y)
    }

    #[test]
    fn nme_and_nrmse_hand_computed() {
        // Errors 3 (3-4-5 triangle gives 5) and 0 → mean 2.5, rms √12.5.
        let truth = [p(0.0, 0.0), p(10.0, 0.0)];
        let pred = [p(3.0, 4.0), p(10.0, 0.0)];
        assert!((nme(&pred, &truth, 10.0) - 0.25).abs() < 1e-6);
        assert!((nrmse(&pred, &truth, 10.0) - 12.5f32.sqrt() / 10.0).abs() < 1e-6);
        assert!((iod(&truth, [0, 1]) - 10.0).abs() < 1e-6);
        assert!((box_size(&[p(0.0, 0.0), p(4.0, 9.0)]) - 6.0).abs() < 1e-6);
    }

    /// A constant error plus a fluctuation that averages out: the bias NME is the constant's,
    /// below the NME, and without the fluctuation the two agree.
    #[test]
    fn bias_nme_keeps_the_mean_error_and_drops_the_fluctuation() {
        let truth: Vec<Vec<Point>> = (0..4).map(|_| vec![p(0.0, 0.0), p(10.0, 0.0)]).collect();
        let pred: Vec<Vec<Point>> = (0..4)
            .map(|t| {
                let wobble = if t % 2 == 0 { 2.0 } else { -2.0 };
                vec![p(1.0, wobble), p(11.0, -wobble)]
            })
            .collect();
        let track = Track {
            pred: &pred,
            truth: Some(&truth),
            eye_corners: [0, 1],
        };
        // Each point's mean error is (1, 0), a tenth of the IOD; every frame's is √5 px.
        assert!((bias_nme(&track) - 0.1).abs() < 1e-6, "{}", bias_nme(&track));
        let nme_mean = pred.iter().zip(&truth).map(|(u, g)| nme(u, g, 10.0)).sum::<f32>() / 4.0;
        assert!((nme_mean - 5f32.sqrt() / 10.0).abs() < 1e-6);
        let still: Vec<Vec<Point>> = (0..4).map(|_| vec![p(1.0, 0.0), p(11.0, 0.0)]).collect();
        let track = Track {
            pred: &still,
            truth: Some(&truth),
            eye_corners: [0, 1],
        };
        assert!((bias_nme(&track) - 0.1).abs() < 1e-6);
        assert!(bias_nme(&Track { truth: None, ..track }).is_nan());
    }

    #[test]
    fn auc_and_failure_rate_hand_computed() {
        // L = 0.1: errors 0 (area .1), 0.05 (area .05), 0.2 (0, fails) → AUC = .15/.3 = 0.5, FR = 1/3.
        let (auc, fr) = auc_fr(&[0.0, 0.05, 0.2], 0.1);
        assert!((auc - 0.5).abs() < 1e-6 && (fr - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn cvar_mav_jitter_hand_computed() {
        // One landmark pair (eye corners 10 px apart) plus a third point that alternates ±1 px in x.
        let frames: Vec<Vec<Point>> = (0..4)
            .map(|t| {
                vec![
                    p(0.0, 0.0),
                    p(10.0, 0.0),
                    p(5.0 + if t % 2 == 0 { 1.0 } else { -1.0 }, 5.0),
                ]
            })
            .collect();
        let truth: Vec<Vec<Point>> = (0..4).map(|_| vec![p(0.0, 0.0), p(10.0, 0.0), p(5.0, 5.0)]).collect();
        let tr = Track {
            pred: &frames,
            truth: Some(&truth),
            eye_corners: [0, 1],
        };
        // Point 3's errors: +1, −1, +1, −1 → mean 0, Σ‖·‖² = 4, /(N−1)=4/3 → σ = 1.1547; /10 → 0.11547.
        // Points 1, 2: 0. Mean over 3 landmarks, in percent: 100·0.11547/3 = 3.849.
        assert!(
            (cvar(&tr) - 100.0 * (4.0f32 / 3.0).sqrt() / 10.0 / 3.0).abs() < 1e-4,
            "{}",
            cvar(&tr)
        );
        // Allan: point 3 moves 2 px each of 3 steps: Σ = 12, /(2·3) = 2; mean over 3 landmarks = 2/3;
        // /IOD² = 2/300 → ×1e4 = 66.67.
        assert!((avar(&tr) - 1e4 * (2.0 / 3.0) / 100.0).abs() < 1e-3, "{}", avar(&tr));
        // Jitter: point 3's error changes by 2 every step → 2/10; others 0 → mean 0.2/3.
        assert!((jitter(&tr) - 0.2 / 3.0).abs() < 1e-6);
        assert!((mcv(&[tr]) - 100.0 * (4.0f32 / 3.0).sqrt() / 30.0).abs() < 1e-4);
    }

    #[test]
    fn cvar_without_truth_ignores_head_translation() {
        // A rigid face translating 5 px per frame: zero dispersion once the centroid is removed.
        let frames: Vec<Vec<Point>> = (0..5)
            .map(|t| {
                let d = 5.0 * t as f32;
                vec![p(d, 0.0), p(10.0 + d, 0.0), p(5.0 + d, 8.0)]
            })
            .collect();
        let tr = Track {
            pred: &frames,
            truth: None,
            eye_corners: [0, 1],
        };
        assert!(cvar(&tr).abs() < 1e-4);
    }

    #[test]
    fn lag_finds_a_known_delay() {
        // A face swaying sinusoidally; the prediction is the truth 1.5 frames late, plus a
        // constant offset (error, not lag).
        let face = |t: f32| -> Vec<Point> {
            let x = 20.0 * (t * 0.2).sin();
            (0..10)
                .map(|k| p(100.0 + x + 10.0 * k as f32, 50.0 + 5.0 * (k % 3) as f32))
                .collect()
        };
        let truth: Vec<Vec<Point>> = (0..60).map(|t| face(t as f32)).collect();
        let late: Vec<Vec<Point>> = (0..60)
            .map(|t| face(t as f32 - 1.5).iter().map(|q| p(q.x + 3.0, q.y)).collect())
            .collect();
        let track = |pred| Track {
            pred,
            truth: Some(&truth),
            eye_corners: [0, 9],
        };
        assert_eq!(lag(&track(&late)), 1.5);
        assert_eq!(lag(&track(&truth)), 0.0);
        // A still face has nothing to lag behind.
        let still: Vec<Vec<Point>> = (0..60).map(|_| face(0.0)).collect();
        assert!(lag(&Track {
            pred: &still,
            truth: Some(&still),
            eye_corners: [0, 9],
        })
        .is_nan());
    }
}
