//! `callwatch capture` end to end through cpal's real ALSA backend, on a
//! machine without a sound card: devices of alsa-lib's `file` plugin fed in
//! real time (see `harness.rs`), the real model, the real CLI. Checked as
//! replayed calls are: each party's words and their call times, the alerts
//! and the scorecard; and call time against the wall clock.
#![cfg(target_os = "linux")]

#[path = "../common/mod.rs"]
mod common;
mod harness;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callwatch_core::audio::{self, Channel};
use callwatch_core::text::word_error_rate;
use common::{fixture, q8_model, Reference};
use harness::{at_rate, device, home, Feed, Mic, CHANNELS};
use serde_json::Value;

/// Silence fed after the clip, so its last utterance ends (0.5 s hangover)
/// before the call is stopped.
const TAIL_S: f64 = 1.5;

/// `callwatch capture` with the test's ALSA configuration.
fn capture(args: &[&str]) -> Child {
    capture_in(&home(), args)
}

fn capture_in(home: &std::path::Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .arg("capture")
        .args(args)
        .args(["--json", "--model"])
        .arg(q8_model())
        .env("HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the child, killing it past `limit`; returns (status, stdout, stderr).
fn finish(mut child: Child, limit: Duration) -> (std::process::ExitStatus, String, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("capture did not end within {limit:?}; stderr: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status, out, err)
}

/// When the capture began reading every device (the earliest); if it never
/// does, its stderr says why.
fn started(mics: &[Mic], child: &mut Option<Child>) -> Instant {
    let starts: Option<Vec<Instant>> = mics.iter().map(|m| m.started(Duration::from_secs(30))).collect();
    match starts {
        Some(all) => all.into_iter().min().unwrap(),
        None => {
            let mut child = child.take().unwrap();
            let _ = child.kill();
            let (_, _, err) = finish(child, Duration::from_secs(10));
            panic!("the capture never read its devices; stderr: {err}");
        }
    }
}

fn interrupt(child: &Child) {
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}

/// The first `clip_s` seconds of a fixture call, per party, at the
/// recording's rate.
struct Clip {
    rate: u32,
    agent: Vec<f32>,
    customer: Vec<f32>,
}

fn clip(wav: &str, clip_s: f64) -> Clip {
    let rec = audio::read_wav(&fixture(wav)).unwrap();
    let n = (clip_s * f64::from(rec.sample_rate)) as usize;
    let party = |c: Channel| {
        let s = &rec.channels.iter().find(|(ch, _)| *ch == c).unwrap().1;
        s[..n.min(s.len())].to_vec()
    };
    Clip {
        rate: rec.sample_rate,
        agent: party(Channel::Agent),
        customer: party(Channel::Customer),
    }
}

fn frames(left: &[f32], right: &[f32]) -> Vec<[f32; CHANNELS]> {
    left.iter().zip(right).map(|(a, b)| [*a, *b]).collect()
}

/// Each party's finals against the reference's utterances that end inside
/// the clip: the words (WER at most `max_wer`) and one final per utterance,
/// starting within 300 ms of it in call time.
fn check_words(out: &[Value], wav: &str, clip_s: f64, max_wer: f64, case: &str) {
    let reference = Reference::load(wav);
    for channel in ["agent", "customer"] {
        let want: Vec<_> = reference
            .utterances
            .iter()
            .filter(|u| u.channel == channel && u.end_s <= clip_s)
            .collect();
        let mut got: Vec<&Value> = of_type(out, "transcript")
            .into_iter()
            .filter(|t| t["final"] == true && t["channel"] == channel)
            .collect();
        got.sort_by(|a, b| {
            a["start_s"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["start_s"].as_f64().unwrap())
        });
        let text = got
            .iter()
            .map(|t| t["text"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        let want_text = want.iter().map(|u| u.text.as_str()).collect::<Vec<_>>().join(" ");
        let wer = word_error_rate(&want_text, &text);
        assert!(
            wer <= max_wer,
            "{case} {channel}: WER {wer:.2}: {text:?} vs {want_text:?}"
        );
        assert_eq!(got.len(), want.len(), "{case} {channel}: {got:#?}");
        for (g, w) in got.iter().zip(&want) {
            let start = g["start_s"].as_f64().unwrap();
            // Call time zero is one period (a few ms) before the clip's first frame.
            assert!(
                (start - w.start_s).abs() <= 0.3,
                "{case} {channel}: starts at {start}, reference {}",
                w.start_s
            );
        }
    }
}

/// Runs one capture of a clip: feeds, waits for the clip and its tail,
/// stops the call with Ctrl-C, checks exit, words and call time.
fn capture_clip(case: &str, args: &[&str], feeds: Vec<Feed>, wav: &str, clip_s: f64, max_wer: f64) -> Vec<Value> {
    let mics: Vec<Mic> = feeds.into_iter().map(Mic::start).collect();
    let mut child = Some(capture(args));
    let t0 = started(&mics, &mut child);
    let child = child.unwrap();
    for m in &mics {
        m.fed(Duration::from_secs(60));
    }
    std::thread::sleep(Duration::from_secs_f64(TAIL_S));
    interrupt(&child);
    let wall_s = t0.elapsed().as_secs_f64();
    let (status, out, err) = finish(child, Duration::from_secs(60));
    drop(mics);
    assert!(status.success(), "{case}: {status}; stderr: {err}");
    assert!(!err.contains("error"), "{case}: {err}");
    let out = lines(&out);
    let summary = of_type(&out, "summary")[0];
    let audio_s = summary["audio_s"].as_f64().unwrap();
    // Call time keeps to the wall clock: within 1 %.
    assert!(
        (audio_s - wall_s).abs() <= 0.01 * wall_s,
        "{case}: {audio_s} s of call in {wall_s:.3} s of wall time"
    );
    assert_eq!(summary["overrun_samples"], 0, "{case}: {summary}");
    assert_eq!(summary["xruns"], 0, "{case}: {summary}");
    check_words(&out, wav, clip_s, max_wer, case);
    out
}

/// WER allowed on the short clips: replayed from the WAV the clip reads
/// word for word; through an 8 kHz line tiny.en may lose one word of a
/// sentence ("support desk" heard as "support me").
const SHORT_WER: f64 = 0.25;
/// On the whole call: replayed from the WAV, tiny.en already writes "four
/// four one nine" as "441 9" (0.2 on the customer's channel).
const WHOLE_WER: f64 = 0.3;

const SHORT: &str = "calls/opening_closing_call.wav";
/// The greeting and the customer's name and problem (ends at 7.13 s).
const SHORT_S: f64 = 7.5;

fn stereo_feed(name: &str, rate: u32) -> Feed {
    let c = clip(SHORT, SHORT_S);
    Feed {
        device: device(name),
        rate,
        frames: frames(&at_rate(&c.agent, c.rate, rate), &at_rate(&c.customer, c.rate, rate)),
        vanish_after_s: None,
        freeze_after_s: None,
    }
}

/// A one-party device: the party on channel 0 (what callwatch takes from a
/// device named for one party), silence on channel 1.
fn mono_feed(name: &str, samples: &[f32], from: u32, rate: u32) -> Feed {
    let s = at_rate(samples, from, rate);
    Feed {
        device: device(name),
        rate,
        frames: frames(&s, &vec![0.0; s.len()]),
        vanish_after_s: None,
        freeze_after_s: None,
    }
}

/// `callwatch devices` shows each test device by its description, with the
/// configuration cpal would pick by itself (stereo, 48 kHz).
#[test]
fn devices_lists_the_file_plugin_devices() {
    let out = Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .arg("devices")
        .env("HOME", home())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    for d in harness::DEVICES.iter().filter(|d| d.name != harness::LOST) {
        assert!(
            stdout.contains(&format!("{} (2 ch, 48000 Hz)", d.description)),
            "{} missing: {stdout}",
            d.description
        );
    }
}

/// One stereo device (agent left, customer right) at its default format
/// (f32) and rate (48 kHz): the configuration cpal picks by itself.
#[test]
fn stereo_f32_device_at_its_default_rate() {
    capture_clip(
        "stereo f32 48k",
        &["--agent", "cw_stereo_f32"],
        vec![stereo_feed("cw_stereo_f32", 48_000)],
        SHORT,
        SHORT_S,
        SHORT_WER,
    );
}

/// A stereo device that only offers integer samples (cpal takes i32) at 44.1 kHz.
#[test]
fn stereo_i32_device_at_44k1() {
    capture_clip(
        "stereo i32 44.1k",
        &["--agent", "cw_stereo_i32", "--rate", "44100"],
        vec![stereo_feed("cw_stereo_i32", 44_100)],
        SHORT,
        SHORT_S,
        SHORT_WER,
    );
}

/// The 8 kHz call recorded from a telephone line: the agent's greeting and
/// the customer's problem (ends at 9.46 s).
const LINE: &str = "synthetic_call_stereo_8k.wav";
const LINE_S: f64 = 9.8;

/// Agent and customer on two devices of different formats, at 8 kHz (the
/// telephone-line recording, as it was recorded).
#[test]
fn two_devices_of_different_formats_at_8k() {
    let c = clip(LINE, LINE_S);
    capture_clip(
        "two devices 8k",
        &[
            "--agent",
            "cw_agent_f32",
            "--customer",
            "cw_customer_i32",
            "--rate",
            "8000",
        ],
        vec![
            mono_feed("cw_agent_f32", &c.agent, c.rate, 8_000),
            mono_feed("cw_customer_i32", &c.customer, c.rate, 8_000),
        ],
        LINE,
        LINE_S,
        SHORT_WER,
    );
}

/// Two devices with no rate asked for: callwatch picks 16 kHz.
#[test]
fn two_devices_at_the_chosen_16k() {
    let c = clip(SHORT, SHORT_S);
    capture_clip(
        "two devices 16k",
        &["--agent", "cw_agent_b", "--customer", "cw_customer_b"],
        vec![
            mono_feed("cw_agent_b", &c.agent, c.rate, 16_000),
            mono_feed("cw_customer_b", &c.customer, c.rate, 16_000),
        ],
        SHORT,
        SHORT_S,
        SHORT_WER,
    );
}

#[derive(serde::Deserialize)]
struct Expected {
    alerts: Vec<ExpectedAlert>,
    scorecard: std::collections::BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct ExpectedAlert {
    rule_id: String,
    start_s: f64,
}

/// A whole scenario call live from two devices: the alerts and scorecard
/// that replaying it gives (`tests/rules.rs`), and its words.
#[test]
fn whole_call_from_two_devices_raises_its_alerts() {
    let wav = "calls/opening_closing_call.wav";
    let c = clip(wav, 60.0);
    let length_s = c.agent.len() as f64 / f64::from(c.rate);
    let out = capture_clip(
        "whole call",
        &["--agent", "cw_full_agent", "--customer", "cw_full_customer"],
        vec![
            mono_feed("cw_full_agent", &c.agent, c.rate, 16_000),
            mono_feed("cw_full_customer", &c.customer, c.rate, 16_000),
        ],
        wav,
        length_s,
        WHOLE_WER,
    );
    let expected: Expected =
        serde_json::from_str(&std::fs::read_to_string(fixture("calls/opening_closing_call.expected.json")).unwrap())
            .unwrap();
    let retracted: Vec<&Value> = of_type(&out, "retract").iter().map(|r| &r["id"]).collect();
    let mut got: Vec<(String, f64)> = of_type(&out, "alert")
        .into_iter()
        .filter(|a| !retracted.contains(&&a["id"]))
        .map(|a| {
            (
                a["rule_id"].as_str().unwrap().to_owned(),
                a["start_s"].as_f64().unwrap(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut want: Vec<(String, f64)> = expected.alerts.iter().map(|a| (a.rule_id.clone(), a.start_s)).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    // The closing alerts are judged at the end of the call, which here is
    // when it was stopped (the tail of silence later than the recording's end).
    let same = got.len() == want.len()
        && got
            .iter()
            .zip(&want)
            .all(|(g, w)| g.0 == w.0 && (g.1 - w.1).abs() <= 1.0 + TAIL_S);
    assert!(same, "alerts {got:?}, expected {want:?}");
    let card = of_type(&out, "scorecard")[0];
    for item in card["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["items"].as_array().unwrap())
    {
        let rule = item["rule_id"].as_str().unwrap();
        assert_eq!(
            expected.scorecard.get(rule).map(String::as_str),
            item["status"].as_str(),
            "scorecard {rule}"
        );
    }
}

/// The device goes away mid-call (its input ends: the writer closes the
/// FIFO and the file plugin starts returning stale periods at full speed).
/// The call ends with one error line naming the device, exit 1, after the
/// words captured before and the summary; call time does not run away.
#[test]
fn a_device_that_goes_away_ends_the_call_naming_it() {
    let mut feed = stereo_feed(harness::LOST, 48_000);
    feed.vanish_after_s = Some(SHORT_S + TAIL_S);
    let mic = Mic::start(feed);
    let mut child = Some(capture_in(&harness::lost_home(), &["--agent", harness::LOST]));
    let t0 = started(std::slice::from_ref(&mic), &mut child);
    let child = child.unwrap();
    mic.fed(Duration::from_secs(60)); // the clip
    let gone = mic.fed(Duration::from_secs(60)); // the FIFO closed
    let (status, out, err) = finish(child, Duration::from_secs(30));
    let ended = t0.elapsed().as_secs_f64();
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("Test device that goes away"), "{err}");
    assert!(errors[0].contains("faster than real time"), "{err}");
    let out = lines(&out);
    check_words(&out, SHORT, SHORT_S, SHORT_WER, "device lost");
    let audio_s = of_type(&out, "summary")[0]["audio_s"].as_f64().unwrap();
    let fed_s = (gone - t0).as_secs_f64();
    // At most the pacing guard's allowance of stale audio past the loss
    // (250 ms + 1 % of the time elapsed), and a period or two.
    let allowed = 0.25 + 0.01 * fed_s + 0.05;
    assert!(
        audio_s >= fed_s - 0.1 && audio_s <= fed_s + allowed,
        "{audio_s} s of call, fed {fed_s:.3} s"
    );
    assert!(
        ended - fed_s < 5.0,
        "the call took {:.1} s to end after the loss",
        ended - fed_s
    );
}

/// The device hangs mid-call: its input stays open but nothing more comes,
/// so the backend's read never returns and its thread cannot be joined.
/// The call still ends, 2 s later, naming the device (exit 1), with the
/// words and the summary of what came before.
#[test]
fn a_device_that_falls_silent_ends_the_call_naming_it() {
    let mut feed = stereo_feed("cw_frozen", 48_000);
    feed.freeze_after_s = Some(SHORT_S + TAIL_S);
    let mic = Mic::start(feed);
    let mut child = Some(capture(&["--agent", "cw_frozen"]));
    let t0 = started(std::slice::from_ref(&mic), &mut child);
    let child = child.unwrap();
    mic.fed(Duration::from_secs(60)); // the clip
    let frozen = mic.fed(Duration::from_secs(60)); // nothing more
    let (status, out, err) = finish(child, Duration::from_secs(30));
    let ended_after_s = frozen.elapsed().as_secs_f64();
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("Test device that falls silent"), "{err}");
    assert!(errors[0].contains("stopped delivering audio"), "{err}");
    let out = lines(&out);
    check_words(&out, SHORT, SHORT_S, SHORT_WER, "device frozen");
    let audio_s = of_type(&out, "summary")[0]["audio_s"].as_f64().unwrap();
    let fed_s = (frozen - t0).as_secs_f64();
    assert!((audio_s - fed_s).abs() <= 0.1, "{audio_s} s of call, fed {fed_s:.3} s");
    // The 2 s stall, the 1 s allowed for the stream to stop, the last decode.
    assert!(
        ended_after_s < 8.0,
        "the call took {ended_after_s:.1} s to end after the device hung"
    );
}
