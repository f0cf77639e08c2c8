//! Reference transcripts of benchmark calls: what was said, by whom and
//! when, to score what the pipeline heard and when it told.

use std::path::Path;

use anyhow::{Context, Result};

use callwatch_core::events::Transcript;
use callwatch_core::text::{self, word_error_rate};

/// A call's reference transcript (`CALL.ref.json` beside `CALL.wav`): what
/// was said, one entry per utterance.
#[derive(serde::Deserialize)]
pub struct Reference {
    pub utterances: Vec<RefUtterance>,
}

#[derive(serde::Deserialize)]
pub struct RefUtterance {
    pub channel: String,
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
}

impl Reference {
    /// `CALL.ref.json` beside `wav`; `why` says which bench needs it.
    pub fn beside(wav: &Path, why: &str) -> Result<Self> {
        let path = wav.with_extension("ref.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{why} from the call's reference transcript, {} (one {{\"channel\", \"start_s\", \
                 \"end_s\", \"text\"}} per utterance, as in tests/fixtures/calls/*.ref.json)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a reference transcript", path.display()))
    }

    /// Word errors of one call's finals, per channel in call-time order,
    /// against this reference, and the reference's word count.
    pub fn word_errors(&self, finals: &mut [Transcript]) -> (f64, usize) {
        finals.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        let mut channels: Vec<&str> = self.utterances.iter().map(|u| u.channel.as_str()).collect();
        channels.extend(finals.iter().map(|t| t.channel.name()));
        channels.sort_unstable();
        channels.dedup();
        let (mut errors, mut words) = (0.0, 0);
        for channel in channels {
            let said = self
                .utterances
                .iter()
                .filter(|u| u.channel == channel)
                .map(|u| u.text.as_str());
            let said = said.collect::<Vec<_>>().join(" ");
            let heard = finals
                .iter()
                .filter(|t| t.channel.name() == channel)
                .map(|t| t.text.as_str());
            let heard = heard.collect::<Vec<_>>().join(" ");
            let n = text::words(&said).len();
            // Words heard on a channel the reference has no speech on are all insertions.
            errors += if n == 0 {
                text::words(&heard).len() as f64
            } else {
                word_error_rate(&said, &heard) * n as f64
            };
            words += n;
        }
        (errors, words)
    }
}
