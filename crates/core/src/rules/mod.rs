//! The compliance rule engine.
//!
//! One [`Engine`] per call consumes that call's events — voice activity,
//! transcript revisions, call control and clock ticks — and emits alerts and
//! retractions. Each rule kind lives in its own module under [`kinds`] behind
//! the [`kinds::Rule`] trait; none re-reads the transcript.
//!
//! Verdicts do not depend on speed. Every rule judges facts by their call
//! time (seconds of audio), never by when they arrived; the two clocks only
//! say when enough is known to decide ([`facts`]). So a recording replayed
//! `--fast`, where audio races ahead of transcription and the words clock
//! jumps, raises the same alerts at the same times as one replayed live.
//!
//! Events about the same moment do not arrive together: the end of speech is
//! known only after the detector's hangover, a final transcript a few hundred
//! milliseconds after that. So a rule judges a moment only once the clock has
//! passed it by [`SETTLE_S`] (words) or the voice settle time (acoustics).

pub mod builtin;
pub mod call;
pub mod config;
pub mod engine;
pub mod facts;
pub mod kinds;
pub mod matcher;
pub mod names;
pub mod scorecard;
pub mod sidecar;
pub mod verdicts;

#[cfg(test)]
mod testing;

pub use call::CallRules;
pub use engine::Engine;
pub use scorecard::{Scorecard, Status};

use crate::audio::Channel;
use crate::events::Transcript;
use config::ControlKind;

/// Margin past a moment before its words are judged, on the words clock
/// (which already waits for every final of utterances begun before it): a
/// phrase may start a little after the event it belongs to.
pub const SETTLE_S: f64 = 0.5;

/// A call-control event.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    pub t_s: f64,
    pub kind: ControlKind,
    /// Recipient's name, for transfers.
    pub to: Option<String>,
}

/// What the engine consumes.
#[derive(Debug, Clone, Copy)]
pub enum CallEvent<'a> {
    Voice {
        channel: Channel,
        speaking: bool,
        t_s: f64,
    },
    Transcript(&'a Transcript),
    /// Takes effect when the voice clock reaches `t_s`, in call-time order
    /// with everything else due then; it must arrive before the clock passes
    /// it (one that comes later applies at the next tick).
    Control(&'a Control),
    /// Voice activity is known up to `t_s` (less the hangover); every
    /// utterance begun before `words_s` has its final transcript delivered.
    Tick {
        t_s: f64,
        words_s: f64,
        /// Per party (agent, customer), the end of its last voiced frame,
        /// when the source knows it: acoustic rules then need not wait for
        /// the hangover that confirms an end of speech.
        voiced_until: Option<[f64; 2]>,
    },
}
