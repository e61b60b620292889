//! YUV4MPEG2 reader: 8-bit 4:2:0 (all chroma sitings), 4:2:2, 4:4:4 and mono.

use super::convert::{Coeffs, BLOCK};
use super::{FrameMeta, FrameSource, SourceInfo};
use crate::error::{Error, Result};
use crate::frame::Frame;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Frame rates read from a header outside this range are ignored (the source's default
/// applies): they would turn into an infinite or zero frame time downstream.
const MIN_FPS: f64 = 0.01;
const MAX_FPS: f64 = 10_000.0;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Chroma {
    C420,
    C422,
    C444,
    Mono,
}

/// Reads Y4M from a file or a pipe, converting each frame to RGB (Rec.601).
pub struct Y4mSource {
    reader: Box<dyn BufRead + Send>,
    path: PathBuf,
    info: SourceInfo,
    chroma: Chroma,
    full_range: bool,
    raw: Vec<u8>,
    index: u64,
}

/// Longest stream or frame header read: real ones are a few dozen bytes.
const MAX_HEADER_BYTES: usize = 4096;

impl Y4mSource {
    /// Replace the description used in logs (e.g. by a source that wraps this one).
    pub fn set_description(&mut self, d: String) {
        self.info.description = d;
    }

    pub fn open(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Self::from_reader(Box::new(BufReader::with_capacity(1 << 20, f)), path)
    }

    /// Parse the stream header from any reader; `path` names the stream in errors.
    pub fn from_reader(mut reader: Box<dyn BufRead + Send>, path: &Path) -> Result<Self> {
        let mut line = Vec::new();
        // Capped: a stream without a newline (`/dev/zero`) must not be read into memory.
        (&mut reader)
            .take(MAX_HEADER_BYTES as u64)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(path, e))?;
        if line.last() != Some(&b'\n') && line.len() == MAX_HEADER_BYTES {
            return Err(Error::input(
                path,
                format!("not a Y4M file (no end to its header in {MAX_HEADER_BYTES} bytes)"),
            ));
        }
        let header = std::str::from_utf8(&line)
            .map_err(|_| Error::input(path, "not a Y4M file (header is not text)"))?
            .trim_end();
        let mut tokens = header.split(' ');
        if tokens.next() != Some("YUV4MPEG2") {
            return Err(Error::input(path, "not a Y4M file (missing YUV4MPEG2 signature)"));
        }
        let (mut w, mut h, mut fps, mut chroma, mut full_range) = (0usize, 0usize, None, Chroma::C420, false);
        for t in tokens.filter(|t| !t.is_empty()) {
            // The tag is one character, which need not be ASCII in a hostile header.
            let (tag, val) = t.split_at(t.chars().next().map_or(0, char::len_utf8));
            match tag {
                "W" => {
                    w = val
                        .parse()
                        .map_err(|_| Error::input(path, format!("bad width {val:?} in Y4M header")))?
                }
                "H" => {
                    h = val
                        .parse()
                        .map_err(|_| Error::input(path, format!("bad height {val:?} in Y4M header")))?
                }
                "F" => {
                    let (n, d) = val.split_once(':').unwrap_or((val, "1"));
                    let (n, d): (f64, f64) = (n.parse().unwrap_or(0.0), d.parse().unwrap_or(0.0));
                    // A rate of inf, 0 or 1e300 would become an infinite or zero frame time.
                    if n > 0.0 && d > 0.0 && (n / d).is_finite() && (MIN_FPS..=MAX_FPS).contains(&(n / d)) {
                        fps = Some(n / d);
                    }
                }
                "C" => {
                    chroma = match val {
                        "420" | "420jpeg" | "420paldv" | "420mpeg2" => Chroma::C420,
                        "422" => Chroma::C422,
                        "444" => Chroma::C444,
                        "mono" => Chroma::Mono,
                        other => {
                            return Err(Error::input(
                                path,
                                format!(
                                "unsupported Y4M colour space C{other} (8-bit 420, 422, 444 and mono are supported)"
                            ),
                            ))
                        }
                    }
                }
                "I" if val != "p" && val != "?" => {
                    log::warn!("{}: interlaced Y4M (I{val}) is read as progressive", path.display());
                }
                "X" if val.eq_ignore_ascii_case("COLORRANGE=FULL") => full_range = true,
                _ => {}
            }
        }
        if w == 0 || h == 0 {
            return Err(Error::input(path, "Y4M header has no valid W and H"));
        }
        if w > 16384 || h > 16384 {
            return Err(Error::input(
                path,
                format!("Y4M frame size {w}x{h} is larger than 16384"),
            ));
        }
        let (cw, ch) = chroma_dims(chroma, w, h);
        let raw = vec![0u8; w * h + 2 * cw * ch];
        Ok(Self {
            reader,
            path: path.to_path_buf(),
            info: SourceInfo {
                width: w,
                height: h,
                fps,
                description: format!("y4m {} ({w}x{h}, {chroma:?})", path.display()),
            },
            chroma,
            full_range,
            raw,
            index: 0,
        })
    }
}

fn chroma_dims(c: Chroma, w: usize, h: usize) -> (usize, usize) {
    match c {
        Chroma::C420 => (w.div_ceil(2), h.div_ceil(2)),
        Chroma::C422 => (w.div_ceil(2), h),
        Chroma::C444 => (w, h),
        Chroma::Mono => (0, 0),
    }
}

impl FrameSource for Y4mSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<Option<FrameMeta>> {
        // Frame header: "FRAME" + optional parameters + '\n'. Read byte-wise without allocating.
        let mut head = [0u8; 5];
        let mut got = 0;
        while got < 5 {
            match self.reader.read(&mut head[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    return Err(Error::input(
                        &self.path,
                        format!("truncated Y4M: frame {} header is cut short", self.index),
                    ))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        if &head != b"FRAME" {
            return Err(Error::input(
                &self.path,
                format!("corrupt Y4M: frame {} does not start with FRAME", self.index),
            ));
        }
        let mut b = [0u8; 1];
        let mut params = 0usize;
        loop {
            params += 1;
            if params > MAX_HEADER_BYTES {
                return Err(Error::input(
                    &self.path,
                    format!(
                        "corrupt Y4M: frame {} header runs past {MAX_HEADER_BYTES} bytes",
                        self.index
                    ),
                ));
            }
            match self.reader.read(&mut b) {
                Ok(0) => {
                    return Err(Error::input(
                        &self.path,
                        format!("truncated Y4M: frame {} header is cut short", self.index),
                    ))
                }
                Ok(_) if b[0] == b'\n' => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        let mut filled = 0;
        while filled < self.raw.len() {
            match self.reader.read(&mut self.raw[filled..]) {
                Ok(0) => {
                    return Err(Error::input(
                        &self.path,
                        format!(
                            "truncated Y4M: frame {} has {filled} of {} bytes",
                            self.index,
                            self.raw.len()
                        ),
                    ))
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        let (w, h) = (self.info.width, self.info.height);
        frame.reshape(w, h);
        yuv_to_rgb(&self.raw, self.chroma, self.full_range, w, h, &mut frame.data);
        let meta = FrameMeta {
            index: self.index,
            time_s: self.index as f64 / self.info.fps.unwrap_or(super::DEFAULT_FPS),
        };
        self.index += 1;
        Ok(Some(meta))
    }
}

/// Rec.601 YCbCr → RGB, nearest-neighbour chroma (chroma siting differences are sub-pixel).
fn yuv_to_rgb(raw: &[u8], chroma: Chroma, full: bool, w: usize, h: usize, rgb: &mut [u8]) {
    // The same body compiled for AVX2 where the CPU has it: the baseline x86-64 build has
    // 4-wide SSE2, and the 32-pixel blocks below then run at half speed.
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(raw: &[u8], chroma: Chroma, full: bool, w: usize, h: usize, rgb: &mut [u8]) {
            yuv_to_rgb_impl(raw, chroma, full, w, h, rgb)
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { avx2(raw, chroma, full, w, h, rgb) };
        }
    }
    yuv_to_rgb_impl(raw, chroma, full, w, h, rgb)
}

#[inline(always)]
fn yuv_to_rgb_impl(raw: &[u8], chroma: Chroma, full: bool, w: usize, h: usize, rgb: &mut [u8]) {
    let (cw, chh) = chroma_dims(chroma, w, h);
    let (yp, rest) = raw.split_at(w * h);
    let (up, vp) = rest.split_at(cw * chh);
    let c = Coeffs::new(full);
    for (y, (out, yr)) in rgb.chunks_exact_mut(3 * w).zip(yp.chunks_exact(w)).take(h).enumerate() {
        if chroma == Chroma::Mono {
            for (o, &l) in out.chunks_exact_mut(3).zip(yr) {
                c.rgb(l, 128, 128, o);
            }
            continue;
        }
        let cy = if chroma == Chroma::C420 { y / 2 } else { y };
        let (ur, vr) = (&up[cy * cw..(cy + 1) * cw], &vp[cy * cw..(cy + 1) * cw]);
        if chroma == Chroma::C444 {
            for ((o, &l), (&u, &v)) in out.chunks_exact_mut(3).zip(yr).zip(ur.iter().zip(vr)) {
                c.rgb(l, u, v, o);
            }
            continue;
        }
        // 4:2:0 and 4:2:2: one chroma sample per pair of pixels, in 32-pixel blocks.
        let blocks = w / BLOCK;
        for ((o, l), (u, v)) in out
            .chunks_exact_mut(3 * BLOCK)
            .zip(yr.chunks_exact(BLOCK))
            .zip(ur.chunks_exact(BLOCK / 2).zip(vr.chunks_exact(BLOCK / 2)))
        {
            let as_arr = |s: &[u8]| -> [u8; BLOCK / 2] { s.try_into().unwrap_or([128; BLOCK / 2]) };
            c.block(&l.try_into().unwrap_or([0; BLOCK]), &as_arr(u), &as_arr(v), o);
        }
        for x in blocks * BLOCK..w {
            c.rgb(yr[x], ur[x / 2], vr[x / 2], &mut out[3 * x..3 * x + 3]);
        }
    }
}

/// Full-range BT.601 (JFIF) RGB → YCbCr, the inverse of what the reader applies to full-range files.
fn ycbcr(r: f32, g: f32, b: f32) -> [u8; 3] {
    [
        0.299 * r + 0.587 * g + 0.114 * b,
        128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b,
        128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b,
    ]
    .map(|v| v.round().clamp(0.0, 255.0) as u8)
}

/// Write frames as Y4M 4:4:4 (lossless for RGB round trips within rounding) or mono.
pub fn write_y4m_444(
    out: &mut impl std::io::Write,
    frames: &[Frame],
    fps_num: u32,
    fps_den: u32,
) -> std::io::Result<()> {
    let (w, h) = (frames[0].width, frames[0].height);
    writeln!(
        out,
        "YUV4MPEG2 W{w} H{h} F{fps_num}:{fps_den} Ip A1:1 C444 XCOLORRANGE=FULL"
    )?;
    for f in frames {
        write_y4m_444_frame(out, f)?;
    }
    Ok(())
}

/// Write one frame of a 4:4:4 full-range stream (after its header).
pub fn write_y4m_444_frame(out: &mut impl std::io::Write, f: &Frame) -> std::io::Result<()> {
    let n = f.width * f.height;
    let mut planes = vec![0u8; 3 * n];
    for i in 0..n {
        let [y, u, v] = ycbcr(f.data[3 * i] as f32, f.data[3 * i + 1] as f32, f.data[3 * i + 2] as f32);
        (planes[i], planes[n + i], planes[2 * n + i]) = (y, u, v);
    }
    out.write_all(b"FRAME\n")?;
    out.write_all(&planes)
}

/// Bytes of one 4:2:0 frame.
pub fn i420_len(w: usize, h: usize) -> usize {
    w * h + 2 * w.div_ceil(2) * h.div_ceil(2)
}

/// Convert `frame` to full-range 4:2:0 planes (chroma averaged over 2×2) in `out`, which is
/// resized to [`i420_len`] (no allocation once it has that capacity).
pub fn rgb_to_i420(frame: &Frame, out: &mut Vec<u8>) {
    let (w, h) = (frame.width, frame.height);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    out.resize(i420_len(w, h), 0);
    let (luma, chroma) = out.split_at_mut(w * h);
    let (cb, cr) = chroma.split_at_mut(cw * ch);
    for y in 0..h {
        for x in 0..w {
            let p = frame.pixel(x, y);
            luma[y * w + x] = ycbcr(p[0] as f32, p[1] as f32, p[2] as f32)[0];
        }
    }
    for cy in 0..ch {
        for cx in 0..cw {
            let (mut sum, mut n) = ([0f32; 3], 0.0);
            for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)].map(|(dx, dy)| (2 * cx + dx, 2 * cy + dy)) {
                if x < w && y < h {
                    let p = frame.pixel(x, y);
                    for c in 0..3 {
                        sum[c] += p[c] as f32;
                    }
                    n += 1.0;
                }
            }
            let [_, u, v] = ycbcr(sum[0] / n, sum[1] / n, sum[2] / n);
            (cb[cy * cw + cx], cr[cy * cw + cx]) = (u, v);
        }
    }
}

/// The stream header of a full-range 4:2:0 Y4M file, as [`rgb_to_i420`] frames need.
pub fn i420_header(w: usize, h: usize, fps_num: u32, fps_den: u32) -> String {
    format!("YUV4MPEG2 W{w} H{h} F{fps_num}:{fps_den} Ip A1:1 C420jpeg XCOLORRANGE=FULL\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn src(bytes: Vec<u8>) -> Result<Y4mSource> {
        Y4mSource::from_reader(Box::new(Cursor::new(bytes)), Path::new("mem.y4m"))
    }

    #[test]
    fn mono_grey_levels_map_to_rgb() {
        let mut b = b"YUV4MPEG2 W2 H1 F25:1 Cmono\nFRAME\n".to_vec();
        b.extend_from_slice(&[16, 235]);
        let mut s = src(b).unwrap();
        let mut f = Frame::default();
        let m = s.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(m.index, 0);
        assert_eq!(f.data, vec![0, 0, 0, 255, 255, 255]);
        assert!(s.next_frame(&mut f).unwrap().is_none());
        assert_eq!(s.info().fps, Some(25.0));
    }

    #[test]
    fn c420_red_block() {
        // Studio-range pure red: Y=81, Cb=90, Cr=240.
        let mut b = b"YUV4MPEG2 W2 H2 F30:1 C420jpeg\nFRAME\n".to_vec();
        b.extend_from_slice(&[81, 81, 81, 81, 90, 240]);
        let mut s = src(b).unwrap();
        let mut f = Frame::default();
        s.next_frame(&mut f).unwrap();
        let p = f.pixel(1, 1);
        assert!(p[0] >= 250 && p[1] <= 5 && p[2] <= 5, "{p:?}");
    }

    #[test]
    fn c444_round_trip_through_writer() {
        let mut f = Frame::new(3, 2);
        for (i, v) in f.data.iter_mut().enumerate() {
            *v = (i * 37 % 256) as u8;
        }
        let mut buf = Vec::new();
        write_y4m_444(&mut buf, &[f.clone()], 30, 1).unwrap();
        let mut s = src(buf).unwrap();
        let mut g = Frame::default();
        s.next_frame(&mut g).unwrap();
        for (a, b) in f.data.iter().zip(&g.data) {
            assert!((*a as i32 - *b as i32).abs() <= 2, "{a} vs {b}");
        }
    }

    /// The 32-pixel block path gives exactly what the per-pixel formula gives, on widths
    /// with whole blocks, a pair tail and an odd last pixel, in both ranges and subsamplings.
    #[test]
    fn block_conversion_matches_the_per_pixel_formula() {
        for (chroma, full) in [(Chroma::C420, false), (Chroma::C420, true), (Chroma::C422, false)] {
            for w in [1usize, 31, 32, 33, 70, 71, 97] {
                let h = 3;
                let (cw, ch) = chroma_dims(chroma, w, h);
                let raw: Vec<u8> = (0..w * h + 2 * cw * ch).map(|i| (i * 73 % 256) as u8).collect();
                let mut rgb = vec![0u8; 3 * w * h];
                yuv_to_rgb(&raw, chroma, full, w, h, &mut rgb);
                let (ys, yo, rv, gu, gv, bu) = if full {
                    (1024, 0, 1436, 352, 731, 1815)
                } else {
                    (1192, 16, 1634, 401, 833, 2066)
                };
                for y in 0..h {
                    let cy = if chroma == Chroma::C420 { y / 2 } else { y };
                    for x in 0..w {
                        let l = (raw[y * w + x] as i32 - yo) * ys;
                        let u = raw[w * h + cy * cw + x / 2] as i32 - 128;
                        let v = raw[w * h + cw * ch + cy * cw + x / 2] as i32 - 128;
                        let want = [l + rv * v, l - gu * u - gv * v, l + bu * u]
                            .map(|t| ((t + 512) >> 10).clamp(0, 255) as u8);
                        let got = &rgb[3 * (y * w + x)..][..3];
                        assert_eq!(got, want, "{chroma:?} full {full} w {w} at ({x}, {y})");
                    }
                }
            }
        }
    }

    #[test]
    fn i420_round_trip_through_the_reader() {
        let mut f = Frame::new(5, 3);
        for (i, p) in f.data.chunks_mut(3).enumerate() {
            p.copy_from_slice(&[(i * 17) as u8, 120, 200 - (i * 9) as u8]);
        }
        let mut planes = Vec::new();
        rgb_to_i420(&f, &mut planes);
        let mut bytes = i420_header(5, 3, 30, 1).into_bytes();
        bytes.extend_from_slice(b"FRAME\n");
        bytes.extend_from_slice(&planes);
        let mut s = src(bytes).unwrap();
        let mut g = Frame::default();
        s.next_frame(&mut g).unwrap().unwrap();
        assert_eq!((g.width, g.height), (5, 3));
        // Luma is exact; chroma is shared by 2×2 blocks, so allow the block's colour spread.
        for (a, b) in f.data.iter().zip(&g.data) {
            assert!(a.abs_diff(*b) <= 40, "{a} vs {b}");
        }
        let luma = |d: &[u8]| -> Vec<f32> {
            d.chunks(3)
                .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
                .collect()
        };
        for (a, b) in luma(&f.data).iter().zip(luma(&g.data)) {
            assert!((a - b).abs() <= 3.0, "{a} vs {b}");
        }
    }

    #[test]
    fn endless_headers_are_refused_after_a_bounded_read() {
        // A stream header with no newline, as from /dev/zero.
        let mut b = b"YUV4MPEG2 W4 H4 ".to_vec();
        b.resize(1 << 20, b'A');
        let e = src(b).err().unwrap().to_string();
        assert!(e.contains("no end to its header in 4096 bytes"), "{e}");
        // A frame header whose parameters never end.
        let mut b = b"YUV4MPEG2 W4 H4 F30:1 C420\nFRAME ".to_vec();
        b.resize(1 << 20, b'x');
        let mut s = src(b).unwrap();
        let e = s.next_frame(&mut Frame::default()).err().unwrap().to_string();
        assert!(e.contains("frame 0 header runs past 4096 bytes"), "{e}");
    }

    #[test]
    fn truncated_frame_is_an_error_naming_the_frame() {
        let mut b = b"YUV4MPEG2 W4 H4 F30:1 C420\nFRAME\n".to_vec();
        b.extend_from_slice(&[0; 24]);
        b.extend_from_slice(b"FRAME\n");
        b.extend_from_slice(&[0; 10]);
        let mut s = src(b).unwrap();
        let mut f = Frame::default();
        s.next_frame(&mut f).unwrap();
        let e = s.next_frame(&mut f).err().unwrap().to_string();
        assert!(
            e.contains("mem.y4m") && e.contains("frame 1") && e.contains("10 of 24"),
            "{e}"
        );
    }

    #[test]
    fn rejects_non_y4m_and_high_bit_depth() {
        assert!(src(b"RIFF....".to_vec())
            .err()
            .unwrap()
            .to_string()
            .contains("not a Y4M"));
        let e = src(b"YUV4MPEG2 W4 H4 C420p10\n".to_vec()).err().unwrap().to_string();
        assert!(e.contains("C420p10"), "{e}");
    }
}
