//! Audio in: reading recordings, and bringing any sample rate to the 16 kHz
//! mono f32 that the voice detector and Whisper take.

use std::path::Path;

use anyhow::{Context, Result};
use rubato::{FftFixedIn, Resampler as _};

use crate::sanitize::{self, Repairs};

/// The rate everything after the front end runs at (Whisper's rate).
pub const SAMPLE_RATE: u32 = 16_000;

/// Which party a channel carries. Stereo calls put the agent on channel 0 and
/// the customer on channel 1; a mono recording is one mixed channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Agent,
    Customer,
    Mono,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Customer => "customer",
            Self::Mono => "mono",
        }
    }
}

/// A whole recording, one f32 vector per channel at `sample_rate`.
#[derive(Debug, Clone)]
pub struct Recording {
    pub sample_rate: u32,
    pub channels: Vec<(Channel, Vec<f32>)>,
    /// Samples [`read_wav`] had to repair (NaN/inf silenced, overs clipped).
    pub repairs: Repairs,
}

impl Recording {
    pub fn duration_s(&self) -> f64 {
        self.channels
            .first()
            .map_or(0.0, |(_, s)| s.len() as f64 / self.sample_rate as f64)
    }

    /// The same recording at 16 kHz.
    pub fn to_16k(&self) -> Result<Recording> {
        let channels = self
            .channels
            .iter()
            .map(|(role, samples)| {
                let mut rs = Resampler::new(self.sample_rate)?;
                let mut out = Vec::with_capacity(samples.len() * SAMPLE_RATE as usize / self.sample_rate as usize + 1);
                rs.push(samples, &mut out);
                rs.finish(&mut out);
                Ok((*role, out))
            })
            .collect::<Result<_>>()?;
        Ok(Recording {
            sample_rate: SAMPLE_RATE,
            channels,
            repairs: self.repairs,
        })
    }
}

/// Why a recording was refused. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{path}: no such file")]
    NotFound { path: String },
    #[error("{path}: not a readable WAV file ({reason})")]
    NotWav { path: String, reason: String },
    #[error("{path}: {channels} channels; callwatch takes mono or stereo (channel 0 = agent, 1 = customer)")]
    TooManyChannels { path: String, channels: u16 },
    #[error("{path}: the recording holds no samples")]
    Empty { path: String },
    #[error("{path}: {what}")]
    Format { path: String, what: String },
    #[error("{path}: {bad} of {total} samples are not numbers (NaN or infinite); is this really audio, in the format its header says?")]
    NotAudio { path: String, bad: u64, total: u64 },
}

/// Reads a PCM (8/16/24/32-bit) or float WAV, mono or stereo, at its own rate.
pub fn read_wav(path: &Path) -> Result<Recording, AudioError> {
    let shown = path.display().to_string();
    if !path.exists() {
        return Err(AudioError::NotFound { path: shown });
    }
    let not_wav = |e: hound::Error| AudioError::NotWav {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let reader = hound::WavReader::open(path).map_err(not_wav)?;
    let spec = reader.spec();
    if spec.channels > 2 {
        return Err(AudioError::TooManyChannels {
            path: shown,
            channels: spec.channels,
        });
    }
    if spec.sample_rate < 4000 || spec.sample_rate > 384_000 {
        return Err(AudioError::Format {
            path: shown,
            what: format!("sample rate {} Hz is out of range (4 kHz – 384 kHz)", spec.sample_rate),
        });
    }
    let mut interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(not_wav)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(not_wav)?
        }
    };
    if interleaved.is_empty() {
        return Err(AudioError::Empty { path: shown });
    }
    let mut repairs = Repairs::default();
    repairs.slice(&mut interleaved);
    let total = interleaved.len() as u64;
    // A few bad samples are a glitch worth surviving; mostly bad ones mean
    // the file is not the audio its header claims.
    if repairs.silenced * 2 > total {
        return Err(AudioError::NotAudio {
            path: shown,
            bad: repairs.silenced,
            total,
        });
    }
    if repairs.any() {
        metrics::counter!("callwatch_samples_silenced_total").increment(repairs.silenced);
        metrics::counter!("callwatch_samples_clipped_total").increment(repairs.clipped);
        tracing::warn!(file = %shown, silenced = repairs.silenced, clipped = repairs.clipped, "repaired bad samples");
    }
    let roles: &[Channel] = if spec.channels == 2 {
        &[Channel::Agent, Channel::Customer]
    } else {
        &[Channel::Mono]
    };
    let n = roles.len();
    let channels = roles
        .iter()
        .enumerate()
        .map(|(i, &role)| (role, interleaved.iter().skip(i).step_by(n).copied().collect()))
        .collect();
    Ok(Recording {
        sample_rate: spec.sample_rate,
        channels,
        repairs,
    })
}

/// Streaming conversion of one channel to 16 kHz.
///
/// Wraps rubato's FFT resampler (band-limited, so 44.1 kHz or 48 kHz input
/// does not alias into the speech band) and hides its block size and delay:
/// output sample `k` always corresponds to input time `k / 16000` s, so call
/// time stays exact.
pub struct Resampler {
    inner: Option<FftFixedIn<f32>>,
    rate: u32,
    pending: Vec<f32>,
    block: Vec<Vec<f32>>,
    /// Leading output samples still to drop (the filter's delay).
    delay_left: usize,
    inputs: u64,
    outputs: u64,
}

impl Resampler {
    pub fn new(rate: u32) -> Result<Self> {
        let inner = if rate == SAMPLE_RATE {
            None
        } else {
            // 20 ms blocks keep the added latency small for live audio.
            let chunk = (rate as usize / 50).max(64);
            Some(
                FftFixedIn::new(rate as usize, SAMPLE_RATE as usize, chunk, 1, 1)
                    .with_context(|| format!("cannot resample {rate} Hz to 16 kHz"))?,
            )
        };
        let delay_left = inner.as_ref().map_or(0, |r| r.output_delay());
        let block = inner
            .as_ref()
            .map_or_else(Vec::new, |r| vec![vec![0.0; r.output_frames_max()]]);
        Ok(Self {
            inner,
            rate,
            pending: Vec::new(),
            block,
            delay_left,
            inputs: 0,
            outputs: 0,
        })
    }

    /// Converts `input`, appending whatever output is ready to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.inputs += input.len() as u64;
        let Some(inner) = self.inner.as_mut() else {
            self.outputs += input.len() as u64;
            out.extend(input.iter().map(|&x| sanitize::clean(x)));
            return;
        };
        // The FFT panics on NaN; audio that skipped entry checks must not reach it.
        self.pending.extend(input.iter().map(|&x| sanitize::clean(x)));
        let mut used = 0;
        while self.pending.len() - used >= inner.input_frames_next() {
            let need = inner.input_frames_next();
            let (_, produced) = inner
                .process_into_buffer(&[&self.pending[used..used + need]], &mut self.block, None)
                .expect("buffers are sized by the resampler itself");
            used += need;
            let skip = self.delay_left.min(produced);
            self.delay_left -= skip;
            out.extend_from_slice(&self.block[0][skip..produced]);
            self.outputs += (produced - skip) as u64;
        }
        self.pending.drain(..used);
    }

    /// Flushes the filter so the output is exactly as long as the input's duration.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let expected = (self.inputs * SAMPLE_RATE as u64).div_ceil(self.rate as u64);
        if self.inner.is_some() {
            let silence = vec![0.0; self.rate as usize / 10];
            while self.outputs < expected {
                let before = self.outputs;
                self.push(&silence, out);
                self.inputs -= silence.len() as u64;
                debug_assert!(self.outputs > before || self.delay_left > 0);
            }
        }
        let extra = (self.outputs - expected) as usize;
        out.truncate(out.len() - extra);
        self.outputs = expected;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, seconds: f32) -> Vec<f32> {
        (0..(rate as f32 * seconds) as usize)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    /// Resampling keeps duration exact and phase aligned: the output equals the
    /// same sine generated directly at 16 kHz (away from the edges). The bound
    /// allows the filter's sub-sample delay at uneven ratios (22.05 kHz is
    /// ~0.4 sample late, 25 µs; a 440 Hz sine moves 0.086 per sample).
    #[test]
    fn resampling_keeps_time_and_shape() {
        for rate in [8000, 22050, 44100, 48000] {
            let input = sine(rate, 440.0, 1.0);
            let mut rs = Resampler::new(rate).unwrap();
            let mut out = Vec::new();
            // Odd-sized pushes, as a live source delivers them.
            for piece in input.chunks(333) {
                rs.push(piece, &mut out);
            }
            rs.finish(&mut out);
            assert_eq!(out.len(), 16_000, "rate {rate}");
            let want = sine(16_000, 440.0, 1.0);
            let err = out[1000..15000]
                .iter()
                .zip(&want[1000..15000])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 0.04, "rate {rate}: max error {err}");
        }
    }

    #[test]
    fn sixteen_khz_passes_through() {
        let input = sine(16_000, 300.0, 0.1);
        let mut rs = Resampler::new(16_000).unwrap();
        let mut out = Vec::new();
        rs.push(&input, &mut out);
        rs.finish(&mut out);
        assert_eq!(out, input);
    }

    #[test]
    fn every_bad_file_gets_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.wav");
        assert!(matches!(read_wav(&missing), Err(AudioError::NotFound { .. })));

        let text = dir.path().join("text.wav");
        std::fs::write(&text, "this is not audio").unwrap();
        assert!(matches!(read_wav(&text), Err(AudioError::NotWav { .. })));

        let write = |name: &str, channels: u16, samples: usize| {
            let path = dir.path().join(name);
            let spec = hound::WavSpec {
                channels,
                sample_rate: 16_000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut w = hound::WavWriter::create(&path, spec).unwrap();
            for _ in 0..samples * channels as usize {
                w.write_sample(0i16).unwrap();
            }
            w.finalize().unwrap();
            path
        };
        let err = read_wav(&write("empty.wav", 1, 0)).unwrap_err();
        assert!(matches!(err, AudioError::Empty { .. }), "{err}");
        let err = read_wav(&write("four.wav", 4, 10)).unwrap_err();
        assert!(err.to_string().contains("4 channels"), "{err}");
        let floats = |name: &str, samples: &[f32]| {
            let path = dir.path().join(name);
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 16_000,
                bits_per_sample: 32,
                sample_format: hound::SampleFormat::Float,
            };
            let mut w = hound::WavWriter::create(&path, spec).unwrap();
            samples.iter().for_each(|&s| w.write_sample(s).unwrap());
            w.finalize().unwrap();
            path
        };
        let err = read_wav(&floats("nan.wav", &[f32::NAN, f32::INFINITY, 0.1])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: 2 of 3 samples are not numbers (NaN or infinite); is this really audio, in the format its header says?",
                dir.path().join("nan.wav").display()
            )
        );
        let half = read_wav(&floats("half.wav", &[f32::NAN, 0.1, 5.0, -1e9])).unwrap();
        assert_eq!(half.channels[0].1, [0.0, 0.1, 1.0, -1.0]);
        assert_eq!(
            half.repairs,
            Repairs {
                silenced: 1,
                clipped: 2
            }
        );
        let ok = read_wav(&write("stereo.wav", 2, 160)).unwrap();
        assert_eq!(
            ok.channels.iter().map(|c| c.0).collect::<Vec<_>>(),
            vec![Channel::Agent, Channel::Customer]
        );
    }
}
