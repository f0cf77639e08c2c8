//! `callwatch bench capacity`: how many real-time calls one machine carries,
//! and whether it carries them whole.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{cpu_seconds, peak_rss_mb};
use crate::monitor::percentile;
use callwatch_asr::transcribe::pool::{Pool, PoolConfig};
use callwatch_asr::transcribe::Model;
use callwatch_core::audio;
use callwatch_core::capture::replay::{Pace, Replay};
use callwatch_core::events::{Event, Transcript};
use callwatch_core::pipeline::{Call, CallConfig};
use callwatch_core::text::{self, word_error_rate};

pub struct CapacityOptions {
    pub file: PathBuf,
    pub model: PathBuf,
    pub calls: Vec<usize>,
    pub workers: usize,
    pub threads: usize,
}

/// A call's reference transcript (`CALL.ref.json` beside `CALL.wav`): what
/// was said, one entry per utterance.
#[derive(serde::Deserialize)]
struct Reference {
    utterances: Vec<RefUtterance>,
}

#[derive(serde::Deserialize)]
struct RefUtterance {
    channel: String,
    text: String,
}

impl Reference {
    fn beside(wav: &Path) -> Result<Self> {
        let path = wav.with_extension("ref.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "bench capacity counts expected finals from the call's reference transcript, {} \
                 (one {{\"channel\", \"text\", …}} per utterance, as in tests/fixtures/calls/*.ref.json)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a reference transcript", path.display()))
    }

    /// Word errors of one call's finals, per channel in call-time order,
    /// against this reference, and the reference's word count.
    fn word_errors(&self, finals: &mut [Transcript]) -> (f64, usize) {
        finals.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        let mut channels: Vec<&str> = self.utterances.iter().map(|u| u.channel.as_str()).collect();
        channels.extend(finals.iter().map(|t| t.channel.name()));
        channels.sort_unstable();
        channels.dedup();
        let (mut errors, mut words) = (0.0, 0);
        for channel in channels {
            let said = self
                .utterances
                .iter()
                .filter(|u| u.channel == channel)
                .map(|u| u.text.as_str());
            let said = said.collect::<Vec<_>>().join(" ");
            let heard = finals
                .iter()
                .filter(|t| t.channel.name() == channel)
                .map(|t| t.text.as_str());
            let heard = heard.collect::<Vec<_>>().join(" ");
            let n = text::words(&said).len();
            // Words heard on a channel the reference has no speech on are all insertions.
            errors += if n == 0 {
                text::words(&heard).len() as f64
            } else {
                word_error_rate(&said, &heard) * n as f64
            };
            words += n;
        }
        (errors, words)
    }
}

/// `callwatch bench capacity`: K copies of a call replayed at once in real
/// time through one shared pool; latency from end of speech to final text.
/// Calls start staggered over the first 5 s, as calls in a centre do not
/// begin in lockstep. Finals delivered are counted against the reference
/// transcript's utterances, and their word error rate under load is shown
/// beside the latency: a pool that kept up only by losing audio would show it.
pub fn capacity(opts: &CapacityOptions) -> Result<()> {
    let recording = audio::read_wav(&opts.file)?;
    let reference = Arc::new(Reference::beside(&opts.file)?);
    let model = Model::load(&opts.model)?;
    println!(
        "capacity: {} ({:.1} s, stereo, {} utterances) replayed in real time; {} workers × {} thread(s) on {} cores",
        opts.file.display(),
        recording.duration_s(),
        reference.utterances.len(),
        opts.workers,
        opts.threads,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>5} {:>9} {:>9} {:>9} {:>9} {:>6} {:>9} {:>6} {:>8}",
        "calls", "p50 s", "p95 s", "max s", "finals", "WER %", "shed", "CPU %", "RSS MB"
    );
    let mut best = None;
    for &k in &opts.calls {
        let pool = Arc::new(Pool::new(
            &model,
            PoolConfig {
                workers: opts.workers,
                threads_per_worker: opts.threads,
                max_partials: 2 * opts.workers,
                ..PoolConfig::default()
            },
        )?);
        let cpu_before = cpu_seconds();
        let wall = Instant::now();
        let handles: Vec<_> = (0..k)
            .map(|i| {
                let (rec, pool, reference) = (recording.clone(), pool.clone(), reference.clone());
                std::thread::spawn(move || -> Result<CallOutcome> {
                    std::thread::sleep(Duration::from_secs_f64(5.0 * i as f64 / k as f64));
                    let call = Call::start(
                        Box::new(Replay::new(rec, Pace::RealTime)),
                        pool,
                        CallConfig::new(&format!("c{i}")),
                    )?;
                    let mut finals = Vec::new();
                    for event in call.events.iter() {
                        if let Event::Transcript(t) = event {
                            if t.is_final {
                                finals.push(t);
                            }
                        }
                    }
                    call.join()?;
                    let latencies = finals.iter().map(|t| t.ready_after_s - t.end_s).collect();
                    let (errors, words) = reference.word_errors(&mut finals);
                    Ok(CallOutcome {
                        latencies,
                        errors,
                        words,
                    })
                })
            })
            .collect();
        let mut latencies = Vec::new();
        let (mut errors, mut words) = (0.0, 0);
        for h in handles {
            let call = h.join().map_err(|_| anyhow::anyhow!("a call thread panicked"))??;
            latencies.extend(call.latencies);
            errors += call.errors;
            words += call.words;
        }
        let cpu = (cpu_seconds() - cpu_before) / wall.elapsed().as_secs_f64() * 100.0;
        latencies.sort_by(f64::total_cmp);
        let (p50, p95) = (percentile(&latencies, 0.5), percentile(&latencies, 0.95));
        let shed = pool.stats().partials_shed.load(Ordering::Relaxed);
        let (delivered, expected) = (latencies.len(), k * reference.utterances.len());
        let wer = 100.0 * errors / words.max(1) as f64;
        println!(
            "{k:>5} {p50:>9.3} {p95:>9.3} {:>9.3} {:>9} {wer:>6.1} {shed:>9} {cpu:>6.0} {:>8.0}",
            latencies.last().copied().unwrap_or(0.0),
            format!("{delivered}/{expected}"),
            peak_rss_mb()
        );
        if p95 <= 1.0 && delivered == expected {
            best = Some(k);
        }
    }
    match best {
        Some(k) => println!("largest K with p95 final latency ≤ 1.0 s and every expected final: {k}"),
        None => println!("no K kept p95 final latency ≤ 1.0 s with every expected final"),
    }
    Ok(())
}

/// What one simulated call of `bench capacity` saw.
struct CallOutcome {
    /// End of speech to final text, one per final delivered.
    latencies: Vec<f64>,
    /// Word errors of its finals against the reference, and the reference's words.
    errors: f64,
    words: usize,
}
