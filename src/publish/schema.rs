//! The MQTT payloads, shared by the daemon (which writes them) and subscribers (which read
//! them). Every payload is a JSON object with `schema` (= [`SCHEMA_VERSION`]) and `device`.
//! The JSON Schema for all of them is `src/publish/schema.json`; tests check real payloads
//! against it.

use crate::records::FaceRecord;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible payload change; subscribers should check it.
pub const SCHEMA_VERSION: u32 = 1;

/// The JSON Schema (draft 2020-12) of every payload, as shipped in the repository.
pub const JSON_SCHEMA: &str = include_str!("schema.json");

/// Topic names under `PREFIX/DEVICE_ID/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Topics {
    /// Retained `online`/`offline` status; `offline` is also the Last Will.
    pub status: String,
    /// One message per processed frame (QoS 0).
    pub landmarks: String,
    /// Discrete events (QoS 1): tracks, camera loss, source end.
    pub events: String,
    /// Retained current state (QoS 1), published when it changes.
    pub state: String,
    /// Periodic metrics (QoS 0).
    pub metrics: String,
}

impl Topics {
    pub fn new(prefix: &str, device: &str) -> Self {
        let t = |leaf: &str| format!("{prefix}/{device}/{leaf}");
        Self {
            status: t("status"),
            landmarks: t("landmarks"),
            events: t("events"),
            state: t("state"),
            metrics: t("metrics"),
        }
    }
}

/// `status`: retained, QoS 1. The broker publishes `state: offline` itself (the Last Will) when
/// the daemon vanishes without saying goodbye.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusMsg {
    pub schema: u32,
    pub device: String,
    /// `online` or `offline`.
    pub state: String,
    /// Why we went offline: `shutdown`, `connection lost` (the Last Will).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// steadyface version.
    pub version: String,
    /// Unix time in seconds (absent in the Last Will, which is written at connect time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<f64>,
}

/// `landmarks`: QoS 0, one per processed frame, also with no face (`faces: []`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandmarksMsg {
    pub schema: u32,
    pub device: String,
    /// Frame number from the source (gaps are frames dropped before inference).
    pub frame: u64,
    /// Source time in seconds since the source started.
    pub time_s: f64,
    /// Unix time in seconds when the result was ready.
    pub ts: f64,
    /// Capture to result, in milliseconds.
    pub latency_ms: f32,
    /// Same record as `steadyface track` writes: id, box, score, points (pixels, pixel centres).
    pub faces: Vec<FaceRecord>,
}

/// What an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A face got a track (`track` holds its id).
    TrackStarted,
    /// A track ended: the face left, was occluded, or the scene cut.
    TrackLost,
    /// The camera stopped delivering frames (`reason` says why); the daemon keeps reopening it.
    CameraLost,
    /// Frames flow again after `camera_lost`.
    CameraRestored,
    /// A replayed clip reached its end (without `source.repeat`); the daemon stops.
    SourceEnded,
}

/// `events`: QoS 1, queued while the broker is unreachable (bounded, oldest dropped and counted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMsg {
    pub schema: u32,
    pub device: String,
    /// Per-run sequence number from 1, so a subscriber can see that none went missing.
    pub seq: u64,
    pub ts: f64,
    pub event: EventKind,
    /// Source frame number the event belongs to.
    pub frame: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `state`: retained, QoS 1, published on change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateMsg {
    pub schema: u32,
    pub device: String,
    pub ts: f64,
    /// `ok`, `lost` (being reopened) or `ended` (replay finished).
    pub camera: String,
    /// Ids of the faces tracked now.
    pub tracks: Vec<u32>,
}

/// Median and 90th percentile.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantiles {
    pub median: f32,
    pub p90: f32,
}

/// Running totals since the daemon (re)started. Every frame or message not delivered is here.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Frames read from the source.
    pub captured: u64,
    /// Frames that went through the landmark pipeline.
    pub processed: u64,
    /// Frames replaced by a newer one before inference took them (inference behind, or fps cap).
    pub dropped_capture: u64,
    /// Landmark messages not published: broker unreachable, or the outgoing queue full.
    pub dropped_landmarks: u64,
    /// Events and states dropped because the bounded queue overflowed during an outage.
    pub dropped_events: u64,
    /// Metrics messages not published (broker unreachable).
    pub dropped_metrics: u64,
    /// Frames the pipeline failed on (logged with the reason).
    pub failed_frames: u64,
    /// Times the camera was lost.
    pub camera_outages: u64,
    /// Broker connections lost (or refused) since start.
    pub mqtt_disconnects: u64,
}

/// One line with every counter, for logs.
impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} frames captured, {} processed, {} dropped before inference, {} failed; not published: {} landmarks, {} events, {} metrics; {} camera outages, {} broker disconnects",
            self.captured,
            self.processed,
            self.dropped_capture,
            self.failed_frames,
            self.dropped_landmarks,
            self.dropped_events,
            self.dropped_metrics,
            self.camera_outages,
            self.mqtt_disconnects
        )
    }
}

/// `metrics`: QoS 0, every `daemon.metrics_interval_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsMsg {
    pub schema: u32,
    pub device: String,
    pub ts: f64,
    pub uptime_s: f64,
    /// Processed frames per second over the last interval.
    pub fps: f32,
    /// Capture-to-result latency over the last interval (ms).
    pub latency_ms: Quantiles,
    /// Live jitter: median frame-to-frame landmark motion of tracked faces over the last
    /// interval, as a fraction of the face box size. Null without a tracked face.
    pub jitter: Option<f32>,
    pub mqtt_connected: bool,
    pub counts: Counts,
}

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
