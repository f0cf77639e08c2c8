//! What the live pipeline reports about a call: plain Rust types, no wire
//! format. The gRPC service and `monitor --json` translate them. Each call's
//! events travel through its own bounded queue ([`CallSink`] →
//! [`EventReceiver`]), whose full-queue policy is in `events/queue.rs`.

mod queue;

use std::sync::Arc;

use crate::audio::Channel;

pub use queue::{CallSink, EventReceiver, EVENT_QUEUE};

/// One decoded token with the model's confidence in it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Token {
    pub text: String,
    pub p: f32,
}

/// One revision of an utterance's text. Partials are provisional; the final
/// is the last revision and is never dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub call_id: Arc<str>,
    pub channel: Channel,
    pub utterance_id: u64,
    pub revision: u32,
    pub is_final: bool,
    /// Call time, seconds.
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
    pub tokens: Vec<Token>,
    /// Wall-clock seconds from the start of the call to this text being ready.
    pub ready_after_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A party started (`speaking`) or stopped speaking, at call time `t_s`.
    Voice {
        call_id: Arc<str>,
        channel: Channel,
        speaking: bool,
        t_s: f64,
    },
    Transcript(Transcript),
    /// Clock of the call, sent every 100 ms of audio so time-based rules
    /// fire while nobody speaks. `t_s`: every channel's audio has been
    /// analysed up to here (voice activity is known, less the hangover).
    /// `words_s`: every utterance that started before it has its final
    /// transcript delivered (trails `t_s` while someone speaks or a final
    /// is being decoded). `voiced_until`: per channel, the end of its last
    /// voiced frame of speech (known without waiting for the hangover).
    Tick {
        call_id: Arc<str>,
        t_s: f64,
        words_s: f64,
        voiced_until: Vec<(Channel, f64)>,
    },
}
