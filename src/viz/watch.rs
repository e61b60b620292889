//! `steadyface watch`: a terminal view of running daemons, for the person installing a car.
//!
//! It subscribes to `PREFIX/DEVICE/#` (every device by default) and shows, per device: online
//! status, camera, fps, latency, drops, live jitter, the drowsiness state, the last events, and
//! a braille outline of the face that moves with the points. Payloads are decoded with the
//! daemon's own types ([`crate::publish::schema`]), so a schema change breaks the build, not
//! the view. It reconnects on its own and exits cleanly on Ctrl-C; `--once` prints one
//! snapshot as soon as a device has sent its status, state, metrics and landmarks.

use crate::error::{Error, Result};
use crate::publish::schema::{EventMsg, LandmarksMsg, MetricsMsg, StateMsg, StatusMsg, SCHEMA_VERSION};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, Instant};

/// What `watch` connects to.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub host: String,
    pub port: u16,
    pub prefix: String,
    /// One device, or every device under the prefix.
    pub device: Option<String>,
    /// Print one snapshot and exit.
    pub once: bool,
    /// With `once`: give up after this long.
    pub timeout: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// The latest of everything one device published.
#[derive(Debug, Default, Clone)]
pub struct DeviceView {
    pub status: Option<StatusMsg>,
    pub state: Option<StateMsg>,
    pub metrics: Option<MetricsMsg>,
    pub landmarks: Option<LandmarksMsg>,
    pub events: VecDeque<EventMsg>,
}

/// Everything seen so far.
#[derive(Debug, Default, Clone)]
pub struct View {
    pub devices: BTreeMap<String, DeviceView>,
    /// Payloads that did not decode (another schema version, or not ours).
    pub undecoded: u64,
    pub last_undecoded: Option<String>,
}

const EVENTS_SHOWN: usize = 5;

impl View {
    /// Take one message; `topic` is `PREFIX/DEVICE/LEAF`.
    pub fn ingest(&mut self, topic: &str, payload: &[u8]) {
        let mut parts = topic.rsplitn(3, '/');
        let (Some(leaf), Some(device)) = (parts.next(), parts.next()) else {
            return;
        };
        if leaf == "cmd" || payload.is_empty() {
            return;
        }
        let d = self.devices.entry(device.to_string()).or_default();
        let ok = match leaf {
            "status" => serde_json::from_slice(payload).map(|m| d.status = Some(m)),
            "state" => serde_json::from_slice(payload).map(|m| d.state = Some(m)),
            "metrics" => serde_json::from_slice(payload).map(|m| d.metrics = Some(m)),
            "landmarks" => serde_json::from_slice(payload).map(|m| d.landmarks = Some(m)),
            "events" => serde_json::from_slice(payload).map(|m| {
                if d.events.len() == EVENTS_SHOWN {
                    d.events.pop_front();
                }
                d.events.push_back(m);
            }),
            _ => return,
        };
        if let Err(e) = ok {
            self.undecoded += 1;
            let schema = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v["schema"].as_u64());
            self.last_undecoded = Some(match schema {
                Some(s) if s != SCHEMA_VERSION as u64 => {
                    format!("{topic}: schema {s}, this watch reads schema {SCHEMA_VERSION}")
                }
                _ => format!("{topic}: {e}"),
            });
        }
    }

    /// A device has sent all four kinds of message, so a snapshot says something.
    pub fn complete(&self) -> bool {
        self.devices
            .values()
            .any(|d| d.status.is_some() && d.state.is_some() && d.metrics.is_some() && d.landmarks.is_some())
    }

    /// The text view.
    pub fn render(&self, broker: &str, link: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "steadyface watch: {broker} ({link})");
        if self.devices.is_empty() {
            let _ = writeln!(s, "no device has published yet");
        }
        for (name, d) in &self.devices {
            let _ = writeln!(s);
            let status = d.status.as_ref().map_or("?".to_string(), |st| {
                let why = st.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                format!("{}{why}, version {}", st.state, st.version)
            });
            let _ = writeln!(s, "device {name}: {status}");
            if let Some(st) = &d.state {
                let _ = writeln!(s, "  camera {}, tracks {:?}", st.camera, st.tracks);
                for t in &st.signals {
                    let pct = |v: Option<f32>, unit: &str| v.map_or("-".into(), |x| format!("{x:.2}{unit}"));
                    let _ = writeln!(
                        s,
                        "  driver #{}: eyes {:?}{}{}, PERCLOS {}, blinks {} /min{}",
                        t.track,
                        t.eyes,
                        if t.alarm { ", EYES-CLOSED ALARM" } else { "" },
                        if t.yawning == Some(true) { ", yawning" } else { "" },
                        pct(t.perclos, ""),
                        pct(t.blink_rate, ""),
                        if t.calibrated { "" } else { " (calibrating)" }
                    );
                }
            }
            if let Some(m) = &d.metrics {
                let c = &m.counts;
                let _ = writeln!(
                    s,
                    "  {:.1} fps, latency {:.1}/{:.1} ms (median/p90), jitter {}, broker link {}",
                    m.fps,
                    m.latency_ms.median,
                    m.latency_ms.p90,
                    m.jitter.map_or("-".into(), |j| format!("{j:.4}")),
                    if m.mqtt_connected { "up" } else { "down" }
                );
                let _ = writeln!(
                    s,
                    "  dropped: {} before inference, {} landmarks, {} events; {} failed frames, {} camera outages",
                    c.dropped_capture, c.dropped_landmarks, c.dropped_events, c.failed_frames, c.camera_outages
                );
            }
            if let Some(l) = &d.landmarks {
                let _ = writeln!(
                    s,
                    "  frame {} ({:.1} ms): {} face(s)",
                    l.frame,
                    l.latency_ms,
                    l.faces.len()
                );
                if let Some(f) = l.faces.first() {
                    if let Some([a, b]) = &f.eyes {
                        let _ = writeln!(
                            s,
                            "  eyes: lid gap {:.2} | {:.2}, iris radius {:.1} | {:.1} px",
                            a.openness, b.openness, a.iris_radius, b.iris_radius
                        );
                    }
                    // The outline, with the refined lids and the iris centres drawn in.
                    let mut pts = f.points.clone();
                    for e in f.eyes.iter().flatten() {
                        pts.extend_from_slice(&e.lids);
                        pts.push(e.iris);
                    }
                    for line in braille(&pts, 32, 10) {
                        let _ = writeln!(s, "    {line}");
                    }
                }
            }
            for e in &d.events {
                let what = serde_json::to_value(e.event)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  event #{} {what}{}{}{}",
                    e.seq,
                    e.track.map(|t| format!(" track {t}")).unwrap_or_default(),
                    e.duration_s.map(|d| format!(" {d:.2} s")).unwrap_or_default(),
                    e.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                );
            }
        }
        if self.undecoded > 0 {
            let _ = writeln!(
                s,
                "\n{} payloads not understood; last: {}",
                self.undecoded,
                self.last_undecoded.as_deref().unwrap_or("")
            );
        }
        s
    }
}

/// `points` drawn as braille dots in `cols`×`rows` characters (2×4 dots each), fitted to the
/// points' box with the aspect ratio kept (a terminal cell is about twice as tall as wide).
pub fn braille(points: &[[f32; 2]], cols: usize, rows: usize) -> Vec<String> {
    let (w, h) = (cols * 2, rows * 4);
    let mut dots = vec![false; w * h];
    let (x0, x1, y0, y1) = points.iter().fold((f32::MAX, f32::MIN, f32::MAX, f32::MIN), |a, p| {
        (a.0.min(p[0]), a.1.max(p[0]), a.2.min(p[1]), a.3.max(p[1]))
    });
    if points.is_empty() || !(x1 >= x0 && y1 >= y0) {
        return Vec::new();
    }
    // Dots are square-ish (2 wide, 4 tall per cell of aspect 1:2), so one scale fits both axes.
    let s = ((w - 1) as f32 / (x1 - x0).max(1e-3)).min((h - 1) as f32 / (y1 - y0).max(1e-3));
    for p in points {
        let (x, y) = (((p[0] - x0) * s).round() as usize, ((p[1] - y0) * s).round() as usize);
        if x < w && y < h {
            dots[y * w + x] = true;
        }
    }
    const BITS: [[u32; 4]; 2] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];
    (0..rows)
        .map(|r| {
            (0..cols)
                .map(|c| {
                    let mut b = 0;
                    for (dx, col) in BITS.iter().enumerate() {
                        for (dy, bit) in col.iter().enumerate() {
                            if dots[(r * 4 + dy) * w + c * 2 + dx] {
                                b |= bit;
                            }
                        }
                    }
                    char::from_u32(0x2800 + b).unwrap_or(' ')
                })
                .collect::<String>()
                .trim_end_matches('\u{2800}')
                .to_string()
        })
        .collect()
}

/// Run `watch` until Ctrl-C (or, with `once`, until a snapshot is printed).
pub fn watch(opts: &WatchOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    rt.block_on(run(opts))
}

async fn run(opts: &WatchOptions) -> Result<()> {
    let broker = format!("{}:{}", opts.host, opts.port);
    let mut mo = MqttOptions::new(
        format!("steadyface-watch-{}", std::process::id()),
        &opts.host,
        opts.port,
    );
    mo.set_keep_alive(Duration::from_secs(5));
    mo.set_max_packet_size(4 << 20, 4 << 20);
    if let (Some(u), Some(p)) = (&opts.username, &opts.password) {
        mo.set_credentials(u.clone(), p.clone());
    }
    let (client, mut events) = AsyncClient::new(mo, 64);
    let topic = format!("{}/{}/#", opts.prefix, opts.device.as_deref().unwrap_or("+"));
    let mut view = View::default();
    let start = Instant::now();
    let mut link = "connecting".to_string();
    let mut last_err: Option<String> = None;
    let mut backoff = Duration::from_millis(500);
    let mut redraw = tokio::time::interval(Duration::from_millis(250));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if opts.once && start.elapsed() > opts.timeout {
            return Err(match last_err {
                Some(e) if link != "connected" => Error::Usage(format!("cannot reach the broker at {broker}: {e}")),
                _ => Error::Usage(format!(
                    "no complete snapshot from {topic} at {broker} within {:.0} s (a device sends status, state, metrics and landmarks; metrics every daemon.metrics_interval_s)",
                    opts.timeout.as_secs_f64()
                )),
            });
        }
        tokio::select! {
            _ = &mut ctrl_c => {
                let _ = client.try_disconnect();
                if !opts.once {
                    let _ = writeln!(std::io::stdout());
                }
                return Ok(());
            }
            _ = redraw.tick(), if !opts.once => {
                // A closed terminal or pipe ends the watch with an error rather than a panic.
                let mut o = std::io::stdout().lock();
                write!(o, "\x1b[2J\x1b[H{}", view.render(&broker, &link))
                    .and_then(|_| o.flush())
                    .map_err(|e| Error::Io { path: "<stdout>".into(), source: e })?;
            }
            ev = events.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    link = "connected".into();
                    backoff = Duration::from_millis(500);
                    // Subscriptions do not survive a clean session, so subscribe on every connect.
                    client.try_subscribe(topic.clone(), QoS::AtMostOnce).map_err(|e| Error::Usage(format!("subscribe {topic}: {e}")))?;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    view.ingest(&p.topic, &p.payload);
                    if opts.once && view.complete() {
                        write!(std::io::stdout().lock(), "{}", view.render(&broker, &link))
                            .map_err(|e| Error::Io { path: "<stdout>".into(), source: e })?;
                        let _ = client.try_disconnect();
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let why = e.to_string();
                    link = format!("unreachable: {why}; retrying in {:.1} s", backoff.as_secs_f64());
                    if !opts.once && last_err.as_deref() != Some(why.as_str()) {
                        eprintln!("steadyface watch: cannot reach the broker at {broker}: {why}; retrying (Ctrl-C to stop)");
                    }
                    last_err = Some(why);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braille_puts_each_point_on_its_dot() {
        // Corners of a square: top-left dot of the first cell, bottom-right of the last.
        let lines = braille(&[[0.0, 0.0], [10.0, 10.0]], 4, 2);
        assert_eq!(lines.len(), 2);
        // Square 10×10 into 8×8 dots: (0,0) → dot (0,0) = bit 0x01; (10,10) → dot (7,7): cell
        // (3,1), dot column 1, row 3 = bit 0x80.
        assert_eq!(lines[0].chars().next(), Some('\u{2801}'));
        assert_eq!(lines[1].chars().nth(3), Some('\u{2880}'));
        assert!(braille(&[], 4, 2).is_empty());
    }

    #[test]
    fn ingest_keeps_the_latest_and_reports_what_it_cannot_read() {
        let mut v = View::default();
        v.ingest(
            "steadyface/car-1/status",
            br#"{"schema":3,"device":"car-1","state":"online","version":"0.1.0","ts":1.0}"#,
        );
        v.ingest("steadyface/car-1/metrics", br#"{"schema":1,"device":"car-1"}"#);
        v.ingest("steadyface/car-1/cmd", br#"{"command":"record"}"#);
        assert_eq!(v.devices["car-1"].status.as_ref().unwrap().state, "online");
        assert_eq!(v.undecoded, 1);
        assert!(v
            .last_undecoded
            .as_deref()
            .unwrap()
            .contains(&format!("schema 1, this watch reads schema {SCHEMA_VERSION}")));
        assert!(!v.complete());
        let text = v.render("h:1", "connected");
        assert!(text.contains("device car-1: online, version 0.1.0"), "{text}");
    }
}
