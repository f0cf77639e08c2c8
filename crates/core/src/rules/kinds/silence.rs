//! `silence`: mode `dead_air`, both parties silent for `min_s` off hold;
//! mode `mute_instead_of_hold`, the agent uses mute (alerted on the first
//! mute) or is silent for `min_s` off hold once they have spoken.
//!
//! Quiet stretches are found in the call's speech segments and holds by
//! call time, up to where voice activity is known; so a stretch is judged
//! the same whether the clock crossed it in 100 ms ticks or one jump.

use super::Rule;
use crate::alerts::Party;
use crate::rules::config::{ControlKind, Speaker};
use crate::rules::facts::Facts;
use crate::rules::verdicts::Verdicts;
use crate::rules::Control;

pub struct Silence {
    min_s: f64,
    /// Whose silence counts: both parties (dead air) or the agent (mute).
    parties: &'static [Speaker],
    /// Mode `mute_instead_of_hold`: a mute event is an offence by itself.
    mute: bool,
    mute_reported: bool,
    /// Start of the last quiet stretch reported.
    reported: Option<f64>,
    /// Stretches before this time are decided.
    from: f64,
}

impl Silence {
    pub fn dead_air(min_s: f64) -> Self {
        Self::new(min_s, &[Speaker::Agent, Speaker::Customer], false)
    }

    pub fn mute_instead_of_hold(min_s: f64) -> Self {
        Self::new(min_s, &[Speaker::Agent], true)
    }

    fn new(min_s: f64, parties: &'static [Speaker], mute: bool) -> Self {
        Self {
            min_s,
            parties,
            mute,
            mute_reported: false,
            reported: None,
            from: 0.0,
        }
    }
}

impl Rule for Silence {
    fn control(&mut self, c: &Control, _facts: &Facts, v: &mut Verdicts) {
        if self.mute && c.kind == ControlKind::Mute && !self.mute_reported {
            self.mute_reported = true;
            let t = c.t_s;
            v.fail(Party::Agent, (t, t), format!("mute at {t:.1} s instead of hold"));
        }
    }

    fn judge(&mut self, facts: &Facts, v: &mut Verdicts) {
        let mut from = self.from;
        if self.mute {
            // The agent's silence counts only once they have spoken.
            let Some(first) = facts.track(Speaker::Agent).segments.first() else {
                return;
            };
            from = from.max(first.0);
        }
        let known = facts.voice_known();
        if known <= from {
            return;
        }
        for (start, end) in facts.quiet(self.parties, from, known) {
            self.from = start;
            if end - start < self.min_s || self.reported.is_some_and(|r| start <= r) {
                continue;
            }
            self.reported = Some(start);
            let span = (start, start + self.min_s);
            if self.mute {
                let evidence = format!("agent silent for {} s from {start:.1} s without a hold", self.min_s);
                v.fail(Party::Agent, span, evidence);
            } else {
                let evidence = format!("both parties silent for {} s from {start:.1} s", self.min_s);
                v.fail(Party::Both, span, evidence);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::audio::Channel::{Agent, Customer};
    use crate::rules::config::ControlKind::{Hold, Mute, Unhold};
    use crate::rules::testing::{same_verdict, ticks, Run, Step};

    const DEAD_AIR: &str = "kind = \"silence\"\nmode = \"dead_air\"\nmin_s = 10\n";
    const MUTE: &str = "kind = \"silence\"\nmode = \"mute_instead_of_hold\"\nmin_s = 30\n";

    #[test]
    fn dead_air_but_not_on_hold() {
        let mut run = Run::new(DEAD_AIR);
        run.voice(Agent, true, 0.5).voice(Agent, false, 4.0);
        run.tick(14.4);
        assert!(run.alerts().is_empty());
        run.tick(14.6);
        assert_eq!(run.alerts().len(), 1);
        assert_eq!((run.alerts()[0].start_s, run.alerts()[0].end_s), (4.0, 14.0));

        let mut held = Run::new(DEAD_AIR);
        held.voice(Agent, true, 0.5)
            .voice(Agent, false, 4.0)
            .control(5.0, Hold)
            .tick(60.0);
        assert!(held.alerts().is_empty());
    }

    #[test]
    fn mute_event_and_long_agent_silence() {
        let mut muted = Run::new(MUTE);
        muted
            .voice(Agent, true, 0.5)
            .voice(Agent, false, 4.0)
            .control(6.0, Mute);
        assert!(muted.alerts().is_empty(), "applies when the clock reaches it");
        muted.tick(6.0);
        assert_eq!(muted.alerts().len(), 1);

        let mut silent = Run::new(MUTE);
        silent.voice(Agent, true, 0.5).voice(Agent, false, 4.0);
        silent
            .voice(Customer, true, 10.0)
            .voice(Customer, false, 20.0)
            .tick(34.6);
        assert_eq!(silent.alerts().len(), 1);
    }

    /// Dead air, then a hold, then more dead air after the unhold: live
    /// ticks, or one jump over all of it with the hold queued.
    #[test]
    fn dead_air_verdict_does_not_depend_on_the_clock() {
        let facts = [
            Step::Voice(Agent, true, 0.5),
            Step::Voice(Agent, false, 4.0),
            Step::Control(16.0, Hold),
            Step::Control(50.0, Unhold),
            Step::Voice(Customer, true, 58.0),
            Step::Voice(Customer, false, 59.0),
        ];
        let live = [
            facts[..4].to_vec(),
            ticks(0.0, 58.0, 0.1),
            facts[4..].to_vec(),
            ticks(58.0, 80.0, 0.1),
        ]
        .concat();
        let jump = [facts.to_vec(), vec![Step::Tick(80.0, 80.0)]].concat();
        let verdict = same_verdict(DEAD_AIR, &[live, jump]);
        let spans: Vec<(f64, f64)> = verdict.0.iter().map(|a| (a.1, a.2)).collect();
        // 4–16 before the hold; 50–58 is too short; 59 on.
        assert_eq!(spans, [(4.0, 14.0), (59.0, 69.0)]);
    }

    #[test]
    fn mute_verdict_does_not_depend_on_the_clock() {
        let facts = [
            Step::Voice(Agent, true, 0.5),
            Step::Voice(Agent, false, 4.0),
            Step::Control(40.0, Mute),
            Step::Voice(Agent, true, 45.0),
            Step::Voice(Agent, false, 46.0),
        ];
        let live = [
            facts[..3].to_vec(),
            ticks(0.0, 45.0, 0.1),
            facts[3..].to_vec(),
            ticks(45.0, 90.0, 0.1),
        ]
        .concat();
        let jump = [facts.to_vec(), vec![Step::Tick(90.0, 90.0)]].concat();
        let verdict = same_verdict(MUTE, &[live, jump]);
        let spans: Vec<(f64, f64)> = verdict.0.iter().map(|a| (a.1, a.2)).collect();
        assert_eq!(spans, [(4.0, 34.0), (40.0, 40.0), (46.0, 76.0)]);
        assert_eq!(verdict.1 .1, Some(4.0), "the first failure in call time");
    }
}
