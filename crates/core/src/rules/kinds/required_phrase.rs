//! `required_phrase`: a party must say one phrase of every group, within a
//! window from the call's start or at any time before it ends; optionally
//! only when some condition phrase was heard.

use super::{first_match, said, Rule};
use crate::events::Transcript;
use crate::rules::config::{Speaker, Window};
use crate::rules::facts::Facts;
use crate::rules::matcher::{normalise, Phrase};
use crate::rules::verdicts::Verdicts;
use crate::rules::{Status, SETTLE_S};

pub struct RequiredPhrase {
    party: Speaker,
    groups: Vec<Vec<Phrase>>,
    window: Window,
    /// The rule applies only once one of these was heard (empty: always).
    when: Vec<Phrase>,
    /// Per group, the earliest utterance (start, words heard) that matched.
    matched: Vec<Option<(f64, String)>>,
    when_seen: bool,
}

impl RequiredPhrase {
    pub fn new(party: Speaker, groups: Vec<Vec<Phrase>>, window: Window, when: Vec<Phrase>) -> Self {
        Self {
            party,
            matched: vec![None; groups.len()],
            groups,
            window,
            when,
            when_seen: false,
        }
    }

    fn missing(&self) -> String {
        self.groups
            .iter()
            .zip(&self.matched)
            .filter(|(_, m)| m.is_none())
            .map(|(g, _)| format!("\"{}\"", g[0].text))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Rule for RequiredPhrase {
    fn heard(&mut self, t: &Transcript, _facts: &Facts, _v: &mut Verdicts) {
        if t.is_final && !self.when.is_empty() && !self.when_seen {
            self.when_seen = first_match(&self.when, &normalise(&t.text)).is_some();
        }
        let Some(words) = said(t, self.party, false) else {
            return;
        };
        if let Window::Start(w) = self.window {
            if t.start_s > w {
                return;
            }
        }
        // The earliest match, whatever order the finals came in.
        for (slot, group) in self.matched.iter_mut().zip(&self.groups) {
            if slot.as_ref().is_none_or(|m| t.start_s < m.0) {
                if let Some(e) = first_match(group, &words) {
                    *slot = Some((t.start_s, e));
                }
            }
        }
    }

    fn judge(&mut self, facts: &Facts, v: &mut Verdicts) {
        if v.status() != Status::Pending {
            return;
        }
        // Passes once every group was heard and the rule applies (its `when`
        // may be heard after the phrase itself), and no earlier utterance can
        // still arrive to change the evidence.
        let applies = self.when.is_empty() || self.when_seen;
        if applies && self.matched.iter().all(Option::is_some) {
            let at = self.matched.iter().flatten().map(|m| m.0).fold(0.0, f64::max);
            if facts.words_now >= at {
                let evidence = self
                    .matched
                    .iter()
                    .flatten()
                    .map(|m| format!("\"{}\"", m.1))
                    .collect::<Vec<_>>()
                    .join(", ");
                v.pass(at, &evidence);
                return;
            }
        }
        if let Window::Start(w) = self.window {
            if facts.words_now >= w + SETTLE_S {
                let missing = self.missing();
                v.fail(
                    self.party.party(),
                    (0.0, w),
                    format!("not said in the first {w} s: {missing}"),
                );
            }
        }
    }

    fn at_end(&mut self, end: f64, _facts: &Facts, v: &mut Verdicts) {
        if !self.when.is_empty() && !self.when_seen {
            v.set(Status::NotApplicable, end, "");
        } else {
            let missing = self.missing();
            v.fail(self.party.party(), (end, end), format!("never said: {missing}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::audio::Channel;
    use crate::rules::testing::{same_verdict, ticks, Run, Step};
    use crate::rules::Status;

    const GREETING: &str = "kind = \"required_phrase\"\nparty = \"agent\"\nwindow = \"start\"\nwithin_s = 15\ngroups = [[\"thank you for calling\"], [\"my name is\", \"this is\"]]\n";

    #[test]
    fn passes_when_every_group_is_heard_in_time() {
        let mut run = Run::new(GREETING);
        run.say(
            Channel::Agent,
            0.5,
            5.0,
            "Thank you for calling Acme, my name is Sam.",
            true,
        )
        .tick(30.0)
        .end(40.0);
        assert!(run.alerts().is_empty());
        assert_eq!(run.status(), Status::Pass);
    }

    #[test]
    fn fires_on_the_clock_without_new_speech() {
        let mut run = Run::new(GREETING);
        run.say(Channel::Agent, 0.5, 3.0, "Hello, thank you for calling.", true);
        run.tick(15.4);
        assert!(run.alerts().is_empty(), "judged before the words could settle");
        run.tick(15.6);
        let alerts = run.alerts();
        assert_eq!(alerts.len(), 1);
        assert!(alerts[0].evidence.contains("my name is"), "{}", alerts[0].evidence);
        assert_eq!((alerts[0].start_s, alerts[0].end_s), (0.0, 15.0));
        assert_eq!(run.status(), Status::Fail);
    }

    #[test]
    fn when_condition_makes_it_not_applicable() {
        let rule = "kind = \"required_phrase\"\nparty = \"agent\"\nwindow = \"call\"\ngroups = [[\"your ticket number is\"]]\nwhen = [\"ticket\"]\n";
        let mut quiet = Run::new(rule);
        quiet
            .say(Channel::Customer, 1.0, 2.0, "My internet is down.", true)
            .end(10.0);
        assert!(quiet.alerts().is_empty());
        assert_eq!(quiet.status(), Status::NotApplicable);

        let mut missed = Run::new(rule);
        missed
            .say(Channel::Agent, 1.0, 2.0, "I have opened a ticket for you.", true)
            .end(10.0);
        assert_eq!(missed.alerts().len(), 1);
    }

    /// Finals out of order (two decoder workers) and a words clock that
    /// jumps past the window: the same evidence, the earliest words.
    #[test]
    fn verdict_does_not_depend_on_arrival_order() {
        let late = Step::Say(
            Channel::Agent,
            2,
            9.0,
            11.0,
            "Thank you for calling, this is Sam.",
            true,
        );
        let early = Step::Say(Channel::Agent, 1, 1.0, 4.0, "Thank you for calling.", true);
        let live = [vec![early], ticks(0.0, 9.0, 0.1), vec![late], ticks(9.0, 20.0, 0.1)].concat();
        let verdict = same_verdict(
            GREETING,
            &[
                live,
                vec![late, early, Step::Tick(20.0, 20.0)],
                vec![late, Step::Tick(5.0, 0.5), early, Step::Tick(20.0, 20.0)],
            ],
        );
        assert!(verdict.0.is_empty());
        assert_eq!(verdict.1 .0, Status::Pass);
        assert_eq!(verdict.1 .2, "\"thank you for calling\", \"this is\"");

        let missed = [Step::Say(Channel::Agent, 1, 16.0, 18.0, "My name is Sam.", true)];
        let verdict = same_verdict(
            GREETING,
            &[
                [ticks(0.0, 16.0, 0.1), missed.to_vec(), ticks(16.0, 30.0, 0.1)].concat(),
                [
                    vec![Step::Tick(16.0, 16.0)],
                    missed.to_vec(),
                    vec![Step::Tick(30.0, 30.0)],
                ]
                .concat(),
            ],
        );
        assert_eq!(verdict.0.len(), 1);
        assert_eq!((verdict.0[0].1, verdict.0[0].2), (0.0, 15.0));
    }
}
