//! The transcriber pool: dedicated OS threads (never the async runtime), one
//! `WhisperState` each, all sharing one loaded model, fed from one bounded
//! queue shared by every call and served fairly between them.
//!
//! Queue policy, in order (the fair order is in `queue.rs`):
//! - finals are taken before partials; among calls, the call served least
//!   recently goes first, so a call's final never waits behind another
//!   call's backlog, only for the decodes running and at most one decode of
//!   each other call with work queued;
//! - a new partial replaces a queued partial of the same utterance (the old
//!   one is stale), and a final removes its utterance's queued partials;
//! - when `max_partials` are queued, the oldest partial of the call holding
//!   the most is shed;
//! - finals are never shed: when a call has `max_finals` queued its
//!   submitter waits (back-pressure on that call's front end only);
//! - with two or more workers, one is always kept from partials: a decode
//!   cannot be interrupted, so a final arriving while every worker is busy
//!   with a partial would wait for one to finish. Under load, partials (which
//!   re-decode a growing utterance and cost more than finals) are then shed
//!   instead of delaying finals.
//!
//! Shed partials are counted; a consumer sees them only as fewer revisions.
//!
//! A decode that panics costs neither the worker nor the pool's size: the
//! worker replaces its transcriber with a fresh one (its whisper state may
//! be half-written) and decodes the clip once more. A second panic fails
//! the job: a final goes out empty (the utterance closes) and the call is
//! told why (`CallSink::fail`, so its `join` reports it); a partial is
//! dropped.
//!
//! Delivery: a worker hands each text to its call's event queue, which never
//! makes it wait (a final is queued past a full queue, a partial dropped; see
//! `callwatch_core::events`). A call whose consumer stops reading therefore
//! holds no worker: every other call's finals keep flowing.

mod queue;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Result;

use callwatch_core::events::{Event, Transcript};
use callwatch_core::pipeline::{panic_message, Decoder, Job};

use super::{Hypothesis, Model};
use queue::FairQueue;

#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Worker threads, each decoding one job at a time.
    pub workers: usize,
    /// CPU threads each decode uses.
    pub threads_per_worker: usize,
    /// Partials queued in all, across calls.
    pub max_partials: usize,
    /// Finals queued per call.
    pub max_finals: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            workers: cores,
            threads_per_worker: 1,
            max_partials: 2 * cores,
            max_finals: 256,
        }
    }
}

/// Counters for the summary and the metrics endpoint.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub finals_done: AtomicU64,
    pub partials_shed: AtomicU64,
    /// Transcribers replaced after a decode panicked.
    pub workers_replaced: AtomicU64,
}

impl PoolStats {
    fn shed(&self, n: u64) {
        if n > 0 {
            self.partials_shed.fetch_add(n, Ordering::Relaxed);
            metrics::counter!("callwatch_partials_shed_total").increment(n);
        }
    }
}

struct Shared {
    queue: Mutex<FairQueue>,
    work: Condvar,
    /// Signalled when a final leaves the queue (a submitter may have room).
    room: Condvar,
    cfg: PoolConfig,
    stats: PoolStats,
}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// One clip to text, on a worker: whisper.cpp through a [`Transcriber`]
/// (`super::Transcriber`). A trait so the pool's tests can use decoders
/// that are slow, record their order, or panic.
trait Decode: Send + 'static {
    fn decode_clip(&mut self, samples: &[f32]) -> Result<Hypothesis>;
}

impl Decode for super::Transcriber {
    fn decode_clip(&mut self, samples: &[f32]) -> Result<Hypothesis> {
        self.transcribe(samples)
    }
}

/// Makes a worker's transcriber: at start, and again after a panic.
type MakeDecoder<D> = Arc<dyn Fn() -> Result<D> + Send + Sync>;

impl Pool {
    pub fn new(model: &Model, cfg: PoolConfig) -> Result<Self> {
        let threads = cfg.threads_per_worker;
        let weights = model.weights();
        Self::with_decoders(Arc::new(move || weights.transcriber(threads)), cfg)
    }

    fn with_decoders<D: Decode>(make: MakeDecoder<D>, cfg: PoolConfig) -> Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(FairQueue::default()),
            work: Condvar::new(),
            room: Condvar::new(),
            cfg,
            stats: PoolStats::default(),
        });
        let workers = (0..cfg.workers.max(1))
            .map(|i| {
                let decoder = make()?;
                let (shared, make) = (shared.clone(), make.clone());
                Ok(std::thread::Builder::new()
                    .name(format!("whisper-{i}"))
                    .spawn(move || worker(&shared, decoder, &*make))?)
            })
            .collect::<Result<_>>()?;
        Ok(Self { shared, workers })
    }

    pub fn stats(&self) -> &PoolStats {
        &self.shared.stats
    }
}

impl Decoder for Pool {
    fn submit(&self, job: Job) {
        let shared = &self.shared;
        let mut q = shared.queue.lock().expect("poisoned");
        if job.is_final {
            while q.finals_of(&job) >= shared.cfg.max_finals.max(1) {
                q = shared.room.wait(q).expect("poisoned");
            }
            shared.stats.shed(q.push_final(job));
        } else {
            shared.stats.shed(q.push_partial(job, shared.cfg.max_partials));
        }
        metrics::gauge!("callwatch_queue_depth").set(q.len() as f64);
        drop(q);
        shared.work.notify_one();
    }
}

impl Drop for Pool {
    /// Finishes every queued final (partials too), then stops the workers.
    fn drop(&mut self) {
        self.shared.queue.lock().expect("poisoned").closed = true;
        self.shared.work.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The next job, waiting for one; `None` once the pool is closed and empty.
fn take(shared: &Shared) -> Option<Job> {
    let partial_slots = shared.cfg.workers.saturating_sub(1).max(1);
    let mut q = shared.queue.lock().expect("poisoned");
    loop {
        let partials_allowed = q.partials_running < partial_slots;
        if let Some(job) = q.pop(partials_allowed) {
            if job.is_final {
                // Submitters of several calls may wait, each for its own room.
                shared.room.notify_all();
            } else {
                q.partials_running += 1;
            }
            return Some(job);
        }
        // Closed with only partials left that wait for a slot: the workers
        // decoding partials take them.
        if q.closed {
            return None;
        }
        q = shared.work.wait(q).expect("poisoned");
    }
}

fn worker<D: Decode>(shared: &Shared, mut decoder: D, make: &dyn Fn() -> Result<D>) {
    while let Some(job) = take(shared) {
        let started = Instant::now();
        let hyp = decode(shared, &mut decoder, make, &job);
        metrics::histogram!("callwatch_inference_seconds").record(started.elapsed().as_secs_f64());
        if let Some(hyp) = hyp {
            deliver(&job, hyp);
        }
        if job.is_final {
            shared.stats.finals_done.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.queue.lock().expect("poisoned").partials_running -= 1;
            // A worker may be waiting for this partial slot.
            shared.work.notify_one();
        }
    }
}

/// The job's text. A decode that panics replaces the transcriber and is
/// tried once more; a second panic fails the job (an empty final and the
/// call told why; a partial is dropped: `None`). A decode that returns an
/// error gives an empty text, so the utterance still closes.
fn decode<D: Decode>(shared: &Shared, decoder: &mut D, make: &dyn Fn() -> Result<D>, job: &Job) -> Option<Hypothesis> {
    let call = &job.sink.call_id;
    let mut panicked = None;
    for attempt in 0..2 {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoder.decode_clip(&job.samples)));
        match run {
            Ok(Ok(hyp)) => return Some(hyp),
            Ok(Err(err)) => {
                // whisper.cpp failing on one clip must not take the call down.
                metrics::counter!("callwatch_transcription_failures_total").increment(1);
                tracing::error!(call = %call, "transcription failed: {err:#}");
                return Some(Hypothesis::default());
            }
            Err(payload) => {
                let why = panic_message(&*payload).to_owned();
                replace(shared, decoder, make);
                tracing::error!(call = %call, attempt, "a transcriber panicked ({why}); replaced");
                panicked = Some(why);
            }
        }
    }
    metrics::counter!("callwatch_transcription_failures_total").increment(1);
    if !job.is_final {
        return None;
    }
    job.sink.fail(format!(
        "transcription of the {} utterance at {:.2} s failed: the decode panicked twice ({})",
        job.channel.name(),
        job.start_s,
        panicked.unwrap_or_default()
    ));
    Some(Hypothesis::default())
}

/// A fresh transcriber in place of one whose decode panicked. If none can be
/// made the old one stays: each decode starts afresh, so it may still work.
fn replace<D: Decode>(shared: &Shared, decoder: &mut D, make: &dyn Fn() -> Result<D>) {
    match make() {
        Ok(fresh) => {
            *decoder = fresh;
            shared.stats.workers_replaced.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("callwatch_transcribers_replaced_total").increment(1);
        }
        Err(e) => tracing::error!("cannot replace a panicked transcriber, keeping it: {e:#}"),
    }
}

fn deliver(job: &Job, hyp: Hypothesis) {
    let t = Transcript {
        call_id: job.sink.call_id.clone(),
        channel: job.channel,
        utterance_id: job.utterance_id,
        revision: job.revision,
        is_final: job.is_final,
        start_s: job.start_s,
        end_s: job.end_s,
        text: hyp.text,
        tokens: hyp.tokens,
        ready_after_s: job.sink.elapsed_s(),
    };
    job.sink.send(Event::Transcript(t));
}

#[cfg(test)]
mod tests {
    use super::*;
    use callwatch_core::audio::{read_wav, Channel};
    use callwatch_core::events::{CallSink, EventReceiver};
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::Duration;

    fn final_job(sink: &Arc<CallSink>, utterance_id: u64, samples: Vec<f32>) -> Job {
        sink.begin_final(Channel::Mono, utterance_id, 0.0);
        Job {
            sink: sink.clone(),
            channel: Channel::Mono,
            utterance_id,
            revision: 0,
            is_final: true,
            start_s: utterance_id as f64,
            end_s: utterance_id as f64 + 1.0,
            samples,
        }
    }

    fn finals(events: &EventReceiver, n: usize) -> Vec<Transcript> {
        let mut got = Vec::new();
        while got.len() < n {
            match events
                .recv_timeout(Duration::from_secs(120))
                .expect("a final did not come")
            {
                Event::Transcript(t) if t.is_final => got.push(t),
                _ => {}
            }
        }
        got.sort_by_key(|t| t.utterance_id);
        got
    }

    /// Decodes instantly, naming the clip it got (`[call, utterance]` in
    /// its samples); the first decode waits for the test's go-ahead, so the
    /// test can queue work behind a busy worker.
    struct Recorder {
        order: Arc<Mutex<Vec<(u32, u32)>>>,
        started: mpsc::SyncSender<()>,
        go: Arc<Mutex<mpsc::Receiver<()>>>,
    }

    impl Decode for Recorder {
        fn decode_clip(&mut self, samples: &[f32]) -> Result<Hypothesis> {
            let mut order = self.order.lock().unwrap();
            let first = order.is_empty();
            order.push((samples[0] as u32, samples[1] as u32));
            drop(order);
            if first {
                self.started.send(()).unwrap();
                self.go.lock().unwrap().recv().unwrap();
            }
            Ok(Hypothesis {
                text: format!("call {} utterance {}", samples[0], samples[1]),
                ..Hypothesis::default()
            })
        }
    }

    /// One worker, a call flooding the pool with 50 finals, then a second
    /// call's final: it is decoded right after the flood's running decode,
    /// not behind its backlog.
    #[test]
    fn a_calls_final_waits_for_at_most_one_decode_of_a_flooding_call() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let (started, is_started) = mpsc::sync_channel(1);
        let (go, gate) = mpsc::channel();
        let gate = Arc::new(Mutex::new(gate));
        let make = {
            let order = order.clone();
            Arc::new(move || {
                Ok(Recorder {
                    order: order.clone(),
                    started: started.clone(),
                    go: gate.clone(),
                })
            })
        };
        let cfg = PoolConfig {
            workers: 1,
            threads_per_worker: 1,
            max_partials: 2,
            max_finals: 64,
        };
        let pool = Pool::with_decoders(make, cfg).unwrap();
        let (flood, flood_events) = CallSink::new("flood", Instant::now());
        let (quiet, quiet_events) = CallSink::new("quiet", Instant::now());
        pool.submit(final_job(&flood, 0, vec![1.0, 0.0]));
        is_started.recv_timeout(Duration::from_secs(10)).unwrap();
        for id in 1..50 {
            pool.submit(final_job(&flood, id, vec![1.0, id as f32]));
        }
        pool.submit(final_job(&quiet, 0, vec![2.0, 0.0]));
        go.send(()).unwrap();
        assert_eq!(finals(&quiet_events, 1)[0].text, "call 2 utterance 0");
        assert_eq!(finals(&flood_events, 50).len(), 50);
        let order = order.lock().unwrap();
        let at = order.iter().position(|&c| c == (2, 0)).unwrap();
        println!("the quiet call's final was decoded {at}th, after {at} decode(s) of the flooding call");
        assert_eq!(at, 1, "decoded after the running decode only: {:?}", &order[..4]);
    }

    /// Panics on every clip whose first sample is 9, decodes others.
    struct Exploding;

    impl Decode for Exploding {
        fn decode_clip(&mut self, samples: &[f32]) -> Result<Hypothesis> {
            if samples[0] == 9.0 {
                panic!("decode exploded");
            }
            Ok(Hypothesis {
                text: "fine".into(),
                ..Hypothesis::default()
            })
        }
    }

    /// A clip that panics every time: replaced and retried once, then its
    /// final goes out empty and the call is told; the single worker is
    /// still there for the next clip.
    #[test]
    fn a_job_that_panics_twice_fails_the_call_and_the_worker_stays() {
        let made = Arc::new(AtomicUsize::new(0));
        let make = {
            let made = made.clone();
            Arc::new(move || {
                made.fetch_add(1, Ordering::Relaxed);
                Ok(Exploding)
            })
        };
        let cfg = PoolConfig {
            workers: 1,
            threads_per_worker: 1,
            max_partials: 2,
            max_finals: 4,
        };
        let pool = Pool::with_decoders(make, cfg).unwrap();
        let (sink, events) = CallSink::new("doomed", Instant::now());
        pool.submit(final_job(&sink, 0, vec![9.0]));
        pool.submit(final_job(&sink, 1, vec![0.0]));
        let got = finals(&events, 2);
        assert_eq!(got[0].text, "", "the failed clip's final closes its utterance, empty");
        assert_eq!(got[1].text, "fine", "the next clip is decoded");
        assert_eq!(pool.stats().workers_replaced.load(Ordering::Relaxed), 2);
        assert_eq!(
            made.load(Ordering::Relaxed),
            3,
            "one transcriber, replaced after each panic"
        );
        let fault = events.fault().expect("the call was not told");
        assert!(
            fault.contains("panicked twice") && fault.contains("decode exploded") && fault.contains("0.00 s"),
            "{fault}"
        );
    }

    /// The real transcriber, which panics while `panics` is above zero (as
    /// a bug inside whisper-rs or our decode would).
    struct Flaky {
        real: super::super::Transcriber,
        panics: Arc<AtomicUsize>,
    }

    impl Decode for Flaky {
        fn decode_clip(&mut self, samples: &[f32]) -> Result<Hypothesis> {
            if self
                .panics
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                panic!("decode exploded");
            }
            self.real.decode_clip(samples)
        }
    }

    /// A decode that panics once costs nothing: a fresh transcriber decodes
    /// the clip again and the call gets its words.
    #[test]
    fn a_panicking_decode_is_retried_on_a_fresh_transcriber() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = root.join(crate::model::DEFAULT_DIR);
        crate::model::fetch(&dir).expect("fetching the Whisper model failed");
        let model = Model::load(&crate::model::model_path(&dir, crate::model::ggml::FileType::Q8_0)).unwrap();
        let cfg = PoolConfig {
            workers: 1,
            threads_per_worker: 2,
            max_partials: 2,
            max_finals: 4,
        };
        let panics = Arc::new(AtomicUsize::new(1));
        let make = {
            let (weights, panics) = (model.weights(), panics.clone());
            Arc::new(move || {
                Ok(Flaky {
                    real: weights.transcriber(2)?,
                    panics: panics.clone(),
                })
            })
        };
        let pool = Pool::with_decoders(make, cfg).unwrap();
        let jfk = read_wav(&root.join("tests/fixtures/jfk.wav")).unwrap();
        let (sink, events) = CallSink::new("fault", Instant::now());
        pool.submit(final_job(&sink, 0, jfk.channels[0].1.clone()));
        let got = finals(&events, 1);
        let said =
            "and so my fellow americans ask not what your country can do for you ask what you can do for your country";
        let wer = callwatch_core::text::word_error_rate(said, &got[0].text);
        assert!(wer <= 0.15, "WER {wer:.2}: {}", got[0].text);
        assert_eq!(pool.stats().workers_replaced.load(Ordering::Relaxed), 1);
        assert_eq!(events.fault(), None, "a retried clip is no failure");
    }
}
