//! `steadyface run`: the long-running service.
//!
//! Three stages, each on its own thread of control, joined by bounded hand-offs so that no
//! stage can stall another:
//!
//! ```text
//! capture thread ──Mailbox (1 frame, newest wins)──▶ inference thread ──mpsc (bounded)──▶ publisher (async)
//!   camera / replay                                    pipeline + track events              stdout, MQTT, metrics,
//!   reopen with back-off                                                                    systemd notify/watchdog
//! ```
//!
//! [`run`] takes the stop signal as a future (as mini-redis does), so tests and the binary
//! decide what stopping means; [`serve`] is the binary's loop around it: SIGTERM/SIGINT stop,
//! SIGHUP re-reads the config and restarts the stages with it (keeping the old config when
//! the new one is invalid).

pub mod check;
pub mod clips;
pub mod intake;
pub mod mailbox;
pub mod systemd;

use crate::assembly::Models;
use crate::capture::{self, FrameSource, ReplayPace, SourceKind};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::face::MAX_FACES;
use crate::frame::Frame;
use crate::pipeline::{Faces, Pipeline};
use crate::publish::schema::{unix_now, CommandMsg, Counts, EventKind, EventMsg, LandmarksMsg, SCHEMA_VERSION};
use crate::publish::{mqtt, Outgoing, Publisher};
use crate::records::FaceRecord;
use crate::signals::{Events as SignalEvents, Outputs as SignalOutputs, Signals};
use mailbox::{Captured, Mailbox};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Why [`run`] was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Shutdown,
    Reload,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Stopped(Stop),
    /// A replayed clip ended (without `source.repeat`).
    SourceEnded,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub ended: Ended,
    pub counts: Counts,
    pub device: String,
}

/// Counters and liveness shared by the stages (all relaxed atomics: they are statistics).
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    captured: AtomicU64,
    processed: AtomicU64,
    dropped_capture: AtomicU64,
    dropped_landmarks: AtomicU64,
    dropped_events: AtomicU64,
    failed_frames: AtomicU64,
    camera_outages: AtomicU64,
    clips_saved: AtomicU64,
    clips_deleted: AtomicU64,
    clips_failed: AtomicU64,
    commands_rejected: AtomicU64,
    /// The capture thread has reported the source lost (and not yet restored).
    source_down: AtomicBool,
    /// Milliseconds since `t0` of the last sign of progress: a processed frame, or an attempt
    /// to reopen a lost camera. The watchdog is pinged only while this is recent.
    heartbeat_ms: AtomicU64,
}

impl Shared {
    fn beat(&self, t0: Instant) {
        self.heartbeat_ms
            .store(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn counts(&self) -> Counts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            captured: g(&self.captured),
            processed: g(&self.processed),
            dropped_capture: g(&self.dropped_capture),
            dropped_landmarks: g(&self.dropped_landmarks),
            dropped_events: g(&self.dropped_events),
            failed_frames: g(&self.failed_frames),
            camera_outages: g(&self.camera_outages),
            clips_saved: g(&self.clips_saved),
            clips_deleted: g(&self.clips_deleted),
            clips_failed: g(&self.clips_failed),
            commands_rejected: g(&self.commands_rejected),
            ..Counts::default()
        }
    }
}

/// The publisher's channel. The stages hold it strongly; the async loop holds it weakly, so
/// the channel still closes (and a replay ends the run) when the stages are done.
#[derive(Clone)]
enum Tx {
    Strong(mpsc::Sender<Outgoing>),
    Weak(mpsc::WeakSender<Outgoing>),
}

/// Sends events from any thread with one sequence.
#[derive(Clone)]
struct Events {
    tx: Tx,
    seq: Arc<AtomicU64>,
    device: String,
    shared: Arc<Shared>,
}

impl Events {
    fn send(&self, event: EventKind, frame: u64, track: Option<u32>, reason: Option<String>) {
        self.send_timed(event, frame, track, reason, None);
    }

    fn send_timed(
        &self,
        event: EventKind,
        frame: u64,
        track: Option<u32>,
        reason: Option<String>,
        duration_s: Option<f32>,
    ) {
        let msg = EventMsg {
            schema: SCHEMA_VERSION,
            device: self.device.clone(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            ts: unix_now(),
            event,
            frame,
            track,
            reason,
            duration_s,
        };
        let sent = match &self.tx {
            Tx::Strong(tx) => tx.try_send(Outgoing::Event(msg)).is_ok(),
            Tx::Weak(tx) => tx.upgrade().is_some_and(|tx| tx.try_send(Outgoing::Event(msg)).is_ok()),
        };
        if !sent {
            self.shared.dropped_events.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The same sequence, without keeping the channel open.
    fn weak(&self) -> Self {
        let tx = match &self.tx {
            Tx::Strong(tx) => Tx::Weak(tx.downgrade()),
            weak => weak.clone(),
        };
        Self { tx, ..self.clone() }
    }
}

/// This device's id: `mqtt.device_id`, else the host name (made topic-safe).
pub fn device_id(cfg: &Config) -> String {
    if !cfg.mqtt.device_id.is_empty() {
        return cfg.mqtt.device_id.clone();
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let host = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let id: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() {
        "steadyface".into()
    } else {
        id
    }
}

fn open_source(cfg: &Config) -> Result<Box<dyn FrameSource>> {
    let s = &cfg.source;
    match s.kind {
        SourceKind::Replay => capture::open(s.path.as_deref().expect("validated: replay has a path")),
        #[cfg(target_os = "linux")]
        SourceKind::V4l2 => Ok(Box::new(crate::v4l2::V4l2Source::open(&crate::v4l2::V4l2Request {
            device: s.device.clone(),
            width: s.width,
            height: s.height,
            fps: s.fps,
            format: s.format.pixel_format(),
            timeout: Duration::from_millis(s.timeout_ms),
        })?)),
        #[cfg(not(target_os = "linux"))]
        SourceKind::V4l2 => Err(Error::Usage("source.kind v4l2 needs Linux".into())),
    }
}

/// Sleep up to `d`, waking early when `stop` is set.
fn nap(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// The capture thread: read frames, pace replays, survive camera loss.
fn capture_loop(
    cfg: Config,
    first: Option<Box<dyn FrameSource>>,
    mb: Arc<Mailbox>,
    shared: Arc<Shared>,
    ev: Events,
    t0: Instant,
) {
    let s = &cfg.source;
    let replay = s.kind == SourceKind::Replay;
    let realtime = !replay || s.pace == ReplayPace::Realtime;
    let lossless = replay && !realtime;
    let (min, max) = (
        Duration::from_millis(s.reopen_min_ms),
        Duration::from_millis(s.reopen_max_ms),
    );
    // One outage: counted once and announced once, however many reopen attempts follow.
    let lost = |e: &Error, frame: u64| {
        shared.camera_outages.fetch_add(1, Ordering::Relaxed);
        ev.send(EventKind::CameraLost, frame, None, Some(e.to_string()));
    };
    let mut src = first;
    let mut frame = Frame::new(1, 1);
    let mut backoff = min;
    let mut reported_lost = false;
    let (mut base_index, mut base_time) = (0u64, 0.0f64);
    let (mut last_index, mut last_time) = (None::<u64>, 0.0f64);
    let mut opened_at = Instant::now();
    let mut fresh = true;
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(source) = src.as_mut() else {
            match open_source(&cfg) {
                Ok(x) => {
                    if reported_lost {
                        ev.send(EventKind::CameraRestored, last_index.map_or(0, |i| i + 1), None, None);
                    }
                    log::info!("source: {}", x.info().description);
                    (reported_lost, backoff) = (false, min);
                    shared.source_down.store(false, Ordering::Relaxed);
                    src = Some(x);
                    opened_at = Instant::now();
                    fresh = true;
                }
                Err(e) => {
                    if !reported_lost {
                        log::warn!("{e}; retrying every {}..{} ms", min.as_millis(), max.as_millis());
                        lost(&e, last_index.map_or(0, |i| i + 1));
                        reported_lost = true;
                        shared.source_down.store(true, Ordering::Relaxed);
                    } else {
                        log::debug!("source still unavailable: {e}");
                    }
                    shared.beat(t0);
                    nap(backoff, &shared.stop);
                    backoff = (backoff * 2).min(max);
                }
            }
            continue;
        };
        match source.next_frame(&mut frame) {
            Ok(Some(meta)) => {
                let index = base_index + meta.index;
                let time_s = base_time + meta.time_s;
                if replay && realtime {
                    let due = opened_at + Duration::from_secs_f64(meta.time_s);
                    let now = Instant::now();
                    if due > now {
                        nap(due - now, &shared.stop);
                    }
                }
                (last_index, last_time) = (Some(index), time_s);
                shared.captured.fetch_add(1, Ordering::Relaxed);
                let c = Captured {
                    index,
                    time_s,
                    at: Instant::now(),
                    discontinuity: std::mem::take(&mut fresh),
                };
                if mb.put(&mut frame, c, lossless, &shared.stop) {
                    shared.dropped_capture.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(None) if replay && s.repeat => {
                // Loop: numbering and time continue, so subscribers see one stream.
                let fps = source.info().fps.unwrap_or(capture::DEFAULT_FPS);
                base_index = last_index.map_or(0, |i| i + 1);
                base_time = last_time + 1.0 / fps;
                src = None;
            }
            Ok(None) => {
                ev.send(EventKind::SourceEnded, last_index.map_or(0, |i| i + 1), None, None);
                break;
            }
            Err(e) if replay => {
                log::error!("{e}; stopping");
                ev.send(
                    EventKind::SourceEnded,
                    last_index.map_or(0, |i| i + 1),
                    None,
                    Some(e.to_string()),
                );
                break;
            }
            Err(e) => {
                log::warn!("{e}; reopening");
                lost(&e, last_index.map_or(0, |i| i + 1));
                reported_lost = true;
                shared.source_down.store(true, Ordering::Relaxed);
                base_index = last_index.map_or(0, |i| i + 1);
                base_time = last_time;
                src = None;
                nap(backoff, &shared.stop);
            }
        }
    }
    mb.close();
}

/// Field-clip recording as the inference thread sees it.
struct Recorder {
    ring: Arc<Mutex<clips::Ring>>,
    jobs: std::sync::mpsc::SyncSender<clips::Request>,
    /// The writer is saving a clip (set here when a job is queued, cleared by the writer).
    busy: Arc<AtomicBool>,
    trigger: clips::Trigger,
}

impl Recorder {
    /// Queue a save of the ring; `Err` says why not.
    fn request(
        &self,
        reason: &'static str,
        note: Option<String>,
        ev: &Events,
        scheme: &str,
    ) -> std::result::Result<(), String> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err("busy writing a clip".into());
        }
        let req = clips::Request {
            reason,
            note,
            device: ev.device.clone(),
            scheme: scheme.to_string(),
        };
        self.jobs.try_send(req).map_err(|_| {
            self.busy.store(false, Ordering::Release);
            "the clip writer has stopped".to_string()
        })
    }
}

/// What the inference thread owns.
struct Inference {
    pipeline: Pipeline,
    scheme: String,
    max_fps: f64,
    signals: Option<Signals>,
    recorder: Option<Recorder>,
    commands: std::sync::mpsc::Receiver<CommandMsg>,
}

impl Inference {
    /// Carry out a command from the `cmd` topic, answering with an event either way.
    fn command(&mut self, c: CommandMsg, frame: u64, ev: &Events) {
        let result = match c.command.as_str() {
            "record" => match &self.recorder {
                Some(r) => r.request("record", c.note.clone(), ev, &self.scheme),
                None => Err("clips.enabled is false on this device".into()),
            },
            "recalibrate" => match &mut self.signals {
                Some(s) => {
                    s.recalibrate();
                    Ok(())
                }
                None => Err("signals.enabled is false on this device".into()),
            },
            "reset" => {
                self.pipeline.reset();
                if let Some(s) = &mut self.signals {
                    s.reset();
                }
                Ok(())
            }
            other => Err(format!("unknown command {other:?}")),
        };
        match result {
            Ok(()) => {
                log::info!("command {:?} accepted", c.command);
                ev.send(EventKind::CommandAccepted, frame, None, Some(c.command));
            }
            Err(why) => {
                log::warn!("command {:?} rejected: {why}", c.command);
                ev.shared.commands_rejected.fetch_add(1, Ordering::Relaxed);
                ev.send(
                    EventKind::CommandRejected,
                    frame,
                    None,
                    Some(format!("{}: {why}", c.command)),
                );
            }
        }
    }
}

/// The inference thread: pipeline, signals, track and signal events, landmark messages, the
/// clip ring and its triggers.
fn inference_loop(
    mut inf: Inference,
    mb: Arc<Mailbox>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Outgoing>,
    ev: Events,
    t0: Instant,
) {
    let mut frame = Frame::new(1, 1);
    let mut faces = Faces::new();
    let (mut sig_out, mut sig_ev) = (SignalOutputs::new(), SignalEvents::new());
    let mut prev: heapless::Vec<u32, MAX_FACES> = heapless::Vec::new();
    let mut prev_records: Vec<FaceRecord> = Vec::new();
    let interval = (inf.max_fps > 0.0).then(|| Duration::from_secs_f64(1.0 / inf.max_fps));
    let mut next_at = Instant::now();
    let mut last_index = 0;
    while let Some(c) = mb.take(&mut frame, &shared.stop) {
        last_index = c.index;
        while let Ok(cmd) = inf.commands.try_recv() {
            inf.command(cmd, c.index, &ev);
        }
        if c.discontinuity && c.index > 0 {
            inf.pipeline.reset();
        }
        if let Err(e) = inf.pipeline.process(&frame, c.time_s, &mut faces) {
            let n = shared.failed_frames.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                log::warn!("frame {}: {e} ({n} failed frames so far)", c.index);
            }
            faces.clear();
        }
        shared.processed.fetch_add(1, Ordering::Relaxed);
        shared.beat(t0);
        for f in &faces {
            if !prev.contains(&f.id) {
                ev.send(EventKind::TrackStarted, c.index, Some(f.id), None);
            }
        }
        for id in &prev {
            if !faces.iter().any(|f| f.id == *id) {
                ev.send(EventKind::TrackLost, c.index, Some(*id), None);
            }
        }
        prev.clear();
        for f in &faces {
            let _ = prev.push(f.id);
        }
        if let Some(s) = inf.signals.as_mut() {
            s.update(&faces, c.time_s, &mut sig_out, &mut sig_ev);
            for e in &sig_ev {
                let reason = e.reason.map(str::to_string);
                ev.send_timed(e.kind.into(), c.index, Some(e.track), reason, e.duration_s);
            }
        }
        let mut records: Vec<FaceRecord> = faces.iter().map(|o| FaceRecord::from_obs(o, &inf.scheme)).collect();
        // Empty when signals are off.
        for (r, s) in records.iter_mut().zip(&sig_out) {
            r.signals = Some(*s);
        }
        if let Some(rec) = &mut inf.recorder {
            if let Ok(mut ring) = rec.ring.try_lock() {
                ring.push(c.index, c.time_s, &frame, &faces, &sig_out);
            }
            if rec.trigger.enabled() {
                let score =
                    (!faces.is_empty()).then(|| faces.iter().map(|f| f.score).sum::<f32>() / faces.len() as f32);
                let jitter = crate::publish::mean_motion(&prev_records, &records);
                if let Some(fired) = rec.trigger.update(c.time_s, score, jitter) {
                    log::info!("frame {}: clip trigger {:?}", c.index, fired);
                    if let Err(why) = rec.request(fired.reason(), None, &ev, &inf.scheme) {
                        log::warn!("clip trigger {fired:?} not recorded: {why}");
                    }
                }
                prev_records.clone_from(&records);
            }
        }
        let msg = LandmarksMsg {
            schema: SCHEMA_VERSION,
            device: ev.device.clone(),
            frame: c.index,
            time_s: c.time_s,
            ts: unix_now(),
            latency_ms: c.at.elapsed().as_secs_f32() * 1000.0,
            faces: records,
        };
        if tx.try_send(Outgoing::Landmarks(msg)).is_err() {
            shared.dropped_landmarks.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(iv) = interval {
            next_at = (next_at + iv).max(Instant::now());
            nap(next_at - Instant::now(), &shared.stop);
        }
    }
    // Tracks end with the run; say so, so that subscribers' state does not keep stale faces.
    for id in &prev {
        ev.send(EventKind::TrackLost, last_index, Some(*id), None);
    }
}

/// The clip writer thread: save the ring on request, then keep the disk quota.
fn writer_loop(
    cfg: crate::config::ClipsConfig,
    ring: Arc<Mutex<clips::Ring>>,
    jobs: std::sync::mpsc::Receiver<clips::Request>,
    busy: Arc<AtomicBool>,
    ev: Events,
) {
    for (seq, req) in (1..).zip(jobs) {
        let saved = {
            let ring = ring.lock().unwrap_or_else(|p| p.into_inner());
            std::fs::create_dir_all(&cfg.dir)
                .map_err(|e| Error::io(&cfg.dir, e))
                .and_then(|_| clips::save(&ring, &cfg.dir, &req, seq))
                .map(|p| (p, ring.len(), ring.newest_index()))
        };
        match saved {
            Ok((path, n, frame)) => {
                ev.shared.clips_saved.fetch_add(1, Ordering::Relaxed);
                log::info!("clip saved ({}, {n} frames): {}", req.reason, path.display());
                ev.send(EventKind::ClipSaved, frame, None, Some(path.display().to_string()));
                match clips::enforce_quota(&cfg.dir, cfg.max_total_mb << 20) {
                    Ok(deleted) => {
                        for (p, bytes) in deleted {
                            ev.shared.clips_deleted.fetch_add(1, Ordering::Relaxed);
                            log::warn!(
                                "clip quota ({} MB): deleted the oldest clip {} ({:.1} MB)",
                                cfg.max_total_mb,
                                p.display(),
                                bytes as f64 / 1048576.0
                            );
                            ev.send(EventKind::ClipDeleted, frame, None, Some(p.display().to_string()));
                        }
                    }
                    Err(e) => log::error!("clip quota not enforced: {e}"),
                }
            }
            Err(e) => {
                ev.shared.clips_failed.fetch_add(1, Ordering::Relaxed);
                log::error!("clip ({}) not saved: {e}", req.reason);
                let frame = ring.lock().map_or(0, |r| r.newest_index());
                ev.send(EventKind::ClipFailed, frame, None, Some(e.to_string()));
            }
        }
        busy.store(false, Ordering::Release);
    }
}

/// Run the daemon with `cfg` until `stop` resolves or a replayed clip ends: start the threads,
/// serve (publish, take commands, keep systemd informed), then drain.
pub async fn run(cfg: &Config, stop: impl Future<Output = Stop>) -> Result<RunReport> {
    let mut d = Running::start(cfg)?;
    let ended = d.serve(cfg, stop).await;
    Ok(d.drain(cfg, ended).await)
}

/// A started daemon: its threads, and the channels between them and the async side.
struct Running {
    t0: Instant,
    device: String,
    publisher: Publisher,
    shared: Arc<Shared>,
    mb: Arc<Mailbox>,
    /// Events from the async side (weak: the channel closes when the threads end).
    ev: Events,
    /// Messages from the threads to publish.
    rx: mpsc::Receiver<Outgoing>,
    /// The MQTT link's state changes and incoming commands.
    link_rx: mpsc::UnboundedReceiver<mqtt::Link>,
    /// Accepted commands, to the inference thread.
    cmd_tx: std::sync::mpsc::Sender<CommandMsg>,
    capture: std::thread::JoinHandle<()>,
    inference: std::thread::JoinHandle<()>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Load the models, open the source, connect, and start the capture, inference and clip
    /// threads; READY=1 once they run.
    fn start(cfg: &Config) -> Result<Self> {
        let t0 = Instant::now();
        let device = device_id(cfg);
        let models = Models::resolve(cfg)?;
        let pipeline = models.pipeline(cfg)?;
        let scheme = models.backbone_spec.scheme.clone();
        let signals = cfg.signals.enabled.then(|| models.signals(cfg)).transpose()?;
        // A clip that cannot be opened is a startup error; a missing camera is an outage that the
        // capture thread keeps retrying (it may be plugged in later).
        let first = match open_source(cfg) {
            Ok(s) => {
                log::info!("source: {}", s.info().description);
                Some(s)
            }
            Err(e) if cfg.source.kind == SourceKind::Replay => return Err(e),
            Err(_) => None,
        };
        let (tx, rx) = mpsc::channel::<Outgoing>(256);
        let (link_tx, link_rx) = mpsc::unbounded_channel();
        let sink = if cfg.mqtt.enabled {
            Some(mqtt::MqttSink::start(&cfg.mqtt, &device, link_tx)?)
        } else {
            drop(link_tx);
            None
        };
        let mut publisher = Publisher::new(&device, cfg.daemon.stdout, sink);
        let shared = Arc::new(Shared::default());
        shared.beat(t0);
        let mb = Arc::new(Mailbox::default());
        let ev = Events {
            tx: Tx::Strong(tx.clone()),
            seq: Arc::new(AtomicU64::new(0)),
            device: device.clone(),
            shared: shared.clone(),
        };
        let capture = {
            let (cfg, mb, shared, ev) = (cfg.clone(), mb.clone(), shared.clone(), ev.clone());
            std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || capture_loop(cfg, first, mb, shared, ev, t0))
                .map_err(|e| Error::io("capture thread", e))?
        };
        let (recorder, writer) = if cfg.clips.enabled {
            let ring = Arc::new(Mutex::new(clips::Ring::new(&cfg.clips)));
            let busy = Arc::new(AtomicBool::new(false));
            let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel(1);
            let writer = {
                let (c, ring, busy, ev) = (cfg.clips.clone(), ring.clone(), busy.clone(), ev.clone());
                std::thread::Builder::new()
                    .name("clip-writer".into())
                    .spawn(move || writer_loop(c, ring, jobs_rx, busy, ev))
                    .map_err(|e| Error::io("clip writer thread", e))?
            };
            let rec = Recorder {
                ring,
                jobs: jobs_tx,
                busy,
                trigger: clips::Trigger::new(&cfg.clips),
            };
            (Some(rec), Some(writer))
        } else {
            (None, None)
        };
        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel::<CommandMsg>();
        let ev_weak = ev.weak();
        let inference = {
            let (mb, shared) = (mb.clone(), shared.clone());
            let inf = Inference {
                pipeline,
                scheme,
                max_fps: cfg.daemon.max_fps,
                signals,
                recorder,
                commands: cmd_rx,
            };
            std::thread::Builder::new()
                .name("inference".into())
                .spawn(move || inference_loop(inf, mb, shared, tx, ev, t0))
                .map_err(|e| Error::io("inference thread", e))?
        };
        publisher.announce();
        systemd::notify(&format!("READY=1\nSTATUS=running on {device}"));
        log::info!(
            "running as device {device:?}: source {}, mqtt {}, stdout {}",
            cfg.source.kind,
            if cfg.mqtt.enabled {
                format!("{}:{}", cfg.mqtt.host, cfg.mqtt.port)
            } else {
                "off".into()
            },
            if cfg.daemon.stdout { "on" } else { "off" }
        );
        Ok(Self {
            t0,
            device,
            publisher,
            shared,
            mb,
            ev: ev_weak,
            rx,
            link_rx,
            cmd_tx,
            capture,
            inference,
            writer,
        })
    }

    /// Serve until `stop` resolves or the source ends: publish what the threads produce, take
    /// commands, report a stalled source, publish metrics, and ping the systemd watchdog while
    /// frames flow.
    async fn serve(&mut self, cfg: &Config, stop: impl Future<Output = Stop>) -> Ended {
        let (t0, shared, publisher) = (self.t0, &self.shared, &mut self.publisher);
        let (ev_weak, cmd_tx) = (&self.ev, &self.cmd_tx);
        let mut metrics = tokio::time::interval(Duration::from_secs_f64(cfg.daemon.metrics_interval_s));
        metrics.tick().await;
        let wd_period = systemd::watchdog_period();
        let mut watchdog = tokio::time::interval(wd_period.map_or(Duration::from_secs(3600), |p| p / 2));
        let stall_ms = (cfg.daemon.watchdog_stall_s * 1000.0) as u64;
        let mut stalled = false;
        tokio::pin!(stop);
        let mut intake = intake::Intake::default();
        let mut stall = Stall::new(Duration::from_millis(2 * cfg.source.timeout_ms));
        let mut stall_check = tokio::time::interval(Duration::from_millis((cfg.source.timeout_ms / 2).max(25)));
        let ended = loop {
            tokio::select! {
                _ = stall_check.tick() => stall.check(shared, ev_weak),
                s = &mut stop => break Ended::Stopped(s),
                m = self.rx.recv() => match m {
                    Some(m) => publisher.handle(m),
                    None => break Ended::SourceEnded,
                },
                Some(l) = self.link_rx.recv() => match l {
                    mqtt::Link::Command { payload, retained } => command(&payload, retained, &mut intake, cmd_tx, ev_weak),
                    mqtt::Link::Oversize(n) => reject(
                        format!(
                            "a message of {n} bytes on the command topic, over the {} bytes the client reads; the broker connection was reset",
                            mqtt::MAX_INCOMING_BYTES
                        ),
                        &mut intake,
                        ev_weak,
                        Instant::now(),
                    ),
                    l => {
                        if let Some(q) = publisher.mqtt.as_mut() {
                            q.on_link(l);
                        }
                    }
                },
                _ = metrics.tick() => {
                    if let Some(why) = intake.flush(Instant::now()) {
                        log::warn!("command rejected: {why}");
                        ev_weak.send(EventKind::CommandRejected, 0, None, Some(why));
                    }
                    publisher.upstream = shared.counts();
                    publisher.metrics();
                }
                _ = watchdog.tick(), if wd_period.is_some() => {
                    let idle = (t0.elapsed().as_millis() as u64).saturating_sub(shared.heartbeat_ms.load(Ordering::Relaxed));
                    if idle < stall_ms {
                        systemd::notify("WATCHDOG=1");
                        stalled = false;
                    } else if !stalled {
                        log::error!("no frame processed for {:.1} s: no longer pinging the systemd watchdog", idle as f64 / 1000.0);
                        stalled = true;
                    }
                }
            }
        };
        ended
    }

    /// Stop the threads, publish what they produced, and say goodbye to the broker.
    async fn drain(mut self, cfg: &Config, ended: Ended) -> RunReport {
        let (shared, mb, publisher) = (&self.shared, &self.mb, &mut self.publisher);
        if ended != Ended::Stopped(Stop::Reload) {
            systemd::notify("STOPPING=1");
        }
        // Drain: stop the threads, publish what they produced, say goodbye to the broker.
        shared.stop.store(true, Ordering::Relaxed);
        mb.close();
        let deadline = Instant::now() + Duration::from_millis(400);
        while !self.inference.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A reload reopens the camera, so the old capture thread must have let go of it; a
        // shutdown does not wait for a capture stuck in a driver call (the process exits anyway).
        let capture_wait = if ended == Ended::Stopped(Stop::Reload) {
            Duration::from_millis(cfg.source.timeout_ms + 500)
        } else {
            Duration::from_millis(100)
        };
        let deadline = Instant::now() + capture_wait;
        while !self.capture.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A clip being written is finished (the inference thread has dropped the job queue, so the
        // writer ends after it); a clip cut short would only be a `.partial` directory.
        if let Some(w) = self.writer.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !w.is_finished() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if !w.is_finished() {
                log::warn!("a clip is still being written at shutdown; it will be left incomplete");
            }
        }
        // A frame still waiting for inference is never processed: count it with the drops.
        if mb.discard() {
            shared.dropped_capture.fetch_add(1, Ordering::Relaxed);
        }
        while let Ok(m) = self.rx.try_recv() {
            publisher.handle(m);
        }
        while let Ok(l) = self.link_rx.try_recv() {
            if let Some(q) = publisher.mqtt.as_mut() {
                q.on_link(l);
            }
        }
        publisher.upstream = shared.counts();
        publisher.metrics();
        publisher.close(&mut self.link_rx, Duration::from_millis(400)).await;
        let counts = publisher.counts();
        RunReport {
            ended,
            counts,
            device: self.device,
        }
    }
}

/// A source that stops producing without an error (a decoder that hangs, a driver that never
/// returns) would leave the daemon silently idle: after twice `source.timeout_ms` without a
/// frame captured or processed, the outage is reported like a lost camera, and its end like a
/// restored one. Twice, so that a camera's own timeout (which reopens it) speaks first;
/// outages the capture thread reported are not reported again.
struct Stall {
    after: Duration,
    seen: u64,
    since: Instant,
    stalled: bool,
}

impl Stall {
    fn new(after: Duration) -> Self {
        Self {
            after,
            seen: 0,
            since: Instant::now(),
            stalled: false,
        }
    }

    fn check(&mut self, shared: &Shared, ev: &Events) {
        let frame = shared.captured.load(Ordering::Relaxed);
        let progress = frame + shared.processed.load(Ordering::Relaxed);
        if progress != self.seen {
            if std::mem::take(&mut self.stalled) {
                log::info!("the source is producing frames again");
                ev.send(EventKind::CameraRestored, frame, None, None);
            }
            (self.seen, self.since) = (progress, Instant::now());
        } else if !self.stalled && !shared.source_down.load(Ordering::Relaxed) && self.since.elapsed() >= self.after {
            let why = format!(
                "no frame from the source for {:.1} s (2 × source.timeout_ms): it stopped producing",
                self.since.elapsed().as_secs_f64()
            );
            log::warn!("{why}");
            shared.camera_outages.fetch_add(1, Ordering::Relaxed);
            ev.send(EventKind::CameraLost, frame, None, Some(why));
            self.stalled = true;
        }
    }
}

/// A payload on the `cmd` topic: check it here (the inference thread carries it out).
fn command(
    payload: &[u8],
    retained: bool,
    intake: &mut intake::Intake,
    to_inference: &std::sync::mpsc::Sender<CommandMsg>,
    ev: &Events,
) {
    let now = Instant::now();
    let parsed = match intake.check(payload, retained, now) {
        intake::Verdict::Ignore => {
            log::debug!("empty payload on the command topic ignored");
            return;
        }
        intake::Verdict::Reject(why) => Err(why),
        intake::Verdict::Admit(p) => CommandMsg::parse(p),
    };
    match parsed {
        Ok(c) => {
            if to_inference.send(c).is_err() {
                log::debug!("command arrived while stopping; ignored");
            }
        }
        Err(why) => reject(why, intake, ev, now),
    }
}

/// Count a rejected command; report it (event and log line) as the intake's rate allows.
fn reject(why: String, intake: &mut intake::Intake, ev: &Events, now: Instant) {
    ev.shared.commands_rejected.fetch_add(1, Ordering::Relaxed);
    if let Some(why) = intake.report(why, now) {
        log::warn!("command rejected: {why}");
        ev.send(EventKind::CommandRejected, 0, None, Some(why));
    }
}

/// The `run` command: load the config, run until SIGTERM/SIGINT, reload on SIGHUP.
pub fn serve(config: Option<PathBuf>, overrides: Vec<String>) -> Result<RunReport> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let sig = |k| signal(k).map_err(|e| Error::io("signal handler", e));
        let (mut term, mut int, mut hup) = (
            sig(SignalKind::terminate())?,
            sig(SignalKind::interrupt())?,
            sig(SignalKind::hangup())?,
        );
        let mut cfg = Config::load(config.as_deref(), &overrides)?;
        loop {
            let stop = async {
                tokio::select! {
                    _ = term.recv() => Stop::Shutdown,
                    _ = int.recv() => Stop::Shutdown,
                    _ = hup.recv() => Stop::Reload,
                }
            };
            let started = Instant::now();
            crate::bench::set_threads(cfg.models.threads);
            let report = run(&cfg, stop).await?;
            match report.ended {
                Ended::Stopped(Stop::Reload) => {
                    systemd::notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", systemd::monotonic_usec()));
                    match Config::load(config.as_deref(), &overrides) {
                        Ok(c) => {
                            log::info!("SIGHUP: configuration reloaded; restarting the pipeline");
                            cfg = c;
                        }
                        Err(e) => log::error!("SIGHUP: keeping the running configuration: {e}"),
                    }
                }
                _ => {
                    log::info!(
                        "stopped after {:.1} s ({:?}): {}",
                        started.elapsed().as_secs_f64(),
                        report.ended,
                        report.counts
                    );
                    return Ok(report);
                }
            }
        }
    })
}
