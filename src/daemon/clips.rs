//! Field clips: the last seconds of frames and landmarks, saved for `tune` when a trigger fires
//! or a `record` command arrives.
//!
//! The inference thread pushes every processed frame (as 4:2:0, 1.5 bytes per pixel) and its
//! faces into a [`Ring`] bounded by time (`clips.seconds`) and memory (`clips.max_ring_mb`);
//! ring slots are recycled, so once the ring is full pushing allocates nothing. A save runs on
//! the writer thread: it holds the ring's lock while writing, and the inference thread never waits
//! for it (`try_lock`; frames it cannot push meanwhile are only missing from the history).
//!
//! A clip is a directory `clips.dir/YYYYMMDDTHHMMSSZ-NNN-REASON/` with
//! - `frames.y4m`: full-range 4:2:0 Y4M, readable by `steadyface track`;
//! - `landmarks.jsonl`: the daemon's landmark records (with signals), frames numbered from 0;
//! - `clip.json`: what, when, why ([`ClipMeta`]).
//!
//! It is written under a dot-name and renamed when complete, so readers and the quota never see
//! half a clip. After each save the oldest clips are deleted until all fit `clips.max_total_mb`.

use crate::capture::y4m::{i420_header, i420_len, rgb_to_i420};
use crate::config::ClipsConfig;
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::pipeline::Faces;
use crate::records::{FaceRecord, FrameRecord};
use crate::signals::Outputs;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One processed frame in the ring.
struct Entry {
    index: u64,
    time_s: f64,
    width: usize,
    height: usize,
    yuv: Vec<u8>,
    faces: Faces,
    signals: Outputs,
}

/// Recent frames, bounded by time and memory.
pub struct Ring {
    seconds: f64,
    max_bytes: usize,
    entries: VecDeque<Entry>,
    spare: Vec<Entry>,
}

impl Ring {
    pub fn new(cfg: &ClipsConfig) -> Self {
        Self {
            seconds: cfg.seconds,
            max_bytes: (cfg.max_ring_mb as usize) << 20,
            entries: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Source frame number of the newest frame (0 when empty).
    pub fn newest_index(&self) -> u64 {
        self.entries.back().map_or(0, |e| e.index)
    }

    /// Add a processed frame, recycling the oldest slot when the ring is full.
    pub fn push(&mut self, index: u64, time_s: f64, frame: &Frame, faces: &Faces, signals: &Outputs) {
        let cap = (self.max_bytes / i420_len(frame.width, frame.height).max(1)).max(1);
        while let Some(front) = self.entries.front() {
            let too_old = front.time_s < time_s - self.seconds;
            // A new source (time went backwards) starts a new history.
            let restart = front.time_s > time_s;
            if too_old || restart || self.entries.len() >= cap {
                let e = self.entries.pop_front().expect("front exists");
                self.spare.push(e);
            } else {
                break;
            }
        }
        let mut e = self.spare.pop().unwrap_or_else(|| Entry {
            index: 0,
            time_s: 0.0,
            width: 0,
            height: 0,
            yuv: Vec::new(),
            faces: Faces::new(),
            signals: Outputs::new(),
        });
        rgb_to_i420(frame, &mut e.yuv);
        (e.index, e.time_s, e.width, e.height) = (index, time_s, frame.width, frame.height);
        e.faces.clone_from(faces);
        e.signals.clone_from(signals);
        self.entries.push_back(e);
    }

    /// The newest run of frames of one size (a camera that renegotiated starts a new run).
    fn newest_run(&self) -> impl Iterator<Item = &Entry> {
        let dims = self.entries.back().map(|e| (e.width, e.height));
        let skip = self
            .entries
            .iter()
            .rposition(|e| Some((e.width, e.height)) != dims)
            .map_or(0, |i| i + 1);
        self.entries.iter().skip(skip)
    }
}

/// `clip.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipMeta {
    pub device: String,
    /// `record` (a command), `low_score` or `jitter` (a trigger).
    pub reason: String,
    /// The command's note, if any.
    #[serde(default)]
    pub note: Option<String>,
    /// Unix time of the save.
    pub created: f64,
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    /// Frame rate estimated from the frames' times (also in the Y4M header).
    pub fps: f64,
    /// Source frame numbers of the first and last frame.
    pub source_frames: [u64; 2],
    /// Landmark scheme of the records, and the software that wrote them.
    pub scheme: String,
    pub version: String,
}

/// What a save should record.
#[derive(Debug, Clone)]
pub struct Request {
    pub reason: &'static str,
    pub note: Option<String>,
    pub device: String,
    pub scheme: String,
}

/// UTC `YYYYMMDDTHHMMSSZ` from Unix seconds (civil-from-days, H. Hinnant).
fn utc_stamp(unix: f64) -> String {
    let secs = unix.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Write the ring's newest run as a clip under `dir`; returns the clip's directory.
pub fn save(ring: &Ring, dir: &Path, req: &Request, seq: u64) -> Result<PathBuf> {
    let frames: Vec<&Entry> = ring.newest_run().collect();
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return Err(Error::Usage("no frames recorded yet".into()));
    };
    let created = crate::publish::schema::unix_now();
    let name = format!("{}-{seq:03}-{}", utc_stamp(created), req.reason);
    let tmp = dir.join(format!(".{name}.partial"));
    let done = dir.join(&name);
    let fps = if frames.len() > 1 && last.time_s > first.time_s {
        (frames.len() - 1) as f64 / (last.time_s - first.time_s)
    } else {
        crate::capture::DEFAULT_FPS
    };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&tmp)?;
        let mut y4m = std::io::BufWriter::new(std::fs::File::create(tmp.join("frames.y4m"))?);
        let milli = (fps * 1000.0).round().max(1.0) as u32;
        y4m.write_all(i420_header(first.width, first.height, milli, 1000).as_bytes())?;
        let mut jsonl = std::io::BufWriter::new(std::fs::File::create(tmp.join("landmarks.jsonl"))?);
        for (i, e) in frames.iter().enumerate() {
            y4m.write_all(b"FRAME\n")?;
            y4m.write_all(&e.yuv)?;
            let rec = FrameRecord {
                frame: i as u64,
                time_s: ((e.time_s - first.time_s) * 1e6).round() / 1e6,
                file: None,
                faces: e
                    .faces
                    .iter()
                    .enumerate()
                    .map(|(k, f)| FaceRecord {
                        signals: e.signals.get(k).copied(),
                        ..FaceRecord::from_obs(f, &req.scheme)
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut jsonl, &rec)?;
            jsonl.write_all(b"\n")?;
        }
        y4m.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        jsonl.flush()?;
        let meta = ClipMeta {
            device: req.device.clone(),
            reason: req.reason.into(),
            note: req.note.clone(),
            created,
            frames: frames.len(),
            width: first.width,
            height: first.height,
            fps,
            source_frames: [first.index, last.index],
            scheme: req.scheme.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        std::fs::write(tmp.join("clip.json"), serde_json::to_vec_pretty(&meta)?)?;
        std::fs::rename(&tmp, &done)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        Error::io(&done, e)
    })?;
    Ok(done)
}

/// Bytes of the files directly in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Delete the oldest complete clips in `dir` until all fit `max_bytes`; returns what was
/// deleted, with sizes. Clip names start with their UTC time, so name order is age order.
pub fn enforce_quota(dir: &Path, max_bytes: u64) -> Result<Vec<(PathBuf, u64)>> {
    let mut clips: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.join("clip.json").is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .map(|p| {
            let b = dir_bytes(&p);
            (p, b)
        })
        .collect();
    clips.sort();
    let mut total: u64 = clips.iter().map(|c| c.1).sum();
    let mut deleted = Vec::new();
    for (p, b) in clips {
        if total <= max_bytes {
            break;
        }
        std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        total -= b;
        deleted.push((p, b));
    }
    Ok(deleted)
}

/// Why a trigger fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    LowScore,
    Jitter,
}

impl Fired {
    pub fn reason(self) -> &'static str {
        match self {
            Fired::LowScore => "low_score",
            Fired::Jitter => "jitter",
        }
    }
}

/// The config triggers: exponential moving averages (time constant `trigger_window_s`) of the
/// mean landmark score and of the live jitter, over frames with a tracked face.
pub struct Trigger {
    score_below: f32,
    jitter_above: f32,
    window: f64,
    cooldown: f64,
    score: Option<f32>,
    jitter: Option<f32>,
    /// Seconds of face frames averaged so far (no firing before one window).
    warm: f64,
    last_t: Option<f64>,
    last_fired: Option<f64>,
}

impl Trigger {
    pub fn new(cfg: &ClipsConfig) -> Self {
        Self {
            score_below: cfg.trigger_score_below,
            jitter_above: cfg.trigger_jitter_above,
            window: cfg.trigger_window_s,
            cooldown: cfg.cooldown_s,
            score: None,
            jitter: None,
            warm: 0.0,
            last_t: None,
            last_fired: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.score_below > 0.0 || self.jitter_above > 0.0
    }

    /// Feed one frame: its mean face score and jitter (`None` without a face / a previous frame).
    pub fn update(&mut self, t: f64, score: Option<f32>, jitter: Option<f32>) -> Option<Fired> {
        let dt = self.last_t.map_or(0.0, |l| (t - l).clamp(0.0, 1.0));
        self.last_t = Some(t);
        let Some(score) = score else {
            // No face: nothing to judge; the averages restart with the next face.
            (self.score, self.jitter, self.warm) = (None, None, 0.0);
            return None;
        };
        let a = (1.0 - (-dt / self.window).exp()) as f32;
        let ema = |old: Option<f32>, new: f32| Some(old.map_or(new, |o| o + a * (new - o)));
        self.score = ema(self.score, score);
        if let Some(j) = jitter {
            self.jitter = ema(self.jitter, j);
        }
        self.warm += dt;
        if self.warm < self.window || self.last_fired.is_some_and(|f| t - f < self.cooldown) {
            return None;
        }
        let fired = if self.score_below > 0.0 && self.score.is_some_and(|s| s < self.score_below) {
            Some(Fired::LowScore)
        } else if self.jitter_above > 0.0 && self.jitter.is_some_and(|j| j > self.jitter_above) {
            Some(Fired::Jitter)
        } else {
            None
        };
        if fired.is_some() {
            self.last_fired = Some(t);
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::FaceObs;
    use crate::geometry::Point;

    fn cfg(seconds: f64, max_ring_mb: u64) -> ClipsConfig {
        ClipsConfig {
            seconds,
            max_ring_mb,
            ..ClipsConfig::default()
        }
    }

    fn frame(v: u8) -> Frame {
        let mut f = Frame::new(64, 48);
        f.data.fill(v);
        f
    }

    #[test]
    fn ring_is_bounded_by_time_and_memory_and_recycles() {
        let mut r = Ring::new(&cfg(1.0, 1));
        let (faces, sig) = (Faces::new(), Outputs::new());
        for k in 0..100 {
            r.push(k, k as f64 / 30.0, &frame(k as u8), &faces, &sig);
        }
        // 1 s at 30 fps: frames whose time is within a second of the newest.
        assert_eq!(r.len(), 31);
        assert_eq!(r.entries.front().unwrap().index, 69);
        // 1 MiB holds 227 frames of 64×48 (4608 B); so the second bound is memory.
        let mut r = Ring::new(&cfg(100.0, 1));
        for k in 0..300 {
            r.push(k, k as f64 / 30.0, &frame(1), &faces, &sig);
        }
        assert_eq!(r.len(), (1 << 20) / 4608);
        // Steady state recycles: the slots in use plus spares never exceed the bound + 1.
        assert!(r.len() + r.spare.len() <= (1 << 20) / 4608 + 1);
    }

    #[test]
    fn save_writes_a_clip_that_reads_back_and_the_quota_deletes_oldest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = Ring::new(&cfg(10.0, 16));
        let mut faces = Faces::new();
        let mut o = FaceObs {
            id: 3,
            score: 0.8,
            ..FaceObs::default()
        };
        let _ = o.points.push(Point::new(10.0, 20.0));
        let _ = o.conf.push(0.9);
        let _ = faces.push(o);
        for k in 0..12 {
            r.push(
                100 + k,
                5.0 + k as f64 / 25.0,
                &frame(40 + k as u8),
                &faces,
                &Outputs::new(),
            );
        }
        let req = Request {
            reason: "record",
            note: Some("test".into()),
            device: "car-1".into(),
            scheme: "osf66".into(),
        };
        let a = save(&r, tmp.path(), &req, 1).unwrap();
        let meta: ClipMeta = serde_json::from_slice(&std::fs::read(a.join("clip.json")).unwrap()).unwrap();
        assert_eq!(
            (meta.frames, meta.width, meta.height, meta.source_frames),
            (12, 64, 48, [100, 111])
        );
        assert!((meta.fps - 25.0).abs() < 1e-6);
        let recs = crate::records::read_jsonl(&a.join("landmarks.jsonl")).unwrap();
        assert_eq!(recs.len(), 12);
        assert_eq!((recs[11].frame, recs[11].time_s), (11, 0.44));
        assert_eq!(recs[0].faces[0].points, vec![[10.0, 20.0]]);
        let mut src = crate::capture::y4m::Y4mSource::open(&a.join("frames.y4m")).unwrap();
        let mut f = Frame::default();
        let mut n = 0;
        while let Some(m) = crate::capture::FrameSource::next_frame(&mut src, &mut f).unwrap() {
            assert_eq!(f.pixel(5, 5)[1], 40 + m.index as u8);
            n += 1;
        }
        assert_eq!(n, 12);

        // Two more clips; a quota that fits two deletes the first.
        let b = save(&r, tmp.path(), &req, 2).unwrap();
        let c = save(&r, tmp.path(), &req, 3).unwrap();
        let size = dir_bytes(&a);
        std::fs::create_dir(tmp.path().join(".half.partial")).unwrap();
        let gone = enforce_quota(tmp.path(), 2 * size + size / 2).unwrap();
        assert_eq!(gone, vec![(a.clone(), size)]);
        assert!(!a.exists() && b.exists() && c.exists());
        assert!(
            tmp.path().join(".half.partial").exists(),
            "partial clips are not the quota's"
        );
    }

    #[test]
    fn triggers_average_over_the_window_and_cool_down() {
        let mut t = Trigger::new(&ClipsConfig {
            trigger_score_below: 0.6,
            trigger_window_s: 1.0,
            cooldown_s: 10.0,
            ..ClipsConfig::default()
        });
        assert!(t.enabled());
        let mut fired = Vec::new();
        for k in 0..900 {
            let time = k as f64 / 30.0;
            // Good faces for 5 s, then poor ones (0.5) for the rest.
            let score = if time < 5.0 { 0.8 } else { 0.5 };
            if let Some(f) = t.update(time, Some(score), None) {
                fired.push((k, f));
            }
        }
        // The average crosses 0.6 about 1.1 s (ln 3 windows) after the change; the cooldown
        // allows one more every 10 s.
        assert_eq!(fired.len(), 3, "{fired:?}");
        assert!((181..=186).contains(&fired[0].0), "{fired:?}");
        assert_eq!(fired[1].0 - fired[0].0, 300);
        assert!(fired.iter().all(|f| f.1 == Fired::LowScore));
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0.0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_795_996_800.0 + 3661.0), "20261130T010101Z");
        assert_eq!(utc_stamp(951_782_400.0), "20000229T000000Z");
    }
}
