//! Transcript lines: what the pipeline tells people and tools.

use std::fmt;

use crate::audio::Channel;
use crate::redact::{Redactor, Span};
use crate::time::{round_ms, CallClock};

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
    /// Where `text` has markers (`[card]`) in place of what was said;
    /// absent when nothing was redacted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<Span>,
}

impl TranscriptLine {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("transcript lines always serialise")
    }

    /// The line as it may be shown: `redactor` (the call's) replaces what
    /// it finds by markers. Lines of a channel must come in call order.
    pub fn redact(mut self, redactor: &mut Redactor) -> Self {
        let out = redactor.revision(self.channel, self.is_final, &self.text);
        self.text = out.text;
        self.redacted = out.spans;
        self
    }
}

/// `[00:03.2 agent] Thank you for calling …`
impl fmt::Display for TranscriptLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} {}] {}", CallClock(self.start_s), self.channel.name(), self.text)
    }
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
            redacted: Vec::new(),
        }
    }
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
            redacted: Vec::new(),
        };
        assert_eq!(line.to_string(), "[01:03.3 agent] Thank you for calling.");
        assert_eq!(
            line.to_json(),
            r#"{"type":"transcript","channel":"agent","final":true,"start_s":63.25,"end_s":65.0,"text":"Thank you for calling."}"#
        );
    }

    #[test]
    fn redacted_lines_say_where_their_markers_are() {
        let line = TranscriptLine {
            kind: "transcript",
            channel: Channel::Customer,
            utterance: Some(3),
            revision: Some(1),
            is_final: true,
            start_s: 1.0,
            end_s: 2.0,
            text: "It's 4111 1111 1111 1111.".into(),
            redacted: Vec::new(),
        };
        let mut redactor = Redactor::new(crate::redact::Entities::default());
        assert_eq!(
            line.redact(&mut redactor).to_json(),
            r#"{"type":"transcript","channel":"customer","utterance":3,"revision":1,"final":true,"start_s":1.0,"end_s":2.0,"text":"It's [card].","redacted":[{"type":"card","start_char":5,"end_char":11}]}"#
        );
    }
}
