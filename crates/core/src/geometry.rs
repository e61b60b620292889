//! Points, boxes and the crop transform.
//!
//! # Coordinate convention
//! All image coordinates are in input-image pixels with the **pixel-centre** convention:
//! the centre of the top-left pixel is `(0, 0)`, so pixel `(i, j)` covers
//! `[i − 0.5, i + 0.5] × [j − 0.5, j + 0.5]` and the whole image spans
//! `[−0.5, W − 0.5] × [−0.5, H − 0.5]`. Boxes use the same continuous coordinates.

use serde::{Deserialize, Serialize};

/// Most landmarks a backbone may have (WFLW has 98); bounds every per-face point buffer.
pub const MAX_POINTS: usize = 128;

/// A 2-D point in pixel-centre image coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }
    pub fn dist(self, o: Point) -> f32 {
        ((self.x - o.x).powi(2) + (self.y - o.y).powi(2)).sqrt()
    }
}

/// An axis-aligned box `[x0, y0, x1, y1]` in continuous pixel-centre coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl BBox {
    pub const fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self { x0, y0, x1, y1 }
    }
    pub fn width(&self) -> f32 {
        self.x1 - self.x0
    }
    pub fn height(&self) -> f32 {
        self.y1 - self.y0
    }
    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }
    pub fn center(&self) -> Point {
        Point::new((self.x0 + self.x1) * 0.5, (self.y0 + self.y1) * 0.5)
    }
    /// Tight box around points (edges through the outermost points).
    pub fn around(points: &[Point]) -> Option<Self> {
        let first = points.first()?;
        let mut b = BBox::new(first.x, first.y, first.x, first.y);
        for p in points {
            b.x0 = b.x0.min(p.x);
            b.y0 = b.y0.min(p.y);
            b.x1 = b.x1.max(p.x);
            b.y1 = b.y1.max(p.y);
        }
        Some(b)
    }
    /// Intersection over union; 0 for disjoint or empty boxes.
    pub fn iou(&self, o: &BBox) -> f32 {
        let ix = (self.x1.min(o.x1) - self.x0.max(o.x0)).max(0.0);
        let iy = (self.y1.min(o.y1) - self.y0.max(o.y0)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + o.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
    /// Grow by fractions of the width (each side) and height (each side).
    pub fn expand(&self, fx: f32, fy: f32) -> Self {
        let (w, h) = (self.width(), self.height());
        BBox::new(self.x0 - fx * w, self.y0 - fy * h, self.x1 + fx * w, self.y1 + fy * h)
    }
    pub fn is_finite(&self) -> bool {
        self.x0.is_finite() && self.y0.is_finite() && self.x1.is_finite() && self.y1.is_finite()
    }
    pub fn to_array(self) -> [f32; 4] {
        [self.x0, self.y0, self.x1, self.y1]
    }
}

/// A 2-D similarity `x ↦ m·x + t` with `m = a + i·b` (scale·rotation), in image coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    pub const IDENTITY: Similarity = Similarity {
        a: 1.0,
        b: 0.0,
        tx: 0.0,
        ty: 0.0,
    };

    pub fn apply(&self, p: Point) -> Point {
        Point::new(
            self.a * p.x - self.b * p.y + self.tx,
            self.b * p.x + self.a * p.y + self.ty,
        )
    }

    /// This similarity applied after `first`: `self.after(first).apply(p) = self.apply(first.apply(p))`.
    pub fn after(&self, first: &Similarity) -> Similarity {
        // Complex form z ↦ m·z + t: m = m_self·m_first, t = m_self·t_first + t_self.
        Similarity {
            a: self.a * first.a - self.b * first.b,
            b: self.a * first.b + self.b * first.a,
            tx: self.a * first.tx - self.b * first.ty + self.tx,
            ty: self.b * first.tx + self.a * first.ty + self.ty,
        }
    }

    /// The similarity that undoes this one; `None` when it collapses the plane (`m = 0`).
    pub fn inverse(&self) -> Option<Self> {
        let d = self.a * self.a + self.b * self.b;
        if d.is_nan() || d <= 1e-12 {
            return None;
        }
        // m⁻¹ = conj(m) / |m|², t⁻¹ = −m⁻¹·t.
        let (a, b) = (self.a / d, -self.b / d);
        Some(Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        })
    }

    /// The least-squares similarity carrying `from` onto `to` (same length); `None` for
    /// fewer than two points or points that all coincide.
    pub fn fit(from: &[Point], to: &[Point]) -> Option<Self> {
        let n = from.len().min(to.len());
        if n < 2 {
            return None;
        }
        let mean = |ps: &[Point]| {
            let s = ps[..n]
                .iter()
                .fold((0.0f64, 0.0f64), |a, p| (a.0 + p.x as f64, a.1 + p.y as f64));
            (s.0 / n as f64, s.1 / n as f64)
        };
        let (pf, pt) = (mean(from), mean(to));
        // m = Σ (q − q̄)·conj(p − p̄) / Σ |p − p̄|² (complex least squares).
        let (mut re, mut im, mut den) = (0.0f64, 0.0f64, 0.0f64);
        for (p, q) in from[..n].iter().zip(&to[..n]) {
            let (px, py) = (p.x as f64 - pf.0, p.y as f64 - pf.1);
            let (qx, qy) = (q.x as f64 - pt.0, q.y as f64 - pt.1);
            re += qx * px + qy * py;
            im += qy * px - qx * py;
            den += px * px + py * py;
        }
        if den < 1e-9 {
            return None;
        }
        let (a, b) = (re / den, im / den);
        Some(Similarity {
            a: a as f32,
            b: b as f32,
            tx: (pt.0 - (a * pf.0 - b * pf.1)) as f32,
            ty: (pt.1 - (b * pf.0 + a * pf.1)) as f32,
        })
    }
}

/// Maps between a model's input raster (`size × size` pixels, pixel-centre) and the image.
///
/// The crop box `b` is resampled to `w_in × h_in`; input pixel `i` covers
/// `[b.x0 + i·sx, b.x0 + (i+1)·sx]` so its centre is `b.x0 + (i + 0.5)·sx`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropTransform {
    pub bbox: BBox,
    pub sx: f32,
    pub sy: f32,
}

impl CropTransform {
    pub fn new(bbox: BBox, w_in: usize, h_in: usize) -> Self {
        Self {
            bbox,
            sx: bbox.width() / w_in as f32,
            sy: bbox.height() / h_in as f32,
        }
    }
    /// Model-input pixel coordinate → image coordinate.
    pub fn to_image(&self, p: Point) -> Point {
        Point::new(
            self.bbox.x0 + (p.x + 0.5) * self.sx,
            self.bbox.y0 + (p.y + 0.5) * self.sy,
        )
    }
    /// Image coordinate → model-input pixel coordinate.
    pub fn to_input(&self, p: Point) -> Point {
        Point::new(
            (p.x - self.bbox.x0) / self.sx - 0.5,
            (p.y - self.bbox.y0) / self.sy - 0.5,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `f.after(g)` applies `g` first; with `g`'s inverse it is the identity.
    #[test]
    fn a_similarity_after_another_applies_the_other_first() {
        let f = Similarity {
            a: 0.9,
            b: 0.3,
            tx: 5.0,
            ty: -2.0,
        };
        let g = Similarity {
            a: 1.1,
            b: -0.2,
            tx: -1.0,
            ty: 4.0,
        };
        let p = Point::new(3.0, 7.0);
        let (want, got) = (f.apply(g.apply(p)), f.after(&g).apply(p));
        assert!(
            (want.x - got.x).abs() < 1e-4 && (want.y - got.y).abs() < 1e-4,
            "{want:?} against {got:?}"
        );
        assert_ne!(g.after(&f).apply(p), got, "composition does not commute here");
        let back = g.inverse().unwrap().after(&g).apply(p);
        assert!((back.x - p.x).abs() < 1e-4 && (back.y - p.y).abs() < 1e-4, "{back:?}");
    }

    #[test]
    fn crop_transform_round_trips_and_maps_centres() {
        // A 4-pixel-wide box starting at the left edge of pixel 10 resampled to 2 pixels:
        // input pixel 0 covers image pixels 10 and 11, its centre is at 10.5.
        let t = CropTransform::new(BBox::new(9.5, 9.5, 13.5, 13.5), 2, 2);
        assert_eq!(t.to_image(Point::new(0.0, 0.0)), Point::new(10.5, 10.5));
        assert_eq!(t.to_image(Point::new(1.0, 1.0)), Point::new(12.5, 12.5));
        let p = Point::new(3.25, -1.0);
        let q = t.to_image(t.to_input(p));
        assert!((p.x - q.x).abs() < 1e-5 && (p.y - q.y).abs() < 1e-5);
    }

    #[test]
    fn iou_of_half_overlap() {
        let a = BBox::new(0.0, 0.0, 2.0, 2.0);
        let b = BBox::new(1.0, 0.0, 3.0, 2.0);
        assert!((a.iou(&b) - 2.0 / 6.0).abs() < 1e-6);
        assert_eq!(a.iou(&BBox::new(5.0, 5.0, 6.0, 6.0)), 0.0);
    }
}
