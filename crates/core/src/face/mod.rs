//! Finding and following faces: the detector, the multi-face tracker, and the face's
//! registration between frames.

pub mod detector;
pub mod motion;
pub mod tracker;

pub use detector::{Detection, YuNet};
pub use motion::FaceMotion;
pub use tracker::{FaceObs, Tracker, TrackerParams};

/// Most faces tracked at once; bounds every per-frame buffer.
pub const MAX_FACES: usize = 8;
pub use crate::geometry::MAX_POINTS;
