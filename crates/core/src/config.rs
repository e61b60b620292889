//! Configuration: raw YAML → [`Config`] (validated).
//!
//! Loading collects **every** problem before failing: unknown keys anywhere (checked
//! against the built-in defaults), type errors per section, and out-of-range values,
//! each named by its dotted path. `--set a.b=value` overrides are applied to the YAML
//! tree before validation, so they are checked exactly like the file.

use crate::capture::convert::FormatRequest;
use crate::capture::{ReplayPace, SourceKind};
use crate::decode::{Decoder, DecoderMethod};
use crate::error::{Error, Result};
use crate::face::tracker::TrackerParams;
use crate::face::MAX_FACES;
use crate::pdc::{HeatmapNorm, Pdc};
use crate::runtime::{Backend, CpuEngine, HAS_TORCH};
use crate::signals::SignalsConfig;
use crate::stabilizer::{OneEuroParams, PointFilter, StabilizerKind, StabilizerMethod};
use crate::yaml::parse_yaml;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;
use std::path::{Path, PathBuf};

/// Which models to run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Directory holding `manifest.yaml` and the fetched model files.
    pub dir: PathBuf,
    /// Backbone name in the manifest: openseeface-lm0 (224 px RGB) or openseeface-snv2 (112 px
    /// grey; faster, slightly less accurate on the dlib faces).
    pub backbone: String,
    /// Face detector name in the manifest.
    pub detector: String,
    /// Where the backbone and the ConvLSTM run: `cpu` (tract and the CPU kernel), `cuda`
    /// (libtorch; needs a build with `--features torch` and a GPU), or `auto` (CUDA when this
    /// build and machine have it, else the CPU, with one WARN saying why).
    pub backend: Backend,
    /// What runs the ONNX models on the CPU: `native` (steadyface's own engine: faster, and
    /// allocation-free per frame; a graph it cannot run falls back to tract with one WARN),
    /// `tract`, or `libtorch` (the backbone as libtorch ops, the graph CUDA runs; builds with
    /// `--features torch` only; the detector and eye refiner stay native).
    pub cpu_engine: CpuEngine,
    /// CPU threads for inference (1 to 16): the native engine splits its large convolutions
    /// across them, and tract its matrix products. On 2 cores, 2 threads made the backbone about
    /// 1.35x faster; 1 leaves the other cores to capture, MQTT and the rest of the system.
    pub threads: usize,
    /// Eye refiner in the manifest, run on both eyes of every face (the `eyes` module): refined
    /// lids, the iris, and an openness that follows real blinks (lm0's own eyelid points barely
    /// move through a blink). `null` turns it off, e.g. for a backbone whose own lids move; the
    /// drowsiness signals then read the backbone's eye points.
    pub eye_refiner: Option<String>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("models"),
            backbone: "openseeface-lm0".into(),
            detector: "yunet-n-320".into(),
            backend: Backend::Auto,
            cpu_engine: CpuEngine::Native,
            threads: 1,
            eye_refiner: Some("mediapipe-iris".into()),
        }
    }
}

/// Face detection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Minimum YuNet score, `sqrt(cls·obj)`. Lower than OpenCV's 0.9 because every new
    /// face must also pass the landmark check (`tracker.accept_confidence`).
    pub score_threshold: f32,
    /// Non-maximum suppression IoU.
    pub nms_iou: f32,
    /// Run the detector every N frames to pick up new faces (and whenever no face is tracked).
    pub interval: u32,
    /// Stretch the contrast of dark frames (99th luma percentile below 160) before detection
    /// and landmarking.
    pub low_light: bool,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            score_threshold: 0.5,
            nms_iou: 0.3,
            interval: 10,
            low_light: true,
        }
    }
}

/// Face tracking.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Most faces tracked at once (at most 8).
    pub max_faces: usize,
    /// Mean landmark confidence a new face needs to get a track. Null (the default): the
    /// backbone's own, from its manifest entry (lm0 0.68, snv2 0.52: their scales differ).
    pub accept_confidence: Option<f32>,
    /// A track whose mean landmark confidence drops below this is lost. Null (the default):
    /// the backbone's own (lm0 0.6, snv2 0.46).
    pub lost_confidence: Option<f32>,
    /// Crop edges follow the landmarks only when they move more than this fraction of the box.
    pub crop_deadband: f32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        let t = TrackerParams::default();
        Self {
            max_faces: t.max_faces,
            accept_confidence: None,
            lost_confidence: None,
            crop_deadband: t.crop_deadband,
        }
    }
}

/// PDC parameters (paper Algorithm 1 plus our explicit normalisation and window).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PdcConfig {
    /// Θ_PDC: heatmap values below it (after normalisation) are ignored. Paper: 0.2.
    pub threshold: f32,
    /// Heatmap normalisation before thresholding: none, peak or min-max.
    pub norm: HeatmapNorm,
    /// Cells within this distance of the peak count (0–1024); null for the whole heatmap. The
    /// ConvLSTM runs on the CPU within this + 3 cells of each peak (null: on the whole maps).
    pub window: Option<usize>,
    /// Refine each cell by the model's sub-cell offset (when the model has offsets).
    pub use_offsets: bool,
}

impl Default for PdcConfig {
    fn default() -> Self {
        Self {
            threshold: 0.2,
            norm: HeatmapNorm::Peak,
            window: Some(2),
            use_offsets: true,
        }
    }
}

/// Heatmap decoding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DecoderConfig {
    /// argmax, offset, pdc or soft-argmax.
    pub method: DecoderMethod,
    /// PDC's parameters (paper Algorithm 1), used when `method` is pdc.
    pub pdc: PdcConfig,
    /// Soft-argmax temperature β.
    pub softargmax_beta: f32,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            method: DecoderMethod::Pdc,
            pdc: PdcConfig::default(),
            softargmax_beta: crate::decode::DEFAULT_SOFTMAX_BETA,
        }
    }
}

/// Temporal stabilisation of the landmarks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StabilizerConfig {
    /// none, one-euro (per point), shape-one-euro (the face's shape in its own frame, the pose
    /// filtered apart), convlstm (the paper's ConvLSTM on the backbone's maps), or
    /// convlstm+one-euro / convlstm+shape-one-euro (the ConvLSTM, then the point filter).
    /// docs/stabilizers.md, "Stabilizers", compares them.
    pub method: StabilizerMethod,
    /// One Euro filter parameters (used by one-euro and shape-one-euro). The defaults suit
    /// `motion: true`; without motion compensation, 1.0 / 40 lags less behind a moving face.
    pub one_euro: OneEuroParams,
    /// The ConvLSTM weights (made by `steadyface tune`); relative paths are under `models.dir`.
    /// Null (the default): the ones shipped for `models.backbone` (its manifest entry's
    /// `stabilizer`).
    pub weights: Option<PathBuf>,
    /// Motion-compensate the stabilizers: register each face's pixels on the previous frame's
    /// (a similarity, by Lucas–Kanade) and move the point filter's state, and the ConvLSTM's
    /// state over the maps, with it, so a shake of the whole face passes without lag and only
    /// landmark noise is smoothed.
    pub motion: bool,
}

impl Default for StabilizerConfig {
    fn default() -> Self {
        Self {
            method: StabilizerMethod {
                convlstm: true,
                point: PointFilter::OneEuro,
            },
            one_euro: OneEuroParams::default(),
            weights: None,
            motion: true,
        }
    }
}

/// Where the daemon's frames come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// v4l2 (a camera) or replay (a clip: .y4m, an image directory, or any video ffmpeg
    /// reads).
    pub kind: SourceKind,
    /// V4L2 device: a path such as /dev/video0, or a name under /dev/v4l/by-id (stable
    /// across reboots and ports).
    pub device: String,
    /// Requested capture width (pixels); the driver may pick the nearest size it supports
    /// (logged).
    pub width: u32,
    /// Requested capture height (pixels).
    pub height: u32,
    /// Requested capture rate (frames per second).
    pub fps: f64,
    /// Pixel format: auto (the first of yuyv, mjpeg, nv12, grey the camera offers), yuyv,
    /// mjpeg, nv12 or grey.
    pub format: FormatRequest,
    /// A camera that delivers no frame for this long is treated as lost and reopened; any
    /// source (a hung replay decoder too) that produces nothing for twice this long is
    /// reported lost (`camera_lost`) until it produces again.
    pub timeout_ms: u64,
    /// Back-off between attempts to reopen a lost camera: starts here, doubles up to
    /// `reopen_max_ms`.
    pub reopen_min_ms: u64,
    /// The longest back-off between reopen attempts.
    pub reopen_max_ms: u64,
    /// Replay: the clip to play (kind: replay).
    pub path: Option<PathBuf>,
    /// Replay pace: realtime (the clip's own fps, frames dropped when inference falls behind,
    /// like a camera) or fast (as fast as inference goes, nothing dropped).
    pub pace: ReplayPace,
    /// Replay: start again at the end instead of stopping the daemon.
    pub repeat: bool,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            kind: SourceKind::V4l2,
            device: "/dev/video0".into(),
            width: 640,
            height: 480,
            fps: 30.0,
            format: FormatRequest::Auto,
            timeout_ms: 2000,
            reopen_min_ms: 250,
            reopen_max_ms: 5000,
            path: None,
            pace: ReplayPace::Realtime,
            repeat: false,
        }
    }
}

/// The daemon's own behaviour (`steadyface run`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Process at most this many frames per second (0: no cap), to leave CPU/GPU for others on a
    /// shared board. Frames arriving faster are dropped and counted.
    pub max_fps: f64,
    /// Print each frame's landmark message to stdout as one JSON line.
    pub stdout: bool,
    /// Seconds between metrics messages (fps, latency, drops, live jitter), also logged at INFO.
    pub metrics_interval_s: f64,
    /// The systemd watchdog is pinged only while frames flow (or a lost camera is being retried);
    /// after this many seconds without either, pings stop and systemd restarts the service.
    pub watchdog_stall_s: f64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            max_fps: 0.0,
            stdout: false,
            metrics_interval_s: 10.0,
            watchdog_stall_s: 10.0,
        }
    }
}

/// TLS for the broker connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Connect over TLS (needs `ca_file`).
    pub enabled: bool,
    /// PEM file with the CA certificate(s) that signed the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that authenticate clients by certificate (with
    /// `key_file`).
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
}

/// Publishing to an MQTT broker (topics: see README, "MQTT topics").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Publish to a broker. Off: the daemon runs without MQTT (stdout, signals and clips still
    /// work).
    pub enabled: bool,
    /// Broker host name or address.
    pub host: String,
    /// Broker port (1883 plain; 8883 is usual for TLS).
    pub port: u16,
    /// Topic prefix; topics are PREFIX/DEVICE_ID/{status,landmarks,events,state,metrics,cmd}.
    /// At most 256 bytes, no wildcards, not starting with `$` (the broker's own topics).
    pub prefix: String,
    /// This device's id in topics and payloads (one topic level, at most 256 bytes); empty:
    /// the host name.
    pub device_id: String,
    /// MQTT client id (at most 256 bytes); empty: steadyface-DEVICE_ID.
    pub client_id: String,
    /// Seconds between keep-alive pings; the broker declares us gone (Last Will) after 1.5x this.
    pub keep_alive_s: u64,
    /// User name to log in with (null: none).
    pub username: Option<String>,
    /// Password for `username` (or `password_file`, which keeps it out of the config).
    pub password: Option<String>,
    /// Read the password from this file instead (keeps it out of the config; a trailing
    /// newline is ignored).
    pub password_file: Option<PathBuf>,
    /// TLS for the broker connection.
    pub tls: TlsConfig,
    /// Publish every frame's landmarks (QoS 0). Off: only state, events, status and metrics.
    pub landmarks: bool,
    /// Events and state (QoS 1) held while the broker is unreachable; beyond this the oldest are
    /// dropped and counted.
    pub event_queue: usize,
    /// Back-off between reconnect attempts: starts here, doubles up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// The longest back-off between reconnect attempts.
    pub reconnect_max_ms: u64,
    /// Subscribe to PREFIX/DEVICE_ID/cmd for `record`, `recalibrate` and `reset` commands.
    /// Anyone who may publish there controls these, so restrict the topic with broker ACLs.
    pub commands: bool,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 1883,
            prefix: "steadyface".into(),
            device_id: String::new(),
            client_id: String::new(),
            keep_alive_s: 10,
            username: None,
            password: None,
            password_file: None,
            tls: TlsConfig::default(),
            landmarks: true,
            event_queue: 1000,
            reconnect_min_ms: 500,
            reconnect_max_ms: 10000,
            commands: true,
        }
    }
}

/// Field clips: the last seconds of frames and landmarks, saved on a trigger for `tune`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClipsConfig {
    /// Keep a ring of recent frames and save clips on a trigger or a `record` command.
    /// Costs `max_ring_mb` of memory once the ring is full.
    pub enabled: bool,
    /// Directory of the clips (one sub-directory each: frames.y4m, landmarks.jsonl, clip.json).
    pub dir: PathBuf,
    /// Seconds of history a clip holds (fewer when `max_ring_mb` is reached first).
    pub seconds: f64,
    /// Memory cap of the ring (frames are kept as 4:2:0, 1.5 bytes per pixel: 460 KB per
    /// 640x480 frame, so 150 MB is about 11 s at 30 fps).
    pub max_ring_mb: u64,
    /// Disk quota for all clips: after each save the oldest clips are deleted (and counted)
    /// until the total fits. 1 to 2^40.
    pub max_total_mb: u64,
    /// Save a clip when the mean landmark score, averaged over `trigger_window_s`, falls below
    /// this while a face is tracked (0: off). Faces score 0.73–0.86 on lm0.
    pub trigger_score_below: f32,
    /// Save a clip when the live jitter (mean frame-to-frame point motion over the face size),
    /// averaged over `trigger_window_s`, exceeds this (0: off). Still faces show about 0.002.
    pub trigger_jitter_above: f32,
    /// Averaging window of the triggers.
    pub trigger_window_s: f64,
    /// Least time between two triggered clips (commands are not limited).
    pub cooldown_s: f64,
}

impl Default for ClipsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            dir: PathBuf::from("clips"),
            seconds: 10.0,
            max_ring_mb: 150,
            max_total_mb: 2048,
            trigger_score_below: 0.0,
            trigger_jitter_above: 0.0,
            trigger_window_s: 2.0,
            cooldown_s: 300.0,
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub models: ModelsConfig,
    pub detector: DetectorConfig,
    pub tracker: TrackerConfig,
    pub decoder: DecoderConfig,
    pub stabilizer: StabilizerConfig,
    pub source: SourceConfig,
    pub daemon: DaemonConfig,
    pub mqtt: MqttConfig,
    pub signals: SignalsConfig,
    pub clips: ClipsConfig,
}

impl Config {
    /// Load `path` (or the defaults when `None`), apply `--set` overrides, validate.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self> {
        let mut tree = match path {
            Some(p) => {
                let text = crate::error::read_input_text(p, crate::error::InputKind::Config)?;
                if text.trim().is_empty() {
                    Value::Mapping(Default::default())
                } else {
                    parse_yaml::<Value>(&text).map_err(|e| Error::Config {
                        origin: Some(p.into()),
                        problems: vec![e],
                    })?
                }
            }
            None => Value::Mapping(Default::default()),
        };
        let mut problems = Vec::new();
        for o in overrides {
            if let Err(e) = apply_override(&mut tree, o) {
                problems.push(e);
            }
        }
        let origin = path.map(Path::to_path_buf);
        match Self::from_tree(tree, problems) {
            Ok(c) => Ok(c),
            Err(problems) => Err(Error::Config { origin, problems }),
        }
    }

    /// Parse from a YAML string (tests, `validate`).
    pub fn from_yaml(text: &str) -> Result<Self> {
        let tree: Value = parse_yaml(text).map_err(|e| Error::Config {
            origin: None,
            problems: vec![e],
        })?;
        Self::from_tree(tree, Vec::new()).map_err(|problems| Error::Config { origin: None, problems })
    }

    fn from_tree(tree: Value, mut problems: Vec<String>) -> std::result::Result<Self, Vec<String>> {
        let defaults = serde_yaml::to_value(Config::default()).expect("defaults serialise");
        let mut tree = tree;
        if !tree.is_mapping() {
            return Err(vec!["the top level must be a mapping of sections".into()]);
        }
        // Report unknown keys with their full path and prune them, so the rest of their
        // section is still type- and range-checked.
        prune_unknown_keys(&mut tree, &defaults, "", &mut problems);
        let map = tree.as_mapping().expect("checked above");
        // Deserialise section by section so one bad section does not hide the others.
        let mut cfg = Config::default();
        macro_rules! section {
            ($name:literal, $field:ident) => {
                if let Some(v) = map.get($name) {
                    if let Some(s) = section($name, v, &mut problems) {
                        cfg.$field = s;
                    }
                }
            };
        }
        section!("models", models);
        section!("detector", detector);
        section!("tracker", tracker);
        section!("decoder", decoder);
        section!("stabilizer", stabilizer);
        section!("source", source);
        section!("daemon", daemon);
        section!("mqtt", mqtt);
        section!("signals", signals);
        section!("clips", clips);
        cfg.check(&mut problems);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }

    fn check(&self, p: &mut Vec<String>) {
        let mut range = |name: &str, v: f32, lo: f32, hi: f32| {
            if !(lo..=hi).contains(&v) {
                p.push(format!("{name}: {v} is out of range [{lo}, {hi}]"));
            }
        };
        range("detector.score_threshold", self.detector.score_threshold, 0.01, 1.0);
        range("detector.nms_iou", self.detector.nms_iou, 0.0, 1.0);
        if let Some(v) = self.tracker.accept_confidence {
            range("tracker.accept_confidence", v, 0.0, 1.0);
        }
        if let Some(v) = self.tracker.lost_confidence {
            range("tracker.lost_confidence", v, 0.0, 1.0);
        }
        range("tracker.crop_deadband", self.tracker.crop_deadband, 0.0, 0.2);
        range("decoder.pdc.threshold", self.decoder.pdc.threshold, 0.0, 1.0);
        range("decoder.softargmax_beta", self.decoder.softargmax_beta, 0.0, 1000.0);
        // A window wider than any heatmap is the whole map; far beyond it, the ConvLSTM's
        // window (this + 3) would wrap.
        if let Some(w) = self.decoder.pdc.window {
            range("decoder.pdc.window", w as f32, 0.0, 1024.0);
        }
        let oe = &self.stabilizer.one_euro;
        range("stabilizer.one_euro.min_cutoff", oe.min_cutoff, 0.001, 100.0);
        range("stabilizer.one_euro.beta", oe.beta, 0.0, 1000.0);
        range("stabilizer.one_euro.d_cutoff", oe.d_cutoff, 0.001, 100.0);
        if self.detector.interval == 0 {
            p.push("detector.interval: must be at least 1".into());
        }
        if self.tracker.max_faces == 0 || self.tracker.max_faces > MAX_FACES {
            p.push(format!(
                "tracker.max_faces: {} is out of range [1, {MAX_FACES}]",
                self.tracker.max_faces
            ));
        }
        if let (Some(lost), Some(accept)) = (self.tracker.lost_confidence, self.tracker.accept_confidence) {
            if lost > accept {
                p.push(format!(
                    "tracker.lost_confidence ({lost}) must not exceed tracker.accept_confidence ({accept})"
                ));
            }
        }
        if self.models.backend == Backend::Cuda && !HAS_TORCH {
            p.push("models.backend: cuda needs a build with `--features torch` (libtorch); this one runs on the CPU only (use cpu or auto)".into());
        }
        if self.models.cpu_engine == CpuEngine::Libtorch && !HAS_TORCH {
            p.push("models.cpu_engine: libtorch needs a build with `--features torch`; use native or tract".into());
        }
        if !(1..=crate::nn::MAX_THREADS).contains(&self.models.threads) {
            p.push(format!(
                "models.threads: {} is not between 1 and {}",
                self.models.threads,
                crate::nn::MAX_THREADS
            ));
        }
        self.check_daemon(p);
        self.signals.check(p);
    }

    /// Checks of the daemon sections (`source`, `daemon`, `mqtt`).
    fn check_daemon(&self, p: &mut Vec<String>) {
        let int_range = |p: &mut Vec<String>, name: &str, v: u64, lo: u64, hi: u64| {
            if !(lo..=hi).contains(&v) {
                p.push(format!("{name}: {v} is out of range [{lo}, {hi}]"));
            }
        };
        // A back-off that starts at `min` and doubles up to `max`.
        let backoff = |p: &mut Vec<String>, section: &str, what: &str, min: u64, max: u64| {
            if min == 0 || min > max {
                p.push(format!(
                    "{section}.{what}_min_ms ({min}) must be at least 1 and at most {section}.{what}_max_ms ({max})"
                ));
            }
        };
        let s = &self.source;
        if s.kind == SourceKind::Replay && s.path.is_none() {
            p.push("source.path: required when source.kind is replay".into());
        }
        if s.kind == SourceKind::V4l2 && s.device.trim().is_empty() {
            p.push("source.device: required when source.kind is v4l2".into());
        }
        int_range(p, "source.width", s.width.into(), 16, 8192);
        int_range(p, "source.height", s.height.into(), 16, 8192);
        if !(s.fps > 0.0 && s.fps <= 1000.0) {
            p.push(format!("source.fps: {} is out of range (0, 1000]", s.fps));
        }
        int_range(p, "source.timeout_ms", s.timeout_ms, 50, 60_000);
        backoff(p, "source", "reopen", s.reopen_min_ms, s.reopen_max_ms);
        let d = &self.daemon;
        if !(d.max_fps == 0.0 || (0.01..=1000.0).contains(&d.max_fps)) {
            p.push(format!(
                "daemon.max_fps: {} is out of range: 0 (no cap) or 0.01 to 1000",
                d.max_fps
            ));
        }
        if !(d.metrics_interval_s >= 0.1 && d.metrics_interval_s <= 3600.0) {
            p.push(format!(
                "daemon.metrics_interval_s: {} is out of range [0.1, 3600]",
                d.metrics_interval_s
            ));
        }
        if !(d.watchdog_stall_s >= 0.5 && d.watchdog_stall_s <= 3600.0) {
            p.push(format!(
                "daemon.watchdog_stall_s: {} is out of range [0.5, 3600]",
                d.watchdog_stall_s
            ));
        }
        let m = &self.mqtt;
        if m.host.trim().is_empty() {
            p.push("mqtt.host: must not be empty".into());
        }
        if m.port == 0 {
            p.push("mqtt.port: must not be 0".into());
        }
        for (name, v, may_be_empty) in [
            ("mqtt.prefix", &m.prefix, false),
            ("mqtt.device_id", &m.device_id, true),
        ] {
            if v.is_empty() && !may_be_empty {
                p.push(format!("{name}: must not be empty"));
            }
            if v.contains(['+', '#', '\0']) || v.starts_with('/') || v.ends_with('/') {
                p.push(format!(
                    "{name}: {v:?} must not contain MQTT wildcards (+, #) or start or end with /"
                ));
            }
            // Brokers keep `$` topics for themselves ($SYS): a publish there is dropped silently.
            if v.starts_with('$') {
                p.push(format!("{name}: {v:?} must not start with $ (reserved by the broker)"));
            }
            if v.len() > MAX_TOPIC_PART {
                p.push(format!(
                    "{name}: {} bytes; at most {MAX_TOPIC_PART} (a topic is at most 65,535 bytes)",
                    v.len()
                ));
            }
        }
        if m.client_id.len() > MAX_TOPIC_PART || m.client_id.contains('\0') {
            p.push(format!(
                "mqtt.client_id: {} bytes; at most {MAX_TOPIC_PART}, and no NUL",
                m.client_id.len()
            ));
        }
        if m.device_id.contains('/') {
            p.push(format!(
                "mqtt.device_id: {:?} must be one topic level (no /)",
                m.device_id
            ));
        }
        int_range(p, "mqtt.keep_alive_s", m.keep_alive_s, 1, 65_535);
        int_range(p, "mqtt.event_queue", m.event_queue as u64, 1, 1_000_000);
        backoff(p, "mqtt", "reconnect", m.reconnect_min_ms, m.reconnect_max_ms);
        if m.password.is_some() && m.password_file.is_some() {
            p.push("mqtt.password and mqtt.password_file: give one, not both".into());
        }
        if (m.password.is_some() || m.password_file.is_some()) && m.username.is_none() {
            p.push("mqtt.username: required when a password is given".into());
        }
        let t = &m.tls;
        if t.cert_file.is_some() != t.key_file.is_some() {
            p.push("mqtt.tls.cert_file and mqtt.tls.key_file: give both or neither".into());
        }
        if t.enabled && t.ca_file.is_none() {
            p.push("mqtt.tls.ca_file: required when mqtt.tls.enabled is true".into());
        }
        let c = &self.clips;
        let span = |p: &mut Vec<String>, name: &str, v: f64, lo: f64, hi: f64| {
            if !(lo..=hi).contains(&v) {
                p.push(format!("clips.{name}: {v} is out of range [{lo}, {hi}]"));
            }
        };
        span(p, "seconds", c.seconds, 0.5, 600.0);
        span(p, "trigger_window_s", c.trigger_window_s, 0.1, 600.0);
        span(p, "cooldown_s", c.cooldown_s, 0.0, 86_400.0);
        span(p, "trigger_score_below", c.trigger_score_below.into(), 0.0, 1.0);
        span(p, "trigger_jitter_above", c.trigger_jitter_above.into(), 0.0, 10.0);
        int_range(p, "clips.max_ring_mb", c.max_ring_mb, 1, 65_536);
        // In bytes it must fit a u64 (`<< 20`): beyond, the quota wrapped to 0 and every clip
        // was deleted on save. 2^40 MB (a exabyte) is far past any disk.
        int_range(p, "clips.max_total_mb", c.max_total_mb, 1, 1 << 40);
        if c.max_total_mb < c.max_ring_mb {
            p.push(format!(
                "clips.max_total_mb ({}) must be at least clips.max_ring_mb ({}), or no clip fits",
                c.max_total_mb, c.max_ring_mb
            ));
        }
        if c.dir.as_os_str().is_empty() {
            p.push("clips.dir: must not be empty".into());
        }
    }

    /// The decoder this config selects.
    pub fn decoder(&self) -> Decoder {
        let d = &self.decoder;
        let pdc = Pdc {
            threshold: d.pdc.threshold,
            norm: d.pdc.norm,
            window: d.pdc.window,
            use_offsets: d.pdc.use_offsets,
        };
        Decoder::new(d.method, pdc, d.softargmax_beta)
    }

    /// The tracker's settings for a backbone whose confidence scale is `conf`.
    pub fn tracker_params(&self, conf: &crate::models::ConfidenceSpec) -> TrackerParams {
        let accept = self.tracker.accept_confidence.unwrap_or(conf.accept_confidence);
        let stabilizer = StabilizerKind::of(self.stabilizer.method.point, self.stabilizer.one_euro);
        let steadied = stabilizer.is_some() || self.uses_convlstm();
        TrackerParams {
            detect_interval: self.detector.interval,
            max_faces: self.tracker.max_faces,
            accept_confidence: accept,
            // One threshold set and the other from the backbone: never above `accept`.
            lost_confidence: self.tracker.lost_confidence.unwrap_or(conf.lost_confidence).min(accept),
            crop_deadband: self.tracker.crop_deadband,
            stabilizer,
            // Registration serves whichever stabilizer runs; with none it would be wasted.
            motion: self.stabilizer.motion && steadied,
            // Whichever stabilizer runs, the refined lids come after it: steadied landmarks
            // include the eyes'.
            smooth_lids: steadied,
        }
    }

    /// Whether the ConvLSTM stage runs on the backbone's maps.
    pub fn uses_convlstm(&self) -> bool {
        self.stabilizer.method.convlstm
    }

    /// The ConvLSTM weights file: `stabilizer.weights`, else `shipped` (the backbone's, from
    /// the manifest), relative to `models.dir`.
    pub fn convlstm_path(&self, shipped: Option<&str>) -> Option<PathBuf> {
        let w = self.stabilizer.weights.as_deref().or(shipped.map(Path::new))?;
        Some(self.models.dir.join(w))
    }

    /// The commented default configuration.
    pub fn default_yaml() -> &'static str {
        include_str!("../../../config/steadyface.yaml")
    }
}

/// Longest `mqtt.prefix`, `mqtt.device_id` and `mqtt.client_id` (bytes): a topic, prefix and
/// id together, must stay far inside MQTT's 65,535 bytes, and a broker that refuses a long
/// client id would otherwise only say so by never accepting the connection.
const MAX_TOPIC_PART: usize = 256;

/// Deserialise one section; on failure, name each offending key by its path and return the
/// section without those keys, so the rest of it is still range- and cross-checked.
fn section<T: serde::de::DeserializeOwned>(name: &str, v: &Value, problems: &mut Vec<String>) -> Option<T> {
    match serde_yaml::from_value::<T>(v.clone()) {
        Ok(s) => Some(s),
        Err(e) => {
            let Value::Mapping(m) = v else {
                problems.push(format!("{name}: {e}"));
                return None;
            };
            // Every other field has a default, so a one-key mapping isolates each error.
            let mut rest = m.clone();
            for (k, sub) in m {
                let mut one = serde_yaml::Mapping::new();
                one.insert(k.clone(), sub.clone());
                if let Err(e) = serde_yaml::from_value::<T>(Value::Mapping(one)) {
                    problems.push(format!("{name}.{}: {e}", k.as_str().unwrap_or("?")));
                    rest.remove(k);
                }
            }
            if rest.len() == m.len() {
                problems.push(format!("{name}: {e}"));
            }
            serde_yaml::from_value::<T>(Value::Mapping(rest)).ok()
        }
    }
}

/// Report and remove keys of `v` that the defaults do not have, by dotted path.
fn prune_unknown_keys(v: &mut Value, defaults: &Value, path: &str, out: &mut Vec<String>) {
    if let (Value::Mapping(m), Value::Mapping(d)) = (v, defaults) {
        let mut unknown = Vec::new();
        for (k, sub) in m.iter_mut() {
            let key = k.as_str().map(str::to_string).unwrap_or_else(|| format!("{k:?}"));
            let full = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match d.get(k) {
                Some(dsub) => prune_unknown_keys(sub, dsub, &full, out),
                None => {
                    let known: Vec<_> = d.keys().filter_map(|k| k.as_str()).collect();
                    out.push(format!("{full}: unknown field (known here: {})", known.join(", ")));
                    unknown.push(k.clone());
                }
            }
        }
        for k in unknown {
            m.remove(&k);
        }
    }
}

/// Apply `a.b.c=value` to the tree; the value is parsed as YAML (so numbers stay numbers).
fn apply_override(tree: &mut Value, spec: &str) -> std::result::Result<(), String> {
    let (path, raw) = spec
        .split_once('=')
        .ok_or_else(|| format!("--set {spec:?}: expected key.path=value"))?;
    let value: Value = parse_yaml(raw).map_err(|e| format!("--set {path}: bad value {raw:?}: {e}"))?;
    let mut cur = tree;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            return Err(format!("--set {spec:?}: empty key in path"));
        }
        if !cur.is_mapping() {
            *cur = Value::Mapping(Default::default());
        }
        let m = cur.as_mapping_mut().expect("just made a mapping");
        let k = Value::String(part.to_string());
        if i + 1 == parts.len() {
            m.insert(k, value);
            return Ok(());
        }
        cur = m.entry(k).or_insert(Value::Mapping(Default::default()));
    }
    Ok(())
}

#[cfg(test)]
mod commented;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_config_equals_built_in_defaults() {
        assert_eq!(Config::from_yaml(Config::default_yaml()).unwrap(), Config::default());
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let e = Config::from_yaml(
            "detector:\n  score_threshold: 2.0\n  colour: red\ntracker:\n  max_faces: many\ndecoder:\n  method: magic\nbogus: 1\n",
        )
        .unwrap_err()
        .to_string();
        for want in [
            "detector.score_threshold: 2",
            "detector.colour: unknown field",
            "tracker.max_faces: invalid type",
            "decoder.method",
            "magic",
            "bogus: unknown field",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }

    #[test]
    fn mqtt_names_and_the_clip_quota_are_bounded() {
        let long = "x".repeat(70_000);
        let e = Config::from_yaml(&format!(
            "mqtt:\n  prefix: '$SYS'\n  device_id: '{long}'\n  client_id: '{long}'\nclips:\n  max_total_mb: 17592186044416\n"
        ))
        .unwrap_err()
        .to_string();
        for want in [
            "mqtt.prefix: \"$SYS\" must not start with $",
            "mqtt.device_id: 70000 bytes; at most 256",
            "mqtt.client_id: 70000 bytes; at most 256",
            "clips.max_total_mb: 17592186044416 is out of range",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        // At the limits, all is well.
        let ok = "y".repeat(256);
        Config::from_yaml(&format!(
            "mqtt:\n  prefix: '{ok}'\n  device_id: '{ok}'\n  client_id: '{ok}'\nclips:\n  max_total_mb: 1099511627776\n"
        ))
        .unwrap();
    }

    #[test]
    fn daemon_sections_report_every_problem_by_path() {
        let e = Config::from_yaml(concat!(
            "source:\n  kind: replay\n  fps: -3\n  format: rgb24\n  camera: 1\n",
            "daemon:\n  max_fps: fast\n",
            "mqtt:\n  port: 0\n  prefix: 'a/#'\n  device_id: 'car/1'\n  password: x\n",
            "  tls:\n    enabled: true\n    cert_file: c.pem\n",
        ))
        .unwrap_err()
        .to_string();
        for want in [
            "source.path: required when source.kind is replay",
            "source.fps: -3",
            "source.format: \"rgb24\" is not one of",
            "source.camera: unknown field",
            "daemon.max_fps: invalid type",
            "mqtt.port: must not be 0",
            "mqtt.prefix: \"a/#\" must not contain MQTT wildcards",
            "mqtt.device_id: \"car/1\" must be one topic level",
            "mqtt.username: required when a password is given",
            "mqtt.tls.cert_file and mqtt.tls.key_file: give both or neither",
            "mqtt.tls.ca_file: required",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }

    #[test]
    fn shipped_daemon_configs_are_valid() {
        for f in ["demo.yaml", "replay-mqtt.yaml"] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config").join(f);
            let c = Config::load(Some(&p), &[]).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(c.source.kind, SourceKind::Replay, "{f}");
        }
    }

    #[test]
    fn set_overrides_are_validated_like_the_file() {
        let c = Config::load(None, &["decoder.method=offset".into(), "detector.interval=3".into()]).unwrap();
        assert_eq!(c.decoder.method, DecoderMethod::Offset);
        assert_eq!(c.detector.interval, 3);
        let e = Config::load(
            None,
            &["detector.interval=0".into(), "nosuch.key=1".into(), "broken".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("detector.interval: must be at least 1")
                && e.contains("nosuch: unknown field")
                && e.contains("--set \"broken\""),
            "{e}"
        );
    }
}
