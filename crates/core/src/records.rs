//! The landmark record written by `track` (one JSON object per line) and read by `eval`.
//!
//! ```json
//! {"frame": 0, "time_s": 0.0, "faces": [{"id": 1, "box": [x0,y0,x1,y1], "score": 0.97,
//!   "points": [[x,y], ...], "scheme": "osf66"}]}
//! ```
//! Coordinates are input-image pixels, pixel-centre convention (see [`crate::geometry`]).
//! Frames with no face have `"faces": []`. `file` is present for image-directory input.

use crate::error::{Error, Result};
use crate::face::FaceObs;
use crate::geometry::{BBox, Point};
use crate::signals::FaceSignals;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceRecord {
    pub id: u32,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
    pub points: Vec<[f32; 2]>,
    pub scheme: String,
    /// Both eyes from the eye refiner (image-left eye first), when `models.eye_refiner` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eyes: Option<[EyeRecord; 2]>,
    /// Drowsiness signals (`track --signals`, and the daemon when `signals.enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<FaceSignals>,
}

/// One refined eye (see [`crate::eyes::Eye`]), in image pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EyeRecord {
    /// Lower lid from the outer corner to the inner one (9 points), then the upper lid from
    /// outer to inner without the corners (7).
    pub lids: Vec<[f32; 2]>,
    pub iris: [f32; 2],
    pub iris_radius: f32,
    /// Lid gap ratio: mean gap between the lids over the corner distance (~0.25 open, ~0 shut).
    pub openness: f32,
}

impl EyeRecord {
    pub fn from_eye(e: &crate::eyes::Eye) -> Self {
        Self {
            lids: e.lids.iter().map(|p| [r3(p.x), r3(p.y)]).collect(),
            iris: [r3(e.iris.x), r3(e.iris.y)],
            iris_radius: r3(e.iris_radius),
            openness: (e.openness * 1e4).round() / 1e4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameRecord {
    pub frame: u64,
    pub time_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub faces: Vec<FaceRecord>,
}

/// Round to 1/1000 px: below any model's precision and keeps files small.
fn r3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

impl FaceRecord {
    pub fn from_obs(o: &FaceObs, scheme: &str) -> Self {
        Self {
            id: o.id,
            bbox: o.bbox.to_array().map(r3),
            score: r3(o.score),
            points: o.points.iter().map(|p| [r3(p.x), r3(p.y)]).collect(),
            scheme: scheme.to_string(),
            eyes: o
                .eyes
                .as_ref()
                .map(|e| [EyeRecord::from_eye(&e[0]), EyeRecord::from_eye(&e[1])]),
            signals: None,
        }
    }
    pub fn points(&self) -> Vec<Point> {
        self.points.iter().map(|p| Point::new(p[0], p[1])).collect()
    }
    pub fn bbox(&self) -> BBox {
        BBox::new(self.bbox[0], self.bbox[1], self.bbox[2], self.bbox[3])
    }
}

/// Read a landmark JSONL file; errors name the file and line.
pub fn read_jsonl(path: &Path) -> Result<Vec<FrameRecord>> {
    let text = crate::error::read_input_text(path, crate::error::InputKind::Data)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: FrameRecord = serde_json::from_str(line)
            .map_err(|e| Error::data(path, format!("line {}: not a landmark record: {e}", i + 1)))?;
        out.push(rec);
    }
    Ok(out)
}
