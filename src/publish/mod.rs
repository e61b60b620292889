//! Where results go: an MQTT broker ([`mqtt`]) and/or stdout, with the payload types in
//! [`schema`].
//!
//! The [`Publisher`] runs on the daemon's async side. It receives [`Outgoing`] messages from
//! the inference thread through a bounded channel (the inference thread never waits: when the
//! channel is full the message is dropped and counted there), keeps the retained `state` up
//! to date, and computes the periodic metrics (fps, latency, live jitter, drops).

pub mod mqtt;
pub mod schema;

use crate::records::FaceRecord;
use crate::signals::SignalEventKind;
use schema::{
    unix_now, Counts, EventKind, EventMsg, LandmarksMsg, MetricsMsg, Quantiles, StateMsg, TrackSignals, SCHEMA_VERSION,
};
use std::io::Write;

/// A message from the pipeline side.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Landmarks(LandmarksMsg),
    Event(EventMsg),
}

/// Live jitter and latency over one metrics interval.
#[derive(Default)]
struct Window {
    frames: u64,
    latency: Vec<f32>,
    jitter: Vec<f32>,
    prev: Vec<FaceRecord>,
}

/// Median and 90th percentile of `v` (sorted in place); zeros when empty.
pub fn quantiles(v: &mut [f32]) -> Quantiles {
    if v.is_empty() {
        return Quantiles::default();
    }
    v.sort_by(f32::total_cmp);
    let at = |q: f32| v[((v.len() - 1) as f32 * q).round() as usize];
    Quantiles {
        median: at(0.5),
        p90: at(0.9),
    }
}

/// Mean of `motion` over the faces of `now` that were in `before` (matched by id), or
/// `None` when no face was.
pub fn mean_motion(before: &[FaceRecord], now: &[FaceRecord]) -> Option<f32> {
    let (sum, n) = now
        .iter()
        .filter_map(|f| before.iter().find(|p| p.id == f.id).and_then(|p| motion(p, f)))
        .fold((0.0, 0), |(s, n), m| (s + m, n + 1));
    (n > 0).then(|| sum / n as f32)
}

/// Mean point motion between two observations of the same face, as a fraction of the box size
/// (the larger side), or `None` when the point counts differ.
fn motion(a: &FaceRecord, b: &FaceRecord) -> Option<f32> {
    if a.points.len() != b.points.len() || a.points.is_empty() {
        return None;
    }
    let size = (b.bbox[2] - b.bbox[0]).max(b.bbox[3] - b.bbox[1]).max(1.0);
    let sum: f32 = a
        .points
        .iter()
        .zip(&b.points)
        .map(|(p, q)| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt())
        .sum();
    Some(sum / a.points.len() as f32 / size)
}

pub struct Publisher {
    device: String,
    stdout: Option<std::io::LineWriter<std::io::Stdout>>,
    pub mqtt: Option<mqtt::MqttSink>,
    window: Window,
    state: StateMsg,
    started: std::time::Instant,
    window_started: std::time::Instant,
    /// Frames and messages dropped before they reached the publisher (inference side).
    pub upstream: Counts,
    /// The MQTT sink's counts once it is closed.
    closed: mqtt::MqttCounts,
    /// Signals of the last landmark message, for the periodic refresh of `state`.
    latest_signals: Vec<TrackSignals>,
}

impl Publisher {
    pub fn new(device: &str, stdout: bool, mqtt: Option<mqtt::MqttSink>) -> Self {
        Self {
            device: device.to_string(),
            stdout: stdout.then(|| std::io::LineWriter::new(std::io::stdout())),
            mqtt,
            window: Window::default(),
            state: StateMsg {
                schema: SCHEMA_VERSION,
                device: device.to_string(),
                ts: unix_now(),
                camera: "ok".into(),
                tracks: Vec::new(),
                signals: Vec::new(),
            },
            started: std::time::Instant::now(),
            window_started: std::time::Instant::now(),
            upstream: Counts::default(),
            closed: mqtt::MqttCounts::default(),
            latest_signals: Vec::new(),
        }
    }

    pub fn handle(&mut self, msg: Outgoing) {
        match msg {
            Outgoing::Landmarks(m) => {
                self.window.frames += 1;
                self.window.latency.push(m.latency_ms);
                for f in &m.faces {
                    if let Some(prev) = self.window.prev.iter().find(|p| p.id == f.id) {
                        if let Some(j) = motion(prev, f) {
                            self.window.jitter.push(j);
                        }
                    }
                }
                self.window.prev.clone_from(&m.faces);
                let tracks_changed = !m.faces.iter().map(|f| f.id).eq(self.state.tracks.iter().copied());
                let now = &mut self.latest_signals;
                now.clear();
                now.extend(
                    m.faces
                        .iter()
                        .filter_map(|f| f.signals.as_ref().map(|s| TrackSignals::new(f.id, s))),
                );
                let signals_changed = now.len() != self.state.signals.len()
                    || now.iter().zip(&self.state.signals).any(|(a, b)| !a.same_state(b));
                // The windowed figures (PERCLOS, blink rate) ride along; `metrics` refreshes them.
                if tracks_changed || signals_changed {
                    self.state.tracks = m.faces.iter().map(|f| f.id).collect();
                    self.state.signals.clone_from(&self.latest_signals);
                    self.publish_state();
                }
                if self.stdout.is_none() && self.mqtt.is_none() {
                    return;
                }
                let payload = serde_json::to_vec(&m).expect("landmarks serialise");
                if let Some(out) = &mut self.stdout {
                    // A closed stdout (e.g. `| head`) must not stop the daemon.
                    let _ = out.write_all(&payload).and_then(|_| out.write_all(b"\n"));
                }
                if let Some(q) = &mut self.mqtt {
                    q.landmarks(payload);
                }
            }
            Outgoing::Event(e) => {
                match e.event {
                    EventKind::TrackStarted
                    | EventKind::TrackLost
                    | EventKind::Signal(SignalEventKind::Blink | SignalEventKind::LongClosure)
                    | EventKind::Signal(SignalEventKind::SignalsKnown | SignalEventKind::SignalsUnknown) => {
                        log::debug!("event {:?} track {:?} at frame {}", e.event, e.track, e.frame)
                    }
                    _ => log::info!(
                        "event {:?} at frame {}{}",
                        e.event,
                        e.frame,
                        e.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                    ),
                }
                let camera = match e.event {
                    EventKind::CameraLost => Some("lost"),
                    EventKind::CameraRestored => Some("ok"),
                    EventKind::SourceEnded => Some("ended"),
                    _ => None,
                };
                if let Some(q) = &mut self.mqtt {
                    let topic = q.topics.events.clone();
                    q.reliable(topic, serde_json::to_vec(&e).expect("event serialises"), false);
                }
                if let Some(c) = camera {
                    if self.state.camera != c {
                        self.state.camera = c.into();
                        if c != "ok" {
                            self.state.tracks.clear();
                            self.state.signals.clear();
                            self.latest_signals.clear();
                        }
                        self.publish_state();
                    }
                }
            }
        }
    }

    fn publish_state(&mut self) {
        self.state.ts = unix_now();
        if let Some(q) = &mut self.mqtt {
            let topic = q.topics.state.clone();
            q.reliable(topic, serde_json::to_vec(&self.state).expect("state serialises"), true);
        }
    }

    /// Publish the current state (retained), e.g. right after start.
    pub fn announce(&mut self) {
        self.publish_state();
    }

    /// Totals so far: the inference side's counts plus the sink's.
    pub fn counts(&self) -> Counts {
        let mut c = self.upstream;
        let q = self.mqtt.as_ref().map_or(self.closed, |q| q.counts);
        c.dropped_landmarks += q.dropped_landmarks;
        c.dropped_events += q.dropped_events;
        c.dropped_metrics += q.dropped_metrics;
        c.mqtt_disconnects += q.disconnects;
        c
    }

    /// Say goodbye to the broker (see [`mqtt::MqttSink::close`]), keeping its final counts.
    pub async fn close(
        &mut self,
        link_rx: &mut tokio::sync::mpsc::UnboundedReceiver<mqtt::Link>,
        grace: std::time::Duration,
    ) {
        if let Some(q) = self.mqtt.take() {
            self.closed = q.close(link_rx, grace).await;
        }
    }

    /// Close the metrics window: log it, and publish it when a broker is configured. The
    /// retained `state` is refreshed too when its PERCLOS or blink rate moved.
    pub fn metrics(&mut self) -> MetricsMsg {
        if self.latest_signals != self.state.signals {
            self.state.signals.clone_from(&self.latest_signals);
            self.publish_state();
        }
        let secs = self.window_started.elapsed().as_secs_f64().max(1e-3);
        let jitter = (!self.window.jitter.is_empty()).then(|| quantiles(&mut self.window.jitter).median);
        let m = MetricsMsg {
            schema: SCHEMA_VERSION,
            device: self.device.clone(),
            ts: unix_now(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            fps: (self.window.frames as f64 / secs) as f32,
            latency_ms: quantiles(&mut self.window.latency),
            jitter,
            mqtt_connected: self.mqtt.as_ref().is_some_and(|q| q.connected()),
            counts: self.counts(),
        };
        log::info!(
            "{:.1} fps, latency {:.1}/{:.1} ms (median/p90), jitter {}; {}",
            m.fps,
            m.latency_ms.median,
            m.latency_ms.p90,
            m.jitter.map(|j| format!("{j:.4}")).unwrap_or_else(|| "-".into()),
            m.counts
        );
        if let Some(q) = &mut self.mqtt {
            q.metrics(serde_json::to_vec(&m).expect("metrics serialise"));
        }
        self.window.frames = 0;
        self.window.latency.clear();
        self.window.jitter.clear();
        self.window_started = std::time::Instant::now();
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(id: u32, dx: f32) -> FaceRecord {
        FaceRecord {
            id,
            bbox: [0.0, 0.0, 100.0, 50.0],
            score: 0.9,
            points: vec![[10.0 + dx, 10.0], [20.0 + dx, 10.0]],
            scheme: "osf66".into(),
            eyes: None,
            signals: None,
        }
    }

    #[test]
    fn motion_is_mean_point_shift_over_box_size() {
        assert_eq!(motion(&face(1, 0.0), &face(1, 2.0)), Some(0.02));
        let mut other = face(1, 0.0);
        other.points.pop();
        assert_eq!(motion(&face(1, 0.0), &other), None);
    }

    #[test]
    fn quantiles_pick_ranks() {
        let mut v: Vec<f32> = (1..=11).rev().map(|x| x as f32).collect();
        assert_eq!(quantiles(&mut v), Quantiles { median: 6.0, p90: 10.0 });
        assert_eq!(quantiles(&mut []), Quantiles::default());
    }
}
