//! Finding and following faces: the detector, the multi-face tracker, exposure control, and
//! the face's registration between frames.

pub mod detector;
pub mod exposure;
pub mod motion;
pub mod tracker;

pub use detector::{Detection, YuNet};
pub use motion::FaceMotion;
pub use tracker::{FaceObs, Tracker, TrackerParams};

/// Most faces tracked at once; bounds every per-frame buffer.
pub const MAX_FACES: usize = 8;
/// Most landmarks a backbone may have (WFLW has 98).
pub const MAX_POINTS: usize = 128;
