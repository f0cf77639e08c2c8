//! `callwatch bench accuracy`: word error rate per recording and channel,
//! for the current utterance cutting and for the earlier one, in the same
//! run on the same model, so a change to the cutting is measured, not guessed.
//!
//! Each recording needs its reference transcript beside it (`CALL.ref.json`,
//! one `{"channel", "start_s", "text"}` per utterance). Finals are decoded
//! as `transcribe` decodes them: each VAD-cut utterance on its own.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};

use super::reference::{RefUtterance, Reference};

use callwatch_asr::transcribe::{transcribe_recording, Model};
use callwatch_core::audio;
use callwatch_core::text::{word_errors, words};
use callwatch_core::vad::VadConfig;

pub struct AccuracyOptions {
    pub files: Vec<PathBuf>,
    pub model: PathBuf,
    pub threads: usize,
    /// The cutting measured against the earlier one.
    pub vad: VadConfig,
}

/// The cutting before pre/post-roll were measured: 200 ms before the onset,
/// 150 ms after the last voiced frame.
fn earlier_cutting() -> VadConfig {
    VadConfig {
        pre_roll: 0.2,
        post_roll: 0.15,
        min_utterance: 0.0,
        ..VadConfig::default()
    }
}

/// Word errors and reference words, summed.
#[derive(Default, Clone, Copy)]
struct Tally {
    errors: usize,
    words: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.errors += other.errors;
        self.words += other.words;
    }

    fn percent(&self) -> f64 {
        100.0 * self.errors as f64 / self.words.max(1) as f64
    }
}

/// Per channel of one recording: (channel, errors and words) for one cutting.
fn measure(model: &Model, wav: &Path, threads: usize, vad: VadConfig) -> Result<Vec<(String, Tally)>> {
    let reference = Reference::beside(wav, "bench accuracy scores the words")?;
    let rec = audio::read_wav(wav)?;
    let lines = transcribe_recording(model, &rec, threads, vad)?;
    let mut out = Vec::new();
    for (channel, _) in &rec.channels {
        let name = channel.name();
        let mut said: Vec<&RefUtterance> = reference.utterances.iter().filter(|u| u.channel == name).collect();
        said.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        let r = words(&said.iter().map(|u| u.text.as_str()).collect::<Vec<_>>().join(" "));
        let heard: Vec<&str> = lines
            .iter()
            .filter(|l| l.channel == *channel)
            .map(|l| l.text.as_str())
            .collect();
        let h = words(&heard.join(" "));
        out.push((
            name.to_owned(),
            Tally {
                errors: word_errors(&r, &h),
                words: r.len(),
            },
        ));
    }
    Ok(out)
}

pub fn accuracy(opts: &AccuracyOptions) -> Result<()> {
    ensure!(!opts.files.is_empty(), "no recordings to measure");
    let model = Model::load(&opts.model)?;
    let before = earlier_cutting();
    println!(
        "earlier cutting: pre-roll {:.2} s, post-roll {:.2} s; current: pre-roll {:.2} s, post-roll {:.2} s, \
         shortest utterance {:.2} s",
        before.pre_roll, before.post_roll, opts.vad.pre_roll, opts.vad.post_roll, opts.vad.min_utterance
    );
    println!(
        "{:<44} {:>8} {:>6} {:>9} {:>9}",
        "recording", "channel", "words", "earlier %", "current %"
    );
    let (mut pooled_before, mut pooled_now) = (Tally::default(), Tally::default());
    for wav in &opts.files {
        let old = measure(&model, wav, opts.threads, before)?;
        let new = measure(&model, wav, opts.threads, opts.vad)?;
        let file = wav
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for ((channel, b), (_, n)) in old.iter().zip(&new) {
            println!(
                "{file:<44} {channel:>8} {:>6} {:>9.1} {:>9.1}",
                b.words,
                b.percent(),
                n.percent()
            );
            pooled_before.add(*b);
            pooled_now.add(*n);
        }
    }
    println!(
        "{:<44} {:>8} {:>6} {:>9.1} {:>9.1}",
        "pooled",
        "",
        pooled_now.words,
        pooled_before.percent(),
        pooled_now.percent()
    );
    Ok(())
}
