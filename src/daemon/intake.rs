//! What arrives on the `cmd` topic, before the inference thread sees it: a size cap, a rate
//! limit, and rejections that are counted one by one but reported (event and log line) at a
//! bounded rate.
//!
//! A command flood must not crowd out what the daemon is for: each command (accepted or not)
//! used to produce one event, so a burst of a few hundred filled the publisher's channel and
//! events such as `eyes_closed` were dropped with a healthy broker. Admission is a token
//! bucket (a burst of [`BURST`], then [`PER_SECOND`] a second); rejection reports have their
//! own, smaller bucket, and the next report says how many went unreported meanwhile. Every
//! rejection is still counted in the metrics (`commands_rejected`).

use std::time::Instant;

/// The largest command payload read as a command. Commands are a few dozen bytes of JSON; the
/// MQTT client reads packets up to `publish::mqtt::MAX_INCOMING_BYTES`, so anything between
/// is rejected here and the connection stays up.
pub const MAX_COMMAND_BYTES: usize = 4096;
/// Commands admitted at once after a quiet spell.
pub const BURST: f64 = 16.0;
/// Commands admitted per second, sustained.
pub const PER_SECOND: f64 = 4.0;
/// Rejection reports at once, then per second.
const REPORT_BURST: f64 = 4.0;
const REPORTS_PER_SECOND: f64 = 1.0;

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: Option<Instant>,
}

impl Bucket {
    pub fn new(burst: f64, rate: f64) -> Self {
        Self {
            tokens: burst,
            burst,
            rate,
            last: None,
        }
    }

    /// Take one token at `now` if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The verdict on one payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Hand it to the command parser.
    Admit(&'a [u8]),
    /// Nobody's command (an empty payload clears a retained message).
    Ignore,
    /// Refused, with the reason.
    Reject(String),
}

/// Admission and rejection reporting for the `cmd` topic.
#[derive(Debug, Clone)]
pub struct Intake {
    admit: Bucket,
    report: Bucket,
    /// Rejections since the last one reported.
    unreported: u64,
}

impl Default for Intake {
    fn default() -> Self {
        Self {
            admit: Bucket::new(BURST, PER_SECOND),
            report: Bucket::new(REPORT_BURST, REPORTS_PER_SECOND),
            unreported: 0,
        }
    }
}

impl Intake {
    /// Check a payload's envelope (size, retain flag, rate); the content is `CommandMsg`'s.
    pub fn check<'a>(&mut self, payload: &'a [u8], retained: bool, now: Instant) -> Verdict<'a> {
        if payload.is_empty() {
            return Verdict::Ignore;
        }
        if retained {
            // A retained command would run again on every reconnect.
            return Verdict::Reject("retained commands are ignored; publish commands without the retain flag".into());
        }
        if payload.len() > MAX_COMMAND_BYTES {
            return Verdict::Reject(format!(
                "a command of {} bytes; commands are at most {MAX_COMMAND_BYTES} bytes",
                payload.len()
            ));
        }
        if !self.admit.take(now) {
            return Verdict::Reject(format!(
                "commands arrive faster than {BURST} at once or {PER_SECOND} a second; this one was dropped"
            ));
        }
        Verdict::Admit(payload)
    }

    /// A rejection happened (already counted by the caller): the reason to report now, with
    /// the number left unreported before it, or `None` to stay quiet.
    pub fn report(&mut self, why: String, now: Instant) -> Option<String> {
        if !self.report.take(now) {
            self.unreported += 1;
            return None;
        }
        let n = std::mem::take(&mut self.unreported);
        Some(if n == 0 {
            why
        } else {
            format!("{why} ({n} more rejected since the last report)")
        })
    }
}

impl Intake {
    /// Called now and then (the metrics tick): a summary of rejections still unreported, once
    /// the flood has stopped producing new ones, so that none stays unreported.
    pub fn flush(&mut self, now: Instant) -> Option<String> {
        if self.unreported == 0 || !self.report.take(now) {
            return None;
        }
        let n = std::mem::take(&mut self.unreported);
        Some(format!("{n} more commands rejected since the last report"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flood_is_admitted_at_the_bucket_rate_and_reported_sparsely() {
        let t0 = Instant::now();
        let mut intake = Intake::default();
        let cmd = br#"{"command": "reset"}"#;
        // 500 commands within one second: the burst plus what a second refills.
        let mut admitted = 0;
        let mut reports = Vec::new();
        for i in 0..500u32 {
            let now = t0 + Duration::from_millis(u64::from(i) * 2);
            match intake.check(cmd, false, now) {
                Verdict::Admit(_) => admitted += 1,
                Verdict::Reject(why) => reports.extend(intake.report(why, now)),
                Verdict::Ignore => unreachable!(),
            }
        }
        assert_eq!(admitted, 16 + 3, "burst 16, then 4/s over ~1 s");
        assert_eq!(reports.len(), 4, "4 reports at once, the next only after a second");
        // A second later the next report carries the count of those that went unreported.
        let later = t0 + Duration::from_secs(3);
        let r = intake.report("x".into(), later).unwrap();
        assert_eq!(r, format!("x ({} more rejected since the last report)", 500 - 19 - 4));
        // A flush with nothing unreported says nothing; after a quiet spell, one summary.
        assert_eq!(intake.flush(later), None);
        // (Two seconds refilled two reports.)
        assert_eq!(intake.report("x2".into(), later).as_deref(), Some("x2"));
        assert_eq!(intake.report("y".into(), later), None);
        assert_eq!(
            intake.flush(later + Duration::from_secs(2)).as_deref(),
            Some("1 more commands rejected since the last report")
        );
        // And commands flow again.
        assert_eq!(intake.check(cmd, false, later), Verdict::Admit(cmd));
    }

    #[test]
    fn envelope_rules() {
        let now = Instant::now();
        let mut intake = Intake::default();
        assert_eq!(intake.check(b"", true, now), Verdict::Ignore);
        assert!(matches!(intake.check(b"{}", true, now), Verdict::Reject(w) if w.contains("retained")));
        let big = vec![b' '; MAX_COMMAND_BYTES + 1];
        assert!(matches!(intake.check(&big, false, now), Verdict::Reject(w) if w.contains("4097 bytes")));
        let fits = vec![b' '; MAX_COMMAND_BYTES];
        assert!(matches!(intake.check(&fits, false, now), Verdict::Admit(_)));
    }
}
