//! MQTT output (rumqttc): Last Will, retained status, and at-least-once delivery of events
//! across broker outages.
//!
//! rumqttc forgets unacknowledged QoS 1 messages when it reconnects with a clean session
//! (and a restarted broker has no session to resume), so events are kept here until the
//! broker acknowledges them: `queue` holds messages not yet handed to rumqttc, `inflight`
//! those handed over but not acknowledged. A lost connection moves `inflight` back to the
//! front of `queue`. Both together never exceed `mqtt.event_queue`; beyond that the oldest
//! is dropped and counted. Landmark frames (QoS 0) are only offered while connected;
//! otherwise they are dropped and counted, so memory stays flat however long the outage.

use super::schema::{StatusMsg, Topics, SCHEMA_VERSION};
use crate::config::MqttConfig;
use crate::error::{Error, Result};
use rumqttc::{AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

/// The largest packet read from the broker. Commands are far smaller
/// (`daemon::intake::MAX_COMMAND_BYTES`): anything up to this is read, rejected and counted,
/// and the connection stays up. A larger packet cannot be skipped (rumqttc drops the
/// connection at its header, before reading it), so it is counted as a rejected command, and a
/// retained one is cleared before subscribing again, or it would be replayed on every connect.
pub const MAX_INCOMING_BYTES: usize = 1 << 20;
/// The largest packet we send. A landmark message for every face is a few KiB; rumqttc's
/// default (10 KiB) would drop the connection on a crowded frame. Larger messages are dropped
/// and counted here, never handed to the client.
pub const MAX_OUTGOING_BYTES: usize = 1 << 20;

/// What the connection task tells the publisher.
#[derive(Debug)]
pub enum Link {
    Connected,
    Disconnected(String),
    /// rumqttc assigned this packet id to the next QoS 1 publish.
    Sent(u16),
    Acked(u16),
    /// The connection task ended (after a requested disconnect).
    Closed,
    /// A payload arrived on the `cmd` topic (`retained`: the broker replayed an old one).
    Command {
        payload: Vec<u8>,
        retained: bool,
    },
    /// The broker sent a packet of this many bytes, over [`MAX_INCOMING_BYTES`]; the
    /// connection was reset.
    Oversize(usize),
}

/// The size of an incoming packet that was over the limit, if that is what `e` is.
fn oversize(e: &ConnectionError) -> Option<usize> {
    match e {
        ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n),
        )) => Some(*n),
        _ => None,
    }
}

struct Pending {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    pkid: Option<u16>,
    /// Re-send after a reconnect (the online status is re-published anyway, so it is not).
    requeue: bool,
}

/// Counters this sink owns; the daemon folds them into its metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct MqttCounts {
    pub dropped_landmarks: u64,
    pub dropped_events: u64,
    pub dropped_metrics: u64,
    pub disconnects: u64,
}

pub struct MqttSink {
    client: AsyncClient,
    pub topics: Topics,
    device: String,
    connected: bool,
    queue: VecDeque<Pending>,
    inflight: VecDeque<Pending>,
    cap: usize,
    pub counts: MqttCounts,
    conn_task: tokio::task::JoinHandle<()>,
}

/// Broker connection options from the config: Last Will, credentials, TLS. Reads and parses
/// the password and TLS files, so a bad file is reported by name before any connection.
/// A password kept in a file (e.g. written by `echo`): its trailing newline is not part of it.
pub fn read_password_file(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?
        .trim_end_matches(['\n', '\r'])
        .to_string())
}

pub fn options(cfg: &MqttConfig, device: &str, topics: &Topics) -> Result<MqttOptions> {
    let client_id = if cfg.client_id.is_empty() {
        format!("steadyface-{device}")
    } else {
        cfg.client_id.clone()
    };
    let mut o = MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_s));
    o.set_clean_session(true);
    o.set_max_packet_size(MAX_INCOMING_BYTES, MAX_OUTGOING_BYTES);
    let will = StatusMsg {
        schema: SCHEMA_VERSION,
        device: device.to_string(),
        state: "offline".into(),
        reason: Some("connection lost".into()),
        version: env!("CARGO_PKG_VERSION").into(),
        ts: None,
    };
    o.set_last_will(LastWill::new(
        topics.status.clone(),
        serde_json::to_vec(&will).expect("status serialises"),
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(user) = &cfg.username {
        let pass = match (&cfg.password, &cfg.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => {
                read_password_file(f).map_err(|e| config_err(format!("mqtt.password_file: {}: {e}", f.display())))?
            }
            (None, None) => String::new(),
        };
        o.set_credentials(user.clone(), pass);
    }
    if cfg.tls.enabled {
        let ca_path = cfg.tls.ca_file.as_deref().expect("validated: ca_file with tls");
        let ca = read_pem(ca_path, "mqtt.tls.ca_file", PemKind::Certs)?;
        let client_auth = match (&cfg.tls.cert_file, &cfg.tls.key_file) {
            (Some(c), Some(k)) => Some((
                read_pem(c, "mqtt.tls.cert_file", PemKind::Certs)?,
                read_pem(k, "mqtt.tls.key_file", PemKind::Key)?,
            )),
            _ => None,
        };
        o.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        }));
    }
    Ok(o)
}

fn config_err(problem: String) -> Error {
    Error::Config {
        origin: None,
        problems: vec![problem],
    }
}

enum PemKind {
    Certs,
    Key,
}

/// Read a PEM file and check it holds what `field` needs, so a malformed file is named here
/// rather than surfacing later as an opaque TLS handshake failure.
fn read_pem(path: &Path, field: &str, kind: PemKind) -> Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bytes = std::fs::read(path).map_err(|e| config_err(format!("{field}: {}: {e}", path.display())))?;
    let problem = match kind {
        PemKind::Certs => {
            let certs: std::result::Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
            match certs {
                Ok(c) if !c.is_empty() => None,
                Ok(_) => Some("no PEM certificate in it".to_string()),
                Err(e) => Some(format!("not a valid PEM certificate file: {e}")),
            }
        }
        PemKind::Key => match PrivateKeyDer::from_pem_slice(&bytes) {
            Ok(_) => None,
            Err(e) => Some(format!("not a valid PEM private key: {e}")),
        },
    };
    match problem {
        Some(p) => Err(config_err(format!("{field}: {}: {p}", path.display()))),
        None => Ok(bytes),
    }
}

/// Whether a connection error is the TLS handshake failing (bad CA, missing or rejected client
/// certificate): a setup problem, not an outage. With TLS 1.3 a rejected client certificate
/// arrives as an alert after the handshake, so rumqttc reports it as an I/O error.
pub fn is_tls_failure(e: &ConnectionError) -> bool {
    if matches!(e, ConnectionError::Tls(_)) {
        return true;
    }
    let m = e.to_string().to_ascii_lowercase();
    m.contains("alert") || m.contains("certificate")
}

/// Explain a connection error in the terms of the config that can fix it.
pub fn explain(e: &ConnectionError, cfg: &MqttConfig) -> String {
    use rumqttc::ConnectReturnCode as C;
    let at = format!("broker {}:{}", cfg.host, cfg.port);
    match e {
        ConnectionError::ConnectionRefused(C::BadUserNamePassword)
        | ConnectionError::ConnectionRefused(C::NotAuthorized) => {
            format!("{at} refused the connection ({e}): check mqtt.username and mqtt.password / mqtt.password_file")
        }
        ConnectionError::ConnectionRefused(_) => format!("{at} refused the connection: {e}"),
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("{at} is not accepting connections (is it running? mqtt.host/mqtt.port)")
        }
        _ if is_tls_failure(e) => {
            format!("{at}: TLS failed: {e} (check mqtt.tls.ca_file, mqtt.tls.cert_file, mqtt.tls.key_file)")
        }
        _ => format!("{at}: {e}"),
    }
}

/// Whether a publish of `payload` on `topic` stays under [`MAX_OUTGOING_BYTES`] (fixed header,
/// topic length, packet id included), so that rumqttc never drops the connection over it.
fn fits(topic: &str, payload: &[u8]) -> bool {
    payload.len() + topic.len() + 16 <= MAX_OUTGOING_BYTES
}

impl MqttSink {
    /// Start connecting (in the background; the first connection may take a while or fail).
    pub fn start(cfg: &MqttConfig, device: &str, link_tx: mpsc::UnboundedSender<Link>) -> Result<Self> {
        let topics = Topics::new(&cfg.prefix, device);
        let opts = options(cfg, device, &topics)?;
        // Small: it only holds what is offered while connected; the bounded queues are ours.
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (min, max) = (
            Duration::from_millis(cfg.reconnect_min_ms),
            Duration::from_millis(cfg.reconnect_max_ms),
        );
        let cfg2 = cfg.clone();
        let (sub, cmd_topic) = (client.clone(), topics.cmd.clone());
        let conn_task = tokio::spawn(async move {
            let mut backoff = min;
            let mut up = false;
            // Connections in a row that ended on an oversize packet: while it repeats (a
            // retained one that could not be cleared), the back-off keeps growing.
            let mut oversize_streak = 0u32;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        up = true;
                        if oversize_streak == 0 {
                            backoff = min;
                        }
                        // Clean sessions forget subscriptions, so subscribe on every connect.
                        // `try_` because this task is the one that drains the request queue.
                        if cfg2.commands {
                            if oversize_streak > 0 {
                                // An empty retained message clears the retained one; it goes
                                // out before the subscription, so the broker has nothing to
                                // replay. (Retained commands are ignored anyway.)
                                log::warn!(
                                    "mqtt: clearing any retained message on {cmd_topic} after an oversize packet"
                                );
                                let _ = sub.try_publish(cmd_topic.clone(), QoS::AtLeastOnce, true, Vec::new());
                            }
                            if let Err(e) = sub.try_subscribe(cmd_topic.clone(), QoS::AtLeastOnce) {
                                log::warn!("mqtt: cannot subscribe to {cmd_topic}: {e}; commands are off until the next connect");
                            }
                        }
                        let _ = link_tx.send(Link::Connected);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == cmd_topic => {
                        oversize_streak = 0;
                        let _ = link_tx.send(Link::Command {
                            payload: p.payload.to_vec(),
                            retained: p.retain,
                        });
                    }
                    Ok(Event::Incoming(Packet::PubAck(a))) => {
                        oversize_streak = 0;
                        let _ = link_tx.send(Link::Acked(a.pkid));
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) if pkid != 0 => {
                        let _ = link_tx.send(Link::Sent(pkid));
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                        // Let the DISCONNECT packet reach the socket, then stop.
                        let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if let Some(n) = oversize(&e) {
                            oversize_streak += 1;
                            let _ = link_tx.send(Link::Oversize(n));
                        }
                        let why = explain(&e, &cfg2);
                        if up || backoff == min {
                            let _ = link_tx.send(Link::Disconnected(why));
                        } else {
                            log::debug!("mqtt: still unreachable: {why}");
                        }
                        up = false;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(max);
                    }
                }
            }
            let _ = link_tx.send(Link::Closed);
        });
        Ok(Self {
            client,
            topics,
            device: device.to_string(),
            connected: false,
            queue: VecDeque::new(),
            inflight: VecDeque::new(),
            cap: cfg.event_queue,
            counts: MqttCounts::default(),
            conn_task,
        })
    }

    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Messages held for delivery (not yet acknowledged by the broker).
    pub fn backlog(&self) -> usize {
        self.queue.len() + self.inflight.len()
    }

    pub fn on_link(&mut self, l: Link) {
        match l {
            Link::Connected => {
                log::info!(
                    "mqtt: connected; publishing to {}",
                    self.topics.status.trim_end_matches("/status")
                );
                self.connected = true;
                let online = self.status("online", None);
                self.offer(self.topics.status.clone(), online, true, false);
                self.flush();
            }
            Link::Disconnected(why) => {
                if self.connected {
                    log::warn!("mqtt: connection lost: {why}; reconnecting with back-off");
                } else {
                    log::warn!("mqtt: cannot connect: {why}; retrying with back-off");
                }
                self.counts.disconnects += 1;
                self.connected = false;
                // Unacknowledged messages go back to the front of the queue, in order.
                while let Some(mut p) = self.inflight.pop_back() {
                    if p.requeue {
                        p.pkid = None;
                        self.queue.push_front(p);
                    }
                }
            }
            Link::Sent(pkid) => {
                if let Some(p) = self.inflight.iter_mut().find(|p| p.pkid.is_none()) {
                    p.pkid = Some(pkid);
                }
            }
            Link::Acked(pkid) => {
                if let Some(i) = self.inflight.iter().position(|p| p.pkid == Some(pkid)) {
                    self.inflight.remove(i);
                }
                self.flush();
            }
            Link::Closed => self.connected = false,
            // Commands are the daemon's business (see `daemon::run`).
            Link::Command { .. } | Link::Oversize(_) => {}
        }
    }

    fn status(&self, state: &str, reason: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&StatusMsg {
            schema: SCHEMA_VERSION,
            device: self.device.clone(),
            state: state.into(),
            reason: reason.map(Into::into),
            version: env!("CARGO_PKG_VERSION").into(),
            ts: Some(super::schema::unix_now()),
        })
        .expect("status serialises")
    }

    /// Offer a QoS 0 message: true if handed to the client (connected, channel not full).
    fn offer_qos0(&self, topic: &str, payload: Vec<u8>) -> bool {
        self.connected
            && fits(topic, &payload)
            && self.client.try_publish(topic, QoS::AtMostOnce, false, payload).is_ok()
    }

    /// A per-frame message: published now if connected, otherwise dropped and counted.
    pub fn landmarks(&mut self, payload: Vec<u8>) {
        if !self.offer_qos0(&self.topics.landmarks, payload) {
            self.counts.dropped_landmarks += 1;
        }
    }

    pub fn metrics(&mut self, payload: Vec<u8>) {
        if !self.offer_qos0(&self.topics.metrics, payload) {
            self.counts.dropped_metrics += 1;
        }
    }

    /// An event or state: QoS 1, held until the broker acknowledges it.
    pub fn reliable(&mut self, topic: String, payload: Vec<u8>, retain: bool) {
        if !fits(&topic, &payload) {
            self.counts.dropped_events += 1;
            log::warn!(
                "mqtt: a {} byte message for {topic} is over the {MAX_OUTGOING_BYTES} byte limit; dropped",
                payload.len()
            );
            return;
        }
        self.queue.push_back(Pending {
            topic,
            payload,
            retain,
            pkid: None,
            requeue: true,
        });
        while self.backlog() > self.cap {
            if self.queue.pop_front().is_none() {
                break;
            }
            self.counts.dropped_events += 1;
            if self.counts.dropped_events.is_power_of_two() {
                log::warn!(
                    "mqtt: event queue full ({} held); dropped the oldest ({} so far)",
                    self.cap,
                    self.counts.dropped_events
                );
            }
        }
        self.flush();
    }

    fn offer(&mut self, topic: String, payload: Vec<u8>, retain: bool, requeue: bool) {
        self.queue.push_front(Pending {
            topic,
            payload,
            retain,
            pkid: None,
            requeue,
        });
    }

    /// Hand queued messages to rumqttc while connected and its channel has room.
    fn flush(&mut self) {
        while self.connected {
            let Some(p) = self.queue.front() else { break };
            match self
                .client
                .try_publish(p.topic.clone(), QoS::AtLeastOnce, p.retain, p.payload.clone())
            {
                Ok(()) => {
                    let p = self.queue.pop_front().expect("front exists");
                    self.inflight.push_back(p);
                }
                Err(_) => break, // channel full: the next ack or link event flushes again
            }
        }
    }

    /// Say goodbye: retained `offline` status, then a clean disconnect (no Last Will), giving
    /// unacknowledged messages up to `grace` to be acknowledged.
    pub async fn close(mut self, link_rx: &mut mpsc::UnboundedReceiver<Link>, grace: Duration) -> MqttCounts {
        let deadline = tokio::time::Instant::now() + grace;
        if self.connected {
            let offline = self.status("offline", Some("shutdown"));
            self.queue.push_back(Pending {
                topic: self.topics.status.clone(),
                payload: offline,
                retain: true,
                pkid: None,
                requeue: true,
            });
            self.flush();
            while self.connected && self.backlog() > 0 {
                match tokio::time::timeout_at(deadline, link_rx.recv()).await {
                    Ok(Some(l)) => self.on_link(l),
                    _ => break,
                }
            }
        }
        let undelivered = self.backlog() as u64;
        if undelivered > 0 {
            log::warn!("mqtt: {undelivered} events/states not acknowledged by the broker at shutdown");
            self.counts.dropped_events += undelivered;
        }
        let _ = self.client.try_disconnect();
        if tokio::time::timeout(Duration::from_millis(300), &mut self.conn_task)
            .await
            .is_err()
        {
            self.conn_task.abort();
        }
        self.counts
    }
}
