//! `required_phrase`: a party must say one phrase of every group, within a
//! window from the call's start or at any time before it ends; optionally
//! only when some condition phrase was heard.

use super::{first_match, said, Rule};
use crate::events::Transcript;
use crate::rules::config::{ControlKind, Group, Speaker, Window};
use crate::rules::facts::Facts;
use crate::rules::matcher::{normalise, Phrase};
use crate::rules::verdicts::Verdicts;
use crate::rules::{Control, Status, SETTLE_S};

pub struct RequiredPhrase {
    party: Speaker,
    groups: Vec<Group>,
    window: Window,
    /// The rule applies only once one of these was heard (empty: always).
    when: Vec<Phrase>,
    /// A call event after which the rule no longer applies.
    unless: Option<ControlKind>,
    /// Per group, the utterance (start, evidence) that matched: the earliest,
    /// or in the closing window the latest.
    matched: Vec<Option<(f64, String)>>,
    when_seen: bool,
    /// The party's finals (start, normalised words), kept only when a group
    /// accepts the caller's name: a name heard later still credits them.
    finals: Vec<(f64, Vec<String>)>,
    /// How many words of the caller's name `finals` were checked against.
    names_checked: usize,
}

impl RequiredPhrase {
    pub fn new(
        party: Speaker,
        groups: Vec<Group>,
        window: Window,
        when: Vec<Phrase>,
        unless: Option<ControlKind>,
    ) -> Self {
        Self {
            party,
            unless,
            matched: vec![None; groups.len()],
            groups,
            window,
            when,
            when_seen: false,
            finals: Vec::new(),
            names_checked: 0,
        }
    }

    fn wants_name(&self) -> bool {
        self.groups.iter().any(|g| g.caller_name)
    }

    /// Matches one utterance against every group, keeping per group the
    /// match the window prefers, whatever order the finals came in.
    fn offer(&mut self, start: f64, words: &[String], names: &[String]) {
        let latest = matches!(self.window, Window::End(_));
        for (slot, group) in self.matched.iter_mut().zip(&self.groups) {
            let better = slot
                .as_ref()
                .is_none_or(|m| if latest { start > m.0 } else { start < m.0 });
            if !better {
                continue;
            }
            let phrase = first_match(&group.phrases, words).map(|e| format!("\"{e}\""));
            let name = || {
                group
                    .caller_name
                    .then(|| words.iter().find(|w| names.contains(w)))
                    .flatten()
                    .map(|w| format!("\"{w}\" (the caller's name)"))
            };
            if let Some(evidence) = phrase.or_else(name) {
                *slot = Some((start, evidence));
            }
        }
    }

    /// Groups with no match at or after `from`, by their first phrase.
    fn missing(&self, from: f64) -> String {
        self.groups
            .iter()
            .zip(&self.matched)
            .filter(|(_, m)| m.as_ref().is_none_or(|m| m.0 < from))
            .map(|(g, _)| match (g.phrases.first(), g.caller_name) {
                (Some(p), false) => format!("\"{}\"", p.text),
                (Some(p), true) => format!("the caller's name or \"{}\"", p.text),
                (None, _) => "the caller's name".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn evidence(&self) -> String {
        self.matched
            .iter()
            .flatten()
            .map(|m| m.1.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Rule for RequiredPhrase {
    fn heard(&mut self, t: &Transcript, facts: &Facts, _v: &mut Verdicts) {
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
        self.offer(t.start_s, &words, &facts.caller.words);
        if self.wants_name() {
            self.finals.push((t.start_s, words));
        }
    }

    fn control(&mut self, c: &Control, _facts: &Facts, v: &mut Verdicts) {
        if Some(c.kind) == self.unless && v.status() == Status::Pending {
            v.set(Status::NotApplicable, c.t_s, "");
        }
    }

    fn judge(&mut self, facts: &Facts, v: &mut Verdicts) {
        if v.status() != Status::Pending {
            return;
        }
        let names = &facts.caller.words;
        if names.len() > self.names_checked && self.wants_name() {
            self.names_checked = names.len();
            for (start, words) in std::mem::take(&mut self.finals) {
                self.offer(start, &words, names);
                self.finals.push((start, words));
            }
        }
        // The closing is known only when the call ends.
        if matches!(self.window, Window::End(_)) {
            return;
        }
        // Passes once every group was heard and the rule applies (its `when`
        // may be heard after the phrase itself), and no earlier utterance can
        // still arrive to change the evidence.
        let applies = self.when.is_empty() || self.when_seen;
        if applies && self.matched.iter().all(Option::is_some) {
            let at = self.matched.iter().flatten().map(|m| m.0).fold(0.0, f64::max);
            if facts.words_now >= at {
                v.pass(at, &self.evidence());
                return;
            }
        }
        if let Window::Start(w) = self.window {
            if facts.words_now >= w + SETTLE_S {
                let missing = self.missing(f64::NEG_INFINITY);
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
            return;
        }
        let Window::End(w) = self.window else {
            let missing = self.missing(f64::NEG_INFINITY);
            v.fail(self.party.party(), (end, end), format!("never said: {missing}"));
            return;
        };
        let from = end - w.min(end / 2.0);
        let missing = self.missing(from);
        if missing.is_empty() {
            let at = self.matched.iter().flatten().map(|m| m.0).fold(0.0, f64::max);
            v.pass(at, &self.evidence());
        } else {
            let last = end - from;
            // Like every verdict decided at hang-up, the alert is about the end.
            v.fail(
                self.party.party(),
                (end, end),
                format!("not said in the closing (last {last:.0} s): {missing}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::audio::Channel;
    use crate::rules::config::ControlKind;
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

    const USE_NAME: &str = "kind = \"required_phrase\"\nparty = \"agent\"\nwindow = \"call\"\ngroups = [[\"{caller_name}\", \"sir\", \"madam\"]]\n";

    #[test]
    fn the_callers_first_or_last_name_counts_in_any_arrival_order() {
        let given = Step::Say(Channel::Customer, 1, 4.0, 6.0, "Hi, my name is Dana Reyes.", true);
        let used = Step::Say(Channel::Agent, 2, 7.0, 9.0, "Thanks, Dana, let me check.", true);
        let verdict = same_verdict(
            USE_NAME,
            &[
                vec![given, used, Step::Tick(20.0, 20.0)],
                vec![used, given, Step::Tick(20.0, 20.0)],
                vec![used, Step::Tick(6.5, 3.0), given, Step::Tick(20.0, 20.0)],
            ],
        );
        assert!(verdict.0.is_empty());
        assert_eq!(verdict.1 .0, Status::Pass);
        assert_eq!(verdict.1 .2, "\"dana\" (the caller's name)");
    }

    #[test]
    fn a_name_the_caller_never_gave_does_not_count() {
        let mut run = Run::new(USE_NAME);
        run.say(Channel::Agent, 0.5, 3.0, "Thank you for calling, my name is Sam.", true)
            .say(Channel::Customer, 4.0, 6.0, "My order is late.", true)
            .say(Channel::Agent, 7.0, 9.0, "Sam here will check that.", true)
            .end(20.0);
        assert_eq!(run.status(), Status::Fail);
        assert!(
            run.alerts()[0].evidence.contains("the caller's name"),
            "{}",
            run.alerts()[0].evidence
        );
    }

    const CLOSING: &str = "kind = \"required_phrase\"\nparty = \"agent\"\nwindow = \"end\"\nwithin_s = 60\ngroups = [[\"for calling\"]]\n";

    #[test]
    fn the_greeting_is_not_the_closing() {
        let mut long = Run::new(CLOSING);
        long.say(Channel::Agent, 0.5, 3.0, "Thank you for calling Acme.", true)
            .say(Channel::Agent, 195.0, 197.0, "Goodbye.", true)
            .end(200.0);
        assert_eq!(long.status(), Status::Fail);
        assert!(
            long.alerts()[0]
                .evidence
                .starts_with("not said in the closing (last 60 s)"),
            "{}",
            long.alerts()[0].evidence
        );

        // A short call: its first half is never its closing.
        let mut short = Run::new(CLOSING);
        short
            .say(Channel::Agent, 0.5, 3.0, "Thank you for calling Acme.", true)
            .say(Channel::Agent, 20.0, 22.0, "Goodbye.", true)
            .end(24.0);
        assert_eq!(short.status(), Status::Fail);

        let mut thanked = Run::new(CLOSING);
        thanked
            .say(Channel::Agent, 0.5, 3.0, "Thank you for calling Acme.", true)
            .say(Channel::Agent, 20.0, 22.0, "Thanks for calling, goodbye.", true)
            .end(24.0);
        assert!(thanked.alerts().is_empty());
        assert_eq!(thanked.status(), Status::Pass);
    }

    #[test]
    fn a_transfer_hands_the_closing_to_whoever_takes_the_call() {
        let rule = format!("{CLOSING}unless = \"transfer\"\n");
        let mut run = Run::new(&rule);
        run.say(Channel::Agent, 0.5, 3.0, "Thank you for calling Acme.", true)
            .control(30.0, ControlKind::Transfer)
            .end(40.0);
        assert!(run.alerts().is_empty());
        assert_eq!(run.status(), Status::NotApplicable);
    }
}
