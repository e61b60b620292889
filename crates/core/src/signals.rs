//! Driver drowsiness signals from landmarks, per tracked face: eye aspect ratio (EAR),
//! mouth aspect ratio (MAR), blinks, the eyes-closed alarm, PERCLOS and yawns.
//!
//! # Definitions
//! - **EAR** (Soukupová & Čech, *Real-Time Eye Blink Detection using Facial Landmarks*, CVWW
//!   2016): `(|p2−p6| + |p3−p5|) / (2·|p1−p4|)` over the six eye points (iBUG 36–41 and 42–47).
//!   The two eyes are averaged (blinks are bilateral; one eye alone is a wink or a glitch).
//! - **Openness**: EAR rescaled between this backbone's closed-eye EAR (`ear_closed`) and the
//!   driver's open-eye EAR (the calibrated baseline), clamped to [0, 1]. Landmark models never
//!   put the lids exactly together, so EAR itself does not reach 0 on a closed eye.
//! - **Closure**: openness below `closed_openness`, ending when it rises above `open_openness`
//!   (hysteresis, so one blink is never counted twice). Its duration is the time from the first
//!   closed frame to the first open one. A closure of at most `blink_max_s` is a **blink**;
//!   a longer one is a **long closure**. At `eyes_closed_alarm_s` the **eyes-closed alarm** is raised.
//! - **PERCLOS P80** (Wierwille et al. 1994; Dinges & Grace, FHWA-MCRT-98-006, 1998): the
//!   fraction of the last `perclos_window_s` during which the eyes were at least 80% closed
//!   (openness ≤ `perclos_openness` = 0.2), over the time the eyes were visible.
//! - **MAR**: mean inner-lip opening (iBUG 61–67, 62–66, 63–65) over the mouth width (48–54).
//!   A **yawn** is MAR ≥ `yawn_mar` held for at least `yawn_min_s`, ending below `yawn_end_mar`.
//!
//! # Unknown, never asleep
//! The eyes (and the mouth) are used only when their points' mean heatmap confidence reaches
//! `min_confidence` and the eyes are at least `min_eye_px` wide. Otherwise the state is
//! `unknown`: a closure in progress is abandoned, no alarm is raised, and the time does not count
//! towards PERCLOS. A lost face is `unknown` too. So occlusion can never read as sleep.
//!
//! # Calibration
//! EAR differs between drivers, so each track learns its open-eye EAR over its first
//! `calibration_s` seconds of visible eyes (the 75th percentile, which ignores blinks and
//! glances down) and uses `ear_open_default` until then.
//!
//! Per-frame work is allocation-free: every buffer is sized at construction.

use crate::face::{FaceObs, MAX_FACES};
use crate::geometry::Point;
use crate::models::SchemeSpec;
use serde::{Deserialize, Serialize};

/// Drowsiness signals per tracked face (published in landmarks, state and events): their
/// thresholds and windows, each with where its default comes from. Definitions: the README,
/// "Drowsiness signals".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    /// Compute the signals (in `run`, and in `track --signals`).
    pub enabled: bool,
    /// Mean heatmap confidence of both eyes' 12 points below which the eyes are "unknown"
    /// (never "closed"). Measured on lm0: at least 0.80 on every clear face we have; 0.48–0.66
    /// under an occluder.
    pub min_confidence: f32,
    /// The same for the mouth's points. Lower than the eyes': a wide-open mouth is rare in
    /// training data and scores lower (0.73 at worst on carphone's speech), and a hidden mouth
    /// can only miss a yawn, never raise an alarm.
    pub min_mouth_confidence: f32,
    /// Eyes narrower than this (pixels, corner to corner) are "unknown": too few pixels for lids.
    pub min_eye_px: f32,
    /// A new track learns its driver's open-eye EAR (75th percentile) over this many seconds
    /// of visible eyes.
    pub calibration_s: f32,
    /// Open-eye EAR until then (without the eye refiner): lm0's median on open eyes (0.27
    /// carphone, 0.24 dlib faces); Soukupová & Čech (2016) report about 0.3 for open eyes with
    /// exact landmarks.
    pub ear_open_default: f32,
    /// EAR of a fully closed eye (openness 0; without the eye refiner): Soukupová & Čech's
    /// blinks bottom out near 0.05–0.1.
    pub ear_closed: f32,
    /// With the eye refiner (`models.eye_refiner`), openness is read from the refined lids' gap
    /// ratio (mean lid gap / corner distance) instead of the EAR. Open-eye value until
    /// calibrated: 0.24–0.25 on the labelled clips (carphone, video2-512).
    pub lid_gap_open_default: f32,
    /// With the eye refiner: the lid gap ratio of a shut eye (openness 0). The shut frames of
    /// the labelled blinks measure 0.04–0.11, their deepest 0.04–0.07; the refiner never puts
    /// the lids exactly together.
    pub lid_gap_closed: f32,
    /// Closure hysteresis on openness: a closure starts below this and ends above
    /// `open_openness`. Measured on the labelled blinks with the refiner: every shut frame but
    /// one reads at most 0.32, the one closing frame 0.39 (video2-512 frame 104), partly open
    /// frames 0.6–0.75, and open eyes at least 0.8 on both clips. Without the refiner, an EAR
    /// below 0.17 starts a closure.
    pub closed_openness: f32,
    /// Openness above which a closure ends.
    pub open_openness: f32,
    /// Closures up to this long are blinks; longer ones are long closures. Blinks last
    /// 100–400 ms (Caffier et al. 2003, Eur J Appl Physiol 89:319).
    pub blink_max_s: f32,
    /// The eyes-closed alarm: a closure this long. 5x the longest normal blink (0.4 s), yet
    /// within 56 m at 100 km/h.
    pub eyes_closed_alarm_s: f32,
    /// PERCLOS P80 (Wierwille 1994; Dinges & Grace 1998, FHWA-MCRT-98-006): the share of this
    /// window with the eyes at least 80% closed. Also the blink-rate window.
    pub perclos_window_s: f32,
    /// Openness at or below which the eye counts as closed for PERCLOS (0.2 = P80).
    pub perclos_openness: f32,
    /// Yawn: MAR (inner-lip opening / mouth width) at least this for at least `yawn_min_s`,
    /// ending below `yawn_end_mar`. Speech on carphone peaks at 0.65 for under 0.5 s; yawns last
    /// about 6 s (Provine 1986, Ethology 72:109).
    pub yawn_mar: f32,
    /// MAR below which a yawn ends.
    pub yawn_end_mar: f32,
    /// An opening held at least this long is a yawn (speech openings are far shorter).
    pub yawn_min_s: f32,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_confidence: 0.72,
            min_mouth_confidence: 0.6,
            min_eye_px: 8.0,
            calibration_s: 10.0,
            ear_open_default: 0.27,
            ear_closed: 0.10,
            lid_gap_open_default: 0.25,
            lid_gap_closed: 0.04,
            closed_openness: 0.4,
            open_openness: 0.6,
            blink_max_s: 0.5,
            eyes_closed_alarm_s: 2.0,
            perclos_window_s: 60.0,
            perclos_openness: 0.2,
            yawn_mar: 0.45,
            yawn_end_mar: 0.3,
            yawn_min_s: 1.5,
        }
    }
}

impl SignalsConfig {
    /// Range and consistency checks, each problem named by its path under `signals.`.
    pub fn check(&self, p: &mut Vec<String>) {
        let mut range = |name: &str, v: f32, lo: f32, hi: f32| {
            if !(lo..=hi).contains(&v) {
                p.push(format!("signals.{name}: {v} is out of range [{lo}, {hi}]"));
            }
        };
        range("min_confidence", self.min_confidence, 0.0, 1.0);
        range("min_mouth_confidence", self.min_mouth_confidence, 0.0, 1.0);
        range("min_eye_px", self.min_eye_px, 0.0, 1000.0);
        range("calibration_s", self.calibration_s, 0.0, 600.0);
        range("ear_open_default", self.ear_open_default, 0.05, 1.0);
        range("ear_closed", self.ear_closed, 0.0, 1.0);
        range("lid_gap_open_default", self.lid_gap_open_default, 0.05, 1.0);
        range("lid_gap_closed", self.lid_gap_closed, 0.0, 1.0);
        range("closed_openness", self.closed_openness, 0.0, 1.0);
        range("open_openness", self.open_openness, 0.0, 1.0);
        range("blink_max_s", self.blink_max_s, 0.01, 10.0);
        range("eyes_closed_alarm_s", self.eyes_closed_alarm_s, 0.1, 60.0);
        range("perclos_window_s", self.perclos_window_s, 5.0, 3600.0);
        range("perclos_openness", self.perclos_openness, 0.0, 1.0);
        range("yawn_mar", self.yawn_mar, 0.05, 5.0);
        range("yawn_end_mar", self.yawn_end_mar, 0.0, 5.0);
        range("yawn_min_s", self.yawn_min_s, 0.1, 60.0);
        let mut order = |lo: (&str, f32), hi: (&str, f32)| {
            if lo.1 >= hi.1 {
                p.push(format!(
                    "signals.{} ({}) must be below signals.{} ({})",
                    lo.0, lo.1, hi.0, hi.1
                ));
            }
        };
        order(
            ("ear_closed", self.ear_closed),
            ("ear_open_default", self.ear_open_default),
        );
        order(
            ("lid_gap_closed", self.lid_gap_closed),
            ("lid_gap_open_default", self.lid_gap_open_default),
        );
        order(
            ("closed_openness", self.closed_openness),
            ("open_openness", self.open_openness),
        );
        order(("yawn_end_mar", self.yawn_end_mar), ("yawn_mar", self.yawn_mar));
        order(
            ("blink_max_s", self.blink_max_s),
            ("eyes_closed_alarm_s", self.eyes_closed_alarm_s),
        );
    }
}

/// Where the signals' points are in a landmark scheme, found through its `to_ibug68` map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalPoints {
    /// Right then left eye, each in EAR order p1..p6 (outer corner, upper lids, inner corner, lower lids).
    eyes: [[usize; 6]; 2],
    /// Mouth corners (iBUG 48, 54).
    corners: [usize; 2],
    /// Inner-lip pairs, upper and lower (iBUG 61–67, 62–66, 63–65).
    lips: [[usize; 2]; 3],
}

impl SignalPoints {
    /// Fails, naming the scheme and the missing iBUG point, when the scheme lacks one.
    pub fn from_scheme(name: &str, s: &SchemeSpec) -> Result<Self, String> {
        let find = |ibug: usize| {
            s.to_ibug68.iter().position(|&i| i == ibug).ok_or_else(|| {
                format!(
                    "landmark scheme {name:?} has no point for iBUG-68 index {ibug}, which the drowsiness signals need"
                )
            })
        };
        let six = |first: usize| -> Result<[usize; 6], String> {
            let mut out = [0; 6];
            for (k, o) in out.iter_mut().enumerate() {
                *o = find(first + k)?;
            }
            Ok(out)
        };
        Ok(Self {
            eyes: [six(36)?, six(42)?],
            corners: [find(48)?, find(54)?],
            lips: [[find(61)?, find(67)?], [find(62)?, find(66)?], [find(63)?, find(65)?]],
        })
    }

    /// Each eye's six points in EAR order, right (image-left) eye first.
    pub fn eyes(&self) -> [[usize; 6]; 2] {
        self.eyes
    }

    /// The points of the iBUG-68 scheme, for tests and synthetic data.
    pub fn ibug68() -> Self {
        Self {
            eyes: [[36, 37, 38, 39, 40, 41], [42, 43, 44, 45, 46, 47]],
            corners: [48, 54],
            lips: [[61, 67], [62, 66], [63, 65]],
        }
    }
}

/// Eye aspect ratio of six points in EAR order (Soukupová & Čech 2016, Eq. 1).
pub fn ear(p: [Point; 6]) -> f32 {
    (p[1].dist(p[5]) + p[2].dist(p[4])) / (2.0 * p[0].dist(p[3]))
}

/// Mouth aspect ratio: mean inner-lip opening over mouth width.
pub fn mar(corners: [Point; 2], lips: [[Point; 2]; 3]) -> f32 {
    let open: f32 = lips.iter().map(|[a, b]| a.dist(*b)).sum::<f32>() / 3.0;
    open / corners[0].dist(corners[1])
}

/// What eye openness is computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Measure {
    /// The six-point EAR of the backbone's eye points.
    Ear(f32),
    /// The eye refiner's lid gap ratio ([`crate::eyes::Eye::openness`]), mean of both eyes.
    LidGap(f32),
}

impl Measure {
    fn value(self) -> f32 {
        match self {
            Measure::Ear(v) | Measure::LidGap(v) => v,
        }
    }
    /// The value, its open default and its closed level.
    fn scale(self, cfg: &SignalsConfig) -> (f32, f32, f32) {
        match self {
            Measure::Ear(v) => (v, cfg.ear_open_default, cfg.ear_closed),
            Measure::LidGap(v) => (v, cfg.lid_gap_open_default, cfg.lid_gap_closed),
        }
    }
}

/// Eyes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EyeState {
    Open,
    Closed,
    /// Not visible well enough to say (occluded, turned away, too small, face lost).
    #[default]
    Unknown,
}

/// One face's signals in one frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FaceSignals {
    pub eyes: EyeState,
    /// Mean EAR of both eyes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ear: Option<f32>,
    /// 0 closed .. 1 open, against this driver's baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openness: Option<f32>,
    /// Seconds the current closure has lasted (0 when open or unknown).
    pub closed_s: f32,
    /// The eyes-closed alarm is raised (closure of at least `eyes_closed_alarm_s`).
    pub alarm: bool,
    /// Mouth aspect ratio; absent when the mouth is not usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mar: Option<f32>,
    /// A yawn is in progress (mouth wide open for `yawn_min_s` so far); absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yawning: Option<bool>,
    /// PERCLOS P80 over the window; absent until half the window had visible eyes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perclos: Option<f32>,
    /// Blinks per minute over the same window and condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blink_rate: Option<f32>,
    /// Blinks and yawns since the track started (or the last reset).
    pub blinks: u32,
    pub yawns: u32,
    /// The open-eye EAR in use, and whether it was learnt from this driver yet.
    pub ear_open: f32,
    pub calibrated: bool,
}

/// What a signal event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalEventKind {
    /// A closure of at most `blink_max_s` ended (`duration_s`).
    Blink,
    /// A closure longer than a blink but shorter than the alarm ended.
    LongClosure,
    /// The eyes-closed alarm: eyes closed for `eyes_closed_alarm_s` (`duration_s` so far).
    EyesClosed,
    /// The eyes opened after an alarm (`duration_s`: the whole closure).
    EyesReopened,
    /// A yawn ended (`duration_s`).
    Yawn,
    /// The eyes became unusable (`reason`); any alarm is withdrawn.
    SignalsUnknown,
    /// The eyes are usable again.
    SignalsKnown,
}

/// A discrete signal event of one track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalEvent {
    pub track: u32,
    pub kind: SignalEventKind,
    /// Source time of the frame that produced it.
    pub time_s: f64,
    pub duration_s: Option<f32>,
    pub reason: Option<&'static str>,
}

/// Most signal events one frame can produce (a few per face).
pub const MAX_EVENTS: usize = 4 * MAX_FACES;
pub type Events = heapless::Vec<SignalEvent, MAX_EVENTS>;
pub type Outputs = heapless::Vec<FaceSignals, MAX_FACES>;

/// Calibration samples kept (a minute at 60 fps); calibration ends when full.
const CALIB_CAP: usize = 3600;
/// PERCLOS is kept in this many time buckets over the window.
const BUCKETS: usize = 600;
/// Frame gaps longer than this (dropped frames, a stall) count as this long.
const MAX_DT: f64 = 0.25;

/// Visible and closed time over a rolling window, in fixed buckets.
#[derive(Debug, Clone)]
struct Rolling {
    bucket_s: f64,
    buckets: Box<[(f32, f32); BUCKETS]>,
    head: Option<i64>,
}

impl Rolling {
    fn new(window_s: f32) -> Self {
        Self {
            bucket_s: window_s as f64 / BUCKETS as f64,
            buckets: Box::new([(0.0, 0.0); BUCKETS]),
            head: None,
        }
    }
    fn clear(&mut self) {
        self.buckets.fill((0.0, 0.0));
        self.head = None;
    }
    fn add(&mut self, t: f64, dt: f32, closed: bool) {
        let b = (t / self.bucket_s).floor() as i64;
        let head = *self.head.get_or_insert(b);
        if b > head {
            for k in (head + 1)..=b.min(head + BUCKETS as i64) {
                self.buckets[k.rem_euclid(BUCKETS as i64) as usize] = (0.0, 0.0);
            }
            self.head = Some(b);
        }
        let e = &mut self.buckets[b.rem_euclid(BUCKETS as i64) as usize];
        e.0 += dt;
        if closed {
            e.1 += dt;
        }
    }
    /// (visible, closed) seconds in the window.
    fn sums(&self) -> (f32, f32) {
        self.buckets.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Idle,
    /// Since when, and whether the alarm / yawning flag was raised.
    Active {
        since: f64,
        raised: bool,
    },
}

/// One track's signal state.
#[derive(Debug, Clone)]
struct Monitor {
    track: u32,
    calib: Vec<f32>,
    calib_s: f32,
    /// This driver's open-eye value once calibrated (EAR, or the lid gap ratio with the
    /// refiner); before that the default of the measure in use.
    baseline: Option<f32>,
    /// The open-eye value last used (calibrated or the measure's default), reported while the
    /// eyes are unknown too.
    last_base: f32,
    calibrated: bool,
    eye: Phase,
    mouth: Phase,
    known: bool,
    /// A `signals_unknown` went out and no `signals_known` since.
    announced_unknown: bool,
    last_t: Option<f64>,
    rolling: Rolling,
    blink_times: heapless::Deque<f64, 1024>,
    blinks: u32,
    yawns: u32,
}

fn r4(v: f32) -> f32 {
    (v * 1e4).round() / 1e4
}

impl Monitor {
    fn new(cfg: &SignalsConfig) -> Self {
        Self {
            track: 0,
            calib: Vec::with_capacity(CALIB_CAP),
            calib_s: 0.0,
            baseline: None,
            last_base: 0.0,
            calibrated: false,
            eye: Phase::Idle,
            mouth: Phase::Idle,
            known: false,
            announced_unknown: false,
            last_t: None,
            rolling: Rolling::new(cfg.perclos_window_s),
            blink_times: heapless::Deque::new(),
            blinks: 0,
            yawns: 0,
        }
    }

    /// Start over for a new track (keeps the buffers).
    fn restart(&mut self, track: u32) {
        self.track = track;
        self.recalibrate();
        self.eye = Phase::Idle;
        self.mouth = Phase::Idle;
        self.known = false;
        self.announced_unknown = false;
        self.last_t = None;
        self.rolling.clear();
        self.blink_times.clear();
        self.blinks = 0;
        self.yawns = 0;
    }

    fn recalibrate(&mut self) {
        self.calib.clear();
        self.calib_s = 0.0;
        self.baseline = None;
        self.last_base = 0.0;
        self.calibrated = false;
    }

    fn event(
        &self,
        ev: &mut Events,
        kind: SignalEventKind,
        t: f64,
        duration_s: Option<f32>,
        reason: Option<&'static str>,
    ) {
        // MAX_EVENTS covers the most one frame of MAX_FACES faces can produce.
        let _ = ev.push(SignalEvent {
            track: self.track,
            kind,
            time_s: t,
            duration_s: duration_s.map(r4),
            reason,
        });
    }

    /// The eyes became unusable: abandon any closure (withdrawing an alarm), say so once.
    fn lose(&mut self, t: f64, reason: &'static str, ev: &mut Events) {
        if self.known {
            self.event(ev, SignalEventKind::SignalsUnknown, t, None, Some(reason));
            self.announced_unknown = true;
        }
        self.known = false;
        self.eye = Phase::Idle;
    }

    /// The eyes' openness measure and the mean EAR of both eyes, or why the eyes are not
    /// usable. The measure is the refined lid gap ratio when the eye refiner ran, else the EAR.
    /// The gate is on both eyes' backbone points together: lm0 keeps drawing plausible lids
    /// under an occluder (EAR stays ~0.27 under a black bar), but its confidence drops there
    /// (mean 0.48–0.66, against ≥ 0.80 on every clear face we have). The refiner has no
    /// confidence of its own, so the backbone's gates it too.
    fn measure_eyes(cfg: &SignalsConfig, pts: &SignalPoints, o: &FaceObs) -> Result<(Measure, f32), &'static str> {
        let (mut ear_sum, mut conf, mut width) = (0.0, 0.0, 0.0f32);
        for eye in &pts.eyes {
            let p = eye.map(|i| o.points[i]);
            ear_sum += ear(p);
            conf += eye.iter().map(|&i| o.conf[i]).sum::<f32>();
            width += p[0].dist(p[3]);
        }
        let (e, conf, width) = (ear_sum / 2.0, conf / 12.0, width / 2.0);
        log::trace!(
            "track {}: EAR {e:.3} eye confidence {conf:.3} eye width {width:.1}",
            o.id
        );
        let (measure, width) = match &o.eyes {
            Some(eyes) => (
                Measure::LidGap((eyes[0].openness + eyes[1].openness) / 2.0),
                (eyes[0].width + eyes[1].width) / 2.0,
            ),
            None => (Measure::Ear(e), width),
        };
        if width < cfg.min_eye_px {
            Err("face too small")
        } else if conf < cfg.min_confidence || !measure.value().is_finite() {
            Err("low landmark confidence")
        } else {
            Ok((measure, e))
        }
    }

    fn measure_mouth(cfg: &SignalsConfig, pts: &SignalPoints, o: &FaceObs) -> Option<f32> {
        let idx = pts.corners.iter().chain(pts.lips.iter().flatten());
        let conf = idx.clone().map(|&i| o.conf[i]).sum::<f32>() / 8.0;
        let m = mar(
            pts.corners.map(|i| o.points[i]),
            pts.lips.map(|pair| pair.map(|i| o.points[i])),
        );
        log::trace!("track {}: MAR {m:.3} mouth confidence {conf:.3}", o.id);
        (conf >= cfg.min_mouth_confidence && m.is_finite()).then_some(m)
    }

    fn update(&mut self, cfg: &SignalsConfig, pts: &SignalPoints, o: &FaceObs, t: f64, ev: &mut Events) -> FaceSignals {
        let dt = self.last_t.map_or(0.0, |l| (t - l).clamp(0.0, MAX_DT)) as f32;
        self.last_t = Some(t);
        let mut out = FaceSignals::default();

        // Eyes.
        match Self::measure_eyes(cfg, pts, o) {
            Err(reason) => self.lose(t, reason, ev),
            Ok((measure, ear_value)) => {
                let (e, open_default, closed) = measure.scale(cfg);
                // The first usable frame of a track is not news; a recovery after
                // `signals_unknown` is.
                if std::mem::take(&mut self.announced_unknown) {
                    self.event(ev, SignalEventKind::SignalsKnown, t, None, None);
                }
                self.known = true;
                if !self.calibrated {
                    if self.calib.len() < CALIB_CAP {
                        self.calib.push(e);
                    }
                    self.calib_s += dt;
                    if self.calib_s >= cfg.calibration_s || self.calib.len() >= CALIB_CAP {
                        self.finish_calibration(open_default, closed);
                    }
                }
                let base = self.baseline.unwrap_or(open_default);
                let openness = ((e - closed) / (base - closed)).clamp(0.0, 1.0);
                self.eye = match self.eye {
                    Phase::Idle if openness < cfg.closed_openness => Phase::Active {
                        since: t,
                        raised: false,
                    },
                    Phase::Active { since, raised } if openness > cfg.open_openness => {
                        let d = (t - since) as f32;
                        let kind = if raised {
                            SignalEventKind::EyesReopened
                        } else if d <= cfg.blink_max_s + 1e-4 {
                            self.blinks += 1;
                            if self.blink_times.is_full() {
                                self.blink_times.pop_front();
                            }
                            let _ = self.blink_times.push_back(t);
                            SignalEventKind::Blink
                        } else {
                            SignalEventKind::LongClosure
                        };
                        self.event(ev, kind, t, Some(d), None);
                        Phase::Idle
                    }
                    Phase::Active { since, raised: false } if (t - since) as f32 >= cfg.eyes_closed_alarm_s - 1e-4 => {
                        self.event(ev, SignalEventKind::EyesClosed, t, Some((t - since) as f32), None);
                        Phase::Active { since, raised: true }
                    }
                    p => p,
                };
                self.rolling.add(t, dt, openness <= cfg.perclos_openness);
                out.ear = Some(r4(ear_value));
                self.last_base = base;
                out.openness = Some(r4(openness));
                if let Phase::Active { since, raised } = self.eye {
                    out.eyes = EyeState::Closed;
                    out.closed_s = r4((t - since) as f32);
                    out.alarm = raised;
                } else {
                    out.eyes = EyeState::Open;
                }
            }
        }

        // Mouth.
        match Self::measure_mouth(cfg, pts, o) {
            None => self.mouth = Phase::Idle,
            Some(m) => {
                self.mouth = match self.mouth {
                    Phase::Idle if m >= cfg.yawn_mar => Phase::Active {
                        since: t,
                        raised: false,
                    },
                    Phase::Active { since, raised } if m < cfg.yawn_end_mar => {
                        if raised {
                            self.yawns += 1;
                            self.event(ev, SignalEventKind::Yawn, t, Some((t - since) as f32), None);
                        }
                        Phase::Idle
                    }
                    Phase::Active { since, raised: false } if (t - since) as f32 >= cfg.yawn_min_s - 1e-4 => {
                        Phase::Active { since, raised: true }
                    }
                    p => p,
                };
                out.mar = Some(r4(m));
                out.yawning = Some(matches!(self.mouth, Phase::Active { raised: true, .. }));
            }
        }

        // Windowed figures, once half the window had visible eyes.
        let (visible, closed) = self.rolling.sums();
        if visible >= cfg.perclos_window_s / 2.0 {
            let window = cfg.perclos_window_s as f64;
            while self.blink_times.front().is_some_and(|&b| b <= t - window) {
                self.blink_times.pop_front();
            }
            out.perclos = Some(r4(closed / visible));
            out.blink_rate = Some(r4(self.blink_times.len() as f32 * 60.0 / visible));
        }
        out.blinks = self.blinks;
        out.yawns = self.yawns;
        out.ear_open = r4(self.baseline.unwrap_or(self.last_base));
        out.calibrated = self.calibrated;
        out
    }

    /// Baseline = 75th percentile of the calibration values, kept within a plausible range of
    /// the default so that a driver who starts with closed or half-closed eyes cannot teach us
    /// that closed is normal.
    fn finish_calibration(&mut self, open_default: f32, closed: f32) {
        if !self.calib.is_empty() {
            self.calib.sort_unstable_by(f32::total_cmp);
            let q = self.calib[((self.calib.len() - 1) as f32 * 0.75).round() as usize];
            let lo = (open_default * 0.7).max(closed + 0.05);
            self.baseline = Some(q.clamp(lo, open_default * 1.6));
        }
        self.calibrated = true;
        log::debug!(
            "track {}: open-eye value {:?} from {} frames",
            self.track,
            self.baseline,
            self.calib.len()
        );
    }
}

/// Signals for every tracked face. Create once; [`Signals::update`] once per frame.
pub struct Signals {
    cfg: SignalsConfig,
    points: SignalPoints,
    /// One monitor per face slot; `None` marks a free slot.
    slots: Vec<(Option<u32>, Monitor)>,
}

impl Signals {
    pub fn new(cfg: SignalsConfig, points: SignalPoints) -> Self {
        let slots = (0..MAX_FACES).map(|_| (None, Monitor::new(&cfg))).collect();
        Self { cfg, points, slots }
    }

    /// Update with this frame's faces (sorted or not). `out[i]` belongs to `faces[i]`; tracks that
    /// disappeared end with a `signals_unknown` ("face lost") event if their eyes were known.
    pub fn update(&mut self, faces: &[FaceObs], t: f64, out: &mut Outputs, ev: &mut Events) {
        out.clear();
        ev.clear();
        for (slot, m) in self.slots.iter_mut() {
            if let Some(id) = *slot {
                if !faces.iter().any(|f| f.id == id) {
                    m.lose(t, "face lost", ev);
                    *slot = None;
                }
            }
        }
        for f in faces {
            let i = match self.slots.iter().position(|(s, _)| *s == Some(f.id)) {
                Some(i) => i,
                None => {
                    let Some(i) = self.slots.iter().position(|(s, _)| s.is_none()) else {
                        continue;
                    };
                    self.slots[i].0 = Some(f.id);
                    self.slots[i].1.restart(f.id);
                    i
                }
            };
            let s = self.slots[i].1.update(&self.cfg, &self.points, f, t, ev);
            let _ = out.push(s);
        }
    }

    /// Forget every track's signal history (counts, PERCLOS, calibration).
    pub fn reset(&mut self) {
        for (slot, _) in self.slots.iter_mut() {
            *slot = None;
        }
    }

    /// Learn every current driver's open-eye EAR again.
    pub fn recalibrate(&mut self) {
        for (_, m) in self.slots.iter_mut() {
            m.recalibrate();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ear_and_mar_by_hand() {
        // Eye 30 px wide with lids 6 px and 9 px apart: (6 + 9) / (2·30) = 0.25.
        let p = [
            Point::new(0.0, 0.0),
            Point::new(10.0, -3.0),
            Point::new(20.0, -4.0),
            Point::new(30.0, 0.0),
            Point::new(20.0, 5.0),
            Point::new(10.0, 3.0),
        ];
        assert!((ear(p) - 0.25).abs() < 1e-6);
        // Mouth 40 px wide, openings 8, 12, 10 → mean 10 / 40.
        let c = [Point::new(0.0, 0.0), Point::new(40.0, 0.0)];
        let lips = [
            [Point::new(10.0, -4.0), Point::new(10.0, 4.0)],
            [Point::new(20.0, -6.0), Point::new(20.0, 6.0)],
            [Point::new(30.0, -5.0), Point::new(30.0, 5.0)],
        ];
        assert!((mar(c, lips) - 0.25).abs() < 1e-6);
    }

    #[test]
    fn rolling_window_forgets_old_buckets() {
        let mut r = Rolling::new(60.0);
        for k in 0..600 {
            r.add(k as f64 * 0.1, 0.1, k < 300);
        }
        let (v, c) = r.sums();
        assert!((v - 60.0).abs() < 1e-3 && (c - 30.0).abs() < 1e-3, "{v} {c}");
        // 30 s later the closed half has left the window.
        for k in 600..900 {
            r.add(k as f64 * 0.1, 0.1, false);
        }
        let (v, c) = r.sums();
        assert!((v - 60.0).abs() < 1e-3 && c.abs() < 1e-3, "{v} {c}");
        // A gap longer than the window clears it.
        r.add(500.0, 0.1, true);
        assert_eq!(r.sums(), (0.1, 0.1));
    }

    #[test]
    fn config_checks_name_fields() {
        let c = SignalsConfig {
            closed_openness: 0.6,
            yawn_mar: 9.0,
            ..SignalsConfig::default()
        };
        let mut p = Vec::new();
        c.check(&mut p);
        assert!(p.iter().any(|m| m.starts_with("signals.yawn_mar: 9")), "{p:?}");
        assert!(
            p.iter()
                .any(|m| m.contains("signals.closed_openness (0.6) must be below signals.open_openness")),
            "{p:?}"
        );
        let mut p = Vec::new();
        SignalsConfig::default().check(&mut p);
        assert!(p.is_empty(), "{p:?}");
    }

    /// A synthetic iBUG-68 face: 30-px eyes whose EAR is `ear`, a 40-px mouth whose MAR is
    /// `mar`, every point at confidence `conf`.
    fn face(id: u32, ear: f32, mar: f32, conf: f32) -> FaceObs {
        let mut o = FaceObs {
            id,
            score: conf,
            ..FaceObs::default()
        };
        for _ in 0..68 {
            let _ = o.points.push(Point::new(100.0, 100.0));
            let _ = o.conf.push(conf);
        }
        let h = ear * 30.0; // (h + h) / (2·30) = ear
        for (first, x0) in [(36, 40.0), (42, 110.0)] {
            let y = 80.0;
            let eye = [
                (x0, y),
                (x0 + 10.0, y - h / 2.0),
                (x0 + 20.0, y - h / 2.0),
                (x0 + 30.0, y),
                (x0 + 20.0, y + h / 2.0),
                (x0 + 10.0, y + h / 2.0),
            ];
            for (k, (x, y)) in eye.into_iter().enumerate() {
                o.points[first + k] = Point::new(x, y);
            }
        }
        let g = mar * 40.0;
        o.points[48] = Point::new(80.0, 150.0);
        o.points[54] = Point::new(120.0, 150.0);
        for (up, down, x) in [(61, 67, 90.0), (62, 66, 100.0), (63, 65, 110.0)] {
            o.points[up] = Point::new(x, 150.0 - g / 2.0);
            o.points[down] = Point::new(x, 150.0 + g / 2.0);
        }
        o
    }

    const FPS: f64 = 30.0;

    /// Run one face through `Signals`, frame `k` at `k/FPS`; returns every event and output.
    fn run(
        cfg: SignalsConfig,
        frames: impl Iterator<Item = Option<FaceObs>>,
    ) -> (Vec<(usize, SignalEvent)>, Vec<Option<FaceSignals>>) {
        let mut s = Signals::new(cfg, SignalPoints::ibug68());
        let (mut out, mut ev) = (Outputs::new(), Events::new());
        let (mut events, mut outs) = (Vec::new(), Vec::new());
        for (k, f) in frames.enumerate() {
            let faces: Vec<FaceObs> = f.into_iter().collect();
            s.update(&faces, k as f64 / FPS, &mut out, &mut ev);
            events.extend(ev.iter().map(|e| (k, *e)));
            outs.push(out.first().copied());
        }
        (events, outs)
    }

    fn kinds(ev: &[(usize, SignalEvent)], kind: SignalEventKind) -> Vec<(usize, f32)> {
        ev.iter()
            .filter(|(_, e)| e.kind == kind)
            .map(|(k, e)| (*k, e.duration_s.unwrap_or(-1.0)))
            .collect()
    }

    const OPEN: f32 = 0.30;
    const SHUT: f32 = 0.12;

    /// A scripted drive: EAR per frame from (start frame, frames, EAR) closures over open eyes.
    fn eyes_script(n: usize, closures: &[(usize, usize)]) -> impl Iterator<Item = Option<FaceObs>> + '_ {
        (0..n).map(move |k| {
            let shut = closures.iter().any(|&(s, len)| k >= s && k < s + len);
            Some(face(1, if shut { SHUT } else { OPEN }, 0.05, 0.9))
        })
    }

    #[test]
    fn blinks_long_closures_and_alarm_are_counted_and_timed() {
        // Blinks of 3, 6 and 15 frames (0.1, 0.2, 0.5 s), a long closure of 30 frames (1 s),
        // and a 90-frame closure (3 s) that raises the alarm at 2 s.
        let closures = [(100, 3), (200, 6), (300, 15), (400, 30), (500, 90)];
        let (ev, outs) = run(SignalsConfig::default(), eyes_script(700, &closures));
        assert_eq!(
            kinds(&ev, SignalEventKind::Blink),
            vec![(103, 0.1), (206, 0.2), (315, 0.5)],
            "{ev:?}"
        );
        assert_eq!(kinds(&ev, SignalEventKind::LongClosure), vec![(430, 1.0)]);
        assert_eq!(kinds(&ev, SignalEventKind::EyesClosed), vec![(560, 2.0)]);
        assert_eq!(kinds(&ev, SignalEventKind::EyesReopened), vec![(590, 3.0)]);
        assert!(kinds(&ev, SignalEventKind::SignalsUnknown).is_empty());
        let o = |k: usize| outs[k].unwrap();
        assert_eq!(
            (o(99).eyes, o(100).eyes, o(102).eyes, o(103).eyes),
            (EyeState::Open, EyeState::Closed, EyeState::Closed, EyeState::Open)
        );
        assert!(!o(559).alarm && o(560).alarm && o(589).alarm && !o(590).alarm);
        assert_eq!(o(589).closed_s, 2.9667);
        assert_eq!(o(699).blinks, 3);
    }

    #[test]
    fn perclos_is_the_closed_share_of_the_window() {
        // 120 s: a 1.5 s closure (45 frames, openness 0 ≤ 0.2) in every 6 s (180 frames) = 25%.
        let closures: Vec<(usize, usize)> = (0..20).map(|i| (i * 180 + 60, 45)).collect();
        let (_, outs) = run(SignalsConfig::default(), eyes_script(3600, &closures));
        // Unknown until half the window (30 s) had visible eyes.
        assert_eq!(outs[800].unwrap().perclos, None);
        assert!(outs[901].unwrap().perclos.is_some());
        // After a whole window, within one frame of 25%.
        let p = outs[3599].unwrap().perclos.unwrap();
        assert!((p - 0.25).abs() <= 1.0 / 1800.0 + 1e-3, "{p}");
        // Each 1.5 s closure is a long closure, not a blink: 0 blinks/min.
        assert_eq!(outs[3599].unwrap().blink_rate, Some(0.0));
    }

    #[test]
    fn blink_rate_counts_the_window() {
        // One 4-frame blink every 3 s for 90 s: 20 per minute.
        let closures: Vec<(usize, usize)> = (0..30).map(|i| (i * 90 + 45, 4)).collect();
        let (ev, outs) = run(SignalsConfig::default(), eyes_script(2700, &closures));
        assert_eq!(kinds(&ev, SignalEventKind::Blink).len(), 30);
        let r = outs[2699].unwrap().blink_rate.unwrap();
        assert!((r - 20.0).abs() <= 1.0, "{r}");
    }

    #[test]
    fn yawns_need_a_long_wide_opening_and_speech_is_not_one() {
        let cfg = SignalsConfig::default();
        // Speech: MAR 0.05..0.5 at 3 Hz for 10 s; then a 3 s yawn at MAR 0.7 from frame 400;
        // then a 1 s wide opening (too short).
        let mouth = |k: usize| -> f32 {
            if k < 300 {
                0.275 + 0.225 * ((k as f32 / 30.0) * std::f32::consts::TAU * 3.0).sin()
            } else if (400..490).contains(&k) || (600..630).contains(&k) {
                0.7
            } else {
                0.05
            }
        };
        let (ev, outs) = run(cfg, (0..700).map(|k| Some(face(1, OPEN, mouth(k), 0.9))));
        assert_eq!(kinds(&ev, SignalEventKind::Yawn), vec![(490, 3.0)], "{ev:?}");
        assert_eq!(outs[444].unwrap().yawning, Some(false));
        assert_eq!(outs[445].unwrap().yawning, Some(true));
        assert_eq!(outs[699].unwrap().yawns, 1);
        assert!(outs[..300].iter().all(|o| o.unwrap().yawning == Some(false)));
    }

    #[test]
    fn occlusion_and_loss_are_unknown_never_asleep() {
        // Eyes shut for 4 s, but the eye points are untrusted (a hand over the eyes).
        let frames = (0..300).map(|k| {
            let occluded = (60..180).contains(&k);
            Some(face(
                1,
                if occluded { SHUT } else { OPEN },
                0.05,
                if occluded { 0.2 } else { 0.9 },
            ))
        });
        let (ev, outs) = run(SignalsConfig::default(), frames);
        assert!(outs[60..180].iter().all(|o| {
            let o = o.unwrap();
            o.eyes == EyeState::Unknown && !o.alarm && o.ear.is_none()
        }));
        assert!(kinds(&ev, SignalEventKind::EyesClosed).is_empty());
        assert_eq!(kinds(&ev, SignalEventKind::SignalsUnknown), vec![(60, -1.0)]);
        assert_eq!(kinds(&ev, SignalEventKind::SignalsKnown), vec![(180, -1.0)]);
        assert!(kinds(&ev, SignalEventKind::Blink).is_empty(), "{ev:?}");

        // An alarm in progress is withdrawn when the eyes become unusable, and when the face is lost.
        for lost in [false, true] {
            let frames = (0..200).map(|k| match k {
                0..=29 => Some(face(1, OPEN, 0.05, 0.9)),
                30..=99 => Some(face(1, SHUT, 0.05, 0.9)),
                _ if lost => None,
                _ => Some(face(1, SHUT, 0.05, 0.1)),
            });
            let (ev, outs) = run(SignalsConfig::default(), frames);
            assert_eq!(kinds(&ev, SignalEventKind::EyesClosed), vec![(90, 2.0)]);
            let u: Vec<_> = ev
                .iter()
                .filter(|(_, e)| e.kind == SignalEventKind::SignalsUnknown)
                .collect();
            assert_eq!(u.len(), 1);
            assert_eq!(u[0].0, 100);
            assert_eq!(
                u[0].1.reason,
                Some(if lost { "face lost" } else { "low landmark confidence" })
            );
            assert!(outs[100..]
                .iter()
                .all(|o| o.is_none_or(|o| !o.alarm && o.eyes == EyeState::Unknown)));
        }
    }

    #[test]
    fn calibration_learns_a_wide_eyed_driver_and_cannot_learn_closed_eyes() {
        // Open EAR 0.40. Drooping to EAR 0.2 is openness 0.59 against the 0.27 default (open),
        // but 0.33 against the learnt 0.40: a closure.
        let wide = |k: usize| {
            if (100..106).contains(&k) || (400..406).contains(&k) {
                0.2
            } else {
                0.40
            }
        };
        let (ev, outs) = run(
            SignalsConfig::default(),
            (0..500).map(|k| Some(face(1, wide(k), 0.05, 0.9))),
        );
        assert!(!outs[299].unwrap().calibrated);
        let o = outs[301].unwrap();
        assert!(o.calibrated && (o.ear_open - 0.40).abs() < 1e-4, "{o:?}");
        assert_eq!(kinds(&ev, SignalEventKind::Blink), vec![(406, 0.2)]);
        // A driver whose eyes are shut from the start cannot make "shut" the baseline: it is
        // held at 0.7 of the default, and the alarm still comes at 2 s.
        let (ev, outs) = run(
            SignalsConfig::default(),
            (0..400).map(|_| Some(face(1, SHUT, 0.05, 0.9))),
        );
        assert_eq!(kinds(&ev, SignalEventKind::EyesClosed), vec![(60, 2.0)]);
        assert!((outs[399].unwrap().ear_open - 0.189).abs() < 1e-4);
        assert_eq!(outs[399].unwrap().eyes, EyeState::Closed);
    }

    #[test]
    fn scheme_points_come_from_to_ibug68() {
        let m = crate::models::Manifest::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/manifest.yaml"
        )))
        .unwrap();
        let osf = SignalPoints::from_scheme("osf66", m.scheme("osf66").unwrap()).unwrap();
        assert_eq!(osf.eyes, SignalPoints::ibug68().eyes);
        // osf66 has no 60/64 and keeps the mouth reordered: 48 → 58, 54 → 62, 61 → 59, 67 → 65.
        assert_eq!(osf.corners, [58, 62]);
        assert_eq!(osf.lips[0], [59, 65]);
        assert_eq!(
            SignalPoints::from_scheme("ibug68", m.scheme("ibug68").unwrap()).unwrap(),
            SignalPoints::ibug68()
        );
        let mut no_mouth = m.scheme("ibug68").unwrap().clone();
        no_mouth.to_ibug68.truncate(60);
        let e = SignalPoints::from_scheme("short", &no_mouth).unwrap_err();
        assert!(e.contains("\"short\" has no point for iBUG-68 index 61"), "{e}");
    }
}
