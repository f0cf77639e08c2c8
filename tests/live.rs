//! The live pipeline end to end: recordings replayed through the rings, the
//! front end and the transcriber pool, with the real model.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use callwatch_asr::transcribe::pool::{Pool, PoolConfig};
use callwatch_asr::transcribe::Model;
use callwatch_core::audio::{self, Channel};
use callwatch_core::capture::replay::{Pace, Replay};
use callwatch_core::events::{Event, Transcript};
use callwatch_core::pipeline::{Call, CallConfig};
use callwatch_core::text::word_error_rate;
use common::{callwatch, fixture, q8_model, Reference};

fn pool(cfg: PoolConfig) -> Arc<Pool> {
    Arc::new(Pool::new(&Model::load(&q8_model()).unwrap(), cfg).unwrap())
}

fn replay(pool: &Arc<Pool>, wav: &str, call_id: &str) -> Call {
    replay_paced(pool, wav, call_id, Pace::Fast)
}

fn replay_paced(pool: &Arc<Pool>, wav: &str, call_id: &str, pace: Pace) -> Call {
    let rec = audio::read_wav(&fixture(wav)).unwrap();
    Call::start(Box::new(Replay::new(rec, pace)), pool.clone(), CallConfig::new(call_id)).unwrap()
}

fn collect(call: Call) -> Vec<Event> {
    let events: Vec<Event> = call.events.iter().collect();
    call.join().unwrap();
    events
}

/// A channel's finals in call-time order (workers may finish out of order).
fn finals(events: &[Event], channel: &str) -> Vec<Transcript> {
    let mut finals: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Transcript(t) if t.is_final && t.channel.name() == channel => Some(t.clone()),
            _ => None,
        })
        .collect();
    finals.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    finals
}

fn joined(ts: &[Transcript]) -> String {
    ts.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ")
}

#[test]
fn replayed_call_gives_each_party_its_words_on_time() {
    let pool = pool(PoolConfig::default());
    for wav in ["calls/basic_call.wav", "calls/hold_call.wav"] {
        let events = collect(replay(&pool, wav, "t"));
        let reference = Reference::load(wav);
        for channel in ["agent", "customer"] {
            let got = finals(&events, channel);
            let want: Vec<_> = reference.utterances.iter().filter(|u| u.channel == channel).collect();
            let wer = word_error_rate(&reference.text_of(channel), &joined(&got));
            assert!(wer <= 0.15, "{wav} {channel}: WER {wer:.3}: {got:#?}");
            // One final per reference utterance, each within 300 ms of it
            // (the last one too: end of call flushes it).
            assert_eq!(got.len(), want.len(), "{wav} {channel}: {got:#?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g.start_s - w.start_s).abs() <= 0.3,
                    "{wav} {channel}: {} vs {}",
                    g.start_s,
                    w.start_s
                );
                assert!(
                    (g.end_s - w.end_s).abs() <= 0.3,
                    "{wav} {channel}: {} vs {}",
                    g.end_s,
                    w.end_s
                );
            }
        }
    }
}

#[test]
fn jfk_through_the_live_path() {
    let events = collect(replay(&pool(PoolConfig::default()), "jfk.wav", "jfk"));
    let wer = word_error_rate(
        &Reference::load("jfk.wav").text_of("mono"),
        &joined(&finals(&events, "mono")),
    );
    assert!(wer <= 0.05, "WER {wer:.3}");
}

/// Partials come before their final, with increasing revisions; the final is
/// the last revision. In real time, as a live call: `--fast` replay outruns
/// decoding, so there the pool rightly sheds most partials.
#[test]
fn partials_are_revisions_before_the_final() {
    let events = collect(replay_paced(
        &pool(PoolConfig::default()),
        "jfk.wav",
        "t",
        Pace::RealTime,
    ));
    let mut last: HashMap<(Channel, u64), (u32, bool)> = HashMap::new();
    let mut partials = 0;
    for e in &events {
        if let Event::Transcript(t) = e {
            let key = (t.channel, t.utterance_id);
            if let Some(&(rev, was_final)) = last.get(&key) {
                assert!(!was_final, "text after the final of {key:?}");
                assert!(t.revision > rev, "revision {} after {rev} for {key:?}", t.revision);
            }
            partials += usize::from(!t.is_final);
            last.insert(key, (t.revision, t.is_final));
        }
    }
    assert!(partials > 0, "no partials");
    assert!(last.values().all(|&(_, f)| f), "an utterance without a final");
}

/// The fixture's agent and customer overlap from 12.85 s to 13.39 s: voice
/// activity must show both speaking at once.
#[test]
fn overlap_shows_both_parties_speaking() {
    let events = collect(replay(&pool(PoolConfig::default()), "calls/basic_call.wav", "t"));
    // Each channel's events are in order; across channels they are not (an
    // end of speech is known only after the hangover), so order by call time.
    let mut voice: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Voice {
                channel, speaking, t_s, ..
            } => Some((*t_s, *channel, *speaking)),
            _ => None,
        })
        .collect();
    voice.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut speaking = [false; 3];
    let mut overlap_at = None;
    for (t_s, channel, s) in voice {
        speaking[channel as usize] = s;
        if speaking[0] && speaking[1] && overlap_at.is_none() {
            overlap_at = Some(t_s);
        }
    }
    let t = overlap_at.expect("no moment with both parties speaking");
    assert!((12.5..13.5).contains(&t), "overlap detected at {t}");
}

/// One worker, several calls at once as fast as they go: partials are shed,
/// every final still arrives.
#[test]
fn overloaded_pool_sheds_partials_but_delivers_every_final() {
    let pool = pool(PoolConfig {
        workers: 1,
        threads_per_worker: 2,
        max_partials: 1,
        max_finals: 4,
    });
    let calls: Vec<_> = (0..4)
        .map(|i| replay(&pool, "calls/basic_call.wav", &format!("c{i}")))
        .collect();
    let handles: Vec<_> = calls
        .into_iter()
        .map(|c| std::thread::spawn(move || collect(c)))
        .collect();
    let expected = Reference::load("calls/basic_call.wav").utterances.len();
    for h in handles {
        let events = h.join().unwrap();
        let n = finals(&events, "agent").len() + finals(&events, "customer").len();
        assert_eq!(n, expected);
    }
    assert!(pool.stats().partials_shed.load(Ordering::Relaxed) > 0);
    assert_eq!(pool.stats().finals_done.load(Ordering::Relaxed), 4 * expected as u64);
}

#[test]
fn monitor_cli_prints_json_lines_and_summary() {
    let out = callwatch()
        .args(["monitor", "--fast", "--json"])
        .arg(fixture("calls/basic_call.wav"))
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let finals: Vec<_> = lines
        .iter()
        .filter(|v| v["type"] == "transcript" && v["final"] == true)
        .collect();
    assert_eq!(finals.len(), 7, "{stdout}");
    for f in &finals {
        assert!(
            f["utterance"].is_u64() && f["revision"].is_u64() && f["text"].is_string(),
            "{f}"
        );
    }
    assert!(lines.iter().any(|v| v["type"] == "voice"));
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["utterances"], 7);
    assert!(summary["speech_s_agent"].as_f64().unwrap() > 10.0, "{summary}");
}
