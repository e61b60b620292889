//! Camera pixel formats → RGB: packed YUYV (4:2:2), NV12 (4:2:0, interleaved chroma), GREY,
//! and MJPEG. Rec.601 coefficients, limited ("studio") range unless the driver says full.
//! Each converter writes into the caller's frame, so the per-frame path does not allocate
//! (MJPEG excepted: the JPEG decoder allocates internally).

use crate::frame::Frame;

crate::choice::choice! {
    /// `source.format`: the pixel format to ask the camera for.
    pub enum FormatRequest {
        /// The first of yuyv, mjpeg, nv12, grey that the camera offers.
        Auto = "auto",
        Yuyv = "yuyv",
        Mjpeg = "mjpeg",
        Nv12 = "nv12",
        Grey = "grey",
    }
}

impl FormatRequest {
    /// The one format asked for; `None` for auto.
    pub fn pixel_format(self) -> Option<PixelFormat> {
        match self {
            FormatRequest::Auto => None,
            FormatRequest::Yuyv => Some(PixelFormat::Yuyv),
            FormatRequest::Mjpeg => Some(PixelFormat::Mjpeg),
            FormatRequest::Nv12 => Some(PixelFormat::Nv12),
            FormatRequest::Grey => Some(PixelFormat::Grey),
        }
    }
}

/// The pixel formats the V4L2 source can convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Yuyv,
    Nv12,
    Grey,
    Mjpeg,
}

impl PixelFormat {
    /// V4L2 fourcc code.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Nv12 => *b"NV12",
            PixelFormat::Grey => *b"GREY",
            PixelFormat::Mjpeg => *b"MJPG",
        }
    }
    pub fn from_fourcc(f: [u8; 4]) -> Option<Self> {
        [
            PixelFormat::Yuyv,
            PixelFormat::Nv12,
            PixelFormat::Grey,
            PixelFormat::Mjpeg,
        ]
        .into_iter()
        .find(|p| p.fourcc() == f)
    }
    /// Bytes a frame of `w`×`h` needs at least, given the row stride of the (first) plane.
    pub fn min_bytes(self, stride: usize, h: usize) -> usize {
        match self {
            PixelFormat::Yuyv | PixelFormat::Grey => stride * h,
            PixelFormat::Nv12 => stride * h + stride * h.div_ceil(2),
            PixelFormat::Mjpeg => 2,
        }
    }
}

/// Fixed-point (×1024) Rec.601 YCbCr → RGB.
#[derive(Clone, Copy)]
pub(crate) struct Coeffs {
    ys: i32,
    yo: i32,
    rv: i32,
    gu: i32,
    gv: i32,
    bu: i32,
}

impl Coeffs {
    pub(crate) fn new(full: bool) -> Self {
        if full {
            Coeffs {
                ys: 1024,
                yo: 0,
                rv: 1436,
                gu: 352,
                gv: 731,
                bu: 1815,
            }
        } else {
            Coeffs {
                ys: 1192,
                yo: 16,
                rv: 1634,
                gu: 401,
                gv: 833,
                bu: 2066,
            }
        }
    }
    #[inline]
    pub(crate) fn rgb(&self, y: u8, u: u8, v: u8, out: &mut [u8]) {
        let l = (y as i32 - self.yo) * self.ys;
        let (u, v) = (u as i32 - 128, v as i32 - 128);
        out[0] = ((l + self.rv * v + 512) >> 10).clamp(0, 255) as u8;
        out[1] = ((l - self.gu * u - self.gv * v + 512) >> 10).clamp(0, 255) as u8;
        out[2] = ((l + self.bu * u + 512) >> 10).clamp(0, 255) as u8;
    }
}

/// Pixels per [`Coeffs::block`].
pub(crate) const BLOCK: usize = 32;

impl Coeffs {
    /// [`Coeffs::rgb`] on 32 pixels that share 16 chroma samples (4:2:x), into 96 bytes of
    /// RGB. The sums run over fixed-size lane arrays, which LLVM vectorises; only the RGB
    /// interleave at the end is per byte. Exactly the per-pixel result (a test checks).
    #[inline(always)]
    pub(crate) fn block(&self, l: &[u8; BLOCK], u: &[u8; BLOCK / 2], v: &[u8; BLOCK / 2], out: &mut [u8]) {
        let (mut tr, mut tg, mut tb) = ([0i32; BLOCK], [0i32; BLOCK], [0i32; BLOCK]);
        for i in 0..BLOCK {
            let (u, v) = (u[i / 2] as i32 - 128, v[i / 2] as i32 - 128);
            tr[i] = self.rv * v + 512;
            tg[i] = 512 - self.gu * u - self.gv * v;
            tb[i] = self.bu * u + 512;
        }
        let (mut r, mut g, mut b) = ([0u8; BLOCK], [0u8; BLOCK], [0u8; BLOCK]);
        for i in 0..BLOCK {
            let l = (l[i] as i32 - self.yo) * self.ys;
            r[i] = ((l + tr[i]) >> 10).clamp(0, 255) as u8;
            g[i] = ((l + tg[i]) >> 10).clamp(0, 255) as u8;
            b[i] = ((l + tb[i]) >> 10).clamp(0, 255) as u8;
        }
        for (i, px) in out[..3 * BLOCK].chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&[r[i], g[i], b[i]]);
        }
    }
}

/// Why a buffer could not be converted.
#[derive(Debug, PartialEq)]
pub enum ConvertError {
    Short { have: usize, need: usize },
    Jpeg(String),
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConvertError::Short { have, need } => write!(f, "short frame: {have} bytes, need {need}"),
            ConvertError::Jpeg(e) => write!(f, "bad MJPEG frame: {e}"),
        }
    }
}

/// Convert one captured buffer into `frame` (reshaped to `w`×`h`).
pub fn to_rgb(
    fmt: PixelFormat,
    src: &[u8],
    stride: usize,
    w: usize,
    h: usize,
    full_range: bool,
    frame: &mut Frame,
) -> Result<(), ConvertError> {
    let need = fmt.min_bytes(stride, h);
    if src.len() < need {
        return Err(ConvertError::Short { have: src.len(), need });
    }
    // The YUV paths compiled for AVX2 where the CPU has it (the baseline x86-64 build has
    // 4-wide SSE2 only).
    #[cfg(target_arch = "x86_64")]
    if matches!(fmt, PixelFormat::Yuyv | PixelFormat::Nv12) && std::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(fmt: PixelFormat, src: &[u8], stride: usize, w: usize, h: usize, c: Coeffs, frame: &mut Frame) {
            yuv_rows(fmt, src, stride, w, h, c, frame)
        }
        // SAFETY: the CPU has AVX2.
        unsafe { avx2(fmt, src, stride, w, h, Coeffs::new(full_range), frame) };
        return Ok(());
    }
    let c = Coeffs::new(full_range);
    match fmt {
        PixelFormat::Yuyv | PixelFormat::Nv12 => yuv_rows(fmt, src, stride, w, h, c, frame),
        PixelFormat::Grey => {
            frame.reshape(w, h);
            for y in 0..h {
                let row = &src[y * stride..y * stride + w];
                let out = &mut frame.data[y * w * 3..(y + 1) * w * 3];
                for (x, &g) in row.iter().enumerate() {
                    // Grey cameras deliver full-range luma unless they say otherwise.
                    let v = if full_range {
                        g
                    } else {
                        (((g as i32 - 16) * 1192 + 512) >> 10).clamp(0, 255) as u8
                    };
                    out[x * 3..x * 3 + 3].fill(v);
                }
            }
        }
        PixelFormat::Mjpeg => {
            let img = image::load_from_memory_with_format(src, image::ImageFormat::Jpeg)
                .map_err(|e| ConvertError::Jpeg(e.to_string()))?
                .into_rgb8();
            frame.reshape(img.width() as usize, img.height() as usize);
            frame.data.copy_from_slice(img.as_raw());
        }
    }
    Ok(())
}

/// YUYV or NV12 rows (length already checked) → `frame`, 32-pixel blocks then single pixels.
#[inline(always)]
fn yuv_rows(fmt: PixelFormat, src: &[u8], stride: usize, w: usize, h: usize, c: Coeffs, frame: &mut Frame) {
    frame.reshape(w, h);
    let (luma, chroma) = src.split_at(if fmt == PixelFormat::Nv12 { stride * h } else { 0 });
    for y in 0..h {
        let out = &mut frame.data[y * w * 3..(y + 1) * w * 3];
        // Pixel x's (luma, Cb, Cr).
        let (row, crow) = match fmt {
            PixelFormat::Nv12 => (&luma[y * stride..], &chroma[(y / 2) * stride..]),
            _ => (&src[y * stride..], &src[y * stride..]),
        };
        let at = |x: usize| match fmt {
            PixelFormat::Nv12 => (row[x], crow[(x / 2) * 2], crow[(x / 2) * 2 + 1]),
            _ => (row[x * 2], row[(x / 2) * 4 + 1], row[(x / 2) * 4 + 3]),
        };
        let blocks = w / BLOCK;
        for b in 0..blocks {
            let x0 = b * BLOCK;
            let (mut l, mut u, mut v) = ([0u8; BLOCK], [0u8; BLOCK / 2], [0u8; BLOCK / 2]);
            match fmt {
                PixelFormat::Nv12 => {
                    l.copy_from_slice(&row[x0..x0 + BLOCK]);
                    for (j, uv) in crow[x0..x0 + BLOCK].chunks_exact(2).enumerate() {
                        (u[j], v[j]) = (uv[0], uv[1]);
                    }
                }
                _ => {
                    for (j, q) in row[2 * x0..2 * (x0 + BLOCK)].chunks_exact(4).enumerate() {
                        (l[2 * j], u[j], l[2 * j + 1], v[j]) = (q[0], q[1], q[2], q[3]);
                    }
                }
            }
            c.block(&l, &u, &v, &mut out[3 * x0..]);
        }
        for x in blocks * BLOCK..w {
            let (l, u, v) = at(x);
            c.rgb(l, u, v, &mut out[x * 3..x * 3 + 3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block paths give exactly the per-pixel formula, on widths with whole blocks, a
    /// pair tail and an odd last pixel, with a row stride wider than the row.
    #[test]
    fn yuyv_and_nv12_blocks_match_the_per_pixel_formula() {
        for full in [false, true] {
            let c = Coeffs::new(full);
            for w in [1usize, 2, 31, 32, 33, 70, 71] {
                let h = 3;
                for fmt in [PixelFormat::Yuyv, PixelFormat::Nv12] {
                    let stride = if fmt == PixelFormat::Yuyv {
                        2 * w.div_ceil(2) * 2 + 6
                    } else {
                        w.div_ceil(2) * 2 + 4
                    };
                    let src: Vec<u8> = (0..fmt.min_bytes(stride, h)).map(|i| (i * 73 % 256) as u8).collect();
                    let mut f = Frame::default();
                    to_rgb(fmt, &src, stride, w, h, full, &mut f).unwrap();
                    for y in 0..h {
                        for x in 0..w {
                            let (l, u, v) = match fmt {
                                PixelFormat::Yuyv => {
                                    let r = &src[y * stride..];
                                    (r[2 * x], r[(x / 2) * 4 + 1], r[(x / 2) * 4 + 3])
                                }
                                _ => {
                                    let cr = &src[stride * h + (y / 2) * stride..];
                                    (src[y * stride + x], cr[(x / 2) * 2], cr[(x / 2) * 2 + 1])
                                }
                            };
                            let mut want = [0u8; 3];
                            c.rgb(l, u, v, &mut want);
                            assert_eq!(f.pixel(x, y), want, "{fmt:?} full {full} w {w} at ({x}, {y})");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn yuyv_studio_red_and_white() {
        // Two pixels sharing chroma: studio-range red (Y=81, Cb=90, Cr=240), then Y=235 white
        // with the same chroma would be out of gamut, so use a grey pair for the second macropixel.
        let src = [81, 90, 81, 240, 235, 128, 16, 128];
        let mut f = Frame::new(1, 1);
        to_rgb(PixelFormat::Yuyv, &src, 8, 4, 1, false, &mut f).unwrap();
        assert_eq!((f.width, f.height), (4, 1));
        let px = |i: usize| [f.data[i * 3], f.data[i * 3 + 1], f.data[i * 3 + 2]];
        for i in 0..2 {
            let [r, g, b] = px(i);
            assert!(r >= 253 && g <= 2 && b <= 2, "pixel {i}: {:?}", px(i));
        }
        assert_eq!(px(2), [255, 255, 255]);
        assert_eq!(px(3), [0, 0, 0]);
    }

    #[test]
    fn nv12_honours_stride_and_shared_chroma() {
        // 2x2 image, stride 4 (2 padding bytes per row): grey Y=126, neutral chroma.
        let mut src = vec![0u8; 4 * 2 + 4];
        for y in 0..2 {
            src[y * 4] = 126;
            src[y * 4 + 1] = 126;
        }
        src[8] = 128;
        src[9] = 128;
        let mut f = Frame::new(1, 1);
        to_rgb(PixelFormat::Nv12, &src, 4, 2, 2, true, &mut f).unwrap();
        assert!(f.data.iter().all(|&v| v == 126), "{:?}", f.data);
    }

    #[test]
    fn grey_full_range_is_copied_and_short_buffers_are_errors() {
        let mut f = Frame::new(1, 1);
        to_rgb(PixelFormat::Grey, &[0, 77, 255, 9], 2, 2, 2, true, &mut f).unwrap();
        assert_eq!(&f.data[3..6], &[77, 77, 77]);
        assert_eq!(
            to_rgb(PixelFormat::Grey, &[0; 3], 2, 2, 2, true, &mut f),
            Err(ConvertError::Short { have: 3, need: 4 })
        );
        assert!(matches!(
            to_rgb(PixelFormat::Mjpeg, &[0xff, 0xd8, 0, 0], 0, 2, 2, true, &mut f),
            Err(ConvertError::Jpeg(_))
        ));
    }

    #[test]
    fn mjpeg_frames_decode_to_their_own_size() {
        let mut img = image::RgbImage::new(16, 8);
        for p in img.pixels_mut() {
            *p = image::Rgb([200, 40, 40]);
        }
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(&img)
            .unwrap();
        let mut f = Frame::new(1, 1);
        to_rgb(PixelFormat::Mjpeg, &jpeg, 0, 16, 8, true, &mut f).unwrap();
        assert_eq!((f.width, f.height), (16, 8));
        let [r, g, b] = [f.data[0] as i32, f.data[1] as i32, f.data[2] as i32];
        assert!(
            (r - 200).abs() < 8 && (g - 40).abs() < 8 && (b - 40).abs() < 8,
            "{r} {g} {b}"
        );
    }

    #[test]
    fn fourcc_round_trip() {
        for p in [
            PixelFormat::Yuyv,
            PixelFormat::Nv12,
            PixelFormat::Grey,
            PixelFormat::Mjpeg,
        ] {
            assert_eq!(PixelFormat::from_fourcc(p.fourcc()), Some(p));
        }
    }
}
