//! `periodic`: while the call is on hold, a party must say one of the
//! phrases at least every `every_s` (the agent checking in).
//!
//! Each deadline is judged once the words clock has passed it by
//! [`SETTLE_S`], against the hold as it was at the deadline: a hold that
//! ran past the deadline fails it even if the unhold was applied before the
//! words clock got there (a fast replay, where decoding lags the audio).

use super::{first_match, insert_by_time, said, Rule};
use crate::events::Transcript;
use crate::rules::config::Speaker;
use crate::rules::facts::Facts;
use crate::rules::matcher::Phrase;
use crate::rules::verdicts::Verdicts;
use crate::rules::{Status, SETTLE_S};

pub struct Periodic {
    every_s: f64,
    party: Speaker,
    phrases: Vec<Phrase>,
    /// Start times of check-ins heard, sorted.
    check_ins: Vec<f64>,
    /// The hold being judged (index into the call's holds).
    hold: usize,
    /// Last check-in, or the start of the hold, in the hold being judged.
    last: Option<f64>,
}

impl Periodic {
    pub fn new(every_s: f64, party: Speaker, phrases: Vec<Phrase>) -> Self {
        Self {
            every_s,
            party,
            phrases,
            check_ins: Vec::new(),
            hold: 0,
            last: None,
        }
    }
}

impl Rule for Periodic {
    fn heard(&mut self, t: &Transcript, _facts: &Facts, _v: &mut Verdicts) {
        if said(t, self.party, false).is_some_and(|w| first_match(&self.phrases, &w).is_some()) {
            insert_by_time(&mut self.check_ins, t.start_s, |t| *t);
        }
    }

    fn judge(&mut self, facts: &Facts, v: &mut Verdicts) {
        while let Some(&(start, end)) = facts.holds.get(self.hold) {
            let last = *self.last.get_or_insert(start);
            let deadline = last + self.every_s;
            if end.is_some_and(|e| e <= deadline) {
                // Off hold by the deadline: nothing more to judge in this hold.
                self.hold += 1;
                self.last = None;
                continue;
            }
            if facts.words_now < deadline + SETTLE_S {
                return;
            }
            // Every check-in begun before the settle margin has arrived by now.
            let until = (deadline + SETTLE_S).min(end.unwrap_or(f64::INFINITY));
            let latest = self.check_ins.iter().rev().find(|&&t| t > last && t < until);
            match latest {
                Some(&t) => self.last = Some(t),
                None => {
                    self.last = Some(deadline);
                    v.fail(
                        self.party.party(),
                        (last, deadline),
                        format!("no check-in for {} s of hold", self.every_s),
                    );
                }
            }
        }
    }

    fn at_end(&mut self, end: f64, facts: &Facts, v: &mut Verdicts) {
        let status = if facts.holds.is_empty() {
            Status::NotApplicable
        } else {
            Status::Pass
        };
        v.set(status, end, "");
    }
}

#[cfg(test)]
mod tests {
    use crate::audio::Channel;
    use crate::rules::config::ControlKind::{Hold, Unhold};
    use crate::rules::testing::{same_verdict, ticks, Run, Step};
    use crate::rules::Status;

    const CHECK_IN: &str = "kind = \"periodic\"\nstate = \"hold\"\nevery_s = 60\nparty = \"agent\"\nphrases = [\"still with you\", \"still checking\"]\n";

    #[test]
    fn check_in_during_hold() {
        let mut run = Run::new(CHECK_IN);
        run.control(10.0, Hold);
        run.say(Channel::Agent, 60.0, 62.0, "I am still checking for you.", true);
        run.tick(120.4);
        assert!(run.alerts().is_empty(), "check-in at 60 s resets the period");
        run.tick(120.6);
        assert_eq!(run.alerts().len(), 1);
        run.control(150.0, Unhold).tick(300.0);
        assert_eq!(run.alerts().len(), 1, "no alerts once off hold");
    }

    /// The bug found on a held-out call: a 73 s hold with no agent speech.
    /// Live, the words clock reaches the deadline before the unhold; fast,
    /// it jumps past both at once. Both must fail the check-in at 70 s.
    #[test]
    fn a_hold_past_the_deadline_fails_whatever_the_clocks_did() {
        let hold = [Step::Control(10.0, Hold), Step::Control(83.0, Unhold)];
        let customer = Step::Say(Channel::Customer, 1, 30.0, 32.0, "Hello? Anyone there?", true);
        let live = [
            hold.to_vec(),
            ticks(0.0, 30.0, 0.1),
            vec![customer],
            ticks(30.0, 90.0, 0.1),
        ]
        .concat();
        let fast = [
            hold.to_vec(),
            vec![Step::Tick(85.0, 29.0), customer, Step::Tick(90.0, 90.0)],
        ]
        .concat();
        let at_end = [hold.to_vec(), vec![customer, Step::End(90.0)]].concat();
        let verdict = same_verdict(CHECK_IN, &[live, fast, at_end]);
        assert_eq!(
            verdict.0,
            [("r".to_owned(), 10.0, 70.0, "no check-in for 60 s of hold".to_owned())]
        );
        assert_eq!(verdict.1 .0, Status::Fail);

        // Off hold before the deadline: nothing, however the clocks moved.
        let short = [Step::Control(10.0, Hold), Step::Control(69.0, Unhold)];
        let verdict = same_verdict(
            CHECK_IN,
            &[
                [short.to_vec(), ticks(0.0, 90.0, 0.1), vec![Step::End(90.0)]].concat(),
                [short.to_vec(), vec![Step::Tick(90.0, 5.0), Step::End(90.0)]].concat(),
            ],
        );
        assert!(verdict.0.is_empty());
        assert_eq!(verdict.1 .0, Status::Pass);
    }

    /// A check-in whose final arrives out of order, or before the clock
    /// reaches it, counts by when it was said.
    #[test]
    fn check_ins_count_by_call_time() {
        let facts = [
            Step::Control(10.0, Hold),
            Step::Control(200.0, Unhold),
            Step::Say(Channel::Agent, 2, 100.0, 101.0, "Still checking.", true),
            Step::Say(Channel::Agent, 1, 50.0, 51.0, "I am still with you.", true),
        ];
        let verdict = same_verdict(
            CHECK_IN,
            &[
                [
                    facts[..2].to_vec(),
                    ticks(0.0, 50.0, 0.5),
                    vec![facts[3]],
                    ticks(50.0, 100.0, 0.5),
                    vec![facts[2]],
                    ticks(100.0, 220.0, 0.5),
                ]
                .concat(),
                [facts.to_vec(), vec![Step::Tick(220.0, 220.0)]].concat(),
                [facts.to_vec(), vec![Step::Tick(150.0, 40.0), Step::Tick(220.0, 220.0)]].concat(),
            ],
        );
        // Check-ins at 50 and 100; deadlines 160 (missed) and 220 (off hold at 200).
        assert_eq!(verdict.0.len(), 1, "{verdict:?}");
        assert_eq!((verdict.0[0].1, verdict.0[0].2), (100.0, 160.0));
    }
}
