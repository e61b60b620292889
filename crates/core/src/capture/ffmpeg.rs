//! Any other video, decoded by an `ffmpeg` subprocess that pipes Y4M to us.

use super::{FrameMeta, FrameSource, SourceInfo, Y4mSource};
use crate::error::{Error, Result};
use crate::frame::Frame;
use std::collections::VecDeque;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Decodes through `ffmpeg -f yuv4mpegpipe`; ffmpeg's own errors are reported with the path.
pub struct FfmpegSource {
    child: Child,
    inner: Y4mSource,
    path: PathBuf,
    stderr: StderrTail,
}

/// ffmpeg's stderr, drained by a thread as it comes: a pipe nobody reads fills at 64 KB and
/// then blocks ffmpeg (a corrupt file can print that much), which stalls the decode. Keeps the
/// last few lines, each cut to a bounded length, for error messages.
struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StderrTail {
    const LINES: usize = 8;
    const LINE_BYTES: usize = 512;

    fn drain(mut e: ChildStderr) -> Self {
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let shared = lines.clone();
        let thread = std::thread::Builder::new()
            .name("ffmpeg-stderr".into())
            .spawn(move || {
                let (mut buf, mut line) = ([0u8; 4096], Vec::new());
                let push = |line: &mut Vec<u8>| {
                    let s = String::from_utf8_lossy(line).trim().to_string();
                    line.clear();
                    if !s.is_empty() {
                        let mut l = shared.lock().unwrap_or_else(|p| p.into_inner());
                        if l.len() == Self::LINES {
                            l.pop_front();
                        }
                        l.push_back(s);
                    }
                };
                while let Ok(n) = e.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    for &b in &buf[..n] {
                        if b == b'\n' {
                            push(&mut line);
                        } else if line.len() < Self::LINE_BYTES {
                            line.push(b);
                        }
                    }
                }
                push(&mut line);
            })
            .ok();
        Self { lines, thread }
    }

    /// Everything read once ffmpeg has closed its stderr: the last line, or "no output".
    fn last_line(&mut self) -> String {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        l.back().cloned().unwrap_or_else(|| "no output".into())
    }
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
        let mut stderr = StderrTail::drain(child.stderr.take().expect("stderr was piped"));
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
                stderr,
            }),
            Err(_) => {
                // No header: ffmpeg has failed or is about to; it must not block on its stdout.
                let _ = child.kill();
                let _ = child.wait();
                let msg = stderr.last_line();
                Err(Error::input(path, format!("ffmpeg could not decode it: {msg}")))
            }
        }
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
                    let msg = self.stderr.last_line();
                    Err(Error::input(&self.path, format!("ffmpeg failed ({status}): {msg}")))
                }
            }
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let msg = self.stderr.last_line();
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
