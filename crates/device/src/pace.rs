//! The callback's guard against a device that runs faster than real time.
//!
//! A live device delivers `rate` frames a second. One whose input has ended
//! may not say so: alsa-lib's `file` plugin, at the end of its `infile`,
//! keeps returning full periods of the last data as fast as it is asked,
//! and a broken clock does the same more slowly. Let through, that audio
//! would make call time race ahead of the wall clock (a `duration` rule
//! firing after seconds) and the transcriber would drown in it. So the
//! callback admits audio only while the device has not delivered more than
//! [`AHEAD`] (plus [`DRIFT`] of the time elapsed) beyond what the wall clock
//! allows, and flags the device otherwise; the capture thread then ends the
//! call naming it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::running::Shared;

/// How far ahead of the wall clock a device may deliver: a backend may hand
/// over a full buffer at once when the stream starts (two periods with cpal).
pub(crate) const AHEAD: Duration = Duration::from_millis(250);

/// How much faster than the system clock a device's own clock may run: real
/// ones differ by well under 0.01 %, so over a long call a few hundred parts
/// per million add up; a device returning stale periods runs many times too
/// fast.
pub(crate) const DRIFT: f64 = 0.01;

/// Per-stream state of the guard, moved into the data callback.
pub(crate) struct Pacer {
    rate: f64,
    index: usize,
    started: Option<Instant>,
    frames: u64,
    shared: Arc<Shared>,
}

impl Pacer {
    pub(crate) fn new(rate: u32, index: usize, shared: Arc<Shared>) -> Self {
        Self {
            rate: f64::from(rate),
            index,
            started: None,
            frames: 0,
            shared,
        }
    }

    /// Whether `frames` more frames, arriving now, keep the device within
    /// [`AHEAD`] of real time. Real-time safe: reading the monotonic clock
    /// is a vDSO call on Linux (no kernel entry), the rest is arithmetic and
    /// an atomic store; no allocation, lock or log.
    pub(crate) fn admit(&mut self, frames: usize) -> bool {
        self.admit_at(frames, Instant::now())
    }

    fn admit_at(&mut self, frames: usize, now: Instant) -> bool {
        if self.shared.racing.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let started = *self.started.get_or_insert(now);
        self.frames += frames as u64;
        let elapsed = now.duration_since(started).as_secs_f64();
        let ahead = self.frames as f64 / self.rate - elapsed;
        if ahead > AHEAD.as_secs_f64() + DRIFT * elapsed {
            flag(&self.shared.racing, self.index);
            return false;
        }
        true
    }
}

fn flag(racing: &AtomicUsize, index: usize) {
    let _ = racing.compare_exchange(0, index + 1, Ordering::AcqRel, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_time_passes_and_a_runaway_is_flagged() {
        let shared = Arc::new(Shared::default());
        let mut pacer = Pacer::new(16_000, 1, shared.clone());
        let t0 = Instant::now();
        // A start-up burst (187.5 ms), then 10 ms periods on time: all admitted.
        assert!(pacer.admit_at(3_000, t0));
        for k in 1..=100u64 {
            assert!(pacer.admit_at(160, t0 + Duration::from_millis(10 * k)), "period {k}");
        }
        assert_eq!(shared.racing.load(Ordering::Relaxed), 0);
        // Then the same instant again and again: refused past 250 ms + 1 % of
        // the second elapsed = 260 ms ahead.
        let now = t0 + Duration::from_millis(1000);
        let admitted = (0..100).take_while(|_| pacer.admit_at(160, now)).count();
        assert_eq!(
            admitted, 7,
            "seven more periods reach 257.5 ms ahead; the eighth is past 260"
        );
        assert_eq!(shared.racing.load(Ordering::Relaxed), 2);
        // Once flagged, nothing more gets through, even on time.
        assert!(!pacer.admit_at(160, now + Duration::from_secs(5)));
    }

    /// A device clock 0.1 % fast (far worse than real ones) over an hour
    /// stays within the guard.
    #[test]
    fn a_slightly_fast_clock_is_not_a_runaway() {
        let shared = Arc::new(Shared::default());
        let mut pacer = Pacer::new(48_000, 0, shared.clone());
        let t0 = Instant::now();
        for k in 0..360_000u64 {
            // 480 frames (10 ms) every 9.99 ms.
            assert!(pacer.admit_at(480, t0 + Duration::from_micros(9_990 * k)), "period {k}");
        }
        assert_eq!(shared.racing.load(Ordering::Relaxed), 0);
    }
}
