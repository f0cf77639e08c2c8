//! The hand-off from an audio source to the pipeline: one lock-free SPSC ring
//! per channel.
//!
//! The writing side runs wherever audio arrives — inside an audio driver's
//! callback for live capture — so [`RingWriter::write`] never allocates,
//! locks, logs or blocks: samples that do not fit are dropped and counted as
//! an overrun, and the reader learns about it from [`RingStats`]. The reading
//! side is the channel's front-end thread, which drains the ring in blocks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use crate::sanitize::Repairs;

/// Counters shared by both ends; plain atomics, so the writer can bump them
/// from a real-time callback.
#[derive(Debug, Default)]
pub struct RingStats {
    /// Samples accepted into the ring.
    pub written: AtomicU64,
    /// Samples dropped because the ring was full.
    pub overrun: AtomicU64,
    /// Non-finite samples written as silence (see `sanitize.rs`).
    pub silenced: AtomicU64,
    /// Samples outside [-1, 1] written clipped.
    pub clipped: AtomicU64,
    /// Set by the writer when the source has ended (end of file, hang-up).
    pub closed: AtomicBool,
}

pub struct RingWriter {
    prod: HeapProd<f32>,
    stats: Arc<RingStats>,
}

pub struct RingReader {
    cons: HeapCons<f32>,
    stats: Arc<RingStats>,
}

/// A ring holding `capacity` samples.
pub fn ring(capacity: usize) -> (RingWriter, RingReader) {
    let (prod, cons) = HeapRb::new(capacity).split();
    let stats = Arc::new(RingStats::default());
    (
        RingWriter {
            prod,
            stats: stats.clone(),
        },
        RingReader { cons, stats },
    )
}

impl RingWriter {
    /// Copies as many samples as fit; the rest are counted as overrun. Every
    /// sample is repaired on the way in (NaN/inf → 0, clipped to [-1, 1]) and
    /// counted, so no source can hand the pipeline a value that breaks it.
    /// Real-time safe: no allocation, lock or system call.
    pub fn write(&mut self, samples: &[f32]) -> usize {
        self.write_iter(samples.iter().copied(), samples.len())
    }

    /// Like [`write`](Self::write) for `len` samples produced by an iterator,
    /// so a callback can convert or de-interleave without a scratch buffer.
    pub fn write_iter(&mut self, samples: impl Iterator<Item = f32>, len: usize) -> usize {
        let mut repairs = Repairs::default();
        let written = self.prod.push_iter(samples.map(|x| repairs.sample(x)));
        if repairs.any() {
            self.stats.silenced.fetch_add(repairs.silenced, Ordering::Relaxed);
            self.stats.clipped.fetch_add(repairs.clipped, Ordering::Relaxed);
        }
        self.stats.written.fetch_add(written as u64, Ordering::Relaxed);
        if written < len {
            self.stats.overrun.fetch_add((len - written) as u64, Ordering::Relaxed);
        }
        written
    }

    /// Free space, for sources that can wait instead of dropping (file replay).
    pub fn vacant(&self) -> usize {
        self.prod.vacant_len()
    }

    /// True once the reading side is gone (its front end ended or died): a
    /// source waiting for room must stop waiting, as none will come.
    pub fn reader_gone(&self) -> bool {
        !self.prod.read_is_held()
    }

    /// Marks the end of the stream; the reader drains what is left, then stops.
    pub fn close(&self) {
        self.stats.closed.store(true, Ordering::Release);
    }

    pub fn stats(&self) -> &Arc<RingStats> {
        &self.stats
    }
}

impl Drop for RingWriter {
    fn drop(&mut self) {
        self.close();
    }
}

impl RingReader {
    /// Moves everything available into `out` (appending); returns the count.
    pub fn read_into(&mut self, out: &mut Vec<f32>) -> usize {
        let start = out.len();
        let n = self.cons.occupied_len();
        out.resize(start + n, 0.0);
        let got = self.cons.pop_slice(&mut out[start..]);
        out.truncate(start + got);
        got
    }

    /// True once the writer has closed and everything it wrote has been read.
    pub fn is_finished(&self) -> bool {
        self.stats.closed.load(Ordering::Acquire) && self.cons.is_empty()
    }

    pub fn stats(&self) -> &Arc<RingStats> {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ring_drops_and_counts_instead_of_blocking() {
        let (mut w, mut r) = ring(4);
        assert_eq!(w.write(&[0.1, 0.2, 0.3]), 3);
        assert_eq!(w.write(&[0.4, 0.5, 0.6]), 1);
        assert_eq!(w.stats().overrun.load(Ordering::Relaxed), 2);
        let mut out = Vec::new();
        r.read_into(&mut out);
        assert_eq!(out, vec![0.1, 0.2, 0.3, 0.4]);
        assert!(!r.is_finished());
        drop(w);
        assert!(r.is_finished());
    }

    #[test]
    fn the_writer_learns_that_its_reader_is_gone() {
        let (w, r) = ring(4);
        assert!(!w.reader_gone());
        drop(r);
        assert!(w.reader_gone());
    }

    /// A writer thread shaped like an audio callback, a reader draining
    /// concurrently: every sample arrives once, in order.
    #[test]
    fn concurrent_writer_and_reader_preserve_order() {
        let (mut w, mut r) = ring(1024);
        let writer = std::thread::spawn(move || {
            let mut next = 0u32;
            while next < 100_000 {
                // Distinct values inside [-1, 1], which the ring passes unchanged.
                let block: [f32; 64] = std::array::from_fn(|i| (next + i as u32) as f32 / 1e6);
                if w.vacant() >= 64 {
                    w.write(&block);
                    next += 64;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        while !r.is_finished() {
            r.read_into(&mut got);
        }
        writer.join().unwrap();
        assert_eq!(got.len(), 100_032);
        assert!(got.iter().enumerate().all(|(i, v)| *v == i as f32 / 1e6));
    }
}
