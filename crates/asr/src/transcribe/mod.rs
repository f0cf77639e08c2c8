//! Whisper inference through whisper.cpp (whisper-rs).
//!
//! One [`Model`] (the weights, shared read-only) serves any number of
//! [`Transcriber`]s, each owning its own decoder state and scratch memory, so
//! several threads can transcribe at once without locking.
//!
//! Utterances are short, but Whisper's encoder is built for a 30 s window.
//! Setting `audio_ctx` to the utterance's length (plus a margin) shrinks the
//! encoder's work in proportion; that is what makes VAD-cut call audio cheap.

pub mod pool;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState};

use callwatch_core::audio::{Recording, SAMPLE_RATE};
use callwatch_core::events::Token;
use callwatch_core::time::round_ms;
use callwatch_core::transcript::TranscriptLine;
use callwatch_core::vad::{self, VadConfig};

use crate::model::ggml;

/// Encoder positions per second of audio (1500 for Whisper's 30 s window).
const CTX_PER_SECOND: f64 = 50.0;
/// Silence positions kept after the audio (2.56 s). Decoding with timestamps
/// lets the model end the utterance at the audio's end; without them, tiny.en
/// looped on short clips ("and so my fellow Americans and so my fellow …")
/// unless given ~400 spare positions, which costs 75 % more encoder time.
const CTX_MARGIN: i32 = 128;
/// Decoding budget: no one says more than ~6 tokens a second, so a clip that
/// needs more is looping; capping it bounds the cost of a bad decode.
const TOKENS_PER_SECOND: f64 = 8.0;
const TOKENS_BASE: i32 = 24;

/// The encoder context for a clip of `n` samples: its length in encoder
/// positions plus a margin, rounded up to a multiple of 32, at most the model's.
pub fn fitted_audio_ctx(n: usize, n_audio_ctx: i32) -> i32 {
    let positions = (n as f64 / SAMPLE_RATE as f64 * CTX_PER_SECOND).ceil() as i32 + CTX_MARGIN;
    ((positions + 31) / 32 * 32).min(n_audio_ctx)
}

fn token_budget(n: usize) -> i32 {
    (n as f64 / SAMPLE_RATE as f64 * TOKENS_PER_SECOND).ceil() as i32 + TOKENS_BASE
}

/// A loaded ggml Whisper model.
pub struct Model {
    ctx: Arc<WhisperContext>,
    n_audio_ctx: i32,
    pub path: PathBuf,
    pub info: ggml::ModelInfo,
}

impl Model {
    /// Checks the file, then loads it. A missing file names the command that
    /// fetches it; a damaged one is refused before whisper.cpp reads it.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            anyhow::bail!(
                "model {} not found: run `callwatch model fetch` (or `make model`) to download and convert it, or pass --model PATH",
                path.display()
            );
        }
        let info = ggml::inspect(path)?;
        whisper_rs::install_logging_hooks();
        let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .with_context(|| format!("whisper.cpp could not load {}", path.display()))?;
        Ok(Self {
            n_audio_ctx: ctx.model_n_audio_ctx(),
            ctx: Arc::new(ctx),
            path: path.to_owned(),
            info,
        })
    }

    /// A new transcriber using `threads` CPU threads per inference.
    pub fn transcriber(&self, threads: usize) -> Result<Transcriber> {
        self.weights().transcriber(threads)
    }

    /// The loaded weights alone, for a pool that makes transcribers later
    /// (to replace one whose decode panicked).
    fn weights(&self) -> Weights {
        Weights {
            ctx: self.ctx.clone(),
            n_audio_ctx: self.n_audio_ctx,
        }
    }
}

/// The shared, read-only part of a [`Model`]: what makes transcribers.
#[derive(Clone)]
struct Weights {
    ctx: Arc<WhisperContext>,
    n_audio_ctx: i32,
}

impl Weights {
    fn transcriber(&self, threads: usize) -> Result<Transcriber> {
        let state = self.ctx.create_state().context("cannot allocate whisper state")?;
        Ok(Transcriber {
            state,
            threads: threads.max(1) as i32,
            n_audio_ctx: self.n_audio_ctx,
        })
    }
}

/// Whisper's reading of one clip.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hypothesis {
    pub text: String,
    pub tokens: Vec<Token>,
    /// Tokens decoded, special ones included (for the loop check).
    n_tokens: usize,
}

/// A decoder state bound to one thread at a time.
pub struct Transcriber {
    state: WhisperState,
    threads: i32,
    n_audio_ctx: i32,
}

impl Transcriber {
    /// Transcribes one utterance of 16 kHz audio.
    ///
    /// A decode that runs out of its token budget or repeats a phrase is
    /// looping; it is retried once with the model's full context.
    pub fn transcribe(&mut self, samples: &[f32]) -> Result<Hypothesis> {
        // whisper.cpp reads at least 1 s; shorter clips are padded with silence.
        let padded;
        let audio = if samples.len() < SAMPLE_RATE as usize {
            padded = [samples, &vec![0.0; SAMPLE_RATE as usize + 160 - samples.len()]].concat();
            &padded[..]
        } else {
            samples
        };
        let budget = token_budget(samples.len());
        let fitted = fitted_audio_ctx(samples.len(), self.n_audio_ctx);
        let hyp = self.decode(audio, fitted, budget)?;
        let looping = hyp.n_tokens >= budget as usize || has_repeated_phrase(&hyp.text);
        if !looping || fitted == self.n_audio_ctx {
            return Ok(hyp);
        }
        // Never the words themselves: logs are not redacted (card numbers).
        tracing::debug!(
            fitted,
            chars = hyp.text.chars().count(),
            tokens = hyp.n_tokens,
            "decode looped; retrying with the full context"
        );
        self.decode(audio, self.n_audio_ctx, budget)
    }

    fn decode(&mut self, audio: &[f32], audio_ctx: i32, max_tokens: i32) -> Result<Hypothesis> {
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.threads);
        params.set_language(Some("en"));
        params.set_audio_ctx(audio_ctx);
        params.set_max_tokens(max_tokens);
        // One utterance is one segment; its times come from the voice detector,
        // since whisper's timestamps are unreliable with a reduced audio_ctx.
        // Timestamp tokens are still decoded: they are how the model says the
        // speech has ended, which keeps it from looping in the spare context.
        params.set_single_segment(true);
        params.set_no_timestamps(false);
        params.set_no_context(true);
        // Temperature fallback turns a loop into random words; the retry above
        // is the better cure, so decoding stays greedy and deterministic.
        params.set_temperature_inc(0.0);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        self.state.full(params, audio).context("whisper inference failed")?;

        let mut text = String::new();
        let mut tokens = Vec::new();
        let mut n_tokens = 0;
        for segment in self.state.as_iter() {
            text.push_str(&segment.to_str_lossy().context("whisper returned no text")?);
            for i in 0..segment.n_tokens() {
                let Some(tok) = segment.get_token(i) else { continue };
                n_tokens += 1;
                let t = tok.to_str_lossy().unwrap_or_default();
                // Special and timestamp tokens ([_BEG_], [_TT_50], <|endoftext|>) are not words.
                if t.starts_with("[_") || t.starts_with("<|") {
                    continue;
                }
                tokens.push(Token {
                    text: t.into_owned(),
                    p: tok.token_probability(),
                });
            }
        }
        Ok(Hypothesis {
            text: text.trim().to_owned(),
            tokens,
            n_tokens,
        })
    }
}

/// Whether some phrase of three or more words is immediately repeated, the
/// signature of a decoding loop ("ask what you can do ask what you can do").
fn has_repeated_phrase(text: &str) -> bool {
    let w = callwatch_core::text::words(text);
    (3..=w.len() / 2).any(|n| (0..=w.len() - 2 * n).any(|i| w[i..i + n] == w[i + n..i + 2 * n]))
}

/// Transcribes a whole recording: each channel is cut into utterances by the
/// voice detector and each utterance is decoded on its own. Lines come back
/// ordered by start time across channels.
pub fn transcribe_recording(
    model: &Model,
    rec: &Recording,
    threads: usize,
    vad: VadConfig,
) -> Result<Vec<TranscriptLine>> {
    let mut transcriber = model.transcriber(threads)?;
    let mut lines = Vec::new();
    for (channel, samples) in &rec.to_16k()?.channels {
        for utt in vad::utterances(samples, vad) {
            let hyp = transcriber.transcribe(&utt.samples)?;
            if hyp.text.is_empty() {
                continue;
            }
            lines.push(TranscriptLine {
                kind: "transcript",
                channel: *channel,
                utterance: None,
                revision: None,
                is_final: true,
                start_s: round_ms(utt.start_s),
                end_s: round_ms(utt.end_s),
                text: hyp.text,
                redacted: Vec::new(),
            });
        }
    }
    lines.sort_by(|a, b| a.start_s.total_cmp(&b.start_s).then(a.channel.cmp(&b.channel)));
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_are_recognised() {
        assert!(has_repeated_phrase(
            "And so my fellow Americans. And so my fellow Americans."
        ));
        assert!(has_repeated_phrase("for you for you for you for you"));
        assert!(!has_repeated_phrase("Thank you, thank you. Goodbye."));
        assert!(!has_repeated_phrase(""));
    }

    #[test]
    fn audio_ctx_follows_clip_length() {
        assert_eq!(fitted_audio_ctx(0, 1500), 128);
        // 11 s: 550 positions + 128 margin = 678, rounded up to 704.
        assert_eq!(fitted_audio_ctx(11 * 16_000, 1500), 704);
        assert_eq!(fitted_audio_ctx(40 * 16_000, 1500), 1500);
    }
}
