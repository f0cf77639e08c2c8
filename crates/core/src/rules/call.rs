//! Runs a rulebook over one call's pipeline events: translates the
//! pipeline's [`Event`]s for the [`Engine`] and passes call-control events
//! (from a softphone or a sidecar file) in, which the engine applies when
//! the call's clock reaches them.

use std::sync::Arc;

use super::config::Rulebook;
use super::facts::speakers;
use super::{CallEvent, Control, Engine, Scorecard};
use crate::alerts::RuleOutput;
use crate::events::Event;

pub struct CallRules {
    engine: Engine,
}

impl CallRules {
    pub fn new(rules: Arc<Rulebook>, call_id: &str, voice_settle_s: f64, controls: Vec<Control>) -> Self {
        let mut engine = Engine::new(rules, call_id, voice_settle_s);
        for c in &controls {
            // Queued until the clock reaches it: raises nothing now.
            engine.process(CallEvent::Control(c));
        }
        Self { engine }
    }

    pub fn feed(&mut self, event: &Event) -> Vec<RuleOutput> {
        match event {
            Event::Voice {
                channel, speaking, t_s, ..
            } => self.engine.process(CallEvent::Voice {
                channel: *channel,
                speaking: *speaking,
                t_s: *t_s,
            }),
            Event::Transcript(t) => self.engine.process(CallEvent::Transcript(t)),
            Event::Tick {
                t_s,
                words_s,
                voiced_until,
                ..
            } => {
                let mut voiced = [0.0f64; 2];
                for (channel, t) in voiced_until {
                    for s in speakers(*channel) {
                        voiced[*s as usize] = voiced[*s as usize].max(*t);
                    }
                }
                self.engine.process(CallEvent::Tick {
                    t_s: *t_s,
                    words_s: *words_s,
                    voiced_until: Some(voiced),
                })
            }
        }
    }

    /// The call is over at `end_s`: remaining control events apply, then
    /// the rules decide.
    pub fn finish(&mut self, end_s: f64) -> Vec<RuleOutput> {
        self.engine.finish(end_s)
    }

    pub fn scorecard(&self) -> &Scorecard {
        self.engine.scorecard()
    }

    /// A call-control event of a live call; it applies when the call's
    /// clock reaches it, like those given up front.
    pub fn control(&mut self, control: Control) {
        self.engine.process(CallEvent::Control(&control));
    }
}
