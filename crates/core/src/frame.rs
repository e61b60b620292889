//! RGB frames and the resampling that feeds every model ("convert" and "crop" stages).
//!
//! Frames are 8-bit interleaved RGB. Models take planar `f32` (NCHW) rasters; the
//! per-channel normalisation `(f(v)·scale − mean) / std` is folded into a 256-entry
//! lookup table per channel, so contrast stretching for low light costs nothing extra
//! per pixel and the per-frame path allocates nothing.

use crate::geometry::BBox;

/// Rec.601 luma of an RGB pixel, ×256 (integer weights 77, 150, 29): `>> 8` gives the 8-bit
/// luma. One definition for exposure statistics, mono sampling, scene cuts and registration.
#[inline]
pub fn luma_x256(r: u8, g: u8, b: u8) -> u32 {
    77 * r as u32 + 150 * g as u32 + 29 * b as u32
}

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Frame {
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0; width * height * 3],
        }
    }
    /// Reshape in place, reusing the allocation when it is big enough.
    pub fn reshape(&mut self, width: usize, height: usize) {
        self.width = width;
        self.height = height;
        self.data.resize(width * height * 3, 0);
    }
    #[inline]
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
    /// Rec.601 luma histogram, used for exposure decisions.
    pub fn luma_histogram(&self, hist: &mut [u32; 256]) {
        hist.fill(0);
        // Every other pixel on every other row is plenty for exposure statistics.
        for y in (0..self.height).step_by(2) {
            let row = &self.data[y * self.width * 3..(y + 1) * self.width * 3];
            for px in row.chunks_exact(6) {
                let l = luma_x256(px[0], px[1], px[2]) >> 8;
                hist[l as usize] += 1;
            }
        }
    }
    pub fn from_rgb_image(img: &image::RgbImage) -> Self {
        Self {
            width: img.width() as usize,
            height: img.height() as usize,
            data: img.as_raw().clone(),
        }
    }
}

/// How a model wants its input values: `(v·scale − mean[c]) / std[c]`, in RGB or BGR order,
/// or (`grey`) one plane holding the mean of the three normalised values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub bgr: bool,
    pub grey: bool,
}

impl Normalize {
    /// Planes the resamplers write.
    pub fn planes(&self) -> usize {
        if self.grey {
            1
        } else {
            3
        }
    }
}

/// Per-channel lookup from an 8-bit value to the model's input value.
#[derive(Clone)]
pub struct InputLut {
    lut: [[f32; 256]; 3],
}

impl InputLut {
    /// Plain normalisation.
    pub fn new(norm: &Normalize) -> Self {
        Self::with_levels(norm, 0.0, 1.0, 1.0)
    }

    /// Normalisation after a levels adjustment `v' = 255·clamp((v − black)·gain / 255)^gamma`.
    ///
    /// `black = 0, gain = 1, gamma = 1` is the identity.
    pub fn with_levels(norm: &Normalize, black: f32, gain: f32, gamma: f32) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for v in 0..256 {
            let s = (((v as f32 - black) * gain / 255.0).clamp(0.0, 1.0)).powf(gamma) * 255.0;
            for (c, table) in lut.iter_mut().enumerate() {
                // Output channel c reads source channel src_c (RGB or BGR order); the LUT is
                // indexed by output channel so mean/std line up with what the model expects.
                table[v] = (s * norm.scale - norm.mean[c]) / norm.std[c];
            }
        }
        Self { lut }
    }
}

/// How to sample the source: border handling, colour, and smoothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub border: Border,
    /// Replace colour by Rec.601 luma in every channel. Dark frames carry most of their
    /// sensor noise in chroma; driver-monitoring cameras are often NIR/mono anyway.
    pub mono: bool,
    /// Smallest averaging footprint per output pixel, in source pixels. When upscaling,
    /// a footprint above 1 acts as a box blur (denoising amplified dark frames).
    pub min_footprint: f32,
}

impl Sampling {
    pub const fn plain(border: Border) -> Self {
        Self {
            border,
            mono: false,
            min_footprint: 0.0,
        }
    }
}

/// What to sample outside the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Border {
    /// Repeat the edge pixel (crops that stick out of the frame).
    Clamp,
    /// A constant 8-bit grey level (letterbox padding).
    Constant(u8),
}

/// Resample the image region `src` into a planar `3 × out_h × out_w` raster (`1 × …` for a
/// grey `norm`).
///
/// Output pixel `(i, j)` is centred on `src.x0 + (i + 0.5)·sx` (see
/// [`crate::geometry::CropTransform`]). It averages a grid of bilinear samples spread
/// over a footprint of `max(sx, min_footprint)` source pixels, so shrinking does not alias
/// small detail away (eyes at 1080p) and a footprint above 1 smooths noise.
#[allow(clippy::too_many_arguments)]
pub fn resample_planar(
    frame: &Frame,
    src: BBox,
    out_w: usize,
    out_h: usize,
    norm: &Normalize,
    lut: &InputLut,
    sampling: Sampling,
    out: &mut [f32],
) {
    if sampling.mono {
        resample_impl::<true>(frame, src, out_w, out_h, norm, lut, sampling, out)
    } else {
        resample_impl::<false>(frame, src, out_w, out_h, norm, lut, sampling, out)
    }
}

/// Resample a rotated (affine) region into a planar `3 × out_h × out_w` raster.
///
/// Output pixel `(i, j)` is the mean of `n × n` bilinear samples spread over its footprint,
/// centred on `origin + (i + 0.5)·ax + (j + 0.5)·ay`: `ax` and `ay` are one output pixel's
/// step in the image (so a mirrored or rotated crop is just another pair of vectors), and `n`
/// grows with the step (1 to 4) so that shrinking does not alias. Outside the image the edge
/// pixel repeats. Allocation-free. With axis-aligned steps and [`Border::Clamp`] it gives what
/// [`resample_planar`] gives for the same box.
#[allow(clippy::too_many_arguments)]
pub fn resample_affine(
    frame: &Frame,
    origin: crate::geometry::Point,
    ax: crate::geometry::Point,
    ay: crate::geometry::Point,
    out_w: usize,
    out_h: usize,
    norm: &Normalize,
    lut: &InputLut,
    out: &mut [f32],
) {
    assert!(
        out.len() >= 3 * out_w * out_h && !norm.grey,
        "resample target too small, or grey (only RGB or BGR here)"
    );
    if frame.width == 0 || frame.height == 0 {
        return;
    }
    let step = |v: crate::geometry::Point| (v.x * v.x + v.y * v.y).sqrt();
    let nx = (step(ax).ceil() as usize).clamp(1, 4);
    let ny = (step(ay).ceil() as usize).clamp(1, 4);
    let inv = 1.0 / (nx * ny) as f32;
    let (w, h) = (frame.width as isize, frame.height as isize);
    let order: [usize; 3] = if norm.bgr { [2, 1, 0] } else { [0, 1, 2] };
    let plane = out_w * out_h;
    let px = |x: isize, y: isize| -> usize { ((y.clamp(0, h - 1) * w + x.clamp(0, w - 1)) * 3) as usize };
    let data = &frame.data;
    for j in 0..out_h {
        for i in 0..out_w {
            let mut acc = [0f32; 3];
            for sj in 0..ny {
                let v = j as f32 + (sj as f32 + 0.5) / ny as f32;
                for si in 0..nx {
                    let u = i as f32 + (si as f32 + 0.5) / nx as f32;
                    let x = origin.x + u * ax.x + v * ay.x;
                    let y = origin.y + u * ax.y + v * ay.y;
                    if !(x.is_finite() && y.is_finite()) {
                        continue;
                    }
                    let (x0, y0) = (x.floor(), y.floor());
                    let (fx, fy) = (x - x0, y - y0);
                    // Far outside, the clamp still lands on the edge; saturate before casting.
                    let (xi, yi) = (x0.clamp(-1.0, w as f32) as isize, y0.clamp(-1.0, h as f32) as isize);
                    let (a, b, c, d) = (px(xi, yi), px(xi + 1, yi), px(xi, yi + 1), px(xi + 1, yi + 1));
                    for (k, acc) in acc.iter_mut().enumerate() {
                        let (src, t) = (order[k], &lut.lut[k]);
                        let top = t[data[a + src] as usize] * (1.0 - fx) + t[data[b + src] as usize] * fx;
                        let bot = t[data[c + src] as usize] * (1.0 - fx) + t[data[d + src] as usize] * fx;
                        *acc += top * (1.0 - fy) + bot * fy;
                    }
                }
            }
            for (k, a) in acc.iter().enumerate() {
                out[k * plane + j * out_w + i] = a * inv;
            }
        }
    }
}

/// Widest output raster (taps are precomputed per output column on the stack).
const MAX_OUT: usize = 1024;
/// Marks a tap outside the image under [`Border::Constant`].
const OUTSIDE: u32 = u32::MAX;

/// One bilinear tap pair along an axis: the two source indices and the weight of the second.
#[derive(Clone, Copy, Default)]
struct Tap {
    i0: u32,
    i1: u32,
    f: f32,
}

/// Taps for sub-sample `s` of `n` across output index `o` along one axis.
#[allow(clippy::too_many_arguments)]
#[inline]
fn tap(start: f32, step: f32, footprint: f32, o: usize, s: usize, n: usize, len: usize, border: Border) -> Tap {
    let v = start + (o as f32 + 0.5) * step + ((s as f32 + 0.5) / n as f32 - 0.5) * footprint;
    let v0 = v.floor();
    let (a, b) = (v0 as isize, v0 as isize + 1);
    let idx = |x: isize| -> u32 {
        if (0..len as isize).contains(&x) {
            x as u32
        } else {
            match border {
                Border::Clamp => x.clamp(0, len as isize - 1) as u32,
                Border::Constant(_) => OUTSIDE,
            }
        }
    };
    Tap {
        i0: idx(a),
        i1: idx(b),
        f: v - v0,
    }
}

#[allow(clippy::too_many_arguments)]
fn resample_impl<const MONO: bool>(
    frame: &Frame,
    src: BBox,
    out_w: usize,
    out_h: usize,
    norm: &Normalize,
    lut: &InputLut,
    sampling: Sampling,
    out: &mut [f32],
) {
    assert!(
        out.len() >= norm.planes() * out_w * out_h && out_w <= MAX_OUT,
        "resample target too small or too wide"
    );
    if frame.width == 0 || frame.height == 0 {
        return;
    }
    let border = sampling.border;
    let sx = src.width() / out_w as f32;
    let sy = src.height() / out_h as f32;
    let (fx_len, fy_len) = (
        sx.abs().max(sampling.min_footprint),
        sy.abs().max(sampling.min_footprint),
    );
    let nx = (fx_len.ceil() as usize).clamp(1, 4);
    let ny = (fy_len.ceil() as usize).clamp(1, 4);
    let inv = 1.0 / (nx * ny) as f32;
    let plane = out_w * out_h;
    let order: [usize; 3] = if norm.bgr { [2, 1, 0] } else { [0, 1, 2] };
    let constant = match border {
        Border::Constant(v) => v,
        Border::Clamp => 0,
    };
    // Column taps, computed once per call rather than once per output pixel.
    let mut xt = [Tap::default(); MAX_OUT * 4];
    for i in 0..out_w {
        for si in 0..nx {
            xt[i * nx + si] = tap(src.x0, sx, fx_len, i, si, nx, frame.width, border);
        }
    }
    let row_bytes = frame.width * 3;
    let data = &frame.data;
    let fetch = |row: u32, col: u32| -> [u8; 3] {
        if row == OUTSIDE || col == OUTSIDE {
            return [constant; 3];
        }
        let o = row as usize * row_bytes + col as usize * 3;
        let p = [data[o], data[o + 1], data[o + 2]];
        if MONO {
            let l = (luma_x256(p[0], p[1], p[2]) >> 8) as u8;
            [l; 3]
        } else {
            p
        }
    };
    let (t0, t1, t2) = (&lut.lut[0], &lut.lut[1], &lut.lut[2]);
    let (s0, s1, s2) = (order[0], order[1], order[2]);
    // Separably: each source row the crop touches is interpolated across once, into a small
    // cache of rows ([`ROW_CACHE`] on the stack), and each output row blends a few of those.
    // Neighbouring output rows share source rows, so this does a fraction of the lookups of
    // sampling every output pixel's bilinear taps directly.
    let mut cache = [[0f32; 3 * MAX_OUT]; ROW_CACHE];
    let mut keys = [u32::MAX - 1; ROW_CACHE];
    let mut next_victim = 0;
    let hrow = |row: u32, dst: &mut [f32; 3 * MAX_OUT]| {
        let (d0, rest) = dst.split_at_mut(out_w);
        let (d1, d2) = rest.split_at_mut(out_w);
        for (i, ((a0, a1), a2)) in d0.iter_mut().zip(d1.iter_mut()).zip(d2[..out_w].iter_mut()).enumerate() {
            let mut acc = [0f32; 3];
            for x in &xt[i * nx..i * nx + nx] {
                let p = fetch(row, x.i0);
                if x.f == 0.0 {
                    // On a pixel centre (integer-ratio shrinks): one pixel, no interpolation.
                    acc[0] += t0[p[s0] as usize];
                    acc[1] += t1[p[s1] as usize];
                    acc[2] += t2[p[s2] as usize];
                    continue;
                }
                let q = fetch(row, x.i1);
                let (gx, fx) = (1.0 - x.f, x.f);
                acc[0] += t0[p[s0] as usize] * gx + t0[q[s0] as usize] * fx;
                acc[1] += t1[p[s1] as usize] * gx + t1[q[s1] as usize] * fx;
                acc[2] += t2[p[s2] as usize] * gx + t2[q[s2] as usize] * fx;
            }
            (*a0, *a1, *a2) = (acc[0], acc[1], acc[2]);
        }
    };
    for j in 0..out_h {
        let mut yt = [Tap::default(); 4];
        for (sj, t) in yt.iter_mut().enumerate().take(ny) {
            *t = tap(src.y0, sy, fy_len, j, sj, ny, frame.height, border);
        }
        // The source rows this output row blends, with their weights (at most 2·ny ≤ ROW_CACHE).
        let mut need = [(0u32, 0f32); 8];
        let mut n_need = 0;
        for y in &yt[..ny] {
            need[n_need] = (y.i0, 1.0 - y.f);
            n_need += 1;
            if y.f != 0.0 {
                need[n_need] = (y.i1, y.f);
                n_need += 1;
            }
        }
        let mut slots = [0usize; 8];
        let mut pinned = [false; ROW_CACHE];
        for (k, &(row, _)) in need[..n_need].iter().enumerate() {
            if let Some(s) = keys.iter().position(|&r| r == row) {
                slots[k] = s;
                pinned[s] = true;
            }
        }
        for (k, &(row, _)) in need[..n_need].iter().enumerate() {
            if keys[slots[k]] == row && pinned[slots[k]] {
                continue;
            }
            if let Some(s) = keys.iter().position(|&r| r == row) {
                // Filled earlier for this same output row (a repeated tap).
                slots[k] = s;
                continue;
            }
            while pinned[next_victim] {
                next_victim = (next_victim + 1) % ROW_CACHE;
            }
            let s = next_victim;
            hrow(row, &mut cache[s]);
            keys[s] = row;
            pinned[s] = true;
            slots[k] = s;
        }
        let row_out = j * out_w;
        if norm.grey {
            // The mean of the three normalised planes, as the model was trained on.
            let o = &mut out[row_out..row_out + out_w];
            o.fill(0.0);
            for c in 0..3 {
                for (k, &(_, wgt)) in need[..n_need].iter().enumerate() {
                    let h = &cache[slots[k]][c * out_w..(c + 1) * out_w];
                    let wgt = wgt * inv / 3.0;
                    for (o, h) in o.iter_mut().zip(h) {
                        *o += wgt * h;
                    }
                }
            }
            continue;
        }
        for c in 0..3 {
            let o = &mut out[c * plane + row_out..c * plane + row_out + out_w];
            o.fill(0.0);
            for (k, &(_, wgt)) in need[..n_need].iter().enumerate() {
                let h = &cache[slots[k]][c * out_w..(c + 1) * out_w];
                let wgt = wgt * inv;
                for (o, h) in o.iter_mut().zip(h) {
                    *o += wgt * h;
                }
            }
        }
    }
}

/// Source rows cached by [`resample_planar`]: enough for the 2 × 4 rows one output row can
/// blend (footprints up to 4 samples tall).
const ROW_CACHE: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    const IDENT: Normalize = Normalize {
        scale: 1.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        bgr: false,
        grey: false,
    };

    /// The straightforward per-pixel form the fast path must match.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        frame: &Frame,
        src: BBox,
        out_w: usize,
        out_h: usize,
        norm: &Normalize,
        lut: &InputLut,
        sampling: Sampling,
        out: &mut [f32],
    ) {
        debug_assert!(out.len() >= 3 * out_w * out_h);
        let border = sampling.border;
        let sx = src.width() / out_w as f32;
        let sy = src.height() / out_h as f32;
        let (fx_len, fy_len) = (
            sx.abs().max(sampling.min_footprint),
            sy.abs().max(sampling.min_footprint),
        );
        let nx = (fx_len.ceil() as usize).clamp(1, 4);
        let ny = (fy_len.ceil() as usize).clamp(1, 4);
        let inv = 1.0 / (nx * ny) as f32;
        let plane = out_w * out_h;
        let order: [usize; 3] = if norm.bgr { [2, 1, 0] } else { [0, 1, 2] };
        let w = frame.width as isize;
        let h = frame.height as isize;
        let mono = sampling.mono;
        let fetch = |x: isize, y: isize| -> [u8; 3] {
            let p = if x >= 0 && y >= 0 && x < w && y < h {
                frame.pixel(x as usize, y as usize)
            } else {
                match border {
                    Border::Clamp => frame.pixel(x.clamp(0, w - 1) as usize, y.clamp(0, h - 1) as usize),
                    Border::Constant(v) => [v; 3],
                }
            };
            if mono {
                let l = (luma_x256(p[0], p[1], p[2]) >> 8) as u8;
                [l; 3]
            } else {
                p
            }
        };
        for j in 0..out_h {
            for i in 0..out_w {
                let mut acc = [0f32; 3];
                for sj in 0..ny {
                    // Sub-sample centres spread evenly over the output pixel's footprint.
                    let y = src.y0 + (j as f32 + 0.5) * sy + ((sj as f32 + 0.5) / ny as f32 - 0.5) * fy_len;
                    let y0 = y.floor();
                    let fy = y - y0;
                    let yi = y0 as isize;
                    for si in 0..nx {
                        let x = src.x0 + (i as f32 + 0.5) * sx + ((si as f32 + 0.5) / nx as f32 - 0.5) * fx_len;
                        let x0 = x.floor();
                        let fx = x - x0;
                        let xi = x0 as isize;
                        let p00 = fetch(xi, yi);
                        let p10 = fetch(xi + 1, yi);
                        let p01 = fetch(xi, yi + 1);
                        let p11 = fetch(xi + 1, yi + 1);
                        for c in 0..3 {
                            let t = &lut.lut[c];
                            let s = order[c];
                            let top = t[p00[s] as usize] * (1.0 - fx) + t[p10[s] as usize] * fx;
                            let bot = t[p01[s] as usize] * (1.0 - fx) + t[p11[s] as usize] * fx;
                            acc[c] += top * (1.0 - fy) + bot * fy;
                        }
                    }
                }
                let k = j * out_w + i;
                out[k] = acc[0] * inv;
                out[plane + k] = acc[1] * inv;
                out[2 * plane + k] = acc[2] * inv;
            }
        }
    }

    #[test]
    fn fast_path_and_affine_resampler_match_reference() {
        let mut f = Frame::new(37, 29);
        for (i, v) in f.data.iter_mut().enumerate() {
            *v = (i * 131 % 256) as u8;
        }
        let norm = Normalize {
            scale: 1.0 / 255.0,
            mean: [0.4, 0.5, 0.6],
            std: [0.2, 0.25, 0.3],
            bgr: true,
            grey: false,
        };
        let lut = InputLut::with_levels(&norm, 10.0, 2.0, 1.0);
        for (b, w, h) in [
            (BBox::new(-3.2, -2.0, 40.7, 33.1), 20, 17),
            (BBox::new(5.3, 4.1, 12.9, 10.2), 24, 24),
            (BBox::new(-20.0, -20.0, 60.0, 60.0), 7, 9),
            // An exact 2× shrink: every sub-sample lands on a pixel centre.
            (BBox::new(-0.5, -0.5, 35.5, 27.5), 18, 14),
        ] {
            for sampling in [
                Sampling::plain(Border::Clamp),
                Sampling::plain(Border::Constant(17)),
                Sampling {
                    border: Border::Constant(0),
                    mono: true,
                    min_footprint: 3.0,
                },
            ] {
                let (mut a, mut r) = (vec![0.0; 3 * w * h], vec![0.0; 3 * w * h]);
                resample_planar(&f, b, w, h, &norm, &lut, sampling, &mut a);
                reference(&f, b, w, h, &norm, &lut, sampling, &mut r);
                for (x, y) in a.iter().zip(&r) {
                    assert!((x - y).abs() < 1e-4, "{x} vs {y} for {b:?} {sampling:?}");
                }
                // The rotated resampler, given the box's level steps, samples the same way.
                if sampling == Sampling::plain(Border::Clamp) {
                    use crate::geometry::Point;
                    let (sx, sy) = (b.width() / w as f32, b.height() / h as f32);
                    let (ax, ay) = (Point::new(sx, 0.0), Point::new(0.0, sy));
                    resample_affine(&f, Point::new(b.x0, b.y0), ax, ay, w, h, &norm, &lut, &mut a);
                    for (x, y) in a.iter().zip(&r) {
                        assert!((x - y).abs() < 1e-4, "affine {x} vs {y} for {b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn affine_resample_mirrors_and_transposes_exactly() {
        use crate::geometry::Point;
        let mut f = Frame::new(5, 4);
        for (i, v) in f.data.iter_mut().enumerate() {
            *v = (i * 37 % 256) as u8;
        }
        let lut = InputLut::new(&IDENT);
        // Mirrored: output column i samples image column 4 − i.
        let mut m = vec![0.0; 3 * 5 * 4];
        resample_affine(
            &f,
            Point::new(4.5, -0.5),
            Point::new(-1.0, 0.0),
            Point::new(0.0, 1.0),
            5,
            4,
            &IDENT,
            &lut,
            &mut m,
        );
        // Transposed (a quarter turn and a mirror): output (i, j) samples image (j, i).
        let mut t = vec![0.0; 3 * 4 * 5];
        resample_affine(
            &f,
            Point::new(-0.5, -0.5),
            Point::new(0.0, 1.0),
            Point::new(1.0, 0.0),
            4,
            5,
            &IDENT,
            &lut,
            &mut t,
        );
        for y in 0..4 {
            for x in 0..5 {
                let p = f.pixel(x, y);
                for c in 0..3 {
                    assert_eq!(m[c * 20 + y * 5 + (4 - x)], p[c] as f32);
                    assert_eq!(t[c * 20 + x * 4 + y], p[c] as f32);
                }
            }
        }
        // Far outside the frame, or with a NaN corner, it repeats the edge or stays finite.
        let mut o = vec![0.0; 3 * 4];
        resample_affine(
            &f,
            Point::new(-1e9, 1e9),
            Point::new(1.0, 0.0),
            Point::new(0.0, 1.0),
            2,
            2,
            &IDENT,
            &lut,
            &mut o,
        );
        assert_eq!(o[0], f.pixel(0, 3)[0] as f32);
        resample_affine(
            &f,
            Point::new(f32::NAN, 0.0),
            Point::new(1.0, 0.0),
            Point::new(0.0, 1.0),
            2,
            2,
            &IDENT,
            &lut,
            &mut o,
        );
        assert!(o.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn identity_crop_reproduces_pixels() {
        let mut f = Frame::new(4, 3);
        for (i, v) in f.data.iter_mut().enumerate() {
            *v = (i * 7 % 251) as u8;
        }
        let lut = InputLut::new(&IDENT);
        let mut out = vec![0.0; 3 * 4 * 3];
        // The full image in pixel-centre coordinates spans [-0.5, W-0.5].
        resample_planar(
            &f,
            BBox::new(-0.5, -0.5, 3.5, 2.5),
            4,
            3,
            &IDENT,
            &lut,
            Sampling::plain(Border::Clamp),
            &mut out,
        );
        for y in 0..3 {
            for x in 0..4 {
                let p = f.pixel(x, y);
                for c in 0..3 {
                    assert!((out[c * 12 + y * 4 + x] - p[c] as f32).abs() < 1e-4);
                }
            }
        }
    }

    #[test]
    fn bgr_and_normalisation_apply() {
        let mut f = Frame::new(1, 1);
        f.data.copy_from_slice(&[10, 20, 30]);
        let norm = Normalize {
            scale: 1.0 / 255.0,
            mean: [0.5, 0.5, 0.5],
            std: [0.5, 0.5, 0.5],
            bgr: true,
            grey: false,
        };
        let lut = InputLut::new(&norm);
        let mut out = vec![0.0; 3];
        resample_planar(
            &f,
            BBox::new(-0.5, -0.5, 0.5, 0.5),
            1,
            1,
            &norm,
            &lut,
            Sampling::plain(Border::Clamp),
            &mut out,
        );
        let expect = |v: f32| (v / 255.0 - 0.5) / 0.5;
        assert!((out[0] - expect(30.0)).abs() < 1e-5);
        assert!((out[2] - expect(10.0)).abs() < 1e-5);
    }

    #[test]
    fn constant_border_pads_outside() {
        let f = Frame::new(2, 2);
        let lut = InputLut::new(&IDENT);
        let mut out = vec![0.0; 3 * 4];
        resample_planar(
            &f,
            BBox::new(9.5, 9.5, 11.5, 11.5),
            2,
            2,
            &IDENT,
            &lut,
            Sampling::plain(Border::Constant(100)),
            &mut out,
        );
        assert!(out.iter().all(|&v| (v - 100.0).abs() < 1e-4));
    }
}
