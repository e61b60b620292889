//! Any other video, decoded by an `ffmpeg` subprocess that pipes Y4M to us.

use super::{FrameMeta, FrameSource, SourceInfo, Y4mSource};
use crate::error::{Error, Result};
use crate::frame::Frame;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Decodes through `ffmpeg -f yuv4mpegpipe`; ffmpeg's own errors are reported with the path.
pub struct FfmpegSource {
    child: Child,
    inner: Y4mSource,
    path: PathBuf,
}

impl FfmpegSource {
    pub fn open(path: &Path) -> Result<Self> {
        let mut child = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(path)
            .args(["-f", "yuv4mpegpipe", "-pix_fmt", "yuv444p", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::input(
                        path,
                        "not a .y4m file or an image directory, and reading other video needs `ffmpeg` on PATH \
                         (Debian/Ubuntu: apt-get install ffmpeg), or convert it to .y4m first",
                    )
                } else {
                    Error::input(path, format!("could not start ffmpeg: {e}"))
                }
            })?;
        let stdout = child.stdout.take().expect("stdout was piped");
        match Y4mSource::from_reader(Box::new(BufReader::with_capacity(1 << 20, stdout)), path) {
            Ok(mut inner) => Ok(Self {
                inner: {
                    let i = inner.info();
                    let d = format!("ffmpeg {} ({}x{})", path.display(), i.width, i.height);
                    inner.set_description(d);
                    inner
                },
                child,
                path: path.to_path_buf(),
            }),
            Err(_) => {
                let msg = ffmpeg_stderr(&mut child);
                Err(Error::input(path, format!("ffmpeg could not decode it: {msg}")))
            }
        }
    }
}

fn ffmpeg_stderr(child: &mut Child) -> String {
    let mut msg = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut msg);
    }
    let _ = child.wait();
    let msg = msg.trim();
    if msg.is_empty() {
        "no output".into()
    } else {
        msg.lines().last().unwrap_or(msg).to_string()
    }
}

impl FrameSource for FfmpegSource {
    fn info(&self) -> &SourceInfo {
        self.inner.info()
    }
    fn next_frame(&mut self, frame: &mut Frame) -> Result<Option<FrameMeta>> {
        match self.inner.next_frame(frame) {
            Ok(Some(m)) => Ok(Some(m)),
            Ok(None) => {
                let status = self.child.wait().map_err(|e| Error::io(&self.path, e))?;
                if status.success() {
                    Ok(None)
                } else {
                    let msg = ffmpeg_stderr(&mut self.child);
                    Err(Error::input(&self.path, format!("ffmpeg failed ({status}): {msg}")))
                }
            }
            Err(e) => {
                let msg = ffmpeg_stderr(&mut self.child);
                Err(Error::input(&self.path, format!("{e}; ffmpeg said: {msg}")))
            }
        }
    }
}

impl Drop for FfmpegSource {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
