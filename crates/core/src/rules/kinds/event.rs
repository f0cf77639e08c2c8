//! `event`: a call-control event is an offence by itself (a dropped call).

use super::Rule;
use crate::alerts::Party;
use crate::rules::config::ControlKind;
use crate::rules::facts::Facts;
use crate::rules::verdicts::Verdicts;
use crate::rules::{Control, Status};

pub struct OnEvent {
    event: ControlKind,
}

impl OnEvent {
    pub fn new(event: ControlKind) -> Self {
        Self { event }
    }
}

impl Rule for OnEvent {
    fn control(&mut self, c: &Control, _facts: &Facts, v: &mut Verdicts) {
        if c.kind == self.event {
            v.fail(
                Party::Both,
                (c.t_s, c.t_s),
                format!("call {} at {:.1} s", self.event.name(), c.t_s),
            );
        }
    }

    /// The event never happened.
    fn at_end(&mut self, end: f64, _facts: &Facts, v: &mut Verdicts) {
        v.set(Status::NotApplicable, end, "");
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::config::ControlKind::{Dropped, Hold};
    use crate::rules::testing::{same_verdict, ticks, Run, Step};
    use crate::rules::Status;

    const DROPPED: &str = "kind = \"event\"\nevent = \"dropped\"\n";

    #[test]
    fn fires_on_the_event_and_is_otherwise_not_applicable() {
        let mut run = Run::new(DROPPED);
        run.control(5.0, Hold).control(12.0, Dropped).tick(12.0);
        assert_eq!(run.alerts().len(), 1);
        assert_eq!(run.alerts()[0].evidence, "call dropped at 12.0 s");
        let mut none = Run::new(DROPPED);
        none.control(5.0, Hold).end(20.0);
        assert!(none.alerts().is_empty());
        assert_eq!(none.status(), Status::NotApplicable);
    }

    #[test]
    fn verdict_does_not_depend_on_the_clock() {
        let dropped = Step::Control(12.0, Dropped);
        let verdict = same_verdict(
            DROPPED,
            &[
                [vec![dropped], ticks(0.0, 20.0, 0.1)].concat(),
                [ticks(0.0, 11.0, 0.1), vec![dropped, Step::Tick(20.0, 20.0)]].concat(),
                vec![dropped, Step::End(20.0)],
            ],
        );
        assert_eq!(
            verdict.0,
            [("r".to_owned(), 12.0, 12.0, "call dropped at 12.0 s".to_owned())]
        );
        assert_eq!(verdict.1 .0, Status::Fail);
    }
}
