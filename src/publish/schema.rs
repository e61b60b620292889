//! The MQTT payloads, shared by the daemon (which writes them) and subscribers (which read
//! them). Every payload is a JSON object with `schema` (= [`SCHEMA_VERSION`]) and `device`.
//! The JSON Schema for all of them is `src/publish/schema.json`; tests check real payloads
//! against it.

use crate::records::FaceRecord;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible payload change; subscribers should check it.
pub const SCHEMA_VERSION: u32 = 3;

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
    /// Commands to this device (subscribed, QoS 1): see [`CommandMsg`]. Lock it down with broker ACLs.
    pub cmd: String,
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
            cmd: t("cmd"),
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
    /// A field clip was written (`reason`: its directory).
    ClipSaved,
    /// A field clip could not be written (`reason`).
    ClipFailed,
    /// The oldest clip was deleted to keep `clips.max_total_mb` (`reason`: its directory).
    ClipDeleted,
    /// A command from the `cmd` topic was carried out (`reason`: the command).
    CommandAccepted,
    /// A command was refused (`reason` says why: bad payload, unknown command, clips disabled, busy).
    CommandRejected,
    /// A drowsiness signal of track `track` (`blink`, `yawn`, `eyes_closed`, ...; see
    /// [`crate::signals::SignalEventKind`]), serialised as its own name.
    #[serde(untagged)]
    Signal(crate::signals::SignalEventKind),
}

impl From<crate::signals::SignalEventKind> for EventKind {
    fn from(k: crate::signals::SignalEventKind) -> Self {
        Self::Signal(k)
    }
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
    /// Seconds, for blinks, closures and yawns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f32>,
}

/// One tracked face's drowsiness state in `state`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackSignals {
    pub track: u32,
    /// `open`, `closed` or `unknown`.
    pub eyes: crate::signals::EyeState,
    /// The eyes-closed alarm is raised.
    pub alarm: bool,
    /// A yawn is in progress (absent: mouth not readable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yawning: Option<bool>,
    /// PERCLOS P80 and blinks per minute over `signals.perclos_window_s` (absent until half
    /// the window had readable eyes). Refreshed at least every metrics interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perclos: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blink_rate: Option<f32>,
    /// The open-eye baseline was learnt from this driver.
    pub calibrated: bool,
}

impl TrackSignals {
    pub fn new(track: u32, s: &crate::signals::FaceSignals) -> Self {
        Self {
            track,
            eyes: s.eyes,
            alarm: s.alarm,
            yawning: s.yawning,
            perclos: s.perclos,
            blink_rate: s.blink_rate,
            calibrated: s.calibrated,
        }
    }
    /// Same discrete state (eyes, alarm, yawning, calibration); the windowed figures are
    /// refreshed on the metrics tick instead of every frame.
    pub fn same_state(&self, o: &Self) -> bool {
        (self.track, self.eyes, self.alarm, self.yawning, self.calibrated)
            == (o.track, o.eyes, o.alarm, o.yawning, o.calibrated)
    }
}

/// A command on `PREFIX/DEVICE_ID/cmd` (JSON). Anyone who may publish there controls the
/// device's recording and calibration, so restrict the topic with broker ACLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandMsg {
    /// `record` (save a field clip of the last `clips.seconds`), `recalibrate` (learn every
    /// tracked driver's open-eye EAR again) or `reset` (forget all tracks and signal history).
    pub command: String,
    /// Free text kept with a recorded clip (`record`), e.g. who asked and why.
    #[serde(default)]
    pub note: Option<String>,
}

/// Commands the daemon knows.
pub const COMMANDS: &[&str] = &["record", "recalibrate", "reset"];

impl CommandMsg {
    /// Parse and check a payload; the error names the problem for the `command_rejected` event.
    pub fn parse(payload: &[u8]) -> Result<Self, String> {
        let c: CommandMsg = serde_json::from_slice(payload).map_err(|e| {
            format!(
                "payload {:?} is not a command ({e}); expected {{\"command\": \"record\" | \"recalibrate\" | \"reset\"}}",
                String::from_utf8_lossy(&payload[..payload.len().min(80)])
            )
        })?;
        if !COMMANDS.contains(&c.command.as_str()) {
            return Err(format!(
                "unknown command {:?} (one of {})",
                c.command,
                COMMANDS.join(", ")
            ));
        }
        Ok(c)
    }
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
    /// Drowsiness state per tracked face (empty when `signals.enabled` is false).
    #[serde(default)]
    pub signals: Vec<TrackSignals>,
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
    /// Field clips written, deleted for the disk quota, and failed.
    #[serde(default)]
    pub clips_saved: u64,
    #[serde(default)]
    pub clips_deleted: u64,
    #[serde(default)]
    pub clips_failed: u64,
    /// Commands refused (bad payload, unknown command, clips disabled or busy).
    #[serde(default)]
    pub commands_rejected: u64,
}

/// One line with every counter, for logs.
impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} frames captured, {} processed, {} dropped before inference, {} failed; not published: {} landmarks, {} events, {} metrics; {} camera outages, {} broker disconnects; clips: {} saved, {} deleted for the quota, {} failed; {} commands rejected",
            self.captured,
            self.processed,
            self.dropped_capture,
            self.failed_frames,
            self.dropped_landmarks,
            self.dropped_events,
            self.dropped_metrics,
            self.camera_outages,
            self.mqtt_disconnects,
            self.clips_saved,
            self.clips_deleted,
            self.clips_failed,
            self.commands_rejected
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::SignalEventKind;

    #[test]
    fn signal_events_serialise_by_their_own_names() {
        for (k, name) in [
            (EventKind::Signal(SignalEventKind::Blink), "\"blink\""),
            (EventKind::Signal(SignalEventKind::EyesClosed), "\"eyes_closed\""),
            (
                EventKind::Signal(SignalEventKind::SignalsUnknown),
                "\"signals_unknown\"",
            ),
            (EventKind::TrackLost, "\"track_lost\""),
            (EventKind::ClipDeleted, "\"clip_deleted\""),
        ] {
            assert_eq!(serde_json::to_string(&k).unwrap(), name);
            assert_eq!(serde_json::from_str::<EventKind>(name).unwrap(), k);
        }
        assert!(serde_json::from_str::<EventKind>("\"snore\"").is_err());
    }

    #[test]
    fn commands_parse_or_say_why_not() {
        let c = CommandMsg::parse(br#"{"command": "record", "note": "bumpy road"}"#).unwrap();
        assert_eq!((c.command.as_str(), c.note.as_deref()), ("record", Some("bumpy road")));
        let e = CommandMsg::parse(br#"{"command": "Record"}"#).unwrap_err();
        assert!(
            e.contains("unknown command \"Record\" (one of record, recalibrate, reset)"),
            "{e}"
        );
        let e = CommandMsg::parse(br#"{"cmd": "record"}"#).unwrap_err();
        assert!(e.contains("unknown field `cmd`"), "{e}");
        let e = CommandMsg::parse(&[0xff, 0xfe]).unwrap_err();
        assert!(e.contains("is not a command"), "{e}");
    }
}
