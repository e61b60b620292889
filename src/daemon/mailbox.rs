//! A one-frame mailbox between the capture and inference threads.
//!
//! Frames move by swapping buffers, so steady state allocates nothing. In `newest` mode (a
//! camera, or replay in real time) a frame that arrives before inference took the previous
//! one replaces it, and the replaced frame is counted as dropped: latency stays one frame,
//! whatever the inference speed. In lossless mode (replay as fast as possible) the producer
//! waits instead.

use crate::frame::Frame;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the capture side knows about a frame.
#[derive(Debug, Clone, Copy)]
pub struct Captured {
    /// Frame number, continuing across camera reopens and replay loops.
    pub index: u64,
    pub time_s: f64,
    /// When the frame was read, for latency.
    pub at: Instant,
    /// First frame after the source was (re)opened: the previous frames are unrelated.
    pub discontinuity: bool,
}

struct Slot {
    frame: Frame,
    meta: Option<Captured>,
    closed: bool,
    /// A discontinuity on a frame that was then replaced must not be lost.
    pending_discontinuity: bool,
}

pub struct Mailbox {
    slot: Mutex<Slot>,
    cv: Condvar,
}

impl Default for Mailbox {
    fn default() -> Self {
        Self {
            slot: Mutex::new(Slot {
                frame: Frame::new(1, 1),
                meta: None,
                closed: false,
                pending_discontinuity: false,
            }),
            cv: Condvar::new(),
        }
    }
}

impl Mailbox {
    /// Hand `frame` over (swapping buffers). Returns true if an untaken frame was replaced.
    /// In lossless mode, waits for the slot to empty unless `stop` is set.
    pub fn put(&self, frame: &mut Frame, meta: Captured, lossless: bool, stop: &AtomicBool) -> bool {
        let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        while lossless && s.meta.is_some() && !s.closed && !stop.load(Ordering::Relaxed) {
            s = self
                .cv
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let replaced = s.meta.is_some();
        if let Some(old) = s.meta {
            s.pending_discontinuity |= old.discontinuity;
        }
        std::mem::swap(&mut s.frame, frame);
        s.meta = Some(meta);
        self.cv.notify_all();
        replaced
    }

    /// Take the newest frame into `frame` (swapping buffers), waiting for one. `None` once the
    /// mailbox is closed and empty, or when `stop` is set.
    pub fn take(&self, frame: &mut Frame, stop: &AtomicBool) -> Option<Captured> {
        let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(mut m) = s.meta.take() {
                m.discontinuity |= std::mem::take(&mut s.pending_discontinuity);
                std::mem::swap(&mut s.frame, frame);
                self.cv.notify_all();
                return Some(m);
            }
            if s.closed {
                return None;
            }
            s = self
                .cv
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Empty the slot; true if a frame was waiting (it will never be processed).
    pub fn discard(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .meta
            .take()
            .is_some()
    }

    /// No more frames will come; wakes both sides.
    pub fn close(&self) {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(index: u64, discontinuity: bool) -> Captured {
        Captured {
            index,
            time_s: index as f64,
            at: Instant::now(),
            discontinuity,
        }
    }

    #[test]
    fn newest_frame_wins_and_replacements_are_reported() {
        let mb = Mailbox::default();
        let stop = AtomicBool::new(false);
        let mut f = Frame::new(2, 2);
        assert!(!mb.put(&mut f, meta(0, true), false, &stop));
        let mut f = Frame::new(3, 3);
        assert!(mb.put(&mut f, meta(1, false), false, &stop));
        let mut out = Frame::new(1, 1);
        let m = mb.take(&mut out, &stop).unwrap();
        assert_eq!((m.index, out.width), (1, 3));
        assert!(m.discontinuity, "the replaced frame's discontinuity carries over");
        mb.close();
        assert!(mb.take(&mut out, &stop).is_none());
    }

    #[test]
    fn lossless_mode_waits_for_the_consumer() {
        let mb = std::sync::Arc::new(Mailbox::default());
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (mb2, stop2) = (mb.clone(), stop.clone());
        let producer = std::thread::spawn(move || {
            let mut replaced = 0;
            for i in 0..50 {
                let mut f = Frame::new(1, 1);
                replaced += mb2.put(&mut f, meta(i, false), true, &stop2) as u32;
            }
            mb2.close();
            replaced
        });
        let mut out = Frame::new(1, 1);
        let mut seen = Vec::new();
        while let Some(m) = mb.take(&mut out, &stop) {
            seen.push(m.index);
        }
        assert_eq!(producer.join().unwrap(), 0);
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }
}
