//! One call through the live pipeline:
//!
//! ```text
//! source ──ring──▶ front end (per call thread) ──jobs──▶ transcriber pool ──▶ events
//!                  drain · resample · VAD/segment
//! ```
//!
//! The front end thread owns the consumer side of the call's rings, a
//! resampler and a segmenter per channel. It turns speech into voice events
//! and utterance jobs (partials while speech goes on, a final when it ends)
//! and hands jobs to the shared pool. When the source ends, the segmenters
//! are flushed so the last utterance is finalised, and the call's event
//! stream closes once its last job has been delivered.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::audio::{Channel, Resampler};
use crate::buffer::{ring, RingReader};
use crate::capture::{AudioSource, Running};
use crate::events::{CallSink, Event, EventReceiver};
use crate::sanitize::Repairs;
use crate::vad::{Segmenter, Utterance, VadConfig, VadEvent};

/// One utterance revision to decode.
pub struct Job {
    pub sink: Arc<CallSink>,
    pub channel: Channel,
    pub utterance_id: u64,
    pub revision: u32,
    pub is_final: bool,
    pub start_s: f64,
    pub end_s: f64,
    pub samples: Vec<f32>,
}

impl Job {
    pub fn same_utterance(&self, other: &Job) -> bool {
        Arc::ptr_eq(&self.sink, &other.sink) && self.channel == other.channel && self.utterance_id == other.utterance_id
    }
}

/// Where the front end hands utterances to be transcribed: the shared
/// transcriber pool (`callwatch-asr`), or anything else that delivers each
/// job's text to its sink. `submit` may wait for room for a final (that is
/// back-pressure on this call's front end) but never for a partial.
/// Delivering a transcript ([`CallSink::send`]) never waits, so a decoder
/// shared by many calls is never held up by one call's consumer.
pub trait Decoder: Send + Sync {
    fn submit(&self, job: Job);
}

#[derive(Debug, Clone)]
pub struct CallConfig {
    pub call_id: String,
    pub vad: VadConfig,
    /// Ring capacity in seconds of source audio: how long the front end may
    /// stall before samples are dropped.
    pub ring_s: f64,
}

impl CallConfig {
    pub fn new(call_id: &str) -> Self {
        Self {
            call_id: call_id.to_owned(),
            vad: VadConfig {
                partial_interval: 1.0,
                ..VadConfig::default()
            },
            ring_s: 2.0,
        }
    }
}

/// A call in progress. Read its events from `events` until the stream
/// ends, then `join` it. A consumer that stops reading holds back this
/// call's front end (and, past `ring_s`, loses its audio), never another
/// call; see `events/queue.rs` for the policy.
pub struct Call {
    pub events: EventReceiver,
    source: Box<dyn Running>,
    front_end: JoinHandle<CallReport>,
}

/// Facts about a finished call's audio path.
#[derive(Debug, Clone, Default)]
pub struct CallReport {
    pub audio_s: f64,
    /// Samples lost because a ring was full (front end too slow).
    pub overrun_samples: u64,
    /// Samples the source delivered as NaN/inf or out of [-1, 1], repaired
    /// on entry to the rings (a recording's own are in `Recording::repairs`).
    pub repairs: Repairs,
    /// Overruns inside the source's driver (a sound device's xruns): audio
    /// lost before the rings, counted, never fatal.
    pub xruns: u64,
}

impl Call {
    pub fn start(source: Box<dyn AudioSource>, pool: Arc<dyn Decoder>, cfg: CallConfig) -> Result<Self> {
        let format = source.format();
        let capacity = (format.sample_rate as f64 * cfg.ring_s) as usize;
        let (writers, readers): (Vec<_>, Vec<_>) = format.channels.iter().map(|_| ring(capacity)).unzip();
        let started = Instant::now();
        let (sink, events) = CallSink::new(&cfg.call_id, started);
        let channels = format
            .channels
            .iter()
            .zip(readers)
            .map(|(&role, reader)| ChannelFront::new(role, reader, format.sample_rate, cfg.vad))
            .collect::<Result<Vec<_>>>()?;
        let front_end = std::thread::Builder::new()
            .name(format!("call-{}", cfg.call_id))
            .spawn(move || front_end(channels, &sink, &*pool, format.sample_rate))?;
        let source = source.start(writers)?;
        Ok(Self {
            events,
            source,
            front_end,
        })
    }

    /// Waits for the source and the front end to finish. A panic in the
    /// front end comes back as an error carrying its message; the call's
    /// event stream has closed by then (the unwinding thread drops its sink).
    /// So does a failure the decoder recorded (`CallSink::fail`), once the
    /// events have been read to their end.
    ///
    /// The front end is joined first: once it has died nothing drains the
    /// rings, so a source waiting for room (fast replay) would never finish.
    pub fn join(self) -> Result<CallReport> {
        let (report, source) = self.join_parts()?;
        source?;
        Ok(report)
    }

    /// Like [`join`](Self::join), but a source that failed (a sound device
    /// that stopped mid-call) comes back beside the report of the audio it
    /// did deliver, so the caller can still show the call's figures.
    pub fn join_parts(self) -> Result<(CallReport, Result<()>)> {
        let mut report = self
            .front_end
            .join()
            .map_err(|payload| anyhow!("the call's front end failed: {}", panic_message(&*payload)))?;
        // The rings have closed, so the source has stopped delivering.
        report.xruns = self.source.xruns();
        if report.xruns > 0 {
            metrics::counter!("callwatch_device_xruns_total").increment(report.xruns);
        }
        let source = self.source.wait();
        if let Some(why) = self.events.fault() {
            anyhow::bail!("{why}");
        }
        Ok((report, source))
    }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panicked")
}

struct ChannelFront {
    role: Channel,
    reader: RingReader,
    resampler: Resampler,
    segmenter: Segmenter,
    raw: Vec<f32>,
    at_16k: Vec<f32>,
    vad_events: Vec<VadEvent>,
    overruns_seen: u64,
    repairs_seen: Repairs,
    /// Revision of the next text of the open utterance.
    revision: u32,
    done: bool,
}

impl ChannelFront {
    fn new(role: Channel, reader: RingReader, rate: u32, vad: VadConfig) -> Result<Self> {
        Ok(Self {
            role,
            reader,
            resampler: Resampler::new(rate)?,
            segmenter: Segmenter::new(vad),
            raw: Vec::new(),
            at_16k: Vec::new(),
            vad_events: Vec::new(),
            overruns_seen: 0,
            repairs_seen: Repairs::default(),
            revision: 0,
            done: false,
        })
    }

    /// Drains the ring through resampler and segmenter; returns whether any audio came.
    fn poll(&mut self) -> bool {
        self.raw.clear();
        self.at_16k.clear();
        let finished = self.reader.is_finished();
        let got = self.reader.read_into(&mut self.raw);
        // Dropped samples still took time: fill them with silence so call
        // time on this channel stays true.
        let overrun = self.reader.stats().overrun.load(Ordering::Relaxed);
        if overrun > self.overruns_seen {
            metrics::counter!("callwatch_ring_overrun_samples_total").increment(overrun - self.overruns_seen);
            self.raw
                .resize(self.raw.len() + (overrun - self.overruns_seen) as usize, 0.0);
            self.overruns_seen = overrun;
        }
        let stats = self.reader.stats();
        let repairs = Repairs {
            silenced: stats.silenced.load(Ordering::Relaxed),
            clipped: stats.clipped.load(Ordering::Relaxed),
        };
        if repairs != self.repairs_seen {
            metrics::counter!("callwatch_samples_silenced_total")
                .increment(repairs.silenced - self.repairs_seen.silenced);
            metrics::counter!("callwatch_samples_clipped_total").increment(repairs.clipped - self.repairs_seen.clipped);
            self.repairs_seen = repairs;
        }
        self.resampler.push(&self.raw, &mut self.at_16k);
        if finished {
            self.resampler.finish(&mut self.at_16k);
        }
        self.segmenter.push(&self.at_16k, &mut self.vad_events);
        if finished {
            self.segmenter.finish(&mut self.vad_events);
            self.done = true;
        }
        got > 0
    }
}

/// Call time between ticks.
const TICK_S: f64 = 0.1;

fn front_end(mut channels: Vec<ChannelFront>, sink: &Arc<CallSink>, pool: &dyn Decoder, rate: u32) -> CallReport {
    let span = tracing::info_span!("call", id = %sink.call_id);
    let _guard = span.enter();
    tracing::info!(channels = channels.len(), rate, "call started");
    let mut ticked = 0.0;
    while channels.iter().any(|c| !c.done) {
        let mut any = false;
        for ch in channels.iter_mut().filter(|c| !c.done) {
            any |= ch.poll();
            for event in ch.vad_events.drain(..) {
                dispatch(event, ch.role, &mut ch.revision, sink, pool);
            }
        }
        let analysed = channels
            .iter()
            .map(|c| c.segmenter.position_s())
            .fold(f64::INFINITY, f64::min);
        if analysed >= ticked + TICK_S {
            ticked = analysed;
            let words_s = channels
                .iter()
                .filter_map(|c| c.segmenter.open_onset_s())
                .chain(sink.oldest_inflight())
                .fold(analysed, f64::min);
            sink.send(Event::Tick {
                call_id: sink.call_id.clone(),
                t_s: analysed,
                words_s,
                voiced_until: channels
                    .iter()
                    .map(|c| (c.role, c.segmenter.voiced_until_s()))
                    .collect(),
            });
        }
        if !any {
            // Audio arrives in 10–20 ms packets; polling at 5 ms adds little latency.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let report = CallReport {
        audio_s: channels.first().map_or(0.0, |c| c.segmenter.position_s()),
        overrun_samples: channels.iter().map(|c| c.overruns_seen).sum(),
        repairs: channels.iter().fold(Repairs::default(), |mut all, c| {
            all.add(c.repairs_seen);
            all
        }),
        xruns: 0,
    };
    tracing::info!(audio_s = report.audio_s, overrun = report.overrun_samples, "call ended");
    report
}

fn dispatch(event: VadEvent, channel: Channel, revision: &mut u32, sink: &Arc<CallSink>, pool: &dyn Decoder) {
    let job = |u: Utterance, revision: u32, is_final: bool| Job {
        sink: sink.clone(),
        channel,
        utterance_id: u.id,
        revision,
        is_final,
        start_s: u.start_s,
        end_s: u.end_s,
        samples: u.samples,
    };
    match event {
        VadEvent::SpeechStart { t_s } | VadEvent::SpeechEnd { t_s } => sink.send(Event::Voice {
            call_id: sink.call_id.clone(),
            channel,
            speaking: matches!(event, VadEvent::SpeechStart { .. }),
            t_s,
        }),
        VadEvent::Partial(u) => {
            pool.submit(job(u, *revision, false));
            *revision += 1;
        }
        VadEvent::Utterance(u) => {
            sink.begin_final(channel, u.id, u.start_s);
            pool.submit(job(u, *revision, true));
            *revision = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::read_wav;
    use crate::capture::replay::{Pace, Replay};

    /// A decoder that fails the way a bug would: a panic on the front-end
    /// thread, which is where `submit` runs.
    struct Panicking;
    impl Decoder for Panicking {
        fn submit(&self, _job: Job) {
            panic!("decoder exploded");
        }
    }

    /// A panic in the front end ends the call: the event stream closes (a
    /// consumer does not hang) and `join` says what happened.
    #[test]
    fn a_front_end_panic_closes_the_events_and_is_an_error() {
        let wav = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/jfk.wav");
        let source = Box::new(Replay::new(read_wav(&wav).unwrap(), Pace::Fast));
        let call = Call::start(source, Arc::new(Panicking), CallConfig::new("boom")).unwrap();
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            call.events.iter().for_each(drop);
            let _ = done.send(call.join());
        });
        let err = outcome
            .recv_timeout(Duration::from_secs(30))
            .expect("the event stream stayed open after the panic")
            .unwrap_err();
        assert_eq!(err.to_string(), "the call's front end failed: decoder exploded");
    }

    /// A decoder that cannot decode a final: it closes the utterance with
    /// an empty one and tells the call why.
    struct Failing;
    impl Decoder for Failing {
        fn submit(&self, job: Job) {
            if !job.is_final {
                return;
            }
            job.sink
                .fail(format!("utterance {} could not be decoded", job.utterance_id));
            job.sink.send(Event::Transcript(crate::events::Transcript {
                call_id: job.sink.call_id.clone(),
                channel: job.channel,
                utterance_id: job.utterance_id,
                revision: job.revision,
                is_final: true,
                start_s: job.start_s,
                end_s: job.end_s,
                text: String::new(),
                tokens: Vec::new(),
                ready_after_s: 0.0,
            }));
        }
    }

    /// The call goes on to the end of its audio, then `join` reports the
    /// first failure the decoder recorded.
    #[test]
    fn a_final_the_decoder_failed_makes_join_an_error() {
        let wav = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/jfk.wav");
        let source = Box::new(Replay::new(read_wav(&wav).unwrap(), Pace::Fast));
        let call = Call::start(source, Arc::new(Failing), CallConfig::new("failing")).unwrap();
        let finals = call
            .events
            .iter()
            .filter(|e| matches!(e, Event::Transcript(t) if t.is_final))
            .count();
        assert!(finals >= 1);
        let err = call.join().unwrap_err();
        assert_eq!(err.to_string(), "utterance 0 could not be decoded");
    }
}
