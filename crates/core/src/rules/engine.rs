//! The engine: keeps the call's facts and clocks, and hands each event to
//! every rule in call-time order.
//!
//! Call-control events wait in a queue until the voice clock reaches them.
//! When a tick moves the clocks from t0 to t1, the engine steps through the
//! controls in (t0, t1]: the clocks advance to each control's time, rules
//! judge what is due by then, the control applies, and so on up to t1. So
//! whatever was due before a control is decided before it, however far the
//! clocks jumped.

use std::collections::VecDeque;
use std::sync::Arc;

use super::config::{ControlKind, Rulebook};
use super::facts::Facts;
use super::kinds::{self, Rule};
use super::scorecard::{Scorecard, Status};
use super::verdicts::Verdicts;
use super::{CallEvent, Control, SETTLE_S};
use crate::alerts::RuleOutput;

pub struct Engine {
    call_id: Arc<str>,
    book: Arc<Rulebook>,
    /// One per rule of the book, same order.
    rules: Vec<Box<dyn Rule>>,
    facts: Facts,
    /// Controls not yet reached by the voice clock, oldest first.
    controls: VecDeque<Control>,
    scorecard: Scorecard,
    next_alert: u64,
    ended: bool,
}

impl Engine {
    /// `voice_settle_s`: how late an end of speech is reported (the VAD hangover).
    pub fn new(book: Arc<Rulebook>, call_id: &str, voice_settle_s: f64) -> Self {
        Self {
            call_id: call_id.into(),
            rules: book.rules.iter().map(kinds::build).collect(),
            scorecard: Scorecard::new(call_id, &book),
            book,
            facts: Facts::new(voice_settle_s + 0.05),
            controls: VecDeque::new(),
            next_alert: 0,
            ended: false,
        }
    }

    pub fn scorecard(&self) -> &Scorecard {
        &self.scorecard
    }

    /// Takes in one event; returns what the rules raise.
    pub fn process(&mut self, event: CallEvent) -> Vec<RuleOutput> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        match event {
            CallEvent::Voice { channel, speaking, t_s } => self.facts.voice(channel, speaking, t_s),
            CallEvent::Transcript(t) => {
                self.facts.caller.heard(t);
                self.each(&mut out, |rule, facts, v| rule.heard(t, facts, v));
            }
            // Queued even when late: it applies at the next tick.
            CallEvent::Control(c) => {
                let at = self.controls.partition_point(|q| q.t_s <= c.t_s);
                self.controls.insert(at, c.clone());
                return out;
            }
            CallEvent::Tick {
                t_s,
                words_s,
                voiced_until,
            } => {
                self.facts.set_voiced(voiced_until);
                self.run_until(t_s, words_s, &mut out);
                self.facts.advance(t_s, words_s);
            }
        }
        self.judge(&mut out);
        out
    }

    /// Ends the call at `end_s`: controls still queued apply in order, every
    /// rule decides what is due, then what waits for the end; the scorecard
    /// becomes final.
    pub fn finish(&mut self, end_s: f64) -> Vec<RuleOutput> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.run_until(f64::INFINITY, f64::INFINITY, &mut out);
        if !self.ended {
            self.end(end_s, &mut out);
        }
        out
    }

    /// Applies the queued controls up to `t_s`, each at its own time.
    fn run_until(&mut self, t_s: f64, words_s: f64, out: &mut Vec<RuleOutput>) {
        while !self.ended && self.controls.front().is_some_and(|c| c.t_s <= t_s) {
            let c = self.controls.pop_front().expect("checked");
            self.facts.advance(c.t_s, words_s);
            self.judge(out);
            self.apply(c, out);
        }
    }

    fn apply(&mut self, c: Control, out: &mut Vec<RuleOutput>) {
        self.facts.control(&c);
        self.each(out, |rule, facts, v| rule.control(&c, facts, v));
        if c.kind == ControlKind::End {
            self.end(c.t_s, out);
        }
    }

    fn end(&mut self, end_s: f64, out: &mut Vec<RuleOutput>) {
        // Everything said has been delivered by now: judge all that is pending.
        let late = end_s + SETTLE_S + self.facts.voice_settle_s;
        self.facts.end(end_s);
        self.facts.advance(end_s, late);
        self.facts.words_now = self.facts.words_now.max(late);
        self.judge(out);
        self.ended = true;
        self.each(out, |rule, facts, v| {
            if v.status() == Status::Pending {
                rule.at_end(end_s, facts, v);
            }
        });
        self.scorecard.finish();
    }

    fn judge(&mut self, out: &mut Vec<RuleOutput>) {
        self.each(out, |rule, facts, v| rule.judge(facts, v));
    }

    /// Runs `f` for every rule with its verdicts.
    fn each(&mut self, out: &mut Vec<RuleOutput>, mut f: impl FnMut(&mut dyn Rule, &Facts, &mut Verdicts)) {
        for (index, rule) in self.rules.iter_mut().enumerate() {
            let mut v = Verdicts {
                rule: &self.book.rules[index],
                index,
                call_id: &self.call_id,
                scorecard: &mut self.scorecard,
                next_alert: &mut self.next_alert,
                out,
                now: self.facts.now,
            };
            f(rule.as_mut(), &self.facts, &mut v);
        }
    }
}
