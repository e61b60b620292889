//! Camera pixel formats → RGB: packed YUYV (4:2:2), NV12 (4:2:0, interleaved chroma), GREY,
//! and MJPEG. Rec.601 coefficients, limited ("studio") range unless the driver says full.
//! Each converter writes into the caller's frame, so the per-frame path does not allocate
//! (MJPEG excepted: the JPEG decoder allocates internally).

use crate::frame::Frame;

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
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "yuyv" => PixelFormat::Yuyv,
            "nv12" => PixelFormat::Nv12,
            "grey" => PixelFormat::Grey,
            "mjpeg" => PixelFormat::Mjpeg,
            _ => return None,
        })
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
struct Coeffs {
    ys: i32,
    yo: i32,
    rv: i32,
    gu: i32,
    gv: i32,
    bu: i32,
}

impl Coeffs {
    fn new(full: bool) -> Self {
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
    fn rgb(&self, y: u8, u: u8, v: u8, out: &mut [u8]) {
        let l = (y as i32 - self.yo) * self.ys;
        let (u, v) = (u as i32 - 128, v as i32 - 128);
        out[0] = ((l + self.rv * v + 512) >> 10).clamp(0, 255) as u8;
        out[1] = ((l - self.gu * u - self.gv * v + 512) >> 10).clamp(0, 255) as u8;
        out[2] = ((l + self.bu * u + 512) >> 10).clamp(0, 255) as u8;
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
    let c = Coeffs::new(full_range);
    match fmt {
        PixelFormat::Yuyv => {
            frame.reshape(w, h);
            for y in 0..h {
                let row = &src[y * stride..];
                let out = &mut frame.data[y * w * 3..(y + 1) * w * 3];
                for x in 0..w {
                    let pair = (x / 2) * 4;
                    let (u, v) = (row[pair + 1], row[pair + 3]);
                    let yv = row[x * 2];
                    c.rgb(yv, u, v, &mut out[x * 3..x * 3 + 3]);
                }
            }
        }
        PixelFormat::Nv12 => {
            frame.reshape(w, h);
            let (luma, chroma) = src.split_at(stride * h);
            for y in 0..h {
                let lrow = &luma[y * stride..];
                let crow = &chroma[(y / 2) * stride..];
                let out = &mut frame.data[y * w * 3..(y + 1) * w * 3];
                for x in 0..w {
                    let ci = (x / 2) * 2;
                    c.rgb(lrow[x], crow[ci], crow[ci + 1], &mut out[x * 3..x * 3 + 3]);
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
