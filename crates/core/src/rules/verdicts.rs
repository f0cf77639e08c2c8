//! What a rule may do to the call's outputs: raise or retract alerts and
//! decide its item on the scorecard. One [`Verdicts`] is lent to one rule
//! for one event.

use std::sync::Arc;

use super::config::Rule as RuleConfig;
use super::scorecard::{Scorecard, Status};
use crate::alerts::{Alert, Party, RuleOutput};
use crate::time::round_ms;

pub struct Verdicts<'a> {
    pub(super) rule: &'a RuleConfig,
    /// The rule's position in the rulebook (and on the scorecard).
    pub(super) index: usize,
    pub(super) call_id: &'a Arc<str>,
    pub(super) scorecard: &'a mut Scorecard,
    pub(super) next_alert: &'a mut u64,
    pub(super) out: &'a mut Vec<RuleOutput>,
    /// The voice clock: when an alert raised now is emitted.
    pub(super) now: f64,
}

impl Verdicts<'_> {
    pub fn status(&self) -> Status {
        self.scorecard.status(self.index)
    }

    /// Raises an alert without touching the scorecard; returns its id.
    pub fn raise(&mut self, party: Party, span: (f64, f64), evidence: String) -> u64 {
        *self.next_alert += 1;
        let id = *self.next_alert;
        let rule = self.rule;
        self.out.push(RuleOutput::Alert(Alert {
            kind: "alert",
            id,
            call_id: self.call_id.clone(),
            rule_id: rule.id.clone(),
            severity: rule.severity,
            audience: rule.audience.clone(),
            party,
            start_s: round_ms(span.0),
            end_s: round_ms(span.1),
            emitted_s: round_ms(self.now),
            evidence,
            message: rule.message.clone(),
            script: rule.script.clone(),
        }));
        id
    }

    /// Marks the item failed (the first failure stays) and raises an alert.
    pub fn fail(&mut self, party: Party, span: (f64, f64), evidence: String) {
        self.scorecard.set(self.index, Status::Fail, span.0, &evidence);
        self.raise(party, span, evidence);
    }

    /// Marks the item passed, unless it already failed.
    pub fn pass(&mut self, at: f64, evidence: &str) {
        self.scorecard.set(self.index, Status::Pass, at, evidence);
    }

    pub fn set(&mut self, status: Status, at: f64, evidence: &str) {
        self.scorecard.set(self.index, status, at, evidence);
    }

    /// Replaces the item's decision outright, a failure included: for a
    /// rule whose earliest standing failure changed.
    pub fn restate(&mut self, status: Status, at: f64, evidence: &str) {
        self.scorecard.replace(self.index, status, at, evidence);
    }

    pub fn retract(&mut self, id: u64) {
        self.out.push(RuleOutput::Retract {
            id,
            call_id: self.call_id.clone(),
        });
    }
}
