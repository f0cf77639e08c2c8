//! Transcript lines: what the pipeline tells people and tools.

use std::fmt;

use anyhow::Result;

use crate::audio::{Channel, Recording};
use crate::transcribe::Model;
use crate::vad::{self, VadConfig};

/// One utterance's text, in call time.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TranscriptLine {
    /// Always `"transcript"`: JSON consumers dispatch on it.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub channel: Channel,
    /// Utterance id and revision, in live output (absent from `transcribe`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utterance: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
}

impl TranscriptLine {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("transcript lines always serialise")
    }
}

/// `[00:03.2 agent] Thank you for calling …`
impl fmt::Display for TranscriptLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} {}] {}", CallClock(self.start_s), self.channel.name(), self.text)
    }
}

/// Call time as people read it: `01:03.3` (minutes, seconds, tenths).
pub struct CallClock(pub f64);

impl fmt::Display for CallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0 * 10.0).round() as u64;
        write!(f, "{:02}:{:02}.{}", tenths / 600, tenths / 10 % 60, tenths % 10)
    }
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
            });
        }
    }
    lines.sort_by(|a, b| a.start_s.total_cmp(&b.start_s).then(a.channel.cmp(&b.channel)));
    Ok(lines)
}

impl From<&crate::events::Transcript> for TranscriptLine {
    fn from(t: &crate::events::Transcript) -> Self {
        Self {
            kind: "transcript",
            channel: t.channel,
            utterance: Some(t.utterance_id),
            revision: Some(t.revision),
            is_final: t.is_final,
            start_s: round_ms(t.start_s),
            end_s: round_ms(t.end_s),
            text: t.text.clone(),
        }
    }
}

pub fn round_ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_formats() {
        let line = TranscriptLine {
            kind: "transcript",
            channel: Channel::Agent,
            utterance: None,
            revision: None,
            is_final: true,
            start_s: 63.25,
            end_s: 65.0,
            text: "Thank you for calling.".into(),
        };
        assert_eq!(line.to_string(), "[01:03.3 agent] Thank you for calling.");
        assert_eq!(
            line.to_json(),
            r#"{"type":"transcript","channel":"agent","final":true,"start_s":63.25,"end_s":65.0,"text":"Thank you for calling."}"#
        );
    }
}
