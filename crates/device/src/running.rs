//! A capture in progress: the thread that owns the device streams, watches
//! them, and ends the capture when it is stopped or a device fails.
//!
//! A device fails in three ways, and each ends the call with an error that
//! names it: the backend reports it gone (cpal's error callback), it stops
//! delivering audio ([`STALL`]), or it delivers audio faster than real time
//! (see `pace.rs`: an input whose source has ended can return the same
//! buffer in a tight loop). An xrun is counted and the capture goes on.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use callwatch_core::buffer::{RingStats, RingWriter};
use callwatch_core::capture::Running;

use crate::quiet_alsa::QuietAlsa;
use crate::{build_stream, Input, ERRORS_LOGGED};

/// A device that delivers nothing for this long has stopped (a live device
/// delivers every period, a few to a few hundred milliseconds).
pub(crate) const STALL: Duration = Duration::from_secs(2);

/// How often the capture thread looks at the streams and the stop flags.
const WATCH_EVERY: Duration = Duration::from_millis(20);

/// How long stopping waits for the backend to let go of a stream. A backend
/// thread blocked inside a read that never returns cannot be joined; past
/// this the rings are closed without it and the call ends anyway.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// State shared by the capture thread, the callbacks and [`Capturing`].
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    /// Stream errors reported by the backends (xruns included).
    pub(crate) errors: AtomicU64,
    /// Overruns the backends reported (audio lost inside the driver).
    pub(crate) xruns: AtomicU64,
    /// 1 + the index of the first input caught delivering faster than real time.
    pub(crate) racing: AtomicUsize,
    /// The first error that ended a stream, with its input's index.
    pub(crate) fatal: OnceLock<(usize, String)>,
}

/// Body of the capture thread: open, report readiness, watch, tear down.
pub(crate) fn own_streams(
    inputs: Vec<Input>,
    writers: Vec<RingWriter>,
    shared: &Arc<Shared>,
    external_stop: Option<&'static AtomicBool>,
    ready: &mpsc::SyncSender<Result<()>>,
) -> Result<()> {
    // Kept to watch each input's progress, and to close its rings if the
    // backend never lets go of its stream.
    let mut stats: Vec<Vec<Arc<RingStats>>> = Vec::new();
    let opened = {
        let _quiet = QuietAlsa::new();
        let mut writers = writers.into_iter();
        inputs
            .iter()
            .enumerate()
            .map(|(index, input)| {
                // Each stream gets only its own rings: one producer per ring.
                let own: Vec<RingWriter> = writers.by_ref().take(input.pick.len()).collect();
                stats.push(own.iter().map(|w| w.stats().clone()).collect());
                let stream = build_stream(
                    input,
                    index,
                    own,
                    shared,
                    error_callback(index, &input.label, shared.clone()),
                )?;
                cpal::traits::StreamTrait::play(&stream)
                    .map_err(|e| anyhow!("cannot start capture on {}: {e}", input.label))?;
                Ok(stream)
            })
            .collect::<Result<Vec<cpal::Stream>>>()
    };
    let streams = match opened {
        Ok(streams) => streams,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    let _ = ready.send(Ok(()));
    let outcome = watch(&inputs, &stats, shared, external_stop);
    shared.stop.store(true, Ordering::Release);
    tear_down(streams, &stats);
    let errors = shared.errors.load(Ordering::Relaxed);
    if errors > 0 {
        tracing::info!(errors, "capture stopped after stream errors");
    }
    outcome
}

/// Waits until the capture is stopped (`Ok`) or a device fails (`Err`
/// naming it).
fn watch(
    inputs: &[Input],
    stats: &[Vec<Arc<RingStats>>],
    shared: &Shared,
    external_stop: Option<&'static AtomicBool>,
) -> Result<()> {
    let delivered = |i: usize| -> u64 {
        stats[i]
            .iter()
            .map(|s| s.written.load(Ordering::Relaxed) + s.overrun.load(Ordering::Relaxed))
            .sum()
    };
    let mut last: Vec<(u64, Instant)> = (0..inputs.len()).map(|i| (delivered(i), Instant::now())).collect();
    loop {
        if shared.stop.load(Ordering::Acquire) || external_stop.is_some_and(|f| f.load(Ordering::Acquire)) {
            return Ok(());
        }
        if let Some((index, e)) = shared.fatal.get() {
            return Err(anyhow!("audio device {} stopped: {e}", inputs[*index].label));
        }
        if let Some(index) = shared.racing.load(Ordering::Acquire).checked_sub(1) {
            return Err(anyhow!(
                "audio device {} stopped: it delivered audio faster than real time, so its input has ended \
                 or its clock is broken",
                inputs[index].label
            ));
        }
        for (i, (count, since)) in last.iter_mut().enumerate() {
            let now = delivered(i);
            if now != *count {
                *count = now;
                *since = Instant::now();
            } else if since.elapsed() >= STALL {
                return Err(anyhow!(
                    "audio device {} stopped delivering audio (nothing for {} s)",
                    inputs[i].label,
                    STALL.as_secs()
                ));
            }
        }
        std::thread::park_timeout(WATCH_EVERY);
    }
}

/// Drops the streams, which drops the callbacks and their writers (closing
/// the rings), without waiting more than [`STOP_WAIT`] for a backend thread
/// that is stuck in a read: then the rings are closed here and that thread
/// is left to the process's exit.
fn tear_down(streams: Vec<cpal::Stream>, stats: &[Vec<Arc<RingStats>>]) {
    let (done_tx, done_rx) = mpsc::sync_channel::<()>(1);
    let dropper = std::thread::Builder::new().name("capture-stop".into()).spawn(move || {
        drop(streams);
        let _ = done_tx.send(());
    });
    let stopped = dropper.is_ok() && done_rx.recv_timeout(STOP_WAIT).is_ok();
    if !stopped {
        tracing::warn!("an audio stream did not stop within {STOP_WAIT:?}; ending the call without it");
        for s in stats.iter().flatten() {
            s.closed.store(true, Ordering::Release);
        }
    }
}

/// The error callback runs on the backend's thread, but outside the data
/// path: it counts, logs the first few, and on an error that ends the stream
/// records it and wakes the capture thread, which stops the whole capture.
pub(crate) fn error_callback(
    index: usize,
    label: &str,
    shared: Arc<Shared>,
) -> impl FnMut(cpal::Error) + Send + 'static {
    let label = label.to_owned();
    let owner = std::thread::current();
    move |err: cpal::Error| {
        let count = shared.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if err.kind() == cpal::ErrorKind::Xrun {
            shared.xruns.fetch_add(1, Ordering::Relaxed);
        }
        if count <= ERRORS_LOGGED {
            tracing::warn!(device = %label, count, "audio stream error: {err}");
        }
        if ends_stream(err.kind()) {
            let _ = shared.fatal.set((index, err.to_string()));
            owner.unpark();
        }
    }
}

fn ends_stream(kind: cpal::ErrorKind) -> bool {
    use cpal::ErrorKind::*;
    matches!(
        kind,
        DeviceNotAvailable | HostUnavailable | StreamInvalidated | PermissionDenied
    )
}

/// The running capture. `wait` returns when it is stopped or a device fails.
pub(crate) struct Capturing {
    pub(crate) shared: Arc<Shared>,
    pub(crate) thread: Option<JoinHandle<Result<()>>>,
}

impl Running for Capturing {
    fn wait(mut self: Box<Self>) -> Result<()> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(anyhow!("the capture thread panicked")),
            None => Ok(()),
        }
    }

    fn xruns(&self) -> u64 {
        self.shared.xruns.load(Ordering::Relaxed)
    }
}

impl Drop for Capturing {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An xrun is counted and does not end the capture; a vanished device does.
    #[test]
    fn xruns_are_counted_and_a_lost_device_is_fatal() {
        let shared = Arc::new(Shared::default());
        let mut on_error = error_callback(1, "USB headset", shared.clone());
        on_error(cpal::Error::from(cpal::ErrorKind::Xrun));
        on_error(cpal::Error::from(cpal::ErrorKind::Xrun));
        assert_eq!(shared.xruns.load(Ordering::Relaxed), 2);
        assert!(shared.fatal.get().is_none());
        on_error(cpal::Error::from(cpal::ErrorKind::DeviceNotAvailable));
        assert_eq!(shared.fatal.get().map(|(i, _)| *i), Some(1));
        assert_eq!(shared.errors.load(Ordering::Relaxed), 3);
    }
}
