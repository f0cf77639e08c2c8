//! `duration`: the call, or each hold, must not last longer than `max_s`.
//! Judged on the voice clock: a hold fails if it was still on `max_s` after
//! it began, whether or not the unhold was applied before the clock got there.

use super::Rule;
use crate::alerts::Party;
use crate::rules::config::State;
use crate::rules::facts::Facts;
use crate::rules::verdicts::Verdicts;
use crate::rules::Status;

pub struct Duration {
    state: State,
    max_s: f64,
    /// Holds (or the call, index 0) before this one are decided.
    next: usize,
}

impl Duration {
    pub fn new(state: State, max_s: f64) -> Self {
        Self { state, max_s, next: 0 }
    }
}

impl Rule for Duration {
    fn judge(&mut self, facts: &Facts, v: &mut Verdicts) {
        loop {
            let (since, until) = match self.state {
                State::Call if self.next == 0 => (0.0, None),
                State::Call => return,
                State::Hold => match facts.holds.get(self.next) {
                    Some(&hold) => hold,
                    None => return,
                },
            };
            let limit = since + self.max_s;
            if until.is_some_and(|u| u <= limit) {
                self.next += 1;
                continue;
            }
            if facts.now < limit {
                return;
            }
            self.next += 1;
            let what = if self.state == State::Hold { "hold" } else { "call" };
            v.fail(
                Party::Agent,
                (since, limit),
                format!("{what} longer than {} s", self.max_s),
            );
        }
    }

    fn at_end(&mut self, end: f64, facts: &Facts, v: &mut Verdicts) {
        let status = if self.state == State::Hold && facts.holds.is_empty() {
            Status::NotApplicable
        } else {
            Status::Pass
        };
        v.set(status, end, "");
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::config::ControlKind::{Hold, Unhold};
    use crate::rules::testing::{same_verdict, ticks, Run, Step};
    use crate::rules::Status;

    const HOLD: &str = "kind = \"duration\"\nstate = \"hold\"\nmax_s = 120\n";

    #[test]
    fn hold_too_long() {
        let mut run = Run::new(HOLD);
        run.control(10.0, Hold).tick(129.0);
        assert!(run.alerts().is_empty());
        run.tick(130.0);
        assert_eq!(run.alerts().len(), 1);
        let mut none = Run::new(HOLD);
        none.end(50.0);
        assert_eq!(none.status(), Status::NotApplicable);
    }

    #[test]
    fn call_too_long_once() {
        let mut run = Run::new("kind = \"duration\"\nstate = \"call\"\nmax_s = 60\n");
        run.tick(59.9);
        assert!(run.alerts().is_empty());
        run.tick(61.0).tick(200.0);
        assert_eq!(run.alerts().len(), 1);
        assert_eq!((run.alerts()[0].start_s, run.alerts()[0].end_s), (0.0, 60.0));
    }

    /// A long hold and a short one; the clock crossing them in ticks or in
    /// one jump, with the unholds already queued.
    #[test]
    fn verdict_does_not_depend_on_the_clock() {
        let holds = [
            Step::Control(10.0, Hold),
            Step::Control(140.0, Unhold),
            Step::Control(200.0, Hold),
            Step::Control(300.0, Unhold),
        ];
        let verdict = same_verdict(
            HOLD,
            &[
                [holds.to_vec(), ticks(0.0, 400.0, 0.1)].concat(),
                [holds.to_vec(), vec![Step::Tick(400.0, 400.0)]].concat(),
                [holds.to_vec(), vec![Step::End(400.0)]].concat(),
            ],
        );
        assert_eq!(
            verdict.0,
            [("r".to_owned(), 10.0, 130.0, "hold longer than 120 s".to_owned())]
        );
    }
}
