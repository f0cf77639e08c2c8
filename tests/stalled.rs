//! One call's consumer stops reading while three others stream in real time
//! through one shared transcriber pool, with the real model. The others'
//! finals must keep their latency (end of speech → final text, as `monitor`
//! measures it) against a run of the same three calls alone, and the stalled
//! call must get every final, in a consistent order, once its consumer reads
//! again.
//!
//! The stalled call replays a long recording as fast as it goes (as `monitor
//! --fast` does), so that when its queue fills many of its finals are in
//! flight: the moment a worker that waited on a call's queue would be lost to
//! every other call.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use callwatch_asr::transcribe::pool::{Pool, PoolConfig};
use callwatch_asr::transcribe::Model;
use callwatch_core::audio;
use callwatch_core::capture::replay::{Pace, Replay};
use callwatch_core::events::{Event, EventReceiver, Transcript, EVENT_QUEUE};
use callwatch_core::pipeline::{Call, CallConfig};
use common::{fixture, q8_model, Reference};

/// Streamed in real time, starts staggered by a second.
const OTHERS: [&str; 3] = ["calls/abuse_call.wav", "calls/hold_call.wav", "calls/jargon_call.wav"];
/// The stalled call: this recording, over and over, enough to fill its queue.
const STALLED: &str = "calls/compliant_call.wav";
const STALLED_COPIES: usize = 8;
/// Fewer workers than the stalled call's finals in flight: a worker that
/// waited on that call's queue would leave the others without one.
const WORKERS: usize = 2;
/// The others end by ~38 s; a design that stalls them must fail, not hang.
const RESUME_BOUND: Duration = Duration::from_secs(60);
/// How much the stall may add to the others' p95 latency.
const TOLERANCE_S: f64 = 0.2;

fn start(pool: &Arc<Pool>, rec: audio::Recording, call_id: &str, pace: Pace) -> Call {
    Call::start(Box::new(Replay::new(rec, pace)), pool.clone(), CallConfig::new(call_id)).unwrap()
}

/// `copies` of a recording, a second of silence after each.
fn repeated(wav: &str, copies: usize) -> audio::Recording {
    let mut rec = audio::read_wav(&fixture(wav)).unwrap();
    let gap = rec.sample_rate as usize;
    for (_, samples) in &mut rec.channels {
        samples.resize(samples.len() + gap, 0.0);
        *samples = samples.repeat(copies);
    }
    rec
}

/// Reads a call to its end, checking what every consumer relies on: ticks
/// advance, nothing of an utterance follows its final, and no final arrives
/// after a tick whose `words_s` claimed it was delivered.
fn collect(call: Call, wav: &str) -> Vec<Transcript> {
    let mut finals: Vec<Transcript> = Vec::new();
    let mut tick_s = 0.0;
    let mut words_s = 0.0;
    for event in call.events.iter() {
        match event {
            Event::Tick { t_s, words_s: w, .. } => {
                assert!(
                    t_s >= tick_s && w <= t_s,
                    "{wav}: tick {t_s} (words {w}) after {tick_s}"
                );
                (tick_s, words_s) = (t_s, w);
            }
            Event::Transcript(t) => {
                let key = (t.channel, t.utterance_id);
                assert!(
                    !finals.iter().any(|f| (f.channel, f.utterance_id) == key),
                    "{wav}: text after the final of {key:?}"
                );
                if t.is_final {
                    assert!(
                        t.start_s >= words_s - 1e-6,
                        "{wav}: final of {key:?} starting at {} after a tick with words_s {words_s}",
                        t.start_s
                    );
                    finals.push(t);
                }
            }
            Event::Voice { .. } => {}
        }
    }
    call.join().unwrap();
    finals
}

/// Each channel gets one final per reference utterance.
fn check_finals(wav: &str, copies: usize, finals: &[Transcript]) {
    let reference = Reference::load(wav);
    for channel in ["agent", "customer"] {
        let got = finals.iter().filter(|t| t.channel.name() == channel).count();
        let want = reference.utterances.iter().filter(|u| u.channel == channel).count();
        assert_eq!(got, copies * want, "{wav} {channel}: {finals:#?}");
    }
}

/// Streams the other calls in real time, starts staggered by a second;
/// returns end of speech → final text of all their finals, sorted.
fn stream_others(pool: &Arc<Pool>) -> Vec<f64> {
    let others: Vec<_> = OTHERS
        .iter()
        .enumerate()
        .map(|(i, &wav)| {
            let pool = pool.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_secs(i as u64));
                let rec = audio::read_wav(&fixture(wav)).unwrap();
                let finals = collect(start(&pool, rec, &format!("other{i}"), Pace::RealTime), wav);
                check_finals(wav, 1, &finals);
                finals.iter().map(|t| t.ready_after_s - t.end_s).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut latencies: Vec<f64> = others.into_iter().flat_map(|h| h.join().unwrap()).collect();
    latencies.sort_by(f64::total_cmp);
    latencies
}

/// Waits until the stalled call's front end waits for room and the finals
/// it had in flight are queued (or, with a worker that waits on the queue,
/// stuck): its backlog is full and has stopped growing.
fn until_stalled(events: &EventReceiver) {
    let mut last = 0;
    let mut still = 0;
    for _ in 0..480 {
        thread::sleep(Duration::from_millis(250));
        let now = events.backlog();
        still = if now == last && now >= EVENT_QUEUE {
            still + 1
        } else {
            0
        };
        last = now;
        if still == 8 {
            return;
        }
    }
    panic!("the stalled call's queue never filled: {last} events");
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn describe(sorted: &[f64]) -> String {
    format!(
        "{} finals, p50 {:.3} s, p95 {:.3} s, max {:.3} s",
        sorted.len(),
        percentile(sorted, 0.5),
        percentile(sorted, 0.95),
        sorted[sorted.len() - 1]
    )
}

#[test]
fn a_stalled_consumer_does_not_delay_other_calls_finals() {
    let pool = Arc::new(
        Pool::new(
            &Model::load(&q8_model()).unwrap(),
            PoolConfig {
                workers: WORKERS,
                threads_per_worker: 1,
                max_partials: 2 * WORKERS,
                max_finals: 256,
            },
        )
        .unwrap(),
    );
    let alone = stream_others(&pool);
    println!("others alone:                    {}", describe(&alone));

    let stalled = start(&pool, repeated(STALLED, STALLED_COPIES), "stalled", Pace::Fast);
    until_stalled(&stalled.events);
    let (resume, resumed) = mpsc::channel::<()>();
    let consumer = thread::spawn(move || {
        // Until the others are done (the sender is dropped then); the bound
        // makes a design that stalls them fail rather than hang.
        let _ = resumed.recv_timeout(RESUME_BOUND);
        collect(stalled, STALLED)
    });
    let beside = stream_others(&pool);
    drop(resume);
    println!("others beside a stalled consumer: {}", describe(&beside));
    check_finals(STALLED, STALLED_COPIES, &consumer.join().unwrap());

    let (before, after) = (percentile(&alone, 0.95), percentile(&beside, 0.95));
    assert!(
        after <= before + TOLERANCE_S,
        "the stall moved the others' p95 from {before:.3} s to {after:.3} s"
    );
}
