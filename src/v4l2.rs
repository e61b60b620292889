//! V4L2 cameras through the `v4l` crate: device by path or `/dev/v4l/by-id` name, format and
//! size/fps negotiation, mmap streaming, and a dequeue timeout so that a silent camera is
//! reported as lost instead of hanging the capture thread.

use crate::capture::convert::{to_rgb, PixelFormat};
use crate::capture::{FrameMeta, FrameSource, SourceInfo};
use crate::error::{Error, Result};
use crate::frame::Frame;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC, Fraction};

/// What to ask the camera for.
#[derive(Debug, Clone)]
pub struct V4l2Request {
    /// A path, or a name under `/dev/v4l/by-id`.
    pub device: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// `None`: the first of YUYV, MJPEG, NV12, GREY that the camera offers.
    pub format: Option<PixelFormat>,
    pub timeout: Duration,
}

/// Formats in the order `auto` prefers them: uncompressed first (cheap, exact), then MJPEG.
const PREFERENCE: [PixelFormat; 4] = [
    PixelFormat::Yuyv,
    PixelFormat::Mjpeg,
    PixelFormat::Nv12,
    PixelFormat::Grey,
];

pub struct V4l2Source {
    // `stream` holds its own handle to the device; `_dev` keeps the open fd for controls.
    stream: Stream<'static>,
    _dev: Device,
    path: PathBuf,
    info: SourceInfo,
    fmt: PixelFormat,
    stride: usize,
    full_range: bool,
    started: Option<Instant>,
    index: u64,
}

/// Resolve `device` to a path: absolute paths as given, bare names under `/dev/v4l/by-id`.
pub fn device_path(device: &str) -> PathBuf {
    if device.contains('/') {
        PathBuf::from(device)
    } else {
        Path::new("/dev/v4l/by-id").join(device)
    }
}

fn fail(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::input(path, format!("camera: {what}: {e}"))
}

impl V4l2Source {
    pub fn open(req: &V4l2Request) -> Result<Self> {
        let path = device_path(&req.device);
        if !path.exists() {
            return Err(Error::input(&path, "camera: no such device"));
        }
        let dev = Device::with_path(&path).map_err(|e| fail(&path, "cannot open", e))?;
        let caps = dev.query_caps().map_err(|e| fail(&path, "not a V4L2 device", e))?;
        let offered: Vec<[u8; 4]> = dev
            .enum_formats()
            .map_err(|e| fail(&path, "cannot list formats", e))?
            .iter()
            .map(|d| d.fourcc.repr)
            .collect();
        let names = || {
            offered
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let fmt = match req.format {
            Some(f) if offered.contains(&f.fourcc()) => f,
            Some(f) => {
                return Err(fail(
                    &path,
                    "source.format",
                    format!("{f:?} is not offered (the camera has: {})", names()),
                ))
            }
            None => *PREFERENCE
                .iter()
                .find(|p| offered.contains(&p.fourcc()))
                .ok_or_else(|| {
                    fail(
                        &path,
                        "no supported pixel format",
                        format!("the camera has: {}", names()),
                    )
                })?,
        };
        let mut want = dev.format().map_err(|e| fail(&path, "cannot read format", e))?;
        want.width = req.width;
        want.height = req.height;
        want.fourcc = FourCC::new(&fmt.fourcc());
        let got = dev.set_format(&want).map_err(|e| fail(&path, "cannot set format", e))?;
        if got.fourcc.repr != fmt.fourcc() {
            return Err(fail(
                &path,
                "format refused",
                format!("asked for {fmt:?}, got {}", got.fourcc),
            ));
        }
        if (got.width, got.height) != (req.width, req.height) {
            log::info!(
                "{}: asked for {}x{}, the driver gave {}x{}",
                path.display(),
                req.width,
                req.height,
                got.width,
                got.height
            );
        }
        // Frame interval 1/fps as a fraction with millisecond-fps precision.
        let fps_milli = (req.fps * 1000.0).round().max(1.0) as u32;
        let fps = match dev.set_params(&v4l::video::capture::Parameters::new(Fraction::new(1000, fps_milli))) {
            Ok(p) if p.interval.numerator > 0 => p.interval.denominator as f64 / p.interval.numerator as f64,
            Ok(_) => req.fps,
            Err(e) => {
                log::info!(
                    "{}: cannot set the frame rate ({e}); using the driver's",
                    path.display()
                );
                req.fps
            }
        };
        let mut stream =
            Stream::with_buffers(&dev, Type::VideoCapture, 4).map_err(|e| fail(&path, "cannot map buffers", e))?;
        stream.set_timeout(req.timeout);
        let full_range = matches!(got.quantization, v4l::format::Quantization::FullRange) || fmt == PixelFormat::Mjpeg;
        let stride = if got.stride > 0 {
            got.stride as usize
        } else {
            match fmt {
                PixelFormat::Yuyv => got.width as usize * 2,
                _ => got.width as usize,
            }
        };
        let description = format!(
            "{} ({} {}, {:?} {}x{} at {:.1} fps)",
            path.display(),
            caps.card,
            caps.driver,
            fmt,
            got.width,
            got.height,
            fps
        );
        log::info!("camera: {description}");
        Ok(Self {
            stream,
            _dev: dev,
            info: SourceInfo {
                width: got.width as usize,
                height: got.height as usize,
                fps: Some(fps),
                description,
            },
            path,
            fmt,
            stride,
            full_range,
            started: None,
            index: 0,
        })
    }
}

impl FrameSource for V4l2Source {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<Option<FrameMeta>> {
        let (w, h) = (self.info.width, self.info.height);
        let (buf, meta) = self.stream.next().map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::TimedOut {
                "no frame within source.timeout_ms"
            } else {
                "capture failed"
            };
            fail(&self.path, what, e)
        })?;
        let used = (meta.bytesused as usize).min(buf.len());
        let used = if used == 0 { buf.len() } else { used };
        to_rgb(self.fmt, &buf[..used], self.stride, w, h, self.full_range, frame)
            .map_err(|e| fail(&self.path, &format!("frame {}", self.index), e))?;
        let now = Instant::now();
        let t0 = *self.started.get_or_insert(now);
        let m = FrameMeta {
            index: self.index,
            time_s: (now - t0).as_secs_f64(),
        };
        self.index += 1;
        Ok(Some(m))
    }
}
