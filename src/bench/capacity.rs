//! `callwatch bench capacity`: how many real-time calls one machine carries,
//! and whether it carries them whole.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::reference::Reference;
use super::{cpu_seconds, peak_rss_mb};
use crate::monitor::percentile;
use callwatch_asr::transcribe::pool::{Pool, PoolConfig};
use callwatch_asr::transcribe::Model;
use callwatch_core::audio;
use callwatch_core::capture::replay::{Pace, Replay};
use callwatch_core::events::Event;
use callwatch_core::pipeline::{Call, CallConfig};

pub struct CapacityOptions {
    pub file: PathBuf,
    pub model: PathBuf,
    pub calls: Vec<usize>,
    pub workers: usize,
    pub threads: usize,
}

/// `callwatch bench capacity`: K copies of a call replayed at once in real
/// time through one shared pool; latency from end of speech to final text.
/// Calls start staggered over the first 5 s, as calls in a centre do not
/// begin in lockstep. Finals delivered are counted against the reference
/// transcript's utterances, and their word error rate under load is shown
/// beside the latency: a pool that kept up only by losing audio would show it.
pub fn capacity(opts: &CapacityOptions) -> Result<()> {
    let recording = audio::read_wav(&opts.file)?;
    let reference = Arc::new(Reference::beside(&opts.file, "bench capacity counts expected finals")?);
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
