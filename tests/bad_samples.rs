//! Recordings whose samples are not all audio — a burst of NaN, values in the
//! millions — through the real CLI and the real model: the call survives
//! with the words of its clean parts and says what it repaired; a file that
//! is mostly not numbers is refused with one line naming it.

mod common;

use callwatch_core::audio;
use callwatch_core::text::word_error_rate;
use common::{callwatch, fixture, Reference};

/// NaN samples: 0.05–0.25 s, before the first word (at 0.30 s).
const NAN_FROM_S: f64 = 0.05;
const NAN_TO_S: f64 = 0.25;
/// Single-sample spikes of ±1e6, after the last word (10.2 s): clipped to
/// full scale they are clicks, which would cost words inside speech.
const SPIKES: usize = 40;
const SPIKES_FROM_S: f64 = 10.4;

/// jfk.wav as a float WAV at `rate` (linear interpolation, another path than
/// the reader's resampler), with a NaN burst and ±1e6 spikes. Returns the
/// path and the (NaN, spike) counts written.
fn damaged_jfk(dir: &std::path::Path, rate: u32) -> (std::path::PathBuf, u64, u64) {
    let original = audio::read_wav(&fixture("jfk.wav")).unwrap();
    let src = &original.channels[0].1;
    let path = dir.join(format!("jfk_float_{rate}.wav"));
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    let n = src.len() * rate as usize / 16_000;
    let nan = (NAN_FROM_S * rate as f64) as usize..(NAN_TO_S * rate as f64) as usize;
    let first_spike = (SPIKES_FROM_S * rate as f64) as usize;
    let spike_every = (n - first_spike) / (SPIKES + 1);
    let (mut nans, mut spikes) = (0, 0);
    for i in 0..n {
        let x = i as f64 * 16_000.0 / rate as f64;
        let (k, f) = (x as usize, (x - x.floor()) as f32);
        let mut s = src[k] * (1.0 - f) + src.get(k + 1).copied().unwrap_or(0.0) * f;
        if nan.contains(&i) {
            s = f32::NAN;
            nans += 1;
        } else if i > first_spike && (i - first_spike) % spike_every == 0 && spikes < SPIKES as u64 {
            s = if spikes % 2 == 0 { 1e6 } else { -1e6 };
            spikes += 1;
        }
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    (path, nans, spikes)
}

fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(out.get_output().stderr.clone()).unwrap()
}

fn transcribed_text(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(out.get_output().stdout.clone())
        .unwrap()
        .lines()
        .map(|l| l.split_once("] ").unwrap().1.to_owned() + " ")
        .collect()
}

/// On main before this change: exit 101, a rubato panic and a backtrace.
#[test]
fn float_wav_with_nan_burst_and_huge_values_is_transcribed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = damaged_jfk(dir.path(), 48_000);
    let out = callwatch().arg("transcribe").arg(&path).assert().success();
    assert!(!stderr_of(&out).contains("panicked"), "{}", stderr_of(&out));
    let text = transcribed_text(&out);
    let wer = word_error_rate(&Reference::load("jfk.wav").text_of("mono"), &text);
    assert!(wer <= 0.15, "WER {wer:.3}: {text}");
}

/// The live pipeline on the same file: the words, and the summary counts
/// exactly what was repaired.
#[test]
fn monitor_counts_repaired_samples_in_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (path, nans, spikes) = damaged_jfk(dir.path(), 48_000);
    let out = callwatch()
        .args(["monitor", "--fast", "--json"])
        .arg(&path)
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Finals come as their decodes finish, not in call order.
    let mut finals: Vec<_> = lines
        .iter()
        .filter(|v| v["type"] == "transcript" && v["final"] == true)
        .collect();
    finals.sort_by(|a, b| {
        a["start_s"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["start_s"].as_f64().unwrap())
    });
    let text: String = finals
        .iter()
        .map(|v| v["text"].as_str().unwrap().to_owned() + " ")
        .collect();
    let wer = word_error_rate(&Reference::load("jfk.wav").text_of("mono"), &text);
    assert!(wer <= 0.15, "WER {wer:.3}: {text}");
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["samples_silenced"], nans, "{summary}");
    assert_eq!(summary["samples_clipped"], spikes, "{summary}");
    assert!(nans > 9000 && spikes == SPIKES as u64);
}

/// At 16 kHz nothing resamples, so NaN used to reach Whisper as is and come
/// out as "!!!!!!!!".
#[test]
fn sixteen_khz_float_with_nan_gives_words_not_bangs() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = damaged_jfk(dir.path(), 16_000);
    let out = callwatch().arg("transcribe").arg(&path).assert().success();
    let text = transcribed_text(&out);
    assert!(!text.contains("!!!"), "{text}");
    let wer = word_error_rate(&Reference::load("jfk.wav").text_of("mono"), &text);
    assert!(wer <= 0.15, "WER {wer:.3}: {text}");
}

/// A file that is mostly NaN is not audio: refused with one line naming it,
/// by `transcribe` and `monitor` alike.
#[test]
fn mostly_nan_recording_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mostly_nan.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..48_000 {
        w.write_sample(if i % 4 == 0 { 0.1 } else { f32::NAN }).unwrap();
    }
    w.finalize().unwrap();
    for command in [&["transcribe"][..], &["monitor", "--fast"][..]] {
        let out = callwatch().args(command).arg(&path).assert().failure().code(1);
        let stderr = stderr_of(&out);
        assert_eq!(stderr.lines().count(), 1, "{command:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains("mostly_nan.wav"), "{stderr}");
        assert!(stderr.contains("36000 of 48000 samples are not numbers"), "{stderr}");
    }
}
