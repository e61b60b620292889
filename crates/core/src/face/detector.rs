//! YuNet face detector (libfacedetection), run by the native engine ([`crate::nn`]) or tract.
//!
//! YuNet predicts, per feature-map cell at strides 8/16/32, a class score, an objectness
//! score, a box `(dx, dy, log w, log h)` relative to the cell, and 5 keypoints. Score is
//! `sqrt(cls·obj)`, as in OpenCV's `FaceDetectorYN`. Frames are letterboxed into the
//! fixed input (top-left aligned, zero padding), so coordinates map back with one scale.

use crate::error::{Error, Result};
use crate::exposure::Levels;
use crate::frame::{resample_planar, Border, Frame, Normalize};
use crate::geometry::{BBox, Point};
use crate::models::ModelEntry;
use crate::runtime::OnnxGraph;
use std::path::Path;

/// Most raw candidates kept before NMS.
const MAX_CANDIDATES: usize = 256;
/// Most detections returned per frame.
pub const MAX_DETECTIONS: usize = 16;

/// One detected face in image coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub bbox: BBox,
    pub score: f32,
    /// Right eye, left eye, nose tip, right and left mouth corners.
    pub keypoints: [Point; 5],
}

/// Detector settings.
#[derive(Debug, Clone, Copy)]
pub struct DetectorParams {
    pub score_threshold: f32,
    pub nms_iou: f32,
}

/// Output slots of one stride level in the model's output list.
#[derive(Debug, Clone, Copy)]
struct Level {
    stride: usize,
    cls: usize,
    obj: usize,
    bbox: usize,
    kps: usize,
}

pub struct YuNet {
    model: OnnxGraph,
    w: usize,
    h: usize,
    norm: Normalize,
    levels: Vec<Level>,
    params: DetectorParams,
    candidates: Vec<Detection>,
    /// Copies of the outputs, so decoding can read all of them at once.
    outs: Vec<Vec<f32>>,
}

impl YuNet {
    /// Load `path`; `cpu_engine` and `threads` are `models.cpu_engine` (`native` or `tract`)
    /// and `models.threads` (the native engine's; tract's are process-wide, see
    /// `steadyface::bench::set_threads`).
    pub fn load(
        path: &Path,
        entry: &ModelEntry,
        params: DetectorParams,
        cpu_engine: crate::runtime::CpuEngine,
        threads: usize,
    ) -> Result<Self> {
        let i = &entry.io.input;
        let model = OnnxGraph::load(path, (3, i.width, i.height), cpu_engine, threads, "detector")?;
        let outputs = model.outputs();
        let strides = entry.io.strides.clone().unwrap_or_else(|| vec![8, 16, 32]);
        let find = |prefix: &str, s: usize| {
            outputs
                .iter()
                .position(|(n, _)| n == &format!("{prefix}_{s}"))
                .ok_or_else(|| Error::model(path, format!("no output named {prefix}_{s}; is this a YuNet model?")))
        };
        let mut levels = Vec::new();
        for &s in &strides {
            let l = Level {
                stride: s,
                cls: find("cls", s)?,
                obj: find("obj", s)?,
                bbox: find("bbox", s)?,
                kps: find("kps", s)?,
            };
            let cells = (i.width / s) * (i.height / s);
            let want = [(l.cls, 1), (l.obj, 1), (l.bbox, 4), (l.kps, 10)];
            for (o, per) in want {
                let (name, shape) = &outputs[o];
                if shape.iter().product::<usize>() != cells * per {
                    return Err(Error::model(
                        path,
                        format!("output {name} has shape {shape:?}, expected {cells}×{per}"),
                    ));
                }
            }
            levels.push(l);
        }
        let outs = outputs.iter().map(|(_, s)| vec![0.0; s.iter().product()]).collect();
        Ok(Self {
            w: i.width,
            h: i.height,
            norm: i.normalize(),
            model,
            levels,
            params,
            candidates: Vec::with_capacity(MAX_CANDIDATES),
            outs,
        })
    }

    /// Detect faces, best first, after NMS. `levels` is the frame's exposure correction,
    /// computed once per frame by the caller ([`Levels::IDENTITY`] for none).
    pub fn detect(
        &mut self,
        frame: &Frame,
        levels: &Levels,
        out: &mut heapless::Vec<Detection, MAX_DETECTIONS>,
    ) -> Result<()> {
        out.clear();
        let scale = (self.w as f32 / frame.width as f32).min(self.h as f32 / frame.height as f32);
        // Region of the image (edge coordinates from −0.5) that fills the whole input.
        let src = BBox::new(-0.5, -0.5, -0.5 + self.w as f32 / scale, -0.5 + self.h as f32 / scale);
        let lut = levels.lut(&self.norm);
        let (w, h, norm) = (self.w, self.h, self.norm);
        resample_planar(
            frame,
            src,
            w,
            h,
            &norm,
            &lut,
            levels.sampling(Border::Constant(0)),
            self.model.input_mut(),
        );
        self.model.run(&mut self.outs)?;

        self.candidates.clear();
        for l in &self.levels {
            let cols = self.w / l.stride;
            let (cls, obj, bb, kp) = (
                &self.outs[l.cls],
                &self.outs[l.obj],
                &self.outs[l.bbox],
                &self.outs[l.kps],
            );
            for idx in 0..cls.len() {
                let score = (cls[idx].clamp(0.0, 1.0) * obj[idx].clamp(0.0, 1.0)).sqrt();
                if score < self.params.score_threshold || self.candidates.len() == MAX_CANDIDATES {
                    continue;
                }
                let (r, c) = ((idx / cols) as f32, (idx % cols) as f32);
                let s = l.stride as f32;
                let b = &bb[idx * 4..idx * 4 + 4];
                let (cx, cy) = ((c + b[0]) * s, (r + b[1]) * s);
                let (bw, bh) = (b[2].exp() * s, b[3].exp() * s);
                // Input edge coordinates → image pixel-centre coordinates.
                let m = |v: f32| v / scale - 0.5;
                let mut keypoints = [Point::default(); 5];
                for (n, k) in keypoints.iter_mut().enumerate() {
                    *k = Point::new(m((kp[idx * 10 + 2 * n] + c) * s), m((kp[idx * 10 + 2 * n + 1] + r) * s));
                }
                let bbox = BBox::new(m(cx - bw / 2.0), m(cy - bh / 2.0), m(cx + bw / 2.0), m(cy + bh / 2.0));
                if bbox.is_finite() {
                    self.candidates.push(Detection { bbox, score, keypoints });
                }
            }
        }
        self.candidates.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
        for d in &self.candidates {
            if out.iter().all(|k| k.bbox.iou(&d.bbox) <= self.params.nms_iou) && out.push(*d).is_err() {
                break;
            }
        }
        Ok(())
    }
}
