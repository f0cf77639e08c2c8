//! `callwatch transcribe` on real recordings with the real model.

mod common;

use callwatch_asr::transcribe::transcribe_recording;
use callwatch_asr::transcribe::Model;
use callwatch_core::audio;
use callwatch_core::text::word_error_rate;
use callwatch_core::transcript::TranscriptLine;
use callwatch_core::vad::VadConfig;
use common::{callwatch, fixture, q8_model, Reference};

fn transcribe(wav: &str) -> Vec<TranscriptLine> {
    let model = Model::load(&q8_model()).unwrap();
    let rec = audio::read_wav(&fixture(wav)).unwrap();
    transcribe_recording(&model, &rec, 2, VadConfig::default()).unwrap()
}

fn text_of(lines: &[TranscriptLine], channel: &str) -> String {
    lines
        .iter()
        .filter(|l| l.channel.name() == channel)
        .map(|l| l.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn jfk_matches_its_reference() {
    let lines = transcribe("jfk.wav");
    let wer = word_error_rate(&Reference::load("jfk.wav").text_of("mono"), &text_of(&lines, "mono"));
    assert!(wer <= 0.05, "WER {wer:.3}: {lines:?}");
}

/// Two real voices speaking at the same time, one per channel.
#[test]
fn overlapping_real_speakers_are_both_transcribed() {
    let lines = transcribe("librispeech_stereo_2spk.wav");
    let reference = Reference::load("librispeech_stereo_2spk.wav");
    for channel in ["agent", "customer"] {
        let wer = word_error_rate(&reference.text_of(channel), &text_of(&lines, channel));
        assert!(wer <= 0.05, "{channel}: WER {wer:.3}: {lines:?}");
    }
}

/// Synthetic two-party calls: both parties, time-ordered, WER ≤ 15 %.
#[test]
fn stereo_calls_give_a_time_ordered_conversation() {
    for wav in ["calls/basic_call.wav", "calls/hold_call.wav"] {
        let lines = transcribe(wav);
        let reference = Reference::load(wav);
        for channel in ["agent", "customer"] {
            let wer = word_error_rate(&reference.text_of(channel), &text_of(&lines, channel));
            assert!(wer <= 0.15, "{wav} {channel}: WER {wer:.3}: {lines:#?}");
        }
        assert!(lines.windows(2).all(|w| w[0].start_s <= w[1].start_s), "{lines:#?}");
        // Each reference utterance has a line starting within 300 ms of it.
        for u in &reference.utterances {
            assert!(
                lines
                    .iter()
                    .any(|l| l.channel.name() == u.channel && (l.start_s - u.start_s).abs() <= 0.3),
                "{wav}: no {} line near {:.2} s: {lines:#?}",
                u.channel,
                u.start_s
            );
        }
    }
}

/// Telephone-band audio (8 kHz) goes through the resampler. Only the customer
/// is held to 15 %: tiny.en mishears this agent voice at 8 kHz even from
/// faster-whisper ("Acme" → "at me"), which is the model, not the path.
#[test]
fn eight_khz_call_is_resampled_and_transcribed() {
    let lines = transcribe("synthetic_call_stereo_8k.wav");
    let reference = Reference::load("synthetic_call_stereo_8k.wav");
    let wer = word_error_rate(&reference.text_of("customer"), &text_of(&lines, "customer"));
    assert!(wer <= 0.15, "customer WER {wer:.3}: {lines:#?}");
    assert!(
        text_of(&lines, "agent")
            .to_lowercase()
            .contains("thank you for calling"),
        "{lines:#?}"
    );
}

#[test]
fn cli_prints_conversation_and_json_lines() {
    let out = callwatch()
        .arg("transcribe")
        .arg(fixture("calls/basic_call.wav"))
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("[00:00.3 agent] Thank you for calling"), "{text}");
    assert!(text.contains(" customer] "), "{text}");

    let out = callwatch()
        .arg("transcribe")
        .arg("--json")
        .arg(fixture("jfk.wav"))
        .assert()
        .success();
    for line in String::from_utf8(out.get_output().stdout.clone()).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["type"], "transcript");
        assert_eq!(v["channel"], "mono");
        assert_eq!(v["final"], true);
        assert!(v["start_s"].as_f64().unwrap() < v["end_s"].as_f64().unwrap());
        assert!(!v["text"].as_str().unwrap().is_empty());
    }
}

/// 24-bit PCM at 44.1 kHz decodes to the same words as the 16-bit original.
#[test]
fn twenty_four_bit_audio_at_another_rate_is_transcribed() {
    let original = audio::read_wav(&fixture("jfk.wav")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jfk24.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 44_100,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    // Upsample by linear interpolation: a different path than the reader's resampler.
    let src = &original.channels[0].1;
    let n = src.len() * 44_100 / 16_000;
    for i in 0..n {
        let x = i as f64 * 16_000.0 / 44_100.0;
        let (k, f) = (x as usize, (x - x.floor()) as f32);
        let s = src[k] * (1.0 - f) + src.get(k + 1).copied().unwrap_or(0.0) * f;
        w.write_sample((s * 8_388_607.0) as i32).unwrap();
    }
    w.finalize().unwrap();

    let out = callwatch().arg("transcribe").arg(&path).assert().success();
    let text: String = String::from_utf8(out.get_output().stdout.clone())
        .unwrap()
        .lines()
        .map(|l| l.split_once("] ").unwrap().1.to_owned() + " ")
        .collect();
    let wer = word_error_rate(&Reference::load("jfk.wav").text_of("mono"), &text);
    assert!(wer <= 0.1, "WER {wer:.3}: {text}");
}

/// Every bad input: a one-line `error:` naming the problem, non-zero exit, no panic.
#[test]
fn bad_inputs_get_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let wav = |name: &str, channels: u16, frames: usize| {
        let p = dir.path().join(name);
        let spec = hound::WavSpec {
            channels,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        for _ in 0..frames * channels as usize {
            w.write_sample(0i16).unwrap();
        }
        w.finalize().unwrap();
        p
    };
    let good_model = std::fs::read(q8_model()).unwrap();
    let truncated = write("truncated.bin", &good_model[..good_model.len() / 2]);
    let mut flipped = good_model[..4096].to_vec();
    flipped[0] ^= 0xff;
    let corrupt = write("corrupt.bin", &flipped);
    let jfk = fixture("jfk.wav");

    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (vec![dir.path().join("nope.wav").into()], "no such file"),
        (
            vec![write("text.wav", b"RIFF but not really").into()],
            "not a readable WAV file",
        ),
        (vec![wav("empty.wav", 1, 0).into()], "holds no samples"),
        (vec![wav("three.wav", 3, 100).into()], "3 channels"),
        (
            vec![jfk.clone().into(), "--model".into(), dir.path().join("none.bin").into()],
            "callwatch model fetch",
        ),
        (
            vec![jfk.clone().into(), "--model".into(), truncated.into()],
            "truncated or corrupt",
        ),
        (vec![jfk.into(), "--model".into(), corrupt.into()], "bad magic"),
    ];
    for (args, expected) in cases {
        let out = callwatch().arg("transcribe").args(&args).assert().failure().code(1);
        let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
