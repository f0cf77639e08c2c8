//! 8 kHz G.711 mu-law, as Twilio sends it: a band-limited downsampler and
//! the encoder.

use anyhow::{bail, Result};

/// Taps per unit of the decimation factor, each side of the centre.
const HALF_TAPS_PER_FACTOR: usize = 16;

/// `samples` at `from` Hz as `to` Hz, for a whole-number ratio: a
/// windowed-sinc low-pass below the new Nyquist, then every n-th sample.
pub fn downsample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == to {
        return Ok(samples.to_vec());
    }
    if from < to || from % to != 0 {
        bail!("a recording at {from} Hz: Twilio's audio is {to} Hz; use a multiple of {to} Hz");
    }
    let factor = (from / to) as usize;
    let half = HALF_TAPS_PER_FACTOR * factor;
    // Cut-off at 0.9 of the new Nyquist, as a fraction of the old rate.
    let cutoff = 0.45 / factor as f64;
    let taps: Vec<f32> = (0..=2 * half)
        .map(|i| {
            let n = i as f64 - half as f64;
            let sinc = if n == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * std::f64::consts::PI * cutoff * n).sin() / (std::f64::consts::PI * n)
            };
            // Blackman window.
            let w = i as f64 / (2 * half) as f64;
            let window =
                0.42 - 0.5 * (2.0 * std::f64::consts::PI * w).cos() + 0.08 * (4.0 * std::f64::consts::PI * w).cos();
            (sinc * window) as f32
        })
        .collect();
    let out = (0..samples.len().div_ceil(factor))
        .map(|k| {
            let centre = k * factor;
            taps.iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    let at = (centre + i).checked_sub(half)?;
                    samples.get(at).map(|s| s * t)
                })
                .sum()
        })
        .collect();
    Ok(out)
}

/// G.711 mu-law compression of a sample in -1..1 (Sun's reference g711.c).
pub fn encode(sample: f32) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut s = (sample.clamp(-1.0, 1.0) * 32_767.0).round() as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use callwatch_core::capture::network::{decode, Encoding};

    #[test]
    fn encoding_round_trips_through_the_servers_decoder() {
        assert_eq!(encode(0.0), 0xFF);
        assert_eq!(encode(1.0), 0x80);
        assert_eq!(encode(-1.0), 0x00);
        for i in -100..=100 {
            let x = i as f32 / 100.0;
            let mut back = Vec::new();
            decode(Encoding::MuLaw, &[encode(x)], &mut back).unwrap();
            // Mu-law keeps about 3 % of the magnitude (and 0.002 near zero).
            assert!((back[0] - x).abs() <= 0.002 + 0.035 * x.abs(), "{x} -> {}", back[0]);
        }
    }

    #[test]
    fn downsampling_keeps_speech_and_removes_what_would_alias() {
        let tone = |hz: f64, rate: u32| -> Vec<f32> {
            (0..rate as usize)
                .map(|i| (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin() as f32 * 0.5)
                .collect()
        };
        let rms =
            |s: &[f32]| (s[400..s.len() - 400].iter().map(|x| x * x).sum::<f32>() / (s.len() - 800) as f32).sqrt();
        let speech = downsample(&tone(1_000.0, 16_000), 16_000, 8_000).unwrap();
        assert_eq!(speech.len(), 8_000);
        assert!((rms(&speech) - 0.5 / 2f32.sqrt()).abs() < 0.01, "{}", rms(&speech));
        // 6 kHz would fold to 2 kHz at 8 kHz: it must be gone.
        let above = downsample(&tone(6_000.0, 16_000), 16_000, 8_000).unwrap();
        assert!(rms(&above) < 0.005, "{}", rms(&above));
        assert!(downsample(&[0.0; 10], 11_025, 8_000).is_err());
    }
}
