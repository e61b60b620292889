//! Temporal stabilisation of landmark positions.
//!
//! [`OneEuro`] is the One Euro filter (Casiez, Roussel & Vogel, CHI 2012): a first-order
//! low-pass whose cutoff rises with the signal's speed, so still faces are smoothed hard
//! and moving ones follow with little lag. It is the baseline the ConvLSTM stabilizer
//! must beat, and a cheap fallback. Speeds are measured in face sizes per second (the
//! landmark box's √(w·h)), so one setting works for a face of 30 px or 300 px.
//!
//! State is per track: it starts when a track starts and is dropped with it.

use crate::geometry::{Point, Similarity, MAX_POINTS};

crate::choice::choice! {
    /// The point filter after the backbone (and after the ConvLSTM, when it runs).
    pub enum PointFilter {
        None = "none",
        /// One Euro per point and coordinate.
        OneEuro = "one-euro",
        /// One Euro on the face's shape in its own frame, and on its pose.
        ShapeOneEuro = "shape-one-euro",
    }
}

/// `stabilizer.method`: the paper's ConvLSTM on the backbone's maps or not, then a point
/// filter; written `none`, `one-euro`, `shape-one-euro`, `convlstm`, `convlstm+one-euro` or
/// `convlstm+shape-one-euro`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StabilizerMethod {
    pub convlstm: bool,
    pub point: PointFilter,
}

impl StabilizerMethod {
    /// No stabilizer: the decoded points as they are.
    pub const NONE: Self = Self {
        convlstm: false,
        point: PointFilter::None,
    };

    /// Every name, the point filters alone first.
    pub const NAMES: &'static [&'static str] = &[
        "none",
        "one-euro",
        "shape-one-euro",
        "convlstm",
        "convlstm+one-euro",
        "convlstm+shape-one-euro",
    ];
}

impl std::fmt::Display for StabilizerMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.convlstm, self.point) {
            (false, p) => f.write_str(p.as_str()),
            (true, PointFilter::None) => f.write_str("convlstm"),
            (true, p) => write!(f, "convlstm+{p}"),
        }
    }
}

impl std::str::FromStr for StabilizerMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let refuse = || format!("{s:?} is not one of {}", Self::NAMES.join(", "));
        let (convlstm, point) = match s.strip_prefix("convlstm") {
            Some("") => (true, PointFilter::None),
            // `convlstm+none` would be a second name for `convlstm`.
            Some(rest) => match rest.strip_prefix('+').map(str::parse) {
                Some(Ok(p)) if p != PointFilter::None => (true, p),
                _ => return Err(refuse()),
            },
            None => (false, s.parse().map_err(|_| refuse())?),
        };
        Ok(Self { convlstm, point })
    }
}

impl serde::Serialize for StabilizerMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StabilizerMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One Euro filter parameters (Casiez et al., CHI 2012); speeds are in face sizes per second.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OneEuroParams {
    /// Cutoff (Hz) when the landmark is still: lower = smoother, more lag.
    pub min_cutoff: f32,
    /// Cutoff increase per (face size / s) of speed: higher = less lag when moving.
    pub beta: f32,
    /// Cutoff (Hz) of the speed estimate itself.
    pub d_cutoff: f32,
}

/// Defaults for the motion-compensated filter (`stabilizer.motion`, docs/stabilizers.md, "Stabilizers"),
/// chosen on `scripts/stability.sh` and the carphone clip. Rigid motion is carried by the
/// registration, so the cutoff can be low; `beta` is what keeps speech from lagging: on
/// carphone 10 gave NME 0.0492 against dlib's labels, 20 gave 0.0485 (raw 0.0469), and the
/// bench's bar still holds at 20 (not at 30). Without compensation, 1.0 / 40 lags less.
impl Default for OneEuroParams {
    fn default() -> Self {
        Self {
            min_cutoff: 0.3,
            beta: 20.0,
            d_cutoff: 1.0,
        }
    }
}

/// Smoothing factor of a first-order low-pass with cutoff `fc` at time step `dt`.
pub(crate) fn alpha(fc: f32, dt: f32) -> f32 {
    let tau = 1.0 / (2.0 * std::f32::consts::PI * fc);
    1.0 / (1.0 + tau / dt)
}

/// One Euro state for up to [`MAX_POINTS`] 2-D points.
#[derive(Debug, Clone)]
pub struct OneEuro {
    params: OneEuroParams,
    x: [Point; MAX_POINTS],
    dx: [Point; MAX_POINTS],
    last_t: Option<f64>,
}

impl OneEuro {
    pub fn new(params: OneEuroParams) -> Self {
        Self {
            params,
            x: [Point::default(); MAX_POINTS],
            dx: [Point::default(); MAX_POINTS],
            last_t: None,
        }
    }

    /// Move the state of the first `n` points with the face's measured image motion, so that
    /// the next [`apply`](Self::apply) smooths only the motion the similarity does not explain.
    pub fn carry(&mut self, motion: &Similarity, n: usize) {
        for x in &mut self.x[..n.min(MAX_POINTS)] {
            *x = motion.apply(*x);
        }
    }

    /// Filter `points` (in place) observed at time `t` seconds; `size` is the face size in px.
    pub fn apply(&mut self, points: &mut [Point], t: f64, size: f32) {
        let n = points.len().min(MAX_POINTS);
        let dt = match self.last_t {
            Some(l) if t > l => (t - l) as f32,
            // First sample, or time did not advance: pass through and (re)start.
            _ => {
                self.x[..n].copy_from_slice(&points[..n]);
                self.dx[..n].fill(Point::default());
                self.last_t = Some(t);
                return;
            }
        };
        self.last_t = Some(t);
        let p = self.params;
        let ad = alpha(p.d_cutoff, dt);
        let size = size.max(1.0);
        for (k, pt) in points.iter_mut().enumerate().take(n) {
            let raw = Point::new((pt.x - self.x[k].x) / dt, (pt.y - self.x[k].y) / dt);
            let d = Point::new(
                self.dx[k].x + ad * (raw.x - self.dx[k].x),
                self.dx[k].y + ad * (raw.y - self.dx[k].y),
            );
            self.dx[k] = d;
            let speed = (d.x * d.x + d.y * d.y).sqrt() / size;
            let a = alpha(p.min_cutoff + p.beta * speed, dt);
            let x = Point::new(
                self.x[k].x + a * (pt.x - self.x[k].x),
                self.x[k].y + a * (pt.y - self.x[k].y),
            );
            self.x[k] = x;
            *pt = x;
        }
    }
}

/// Cutoff (Hz) of the pose filter's speed estimate. One Euro's usual 1 Hz averages an
/// oscillation's signed velocity to nearly zero, so a 10 Hz shake looks still and is smoothed
/// into lag; the pose is precise enough to afford a fast speed estimate.
const POSE_D_CUTOFF: f32 = 1000.0;
/// The pose filter's `beta` relative to the shape's. The pose is precise, so its noise speed is
/// small and a higher gain costs little smoothing on still faces while following real motion
/// sooner. Chosen on `scripts/stability.sh` (docs/stabilizers.md, "Stabilizers"): 5 against 1, 10 and 20.
const POSE_BETA_GAIN: f32 = 5.0;

/// One Euro on the face's *shape* and, separately, on its pose.
///
/// Each frame's points are split into a similarity pose (centroid, RMS scale, and the roll
/// that best aligns them with the previous output shape, by 2-D Procrustes) and a shape in
/// that pose's frame; each is filtered on its own. The rationale: in a car, most fast motion is
/// rigid (road vibration, head turns), and a per-point filter lags behind it, which *adds*
/// error jitter (measured: ×3.5 on a 9–13 Hz shake). Per-point noise is mostly non-rigid, and
/// the pose, estimated from all the points at once, carries little of it, so the pose filter
/// can follow fast motion and still smooth a still face.
#[derive(Debug, Clone)]
pub struct ShapeOneEuro {
    inner: OneEuro,
    /// The pose, as two points it carries (see `apply`), with a fast speed estimate and a
    /// higher `beta`: its noise is small, so the speed-driven cutoff tells real motion (follow
    /// at once) from noise (smooth hard) far better than per point.
    pose: OneEuro,
    /// The previous output shape in canonical coordinates (centred, reference scale).
    prev: [Point; MAX_POINTS],
    /// RMS radius of the first frame: canonical coordinates are pixels at that scale.
    ref_scale: Option<f32>,
}

impl ShapeOneEuro {
    pub fn new(params: OneEuroParams) -> Self {
        Self {
            inner: OneEuro::new(params),
            pose: OneEuro::new(OneEuroParams {
                d_cutoff: POSE_D_CUTOFF,
                beta: params.beta * POSE_BETA_GAIN,
                ..params
            }),
            prev: [Point::default(); MAX_POINTS],
            ref_scale: None,
        }
    }

    /// Filter `points` (in place) observed at time `t` seconds; `size` is the face size in px.
    pub fn apply(&mut self, points: &mut [Point], t: f64, size: f32) {
        let n = points.len().min(MAX_POINTS);
        if n < 2 {
            return self.inner.apply(points, t, size);
        }
        let c = points[..n]
            .iter()
            .fold(Point::default(), |a, p| Point::new(a.x + p.x, a.y + p.y));
        let c = Point::new(c.x / n as f32, c.y / n as f32);
        let scale = (points[..n]
            .iter()
            .map(|p| (p.x - c.x).powi(2) + (p.y - c.y).powi(2))
            .sum::<f32>()
            / n as f32)
            .sqrt()
            .max(1e-3);
        let restart = self.inner.last_t.is_none_or(|l| t <= l);
        let s_ref = match self.ref_scale {
            Some(s) if !restart => s,
            _ => {
                self.ref_scale = Some(scale);
                scale
            }
        };
        let k = s_ref / scale;
        // Roll that maps this frame's centred points onto the previous output shape.
        let (mut sin, mut cos) = (0.0f32, 0.0f32);
        if !restart {
            for (p, q) in points[..n].iter().zip(&self.prev[..n]) {
                let (x, y) = ((p.x - c.x) * k, (p.y - c.y) * k);
                cos += x * q.x + y * q.y;
                sin += x * q.y - y * q.x;
            }
        }
        let phi = if restart { 0.0 } else { sin.atan2(cos) };
        let (sp, cp) = phi.sin_cos();
        let mut shape = [Point::default(); MAX_POINTS];
        for (o, p) in shape[..n].iter_mut().zip(&points[..n]) {
            let (x, y) = ((p.x - c.x) * k, (p.y - c.y) * k);
            *o = Point::new(cp * x - sp * y, sp * x + cp * y);
        }
        // Speeds in the canonical frame are in pixels at the reference scale.
        self.inner.apply(&mut shape[..n], t, size * k);
        self.prev[..n].copy_from_slice(&shape[..n]);
        // The pose as the images of the canonical points (±s_ref, 0): their midpoint is the
        // centroid, their difference gives scale and roll.
        let to_image = |x: f32, y: f32| Point::new(c.x + (cp * x + sp * y) / k, c.y + (-sp * x + cp * y) / k);
        let mut ends = [to_image(-s_ref, 0.0), to_image(s_ref, 0.0)];
        self.pose.apply(&mut ends, t, size);
        let c = Point::new((ends[0].x + ends[1].x) / 2.0, (ends[0].y + ends[1].y) / 2.0);
        let (dx, dy) = (ends[1].x - ends[0].x, ends[1].y - ends[0].y);
        let len = (dx * dx + dy * dy).sqrt().max(1e-6);
        // Image = c + (1/k)·R·X with R·(2 s_ref, 0) = (dx, dy)·k, i.e. R = [[cos, −sin], [sin, cos]].
        let k = 2.0 * s_ref / len;
        let (cr, sr) = (dx / len, dy / len);
        for (p, q) in points[..n].iter_mut().zip(&shape[..n]) {
            *p = Point::new(c.x + (cr * q.x - sr * q.y) / k, c.y + (sr * q.x + cr * q.y) / k);
        }
    }
}

/// Which stabilizer a track gets, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StabilizerKind {
    OneEuro(OneEuroParams),
    ShapeOneEuro(OneEuroParams),
}

impl StabilizerKind {
    /// The point filter of `point` with `params`; `None` for none.
    pub fn of(point: PointFilter, params: OneEuroParams) -> Option<Self> {
        match point {
            PointFilter::None => None,
            PointFilter::OneEuro => Some(Self::OneEuro(params)),
            PointFilter::ShapeOneEuro => Some(Self::ShapeOneEuro(params)),
        }
    }

    /// Fresh state for a new track.
    pub fn build(&self) -> Stabilizer {
        match *self {
            StabilizerKind::OneEuro(p) => Stabilizer::OneEuro(Box::new(OneEuro::new(p))),
            StabilizerKind::ShapeOneEuro(p) => Stabilizer::Shape(Box::new(ShapeOneEuro::new(p))),
        }
    }
}

/// A track's output stabilizer (boxed: kilobytes of state, allocated once per track).
#[derive(Debug, Clone)]
pub enum Stabilizer {
    /// One Euro per point and coordinate.
    OneEuro(Box<OneEuro>),
    /// One Euro on the shape and on the pose.
    Shape(Box<ShapeOneEuro>),
}

impl Stabilizer {
    /// Filter `points` observed at `t` seconds (face size `size` px). `motion`, when known, is
    /// the face's image motion since the previous frame ([`crate::face::motion`]): the state
    /// moves with it first, so rigid motion passes without lag and is not mistaken for noise.
    pub fn apply(&mut self, points: &mut [Point], t: f64, size: f32, motion: Option<&Similarity>) {
        match self {
            Stabilizer::OneEuro(f) => {
                if let Some(m) = motion {
                    f.carry(m, points.len());
                }
                f.apply(points, t, size)
            }
            Stabilizer::Shape(f) => {
                // The shape lives in the face's own frame, which rigid motion leaves alone;
                // only the pose moves.
                if let Some(m) = motion {
                    f.pose.carry(m, 2);
                }
                f.apply(points, t, size)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stabilizer_method_names_round_trip_and_refuse_the_rest() {
        for name in StabilizerMethod::NAMES {
            let m: StabilizerMethod = name.parse().unwrap();
            assert_eq!(m.to_string(), *name);
        }
        let m: StabilizerMethod = "convlstm+shape-one-euro".parse().unwrap();
        assert!(m.convlstm && m.point == PointFilter::ShapeOneEuro);
        for bad in ["convlstm+none", "convlstm+", "convlstmone-euro", "kalman", ""] {
            let e = bad.parse::<StabilizerMethod>().unwrap_err();
            assert!(e.contains("is not one of none, one-euro"), "{bad}: {e}");
        }
    }

    #[test]
    fn alpha_hand_computed() {
        // fc = 1/(2π) Hz → τ = 1 s; dt = 1 s → α = 1/(1+1) = 0.5.
        assert!((alpha(1.0 / (2.0 * std::f32::consts::PI), 1.0) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn first_sample_passes_then_still_signal_is_smoothed() {
        let mut f = OneEuro::new(OneEuroParams {
            min_cutoff: 1.0 / (2.0 * std::f32::consts::PI),
            beta: 0.0,
            d_cutoff: 1.0,
        });
        let mut p = [Point::new(10.0, 0.0)];
        f.apply(&mut p, 0.0, 100.0);
        assert_eq!(p[0], Point::new(10.0, 0.0));
        // With β = 0 and α = 0.5 at dt = 1 s: 10 → 10 + 0.5·(12 − 10) = 11.
        let mut p = [Point::new(12.0, 0.0)];
        f.apply(&mut p, 1.0, 100.0);
        assert!((p[0].x - 11.0).abs() < 1e-5);
    }

    #[test]
    fn fast_motion_raises_the_cutoff() {
        // Same step, one filter with β = 0, one with a large β: the latter follows closer.
        let run = |beta: f32| {
            let mut f = OneEuro::new(OneEuroParams {
                min_cutoff: 0.5,
                beta,
                d_cutoff: 1.0,
            });
            let mut last = 0.0;
            for t in 0..10 {
                let mut p = [Point::new(10.0 * t as f32, 0.0)];
                f.apply(&mut p, t as f64 / 30.0, 50.0);
                last = 10.0 * t as f32 - p[0].x;
            }
            last
        };
        let (lag_slow, lag_fast) = (run(0.0), run(10.0));
        assert!(lag_fast < 0.5 * lag_slow, "{lag_fast} vs {lag_slow}");
    }

    /// A face shape: 20 points on an ellipse (not symmetric enough to fool the roll estimate).
    fn shape() -> Vec<Point> {
        (0..20)
            .map(|i| {
                let a = i as f32 * 0.314;
                Point::new(40.0 * a.cos() + 3.0 * (3.0 * a).sin(), 55.0 * a.sin())
            })
            .collect()
    }

    /// xorshift noise in [-1, 1].
    fn noise(seed: &mut u64) -> f32 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % 20001) as f32 / 10000.0 - 1.0
    }

    #[test]
    fn shape_filter_follows_a_rigid_shake_without_lag() {
        // A 10 Hz shake of ±4 px with a ±2° roll: One Euro per point lags behind it; the shape
        // filter, which sees no shape change at all, must reproduce it almost exactly.
        let base = shape();
        let mut shape_f = ShapeOneEuro::new(OneEuroParams::default());
        let mut point_f = OneEuro::new(OneEuroParams::default());
        let (mut err_shape, mut err_point) = (0.0f32, 0.0f32);
        for k in 0..90 {
            let t = k as f64 / 30.0;
            let w = (std::f64::consts::TAU * 10.0 * t) as f32;
            let (dx, roll) = (4.0 * w.sin(), 2f32.to_radians() * (w + 0.5).sin());
            let (s, c) = roll.sin_cos();
            let truth: Vec<Point> = base
                .iter()
                .map(|p| Point::new(320.0 + c * p.x - s * p.y + dx, 240.0 + s * p.x + c * p.y))
                .collect();
            let (mut a, mut b) = (truth.clone(), truth.clone());
            shape_f.apply(&mut a, t, 100.0);
            point_f.apply(&mut b, t, 100.0);
            if k >= 10 {
                err_shape += a.iter().zip(&truth).map(|(p, q)| p.dist(*q)).sum::<f32>() / 20.0;
                err_point += b.iter().zip(&truth).map(|(p, q)| p.dist(*q)).sum::<f32>() / 20.0;
            }
        }
        let (err_shape, err_point) = (err_shape / 80.0, err_point / 80.0);
        assert!(
            err_shape < 0.2 * err_point,
            "shape {err_shape} px vs per point {err_point} px"
        );
        assert!(err_shape < 0.7, "{err_shape} px");
    }

    #[test]
    fn shape_filter_smooths_noise_on_a_still_face() {
        let base = shape();
        let mut f = ShapeOneEuro::new(OneEuroParams::default());
        let mut seed = 7u64;
        let (mut raw, mut out) = (0.0f32, 0.0f32);
        let mut prev: Option<(Vec<Point>, Vec<Point>)> = None;
        for k in 0..120 {
            let noisy: Vec<Point> = base
                .iter()
                .map(|p| Point::new(300.0 + p.x + noise(&mut seed), 200.0 + p.y + noise(&mut seed)))
                .collect();
            let mut a = noisy.clone();
            f.apply(&mut a, k as f64 / 30.0, 100.0);
            if let Some((pn, pa)) = &prev {
                if k > 30 {
                    raw += noisy.iter().zip(pn).map(|(p, q)| p.dist(*q)).sum::<f32>();
                    out += a.iter().zip(pa).map(|(p, q)| p.dist(*q)).sum::<f32>();
                }
            }
            prev = Some((noisy, a));
        }
        // Frame-to-frame motion of a still face is all noise: more than half of it goes
        // (measured: 58%, with ±1 px noise on a 100-px face).
        assert!(out < 0.5 * raw, "out {out} vs raw {raw}");
    }

    #[test]
    fn carried_state_follows_a_shake_and_still_smooths_the_noise() {
        // A 10 Hz shake of ±4 px with ±1 px of noise per point. Told the motion, the filter
        // must follow the shake (no lag) and remove most of the noise; untold, it lags.
        let base = shape();
        let mut seed = 11u64;
        let (mut told, mut untold) = (
            OneEuro::new(OneEuroParams::default()),
            OneEuro::new(OneEuroParams::default()),
        );
        let (mut err_told, mut err_untold, mut err_raw) = (0.0f32, 0.0f32, 0.0f32);
        let mut prev_dx = 0.0f32;
        for k in 0..120 {
            let t = k as f64 / 30.0;
            let dx = 4.0 * (std::f64::consts::TAU * 10.0 * t).sin() as f32;
            let truth: Vec<Point> = base.iter().map(|p| Point::new(300.0 + p.x + dx, 200.0 + p.y)).collect();
            let noisy: Vec<Point> = truth
                .iter()
                .map(|p| Point::new(p.x + noise(&mut seed), p.y + noise(&mut seed)))
                .collect();
            let motion = Similarity {
                tx: dx - prev_dx,
                ..Similarity::IDENTITY
            };
            prev_dx = dx;
            let (mut a, mut b) = (noisy.clone(), noisy.clone());
            told.carry(&motion, a.len());
            told.apply(&mut a, t, 100.0);
            untold.apply(&mut b, t, 100.0);
            if k >= 30 {
                let err = |v: &[Point]| v.iter().zip(&truth).map(|(p, q)| p.dist(*q)).sum::<f32>() / 20.0;
                err_told += err(&a);
                err_untold += err(&b);
                err_raw += err(&noisy);
            }
        }
        assert!(err_told < 0.6 * err_raw, "told {err_told} vs raw {err_raw}");
        assert!(err_untold > 2.0 * err_raw, "untold {err_untold} vs raw {err_raw}");
    }
}
