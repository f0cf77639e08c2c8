//! What the live pipeline reports about a call: plain Rust types, no wire
//! format. The gRPC service and `monitor --json` translate them.

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::audio::Channel;

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

/// Events a call's receiver can hold before the pipeline must wait for it.
pub const EVENT_QUEUE: usize = 256;

/// The sending side of one call's event stream, shared by its front end and
/// the transcriber pool.
///
/// Full-queue policy: voice events, ticks and finals wait for room (they are never
/// lost; a consumer that stops reading stalls this call, not others); a
/// partial is dropped and counted, since a newer revision or the final will
/// follow. A partial that arrives after its utterance's final is stale and is
/// dropped too (two workers can finish out of order).
pub struct CallSink {
    pub call_id: Arc<str>,
    pub started: Instant,
    tx: SyncSender<Event>,
    finalized: Mutex<HashSet<(Channel, u64)>>,
    /// Finals submitted for decoding and not yet sent: (channel, utterance, start).
    inflight: Mutex<Vec<(Channel, u64, f64)>>,
}

impl CallSink {
    pub fn new(call_id: &str, started: Instant) -> (Arc<Self>, Receiver<Event>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(EVENT_QUEUE);
        let sink = Arc::new(Self {
            call_id: call_id.into(),
            started,
            tx,
            finalized: Mutex::new(HashSet::new()),
            inflight: Mutex::new(Vec::new()),
        });
        (sink, rx)
    }

    /// Sends an event that must arrive, waiting for room. A receiver that is
    /// gone (the consumer quit) is not an error for the pipeline.
    pub fn send(&self, event: Event) {
        let finished = match &event {
            Event::Transcript(t) if t.is_final => Some((t.channel, t.utterance_id)),
            _ => None,
        };
        // Before the send, so a late partial of this utterance is seen as stale.
        if let Some(key) = finished {
            self.finalized.lock().expect("poisoned").insert(key);
        }
        let _ = self.tx.send(event);
        // After the send: a tick must not pass an utterance whose final is
        // not yet in the channel.
        if let Some((channel, id)) = finished {
            self.inflight
                .lock()
                .expect("poisoned")
                .retain(|(c, i, _)| !(*c == channel && *i == id));
        }
    }

    /// Registers a final handed to the pool, holding `words_s` back until it is sent.
    pub fn begin_final(&self, channel: Channel, utterance_id: u64, start_s: f64) {
        self.inflight
            .lock()
            .expect("poisoned")
            .push((channel, utterance_id, start_s));
    }

    /// Start of the oldest final still being decoded.
    pub fn oldest_inflight(&self) -> Option<f64> {
        self.inflight
            .lock()
            .expect("poisoned")
            .iter()
            .map(|f| f.2)
            .min_by(f64::total_cmp)
    }

    /// Sends a partial if it is still current and there is room.
    pub fn send_partial(&self, t: Transcript) {
        let stale = self
            .finalized
            .lock()
            .expect("poisoned")
            .contains(&(t.channel, t.utterance_id));
        if stale {
            return;
        }
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Event::Transcript(t)) {
            metrics::counter!("callwatch_partials_dropped_total").increment(1);
        }
    }

    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
