//! `sequence`: one thing must follow another within a time. Mode `after`:
//! `then` within `within_s` after each `first` (thanks after a hold). Mode
//! `before`: `first` within `within_s` before each `then` (permission before
//! a hold). Either side is a call-control event or a phrase said.
//!
//! Each occurrence is judged in call-time order once the words clock has
//! passed the moment that settles it; occurrences are kept sorted by call
//! time, so finals that arrive out of order or after the event they belong
//! to count the same.

use super::{first_match, insert_by_time, said, Rule};
use crate::alerts::Party;
use crate::events::Transcript;
use crate::rules::config::{Speaker, Trigger};
use crate::rules::facts::Facts;
use crate::rules::verdicts::Verdicts;
use crate::rules::{Control, Status, SETTLE_S};

/// Slack for a `then` that starts just before its `first` (words said while
/// the agent presses the button).
const OVERLAP_S: f64 = 0.5;

struct Occurrence {
    t: f64,
    evidence: String,
}

pub struct Sequence {
    before: bool,
    first: Trigger,
    then: Trigger,
    within_s: f64,
    firsts: Vec<Occurrence>,
    thens: Vec<Occurrence>,
    /// Occurrences already judged: of `first` (after) or `then` (before).
    judged: usize,
}

impl Sequence {
    pub fn new(before: bool, first: Trigger, then: Trigger, within_s: f64) -> Self {
        Self {
            before,
            first,
            then,
            within_s,
            firsts: Vec::new(),
            thens: Vec::new(),
            judged: 0,
        }
    }

    fn party(&self) -> Party {
        party_of(&self.then).or(party_of(&self.first)).unwrap_or(Party::Agent)
    }

    fn record(&mut self, trigger_is_first: bool, occurrence: Occurrence) {
        let list = if trigger_is_first {
            &mut self.firsts
        } else {
            &mut self.thens
        };
        insert_by_time(list, occurrence, |o| o.t);
    }

    /// Judges one `first` (mode after); false while it cannot be decided yet.
    fn judge_after(&self, t: f64, words_now: f64, v: &mut Verdicts) -> bool {
        let answer = self
            .thens
            .iter()
            .find(|o| o.t + OVERLAP_S >= t && o.t <= t + self.within_s);
        match answer {
            // No earlier answer can still arrive once the words clock passed this one.
            Some(o) if words_now >= o.t => {
                if v.status() != Status::Fail {
                    v.pass(o.t, &o.evidence);
                }
                true
            }
            _ if words_now >= t + self.within_s + SETTLE_S => {
                v.fail(
                    self.party(),
                    (t, t + self.within_s),
                    format!(
                        "no {} within {} s of {} at {t:.1} s",
                        describe(&self.then),
                        self.within_s,
                        describe(&self.first)
                    ),
                );
                true
            }
            _ => false,
        }
    }

    /// Judges one `then` (mode before); false while it cannot be decided yet.
    fn judge_before(&self, t: f64, words_now: f64, v: &mut Verdicts) -> bool {
        if words_now < t + SETTLE_S {
            return false;
        }
        let asked = self
            .firsts
            .iter()
            .rev()
            .find(|o| o.t >= t - self.within_s && o.t <= t + OVERLAP_S);
        match asked {
            Some(o) => {
                if v.status() != Status::Fail {
                    v.pass(o.t, &o.evidence);
                }
            }
            None => v.fail(
                self.party(),
                (t, t),
                format!(
                    "{} at {t:.1} s without {} first",
                    describe(&self.then),
                    describe(&self.first)
                ),
            ),
        }
        true
    }
}

impl Rule for Sequence {
    fn heard(&mut self, t: &Transcript, _facts: &Facts, _v: &mut Verdicts) {
        for is_first in [true, false] {
            let trigger = if is_first { &self.first } else { &self.then };
            if let Trigger::Said(party, phrases) = trigger {
                if let Some(e) = said(t, *party, false).and_then(|w| first_match(phrases, &w)) {
                    self.record(
                        is_first,
                        Occurrence {
                            t: t.start_s,
                            evidence: format!("\"{e}\""),
                        },
                    );
                }
            }
        }
    }

    fn control(&mut self, c: &Control, _facts: &Facts, _v: &mut Verdicts) {
        for is_first in [true, false] {
            let trigger = if is_first { &self.first } else { &self.then };
            if matches!(trigger, Trigger::Event(kind) if *kind == c.kind) {
                let to = c.to.as_deref().map(|n| format!(" to {n}")).unwrap_or_default();
                let evidence = format!("{:?}{to} at {:.1} s", c.kind, c.t_s).to_lowercase();
                self.record(is_first, Occurrence { t: c.t_s, evidence });
            }
        }
    }

    fn judge(&mut self, facts: &Facts, v: &mut Verdicts) {
        // In call-time order: a later occurrence waits for an earlier one.
        loop {
            let list = if self.before { &self.thens } else { &self.firsts };
            let Some(t) = list.get(self.judged).map(|o| o.t) else {
                return;
            };
            let done = if self.before {
                self.judge_before(t, facts.words_now, v)
            } else {
                self.judge_after(t, facts.words_now, v)
            };
            if !done {
                return;
            }
            self.judged += 1;
        }
    }

    fn at_end(&mut self, end: f64, _facts: &Facts, v: &mut Verdicts) {
        let occurred = if self.before { &self.thens } else { &self.firsts };
        let status = if occurred.is_empty() {
            Status::NotApplicable
        } else {
            Status::Pass
        };
        v.set(status, end, "");
    }
}

fn party_of(t: &Trigger) -> Option<Party> {
    match t {
        Trigger::Said(s, _) => Some(Speaker::party(*s)),
        Trigger::Event(_) => None,
    }
}

fn describe(t: &Trigger) -> String {
    match t {
        Trigger::Event(kind) => kind.name().to_owned(),
        Trigger::Said(_, phrases) if phrases.len() == 1 => format!("\"{}\"", phrases[0].text),
        Trigger::Said(_, phrases) => format!("\"{}\" (or another of its {} phrases)", phrases[0].text, phrases.len()),
    }
}

#[cfg(test)]
mod tests {
    use crate::audio::Channel;
    use crate::rules::config::ControlKind::{Hold, Unhold};
    use crate::rules::testing::{same_verdict, ticks, Run, Step};
    use crate::rules::Status;

    const PERMISSION: &str = "kind = \"sequence\"\nmode = \"before\"\nfirst = { party = \"agent\", phrases = [\"place you on a brief hold\"] }\nthen = { event = \"hold\" }\nwithin_s = 60\n";

    #[test]
    fn hold_with_permission_passes_even_if_the_words_arrive_after_the_event() {
        let mut run = Run::new(PERMISSION);
        run.control(14.5, Hold);
        // The final of the question lands after the hold event was queued.
        run.say(Channel::Agent, 10.5, 13.3, "Can I place you on a brief hold?", true);
        run.tick(20.0).end(30.0);
        assert!(run.alerts().is_empty(), "{:?}", run.out);
        assert_eq!(run.status(), Status::Pass);
    }

    #[test]
    fn hold_without_permission_fires() {
        let mut run = Run::new(PERMISSION);
        run.control(14.5, Hold).tick(16.1);
        assert_eq!(run.alerts().len(), 1);
        assert_eq!(run.alerts()[0].start_s, 14.5);
    }

    #[test]
    fn not_triggered_is_not_applicable() {
        let mut run = Run::new(PERMISSION);
        run.end(30.0);
        assert_eq!(run.status(), Status::NotApplicable);
    }

    const THANKS: &str = "kind = \"sequence\"\nmode = \"after\"\nfirst = { event = \"unhold\" }\nthen = { party = \"agent\", phrases = [\"thank you for holding\"] }\nwithin_s = 10\n";

    #[test]
    fn thanks_after_hold_within_the_window() {
        let mut ok = Run::new(THANKS);
        ok.control(5.0, Hold).control(30.0, Unhold);
        ok.say(Channel::Agent, 31.0, 33.0, "Thank you for holding.", true)
            .tick(60.0)
            .end(60.0);
        assert!(ok.alerts().is_empty());
        assert_eq!(ok.status(), Status::Pass);

        let mut late = Run::new(THANKS);
        late.control(5.0, Hold).control(30.0, Unhold).tick(40.4);
        assert!(late.alerts().is_empty());
        late.tick(40.6);
        assert_eq!(late.alerts().len(), 1);
        assert_eq!((late.alerts()[0].start_s, late.alerts()[0].end_s), (30.0, 40.0));
    }

    /// Two holds: the first thanked late, the second on time. Live ticks,
    /// and a words clock held back by decoding then jumping past both.
    #[test]
    fn verdict_does_not_depend_on_arrival_order() {
        let facts = [
            Step::Control(5.0, Hold),
            Step::Control(10.0, Unhold),
            Step::Say(Channel::Agent, 1, 25.0, 26.0, "Thank you for holding.", true),
            Step::Control(30.0, Hold),
            Step::Control(40.0, Unhold),
            Step::Say(Channel::Agent, 2, 42.0, 43.0, "Thank you for holding.", true),
        ];
        // Controls are queued up front, as `CallRules` does with a sidecar file.
        let live = [
            vec![facts[0], facts[1], facts[3], facts[4]],
            ticks(0.0, 25.0, 0.1),
            vec![facts[2]],
            ticks(25.0, 42.0, 0.1),
            vec![facts[5]],
            ticks(42.0, 60.0, 0.1),
        ]
        .concat();
        let mut all_first = facts.to_vec();
        all_first.push(Step::Tick(60.0, 60.0));
        let held_back = vec![
            facts[0],
            facts[1],
            facts[3],
            facts[4],
            Step::Tick(41.0, 4.0),
            facts[5],
            facts[2],
            Step::Tick(60.0, 60.0),
        ];
        let verdict = same_verdict(THANKS, &[live, all_first, held_back]);
        assert_eq!(verdict.0.len(), 1, "{verdict:?}");
        assert_eq!((verdict.0[0].1, verdict.0[0].2), (10.0, 20.0));
        assert_eq!(verdict.1 .0, Status::Fail);

        let permission = [
            Step::Say(Channel::Agent, 1, 3.0, 5.0, "May I place you on a brief hold?", true),
            Step::Control(6.0, Hold),
            Step::Control(20.0, Unhold),
            Step::Control(90.0, Hold),
        ];
        let verdict = same_verdict(
            PERMISSION,
            &[
                [permission.to_vec(), ticks(0.0, 100.0, 0.1)].concat(),
                vec![
                    permission[1],
                    permission[2],
                    permission[3],
                    Step::Tick(95.0, 2.0),
                    permission[0],
                    Step::Tick(100.0, 100.0),
                ],
            ],
        );
        assert_eq!(verdict.0.len(), 1, "{verdict:?}");
        assert_eq!(verdict.0[0].1, 90.0);
    }
}
