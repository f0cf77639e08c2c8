//! Fuzzing the way in: any WAV header and any sample values through the
//! reader, the resampler and the segmenter. Every outcome is an error or a
//! result, never a panic; and whatever comes out is finite and in [-1, 1].
//! FUZZ_CASES=100000 for a longer run than the test suite's.

use callwatch_core::audio::{read_wav, Resampler};
use callwatch_core::vad::{Segmenter, VadConfig};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(48)
}

/// Any f32, with the awkward ones well represented.
fn sample() -> impl Strategy<Value = f32> {
    prop_oneof![
        -1.0f32..1.0,
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(1e6f32),
        Just(-1e30f32),
        any::<f32>(),
    ]
}

fn rate() -> impl Strategy<Value = u32> {
    prop_oneof![
        prop::sample::select(vec![8_000u32, 16_000, 22_050, 44_100, 48_000]),
        any::<u32>(),
    ]
}

/// A WAV file whose every header field may be anything (format tag,
/// channels, rate, block size, bits, data length), with any body.
fn wav_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![1u16, 3, 0xFFFE, 0, 2]),
        0u16..5,
        rate(),
        prop::sample::select(vec![0u16, 8, 12, 16, 24, 32, 64, 65, 255]),
        any::<bool>(),
        any::<Option<u32>>(),
        prop::collection::vec(any::<u8>(), 0..2000),
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    )
        .prop_map(|(format, channels, rate, bits, consistent, data_len, body, flips)| {
            let align = if consistent { channels * bits.div_ceil(8) } else { bits };
            let mut b = Vec::new();
            b.extend(b"RIFF");
            b.extend((36 + body.len() as u32).to_le_bytes());
            b.extend(b"WAVEfmt ");
            b.extend(16u32.to_le_bytes());
            b.extend(format.to_le_bytes());
            b.extend(channels.to_le_bytes());
            b.extend(rate.to_le_bytes());
            b.extend(rate.wrapping_mul(u32::from(align)).to_le_bytes());
            b.extend(align.to_le_bytes());
            b.extend(bits.to_le_bytes());
            b.extend(b"data");
            b.extend(data_len.unwrap_or(body.len() as u32).to_le_bytes());
            b.extend(body);
            for (at, byte) in flips {
                let i = at % b.len();
                b[i] = byte;
            }
            b
        })
}

/// A float WAV at a common rate with arbitrary sample values.
fn float_wav(rate: u32, channels: u16, samples: &[f32]) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for &s in &samples[..samples.len() / channels as usize * channels as usize] {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    cursor.into_inner()
}

/// Reader → resampler → segmenter on one file; panics are what we look for.
fn through_the_front_end(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.wav");
    std::fs::write(&path, bytes).unwrap();
    let Ok(rec) = read_wav(&path) else { return };
    for (_, samples) in &rec.channels {
        assert!(
            samples.iter().all(|s| (-1.0..=1.0).contains(s)),
            "read_wav let a bad value through"
        );
    }
    let Ok(at_16k) = rec.to_16k() else { return };
    for (_, samples) in &at_16k.channels {
        assert!(samples.iter().all(|s| s.is_finite()));
        let mut seg = Segmenter::new(VadConfig::default());
        let mut events = Vec::new();
        seg.push(samples, &mut events);
        seg.finish(&mut events);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn any_wav_header_is_an_error_or_audio(bytes in wav_bytes()) {
        through_the_front_end(&bytes);
    }

    #[test]
    fn any_sample_values_pass_the_front_end(
        rate in prop::sample::select(vec![8_000u32, 16_000, 44_100, 48_000]),
        channels in 1u16..3,
        samples in prop::collection::vec(sample(), 1..6_000),
    ) {
        through_the_front_end(&float_wav(rate, channels, &samples));
    }

    /// The resampler guards itself too: audio that skipped the entry check
    /// (a hand-built `Recording`) must not reach the FFT as NaN.
    #[test]
    fn the_resampler_takes_any_value(
        rate in prop::sample::select(vec![8_000u32, 16_000, 22_050, 48_000]),
        samples in prop::collection::vec(sample(), 0..6_000),
    ) {
        let mut rs = Resampler::new(rate).unwrap();
        let mut out = Vec::new();
        for piece in samples.chunks(777) {
            rs.push(piece, &mut out);
        }
        rs.finish(&mut out);
        prop_assert!(out.iter().all(|s| s.is_finite()));
    }
}
