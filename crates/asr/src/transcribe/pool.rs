//! The transcriber pool: dedicated OS threads (never the async runtime), one
//! `WhisperState` each, all sharing one loaded model, fed from one bounded
//! queue shared by every call.
//!
//! Queue policy, in order:
//! - finals are taken before partials, oldest first;
//! - a new partial replaces a queued partial of the same utterance (the old
//!   one is stale), and a final removes its utterance's queued partials;
//! - when `max_partials` are queued, the oldest partial is shed;
//! - finals are never shed: when `max_finals` are queued the submitter waits
//!   (back-pressure on that call's front end);
//! - with two or more workers, one is always kept from partials: a decode
//!   cannot be interrupted, so a final arriving while every worker is busy
//!   with a partial would wait for one to finish. Under load, partials (which
//!   re-decode a growing utterance and cost more than finals) are then shed
//!   instead of delaying finals.
//!
//! Shed partials are counted; a consumer sees them only as fewer revisions.
//!
//! Delivery: a worker hands each text to its call's event queue, which never
//! makes it wait (a final is queued past a full queue, a partial dropped; see
//! `callwatch_core::events`). A call whose consumer stops reading therefore
//! holds no worker: every other call's finals keep flowing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Result;

use callwatch_core::events::{Event, Transcript};
use callwatch_core::pipeline::{panic_message, Decoder, Job};

use super::Model;

#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Worker threads, each decoding one job at a time.
    pub workers: usize,
    /// CPU threads each decode uses.
    pub threads_per_worker: usize,
    pub max_partials: usize,
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
}

impl PoolStats {
    fn shed(&self, n: u64) {
        self.partials_shed.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("callwatch_partials_shed_total").increment(n);
    }
}

#[derive(Default)]
struct Queue {
    finals: VecDeque<Job>,
    partials: VecDeque<Job>,
    /// Partials being decoded now.
    partials_running: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    room: Condvar,
    cfg: PoolConfig,
    stats: PoolStats,
}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// One clip to text, on a worker: whisper.cpp through a [`Transcriber`]
/// (`super::Transcriber`). A trait so the pool's fault tests can make the
/// real transcriber's first decode panic.
trait Decode: Send + 'static {
    fn decode_clip(&mut self, samples: &[f32]) -> Result<super::Hypothesis>;
}

impl Decode for super::Transcriber {
    fn decode_clip(&mut self, samples: &[f32]) -> Result<super::Hypothesis> {
        self.transcribe(samples)
    }
}

impl Pool {
    pub fn new(model: &Model, cfg: PoolConfig) -> Result<Self> {
        let decoders = (0..cfg.workers.max(1))
            .map(|_| model.transcriber(cfg.threads_per_worker))
            .collect::<Result<Vec<_>>>()?;
        Self::with_decoders(decoders, cfg)
    }

    fn with_decoders(decoders: Vec<impl Decode>, cfg: PoolConfig) -> Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            room: Condvar::new(),
            cfg,
            stats: PoolStats::default(),
        });
        let workers = decoders
            .into_iter()
            .enumerate()
            .map(|(i, mut decoder)| {
                let shared = shared.clone();
                Ok(std::thread::Builder::new()
                    .name(format!("whisper-{i}"))
                    .spawn(move || worker(&shared, &mut decoder))?)
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
        let stats = &self.shared.stats;
        let mut q = self.shared.queue.lock().expect("poisoned");
        if job.is_final {
            let before = q.partials.len();
            q.partials.retain(|p| !p.same_utterance(&job));
            stats.shed((before - q.partials.len()) as u64);
            while q.finals.len() >= self.shared.cfg.max_finals {
                q = self.shared.room.wait(q).expect("poisoned");
            }
            q.finals.push_back(job);
        } else {
            if let Some(i) = q.partials.iter().position(|p| p.same_utterance(&job)) {
                q.partials.remove(i);
                stats.shed(1);
            }
            if q.partials.len() >= self.shared.cfg.max_partials {
                q.partials.pop_front();
                stats.shed(1);
            }
            q.partials.push_back(job);
        }
        metrics::gauge!("callwatch_queue_depth").set((q.finals.len() + q.partials.len()) as f64);
        drop(q);
        self.shared.work.notify_one();
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

fn worker(shared: &Shared, decoder: &mut impl Decode) {
    let partial_slots = shared.cfg.workers.saturating_sub(1).max(1);
    loop {
        let job = {
            let mut q = shared.queue.lock().expect("poisoned");
            loop {
                if let Some(job) = q.finals.pop_front() {
                    shared.room.notify_one();
                    break job;
                }
                if q.partials_running < partial_slots {
                    if let Some(job) = q.partials.pop_front() {
                        q.partials_running += 1;
                        break job;
                    }
                }
                if q.closed {
                    return;
                }
                q = shared.work.wait(q).expect("poisoned");
            }
        };
        let started = Instant::now();
        // A panic inside one decode must cost that clip, not the worker (and
        // with it every later call); each clip starts a fresh decode, as after
        // a failed one.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoder.decode_clip(&job.samples)))
            .unwrap_or_else(|payload| Err(anyhow::anyhow!("decode panicked: {}", panic_message(&*payload))));
        let took = started.elapsed();
        metrics::histogram!("callwatch_inference_seconds").record(took.as_secs_f64());
        let hyp = match result {
            Ok(h) => h,
            Err(err) => {
                // whisper.cpp failing on one clip must not take the call down;
                // the final still goes out, empty, so the utterance closes.
                metrics::counter!("callwatch_transcription_failures_total").increment(1);
                tracing::error!(call = %job.sink.call_id, "transcription failed: {err:#}");
                super::Hypothesis::default()
            }
        };
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
        if job.is_final {
            shared.stats.finals_done.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.queue.lock().expect("poisoned").partials_running -= 1;
            // A worker may be waiting for this partial slot.
            shared.work.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callwatch_core::audio::{read_wav, Channel};
    use callwatch_core::events::CallSink;
    use std::path::Path;
    use std::time::Duration;

    /// The real transcriber, whose first decode panics (as a bug inside
    /// whisper-rs or our decode would).
    struct PanicsOnce {
        real: super::super::Transcriber,
        panicked: bool,
    }

    impl Decode for PanicsOnce {
        fn decode_clip(&mut self, samples: &[f32]) -> Result<super::super::Hypothesis> {
            if !self.panicked {
                self.panicked = true;
                panic!("decode exploded");
            }
            self.real.decode_clip(samples)
        }
    }

    /// A panicking decode costs its clip only: the final still goes out
    /// (empty), and the same single worker decodes the next clip.
    #[test]
    fn a_panicking_decode_sends_an_empty_final_and_the_worker_lives_on() {
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
        let real = model.transcriber(cfg.threads_per_worker).unwrap();
        let pool = Pool::with_decoders(vec![PanicsOnce { real, panicked: false }], cfg).unwrap();
        let jfk = read_wav(&root.join("tests/fixtures/jfk.wav")).unwrap();
        let samples = jfk.channels[0].1.clone();
        let (sink, events) = CallSink::new("fault", std::time::Instant::now());
        for id in 0..2 {
            sink.begin_final(Channel::Mono, id, 0.0);
            pool.submit(Job {
                sink: sink.clone(),
                channel: Channel::Mono,
                utterance_id: id,
                revision: 0,
                is_final: true,
                start_s: 0.0,
                end_s: 11.0,
                samples: samples.clone(),
            });
        }
        let mut finals = Vec::new();
        while finals.len() < 2 {
            match events
                .recv_timeout(Duration::from_secs(120))
                .expect("a final did not come")
            {
                callwatch_core::events::Event::Transcript(t) if t.is_final => finals.push(t),
                _ => {}
            }
        }
        finals.sort_by_key(|t| t.utterance_id);
        assert_eq!(finals[0].text, "", "the panicked clip's final goes out empty");
        let said =
            "and so my fellow americans ask not what your country can do for you ask what you can do for your country";
        let wer = callwatch_core::text::word_error_rate(said, &finals[1].text);
        assert!(wer <= 0.15, "WER {wer:.2}: {}", finals[1].text);
        assert_eq!(pool.stats().finals_done.load(Ordering::Relaxed), 2);
    }
}
