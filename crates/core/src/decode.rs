//! Heatmap decoders: from a backbone's output to landmark positions and confidences.
//!
//! Each decoder turns one heatmap channel (plus, where the model has them, its sub-cell
//! offset maps) into a position in **heatmap coordinates** (0-based, cell centres on
//! integers). [`BackboneSpec::heatmap_to_input`] and [`CropTransform::to_image`] then take
//! it to image pixels. The confidence of a landmark is its heatmap's peak value.
//!
//! - [`Decoder::Argmax`]: the peak cell.
//! - [`Decoder::Offset`]: the peak cell plus the model's own sub-cell offset there
//!   (OpenSeeFace's decoding).
//! - [`Decoder::Pdc`]: Probability Density Centralization, see [`crate::pdc`].
//! - [`Decoder::SoftArgmax`]: expectation under `softmax(β·φ)`.

use crate::backbone::BackboneSpec;
use crate::geometry::{CropTransform, Point};
use crate::models::OffsetEncoding;
use crate::pdc::{peak_stats, Pdc};

/// A heatmap decoding method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoder {
    Argmax,
    Offset,
    Pdc(Pdc),
    SoftArgmax { beta: f32 },
}

crate::choice::choice! {
    /// `decoder.method` and `track --decoder`: which [`Decoder`] to build.
    pub enum DecoderMethod {
        Argmax = "argmax",
        Offset = "offset",
        Pdc = "pdc",
        SoftArgmax = "soft-argmax",
    }
}

/// Soft-argmax temperature: β = 20 gave the lowest NME on lm0 among 5..80 (46 faces);
/// β = 5 smears the whole map (NME 0.61) and β ≥ 40 tends to argmax.
pub const DEFAULT_SOFTMAX_BETA: f32 = 20.0;

/// Multipliers from a stored offset value to heatmap cells (x, y).
///
/// For `logit16` (upstream OpenSeeFace) the offset in input pixels is
/// `(in − 1)·logit(p)/16`; one cell spans `heatmap_to_input(1) − heatmap_to_input(0)`
/// input pixels, so cells = `logit(p) · (in − 1) / (16 · cell)`.
fn offset_scale(spec: &BackboneSpec) -> (f32, f32) {
    match spec.offsets.map(|o| o.encoding) {
        Some(OffsetEncoding::Logit16) => {
            let (ix, iy) = spec.heatmap_to_input(1.0, 1.0);
            let (i0x, i0y) = spec.heatmap_to_input(0.0, 0.0);
            (
                (spec.input_w - 1) as f32 / (16.0 * (ix - i0x)),
                (spec.input_h - 1) as f32 / (16.0 * (iy - i0y)),
            )
        }
        _ => (1.0, 1.0),
    }
}

/// Offset value → cells (x, y), and whether values are logit-encoded (the trainer's view of
/// `offset_at`).
pub fn offset_scale_cells(spec: &BackboneSpec) -> ((f32, f32), bool) {
    (
        offset_scale(spec),
        matches!(spec.offsets.map(|o| o.encoding), Some(OffsetEncoding::Logit16)),
    )
}

impl Decoder {
    /// PDC's window radius in cells (`None`: the whole map, or not PDC).
    pub fn pdc_window(&self) -> Option<usize> {
        match self {
            Decoder::Pdc(p) => p.window,
            _ => None,
        }
    }
}

/// The offset at cell `i` of landmark `k`, in heatmap cells; `scale` from [`offset_scale`].
#[inline]
fn offset_at(spec: &BackboneSpec, out: &[f32], k: usize, i: usize, scale: (f32, f32)) -> (f32, f32) {
    let Some(off) = spec.offsets else {
        return (0.0, 0.0);
    };
    let plane = spec.out_h * spec.out_w;
    let py = out[(off.y_first + k) * plane + i];
    let px = out[(off.x_first + k) * plane + i];
    match off.encoding {
        OffsetEncoding::Cells => (px, py),
        OffsetEncoding::Logit16 => {
            let l = |p: f32| {
                let p = p.clamp(1e-6, 1.0 - 1e-6);
                (p / (1.0 - p)).ln()
            };
            (l(px) * scale.0, l(py) * scale.1)
        }
    }
}

impl Decoder {
    /// The decoder `method` names, with PDC's parameters and soft-argmax's β.
    pub fn new(method: DecoderMethod, pdc: Pdc, beta: f32) -> Self {
        match method {
            DecoderMethod::Argmax => Decoder::Argmax,
            DecoderMethod::Offset => Decoder::Offset,
            DecoderMethod::Pdc => Decoder::Pdc(pdc),
            DecoderMethod::SoftArgmax => Decoder::SoftArgmax { beta },
        }
    }

    /// Which method this is.
    pub fn method(&self) -> DecoderMethod {
        match self {
            Decoder::Argmax => DecoderMethod::Argmax,
            Decoder::Offset => DecoderMethod::Offset,
            Decoder::Pdc(_) => DecoderMethod::Pdc,
            Decoder::SoftArgmax { .. } => DecoderMethod::SoftArgmax,
        }
    }

    /// How far from the heatmap's peak (Chebyshev, in cells) this decoder reads; `None`: the
    /// whole map.
    pub fn reach(&self) -> Option<usize> {
        match *self {
            Decoder::Argmax | Decoder::Offset => Some(0),
            Decoder::Pdc(p) => p.window,
            Decoder::SoftArgmax { .. } => None,
        }
    }

    /// Decode landmark `k` from a raw output `[C, H, W]`: heatmap coords and confidence.
    pub fn decode_one(&self, spec: &BackboneSpec, out: &[f32], k: usize) -> (f32, f32, f32) {
        let (w, h) = (spec.out_w, spec.out_h);
        let plane = w * h;
        let hm = &out[(spec.heatmap_first + k) * plane..(spec.heatmap_first + k + 1) * plane];
        let (pi, max, _) = peak_stats(hm);
        let (pr, pc) = ((pi / w) as f32, (pi % w) as f32);
        let (x, y) = match *self {
            Decoder::Argmax => (pc, pr),
            Decoder::Offset => {
                let (dx, dy) = offset_at(spec, out, k, pi, offset_scale(spec));
                (pc + dx, pr + dy)
            }
            Decoder::Pdc(p) => {
                let scale = offset_scale(spec);
                let f = |i: usize| offset_at(spec, out, k, i, scale);
                let off: Option<&dyn Fn(usize) -> (f32, f32)> = if spec.offsets.is_some() { Some(&f) } else { None };
                p.decode(hm, w, h, off).unwrap_or((pc, pr))
            }
            Decoder::SoftArgmax { beta } => soft_argmax(hm, w, beta),
        };
        (x, y, max)
    }

    /// Decode every landmark to image coordinates. `points` and `conf` must hold `spec.k`.
    pub fn decode_all(
        &self,
        spec: &BackboneSpec,
        out: &[f32],
        crop: &CropTransform,
        points: &mut [Point],
        conf: &mut [f32],
    ) {
        for k in 0..spec.k {
            let (hx, hy, c) = self.decode_one(spec, out, k);
            let (ix, iy) = spec.heatmap_to_input(hx, hy);
            points[k] = crop.to_image(Point::new(ix, iy));
            conf[k] = c;
        }
    }
}

/// Expectation of the cell position under `softmax(β·φ)` (max-subtracted for stability).
pub fn soft_argmax(hm: &[f32], w: usize, beta: f32) -> (f32, f32) {
    let (_, max, _) = peak_stats(hm);
    let (mut s, mut sx, mut sy) = (0f64, 0f64, 0f64);
    for (i, &v) in hm.iter().enumerate() {
        let e = ((beta * (v - max)) as f64).exp();
        s += e;
        sx += e * (i % w) as f64;
        sy += e * (i / w) as f64;
    }
    ((sx / s) as f32, (sy / s) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Normalize;
    use crate::geometry::BBox;
    use crate::models::{Align, OffsetSpec};
    use crate::pdc::HeatmapNorm;

    /// A tiny backbone: 1 landmark, 4×4 heatmap over an 8×8 input, offsets in cells.
    fn spec(align: Align, enc: OffsetEncoding) -> BackboneSpec {
        BackboneSpec {
            name: "t".into(),
            input_c: 3,
            input_w: 8,
            input_h: 8,
            normalize: Normalize {
                scale: 1.0,
                mean: [0.0; 3],
                std: [1.0; 3],
                bgr: false,
                grey: false,
            },
            out_c: 3,
            out_h: 4,
            out_w: 4,
            heatmap_first: 0,
            k: 1,
            offsets: Some(OffsetSpec {
                y_first: 1,
                x_first: 2,
                encoding: enc,
            }),
            align,
            scheme: "t".into(),
            crop_expand: [0.0, 0.0],
            cell_shift: [0.0, 0.0],
            confidence: crate::backbone::DEFAULT_CONFIDENCE,
        }
    }

    fn out_with_peak(r: usize, c: usize, dy: f32, dx: f32) -> Vec<f32> {
        let mut o = vec![0.0; 48];
        o[r * 4 + c] = 0.9;
        o[16 + r * 4 + c] = dy;
        o[32 + r * 4 + c] = dx;
        o
    }

    #[test]
    fn argmax_and_offset_hand_computed() {
        let s = spec(Align::Centers, OffsetEncoding::Cells);
        let o = out_with_peak(2, 1, 0.25, -0.5);
        assert_eq!(Decoder::Argmax.decode_one(&s, &o, 0), (1.0, 2.0, 0.9));
        assert_eq!(Decoder::Offset.decode_one(&s, &o, 0), (0.5, 2.25, 0.9));
    }

    #[test]
    fn logit16_offset_matches_upstream_formula() {
        // Upstream (lm0, 224 input, 28 cells): y224 = 223·r/27 + 223·logit(p)/16.
        let mut s = spec(Align::Corners, OffsetEncoding::Logit16);
        (s.input_w, s.input_h, s.out_w, s.out_h) = (224, 224, 28, 28);
        let plane = 28 * 28;
        let mut o = vec![0.5; 3 * plane];
        o[..plane].fill(0.0);
        let (r, c, p) = (10usize, 20usize, 0.6f32);
        o[r * 28 + c] = 0.8;
        o[plane + r * 28 + c] = p;
        let (hx, hy, _) = Decoder::Offset.decode_one(&s, &o, 0);
        let (_, y224) = s.heatmap_to_input(hx, hy);
        let (x224, _) = s.heatmap_to_input(hx, hy);
        let want_y = 223.0 * r as f32 / 27.0 + 223.0 * (p / (1.0 - p)).ln() / 16.0;
        assert!((y224 - want_y).abs() < 1e-3, "{y224} vs {want_y}");
        // p = 0.5 → zero offset.
        assert!((x224 - 223.0 * c as f32 / 27.0).abs() < 1e-3);
    }

    #[test]
    fn soft_argmax_of_symmetric_pair_is_midpoint() {
        let mut hm = vec![0.0; 16];
        hm[5] = 1.0;
        hm[6] = 1.0;
        // Large β: only the two equal peaks matter → x = 1.5, y = 1.
        let (x, y) = soft_argmax(&hm, 4, 100.0);
        assert!((x - 1.5).abs() < 1e-4 && (y - 1.0).abs() < 1e-4);
        // β = 0: uniform → centre of the 4×4 grid (1.5, 1.5).
        let (x, y) = soft_argmax(&hm, 4, 0.0);
        assert!((x - 1.5).abs() < 1e-6 && (y - 1.5).abs() < 1e-6);
    }

    #[test]
    fn synthetic_peak_maps_back_to_the_exact_image_pixel() {
        // lm0 geometry: 224 input, 28×28 corner-aligned heatmap. A crop box 224 px wide
        // whose left/top edge is at −0.5 + (100, 50) maps input pixel i to image pixel
        // i + (100, 50). Cell (r, c) = (27, 27) sits at input pixel 223 → image (323, 273).
        let mut s = spec(Align::Corners, OffsetEncoding::Logit16);
        (s.input_w, s.input_h, s.out_w, s.out_h, s.out_c) = (224, 224, 28, 28, 3);
        let plane = 28 * 28;
        let mut o = vec![0.5; 3 * plane];
        o[..plane].fill(0.0);
        o[27 * 28 + 27] = 0.9;
        let crop = CropTransform::new(BBox::new(99.5, 49.5, 323.5, 273.5), 224, 224);
        for d in [
            Decoder::Argmax,
            Decoder::Offset,
            Decoder::Pdc(Pdc {
                threshold: 0.2,
                norm: HeatmapNorm::Peak,
                window: Some(2),
                use_offsets: true,
            }),
        ] {
            let mut pts = [Point::default()];
            let mut conf = [0.0];
            d.decode_all(&s, &o, &crop, &mut pts, &mut conf);
            assert!(
                (pts[0].x - 323.0).abs() < 1e-3 && (pts[0].y - 273.0).abs() < 1e-3,
                "{d:?}: {:?}",
                pts[0]
            );
            assert_eq!(conf[0], 0.9);
        }
        // Cell (0, 0) → input pixel 0 → image (100, 50).
        o[27 * 28 + 27] = 0.0;
        o[0] = 0.9;
        let mut pts = [Point::default()];
        Decoder::Argmax.decode_all(&s, &o, &crop, &mut pts, &mut [0.0]);
        assert_eq!(pts[0], Point::new(100.0, 50.0));
    }
}
