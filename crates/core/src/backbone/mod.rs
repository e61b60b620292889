//! Heatmap backbones: a frozen network that maps a face crop to `[1, C, H, W]` outputs,
//! of which `K` channels are landmark heatmaps (and optionally `2K` sub-cell offsets).
//!
//! [`Backbone`] is the runtime-neutral interface. [`OnnxBackbone`] runs ONNX models on the
//! CPU (steadyface's own engine, [`crate::nn`], else tract); the libtorch (CPU or CUDA) one
//! lives behind the `torch` feature.
//!
//! Nothing here names a backbone: input size and channels, output layout, decoding and crop
//! margins all come from the model's manifest entry.

mod onnx;

pub use self::onnx::OnnxBackbone;

use crate::error::{Error, Result};
use crate::frame::Normalize;
use crate::geometry::{BBox, CropTransform};
use crate::models::{Align, ConfidenceSpec, ModelEntry, OffsetSpec};
use std::path::Path;

/// Check a loaded graph's first output against the manifest's `[1, C, H, W]`.
pub fn check_output(path: &Path, spec: &BackboneSpec, outputs: &[(String, Vec<usize>)]) -> Result<()> {
    let want = [1, spec.out_c, spec.out_h, spec.out_w];
    match outputs.first() {
        Some((_, shape)) if shape.as_slice() == want => Ok(()),
        Some((name, shape)) => Err(Error::model(
            path,
            format!(
                "output {name:?} has shape {shape:?} but the manifest entry {} says {want:?}",
                spec.name
            ),
        )),
        None => Err(Error::model(path, "the graph has no outputs")),
    }
}

/// Everything the pipeline needs to know about a backbone, taken from the manifest.
#[derive(Debug, Clone)]
pub struct BackboneSpec {
    pub name: String,
    /// Input planes: 3 (RGB or BGR) or 1 (grey, the mean of the normalised colours).
    pub input_c: usize,
    pub input_w: usize,
    pub input_h: usize,
    pub normalize: Normalize,
    /// Output tensor `[C, H, W]` (batch 1).
    pub out_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub heatmap_first: usize,
    pub k: usize,
    pub offsets: Option<OffsetSpec>,
    pub align: Align,
    pub scheme: String,
    pub crop_expand: [f32; 2],
    /// Cells added to every decoded heatmap position (x, y); see `io.cell_shift`.
    pub cell_shift: [f32; 2],
    /// The tracker's thresholds on this backbone's confidence scale.
    pub confidence: ConfidenceSpec,
}

/// lm0's thresholds (measured on 47 faces and random non-face crops, see `face::tracker`),
/// for a manifest entry that gives none.
pub const DEFAULT_CONFIDENCE: ConfidenceSpec = ConfidenceSpec {
    accept_confidence: 0.68,
    lost_confidence: 0.6,
};

impl BackboneSpec {
    /// Build from a manifest entry; `path` names the manifest in errors.
    pub fn from_entry(e: &ModelEntry, manifest: &Path) -> Result<Self> {
        let bad = |r: &str| Error::Manifest {
            path: manifest.into(),
            reason: format!("model {}: {r}", e.name),
        };
        let o = e.io.output.ok_or_else(|| bad("io.output is required for a backbone"))?;
        let h =
            e.io.heatmaps
                .ok_or_else(|| bad("io.heatmaps is required for a backbone"))?;
        let i = &e.io.input;
        Ok(Self {
            name: e.name.clone(),
            input_c: i.planes(),
            input_w: i.width,
            input_h: i.height,
            normalize: i.normalize(),
            out_c: o.channels,
            out_h: o.height,
            out_w: o.width,
            heatmap_first: h.first,
            k: h.count,
            offsets: e.io.offsets,
            align: e.io.align.unwrap_or(Align::Centers),
            scheme: e
                .io
                .scheme
                .clone()
                .ok_or_else(|| bad("io.scheme is required for a backbone"))?,
            crop_expand: e.io.crop_expand.unwrap_or([0.1, 0.125]),
            cell_shift: e.io.cell_shift.unwrap_or([0.0, 0.0]),
            confidence: e.tracker.unwrap_or(DEFAULT_CONFIDENCE),
        })
    }

    /// The crop around landmark box `lm_box` (widened by `crop_expand`) and its transform
    /// into the input raster.
    pub fn crop(&self, lm_box: BBox) -> (BBox, CropTransform) {
        let crop = lm_box.expand(self.crop_expand[0], self.crop_expand[1]);
        (crop, CropTransform::new(crop, self.input_w, self.input_h))
    }

    /// Floats in one input raster.
    pub fn input_len(&self) -> usize {
        self.input_c * self.input_w * self.input_h
    }
    /// Floats in one output tensor.
    pub fn output_len(&self) -> usize {
        self.out_c * self.out_h * self.out_w
    }

    /// Heatmap coordinate (column, row; continuous) → model-input pixel coordinate, with the
    /// model's `cell_shift` applied.
    pub fn heatmap_to_input(&self, hx: f32, hy: f32) -> (f32, f32) {
        let (hx, hy) = (hx + self.cell_shift[0], hy + self.cell_shift[1]);
        match self.align {
            Align::Corners => (
                hx * (self.input_w - 1) as f32 / (self.out_w - 1) as f32,
                hy * (self.input_h - 1) as f32 / (self.out_h - 1) as f32,
            ),
            Align::Centers => {
                let (sx, sy) = (
                    self.input_w as f32 / self.out_w as f32,
                    self.input_h as f32 / self.out_h as f32,
                );
                ((hx + 0.5) * sx - 0.5, (hy + 0.5) * sy - 0.5)
            }
        }
    }
}

/// A frozen heatmap network.
pub trait Backbone: Send {
    fn spec(&self) -> &BackboneSpec;
    /// The input raster to fill before [`Backbone::run`] (planar `C × H × W`).
    fn input_mut(&mut self) -> &mut [f32];
    /// Run on the current input and copy the `[C, H, W]` output into `out`.
    fn run(&mut self, out: &mut [f32]) -> Result<()>;
}

impl BackboneSpec {
    /// A made-up backbone with `k` landmarks on `h`×`w` maps, laid out like lm0 (heatmaps,
    /// then y offsets, then x offsets) when `offsets`.
    pub fn synthetic(k: usize, h: usize, w: usize, offsets: bool) -> BackboneSpec {
        BackboneSpec {
            name: "test".into(),
            input_c: 3,
            input_w: 8 * w,
            input_h: 8 * h,
            normalize: Normalize {
                scale: 1.0,
                mean: [0.0; 3],
                std: [1.0; 3],
                bgr: false,
                grey: false,
            },
            out_c: if offsets { 3 * k } else { k },
            out_h: h,
            out_w: w,
            heatmap_first: 0,
            k,
            offsets: offsets.then_some(OffsetSpec {
                y_first: k,
                x_first: 2 * k,
                encoding: crate::models::OffsetEncoding::Logit16,
            }),
            align: Align::Centers,
            scheme: "test".into(),
            crop_expand: [0.1, 0.1],
            cell_shift: [0.0, 0.0],
            confidence: DEFAULT_CONFIDENCE,
        }
    }
}
