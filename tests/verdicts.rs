//! Verdicts do not depend on speed: every scenario call, replayed as fast as
//! the model allows and again in real time, through the live pipeline and
//! the real model, ends with exactly the same standing alerts (rule, times,
//! evidence, message) and the same final scorecard.
//!
//! Fast, audio races ahead of transcription and the words clock jumps;
//! live, it follows the audio and partials come every second (and are shed
//! when the pool is busy). The real-time replays run concurrently on one
//! pool, so the test takes about as long as the longest call.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callwatch_asr::transcribe::pool::{Pool, PoolConfig};
use callwatch_asr::transcribe::Model;
use callwatch_core::alerts::RuleOutput;
use callwatch_core::audio::{self, Recording};
use callwatch_core::capture::replay::{Pace, Replay};
use callwatch_core::pipeline::{Call, CallConfig};
use callwatch_core::rules::config::Rulebook;
use callwatch_core::rules::{sidecar, CallRules, Control};
use common::{fixture, q8_model};

struct Case {
    name: String,
    recording: Recording,
    controls: Vec<Control>,
}

/// What stands at the end of a call.
#[derive(Debug, PartialEq)]
struct Verdict {
    /// (rule, start, end, evidence, message), in call-time order.
    alerts: Vec<(String, f64, f64, String, String)>,
    /// The final scorecard: (rule, status, time, evidence) per item.
    items: Vec<(String, String, Option<f64>, String)>,
    score: Option<f64>,
}

impl Verdict {
    /// What differs from `other`, a line each.
    fn diff(&self, other: &Verdict) -> Vec<String> {
        let mut lines = Vec::new();
        let only = |a: &Verdict, b: &Verdict| -> Vec<String> {
            a.alerts
                .iter()
                .filter(|x| !b.alerts.contains(x))
                .map(|x| format!("{x:?}"))
                .collect()
        };
        for (which, alerts) in [("fast", only(self, other)), ("real time", only(other, self))] {
            lines.extend(alerts.into_iter().map(|a| format!("  alert only {which}: {a}")));
        }
        for (f, l) in self.items.iter().zip(&other.items) {
            if f != l {
                lines.push(format!("  scorecard: fast {f:?}, real time {l:?}"));
            }
        }
        if self.score != other.score {
            lines.push(format!("  score: fast {:?}, real time {:?}", self.score, other.score));
        }
        lines
    }
}

fn replay(case: &Case, pace: Pace, pool: &Arc<Pool>, rules: &Arc<Rulebook>) -> (Verdict, Duration) {
    let started = Instant::now();
    let config = CallConfig::new(&case.name);
    let mut engine = CallRules::new(rules.clone(), &case.name, config.vad.hangover, case.controls.clone());
    let source = Box::new(Replay::new(case.recording.clone(), pace));
    let call = Call::start(source, pool.clone(), config).unwrap();
    let mut outputs = Vec::new();
    for event in call.events.iter() {
        outputs.extend(engine.feed(&event));
    }
    let report = call.join().unwrap();
    // Dropped samples would make the two replays different calls.
    assert_eq!(report.overrun_samples, 0, "{} ({pace:?}): audio was dropped", case.name);
    outputs.extend(engine.finish(report.audio_s));

    let retracted: Vec<u64> = outputs
        .iter()
        .filter_map(|o| match o {
            RuleOutput::Retract { id, .. } => Some(*id),
            RuleOutput::Alert(_) => None,
        })
        .collect();
    let mut alerts: Vec<_> = outputs
        .iter()
        .filter_map(|o| match o {
            RuleOutput::Alert(a) if !retracted.contains(&a.id) => Some((
                a.rule_id.to_string(),
                a.start_s,
                a.end_s,
                a.evidence.clone(),
                a.message.clone(),
            )),
            _ => None,
        })
        .collect();
    alerts.sort_by(|a, b| {
        a.1.total_cmp(&b.1)
            .then_with(|| a.0.cmp(&b.0))
            .then(a.2.total_cmp(&b.2))
    });
    let card = engine.scorecard();
    assert!(card.is_final);
    let items = card
        .sections
        .iter()
        .flat_map(|s| &s.items)
        .map(|i| {
            (
                i.rule_id.to_string(),
                i.status.name().to_owned(),
                i.t_s,
                i.evidence.clone(),
            )
        })
        .collect();
    let verdict = Verdict {
        alerts,
        items,
        score: card.score,
    };
    (verdict, started.elapsed())
}

/// `hold_call` with `extra_s` of silence in the middle of its hold (which
/// starts at 14.4 s): a long hold with no agent speech, past the 60 s
/// check-in deadline. Its events file is written beside it, in `dir`.
fn long_hold(dir: &Path, extra_s: f64) -> Case {
    let wav = fixture("calls/hold_call.wav");
    let mut recording = audio::read_wav(&wav).unwrap();
    let at = (16.0 * recording.sample_rate as f64) as usize;
    let pad = (extra_s * recording.sample_rate as f64) as usize;
    for (_, samples) in &mut recording.channels {
        samples.splice(at..at, std::iter::repeat_n(0.0, pad));
    }
    let events = dir.join("long_hold_call.events.jsonl");
    let unhold = 18.0 + extra_s;
    std::fs::write(
        &events,
        format!("{{\"t_s\":14.4,\"event\":\"hold\"}}\n{{\"t_s\":{unhold},\"event\":\"unhold\"}}\n"),
    )
    .unwrap();
    Case {
        name: "long_hold_call".into(),
        recording,
        controls: sidecar::load(&events).unwrap(),
    }
}

#[test]
fn fast_and_real_time_replays_reach_the_same_verdicts() {
    let dir = fixture("calls");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".wav").map(str::to_owned))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no scenario calls in {}", dir.display());
    let mut cases: Vec<Case> = names
        .into_iter()
        .map(|name| {
            let wav = dir.join(format!("{name}.wav"));
            Case {
                controls: sidecar::beside(&wav).unwrap(),
                recording: audio::read_wav(&wav).unwrap(),
                name,
            }
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    cases.push(long_hold(tmp.path(), 70.0));

    let rules = Arc::new(Rulebook::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml")).unwrap());
    let pool = Arc::new(Pool::new(&Model::load(&q8_model()).unwrap(), PoolConfig::default()).unwrap());

    // The real-time replays all at once, the fast ones one after another
    // beside them: all on one pool, which sheds partials when busy.
    let started = Instant::now();
    let (fast, live) = std::thread::scope(|s| {
        let fast = s.spawn(|| {
            let all: Vec<_> = cases.iter().map(|c| replay(c, Pace::Fast, &pool, &rules)).collect();
            (all, started.elapsed())
        });
        let live: Vec<_> = cases
            .iter()
            .map(|c| s.spawn(|| replay(c, Pace::RealTime, &pool, &rules)))
            .collect();
        let live: Vec<(Verdict, Duration)> = live.into_iter().map(|h| h.join().unwrap()).collect();
        (fast.join().unwrap(), live)
    });
    let (fast, fast_wall) = fast;
    let wall = started.elapsed();

    let longest = cases.iter().map(|c| c.recording.duration_s()).fold(0.0, f64::max);
    eprintln!(
        "{} calls, each fast and in real time: {:.1} s in all (fast ones {:.1} s; longest call {longest:.1} s)",
        cases.len(),
        wall.as_secs_f64(),
        fast_wall.as_secs_f64()
    );
    let mut failures = Vec::new();
    for ((case, (f, f_wall)), (l, l_wall)) in cases.iter().zip(&fast).zip(&live) {
        eprintln!(
            "  {:<22} audio {:5.1} s  fast {:5.1} s  real time {:5.1} s  alerts {}",
            case.name,
            case.recording.duration_s(),
            f_wall.as_secs_f64(),
            l_wall.as_secs_f64(),
            f.alerts.len()
        );
        if f != l {
            failures.push(format!("{}:\n{}", case.name, f.diff(l).join("\n")));
        }
    }
    assert!(failures.is_empty(), "verdicts differ:\n{}", failures.join("\n"));

    // The case from the held-out call: a 73.6 s hold with no agent speech
    // fails the check-in due 60 s after the hold began, in both replays.
    let long = &fast.last().expect("the long-hold case").0;
    assert!(
        long.alerts
            .iter()
            .any(|a| a.0 == "hold.check_in" && (a.1, a.2) == (14.4, 74.4)),
        "{:?}",
        long.alerts
    );
}
