//! Test harness for the rule kinds: synthetic event streams, exact call
//! times, no audio and no model.

use std::sync::Arc;

use super::config::{ControlKind, Rulebook};
use super::{CallEvent, Control, Engine, Status};
use crate::alerts::{Alert, RuleOutput};
use crate::audio::Channel;
use crate::events::Transcript;

pub fn book(rule: &str) -> Arc<Rulebook> {
    let text = format!(
        "version = 1\n[[rule]]\nid = \"r\"\nsection = \"S\"\nitem = \"i\"\nseverity = \"warning\"\naudience = [\"agent\", \"supervisor\"]\nmessage = \"m\"\n{rule}"
    );
    Arc::new(Rulebook::parse(&text, "test.toml").unwrap())
}

/// One fact or clock step, as a test feeds it.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    Voice(Channel, bool, f64),
    /// channel, utterance id, start, end, text, final
    Say(Channel, u64, f64, f64, &'static str, bool),
    Control(f64, ControlKind),
    /// voice clock, words clock (no voiced-frame report)
    Tick(f64, f64),
    End(f64),
}

/// Ticks every `step` seconds over `(from, to]`, the words clock with them.
pub fn ticks(from: f64, to: f64, step: f64) -> Vec<Step> {
    let n = ((to - from) / step).round() as usize;
    (1..=n)
        .map(|i| from + step * i as f64)
        .map(|t| Step::Tick(t, t))
        .collect()
}

/// What a call's rules decided: the alerts that stand (rule, span,
/// evidence) in call-time order, and the scorecard item.
pub type Verdict = (Vec<(String, f64, f64, String)>, (Status, Option<f64>, String));

/// Feeds events in order; keeps everything raised.
pub struct Run {
    pub engine: Engine,
    pub out: Vec<RuleOutput>,
    utterance: u64,
    /// An utterance has partials but no final yet.
    open: bool,
}

impl Run {
    pub fn new(rule: &str) -> Self {
        Self {
            engine: Engine::new(book(rule), "call", 0.5),
            out: Vec::new(),
            utterance: 0,
            open: false,
        }
    }

    /// Feeds `steps` in order to a fresh engine.
    pub fn steps(rule: &str, steps: &[Step]) -> Self {
        let mut run = Self::new(rule);
        for step in steps {
            run.step(*step);
        }
        run
    }

    pub fn step(&mut self, step: Step) -> &mut Self {
        match step {
            Step::Voice(channel, speaking, t_s) => self.voice(channel, speaking, t_s),
            Step::Say(channel, id, start, end, text, is_final) => {
                self.utterance(channel, id, start, end, text, is_final)
            }
            Step::Control(t_s, kind) => self.control(t_s, kind),
            Step::Tick(t_s, words_s) => self.clocks(t_s, words_s),
            Step::End(t_s) => self.end(t_s),
        }
    }

    pub fn tick(&mut self, t_s: f64) -> &mut Self {
        self.clocks(t_s, t_s)
    }

    pub fn clocks(&mut self, t_s: f64, words_s: f64) -> &mut Self {
        self.out.extend(self.engine.process(CallEvent::Tick {
            t_s,
            words_s,
            voiced_until: None,
        }));
        self
    }

    pub fn voice(&mut self, channel: Channel, speaking: bool, t_s: f64) -> &mut Self {
        self.out
            .extend(self.engine.process(CallEvent::Voice { channel, speaking, t_s }));
        self
    }

    /// A revision of the current utterance (a new one after a final).
    pub fn say(&mut self, channel: Channel, start_s: f64, end_s: f64, text: &str, is_final: bool) -> &mut Self {
        if !self.open {
            self.utterance += 1;
        }
        self.open = !is_final;
        self.utterance(channel, self.utterance, start_s, end_s, text, is_final)
    }

    pub fn utterance(
        &mut self,
        channel: Channel,
        utterance_id: u64,
        start_s: f64,
        end_s: f64,
        text: &str,
        is_final: bool,
    ) -> &mut Self {
        let t = Transcript {
            call_id: "call".into(),
            channel,
            utterance_id,
            revision: 0,
            is_final,
            start_s,
            end_s,
            text: text.into(),
            tokens: Vec::new(),
            ready_after_s: end_s + 0.6,
        };
        self.out.extend(self.engine.process(CallEvent::Transcript(&t)));
        self
    }

    pub fn control(&mut self, t_s: f64, kind: ControlKind) -> &mut Self {
        let c = Control { t_s, kind, to: None };
        self.out.extend(self.engine.process(CallEvent::Control(&c)));
        self
    }

    pub fn end(&mut self, t_s: f64) -> &mut Self {
        self.out.extend(self.engine.finish(t_s));
        self
    }

    /// Every alert raised, retracted or not.
    pub fn alerts(&self) -> Vec<&Alert> {
        self.out
            .iter()
            .filter_map(|o| match o {
                RuleOutput::Alert(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    /// Alerts not retracted.
    pub fn standing(&self) -> Vec<&Alert> {
        let retracted: Vec<u64> = self
            .out
            .iter()
            .filter_map(|o| match o {
                RuleOutput::Retract { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        self.alerts()
            .into_iter()
            .filter(|a| !retracted.contains(&a.id))
            .collect()
    }

    pub fn status(&self) -> Status {
        self.engine.scorecard().status(0)
    }

    pub fn verdict(&self) -> Verdict {
        let mut alerts: Vec<_> = self
            .standing()
            .iter()
            .map(|a| (a.rule_id.to_string(), a.start_s, a.end_s, a.evidence.clone()))
            .collect();
        alerts.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.2.total_cmp(&b.2)));
        let item = &self.engine.scorecard().sections[0].items[0];
        (alerts, (item.status, item.t_s, item.evidence.clone()))
    }
}

/// Feeds each arrival order of the same facts to a fresh engine; asserts
/// that all reach the same verdict, and returns it.
pub fn same_verdict(rule: &str, orders: &[Vec<Step>]) -> Verdict {
    let verdicts: Vec<Verdict> = orders.iter().map(|o| Run::steps(rule, o).verdict()).collect();
    for (i, v) in verdicts.iter().enumerate().skip(1) {
        assert_eq!(v, &verdicts[0], "arrival order {i} differs from order 0");
    }
    verdicts.into_iter().next().expect("at least one order")
}
