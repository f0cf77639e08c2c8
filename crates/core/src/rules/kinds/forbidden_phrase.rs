//! `forbidden_phrase`: a party must not say any of the phrases. With
//! `on_partials`, an alert goes out on the first partial transcript that has
//! the phrase; the final is the truth: it retracts the alert if the phrase
//! is gone, or replaces it if the span or words changed, so the alerts that
//! stand are those of the finals, however many partials came first.

use std::collections::HashMap;

use super::{first_match, said, Rule};
use crate::audio::Channel;
use crate::events::Transcript;
use crate::rules::config::Speaker;
use crate::rules::facts::Facts;
use crate::rules::matcher::Phrase;
use crate::rules::verdicts::Verdicts;
use crate::rules::Status;

struct Hit {
    alert: u64,
    /// Raised on a partial; the final has not confirmed it yet.
    provisional: bool,
    span: (f64, f64),
    evidence: String,
}

pub struct ForbiddenPhrase {
    party: Speaker,
    phrases: Vec<Phrase>,
    on_partials: bool,
    /// Per utterance (channel, id), the alert standing for it.
    hits: HashMap<(Channel, u64), Hit>,
}

impl ForbiddenPhrase {
    pub fn new(party: Speaker, phrases: Vec<Phrase>, on_partials: bool) -> Self {
        Self {
            party,
            phrases,
            on_partials,
            hits: HashMap::new(),
        }
    }

    /// The item shows the earliest alert standing, whatever order they came in.
    fn restate(&self, v: &mut Verdicts) {
        let earliest = self.hits.values().min_by(|a, b| a.span.0.total_cmp(&b.span.0));
        match earliest {
            Some(hit) => v.restate(Status::Fail, hit.span.0, &hit.evidence),
            None => v.restate(Status::Pending, 0.0, ""),
        }
    }
}

impl Rule for ForbiddenPhrase {
    fn heard(&mut self, t: &Transcript, _facts: &Facts, v: &mut Verdicts) {
        let Some(words) = said(t, self.party, self.on_partials) else {
            return;
        };
        let key = (t.channel, t.utterance_id);
        let span = (t.start_s, t.end_s);
        let found = first_match(&self.phrases, &words).map(|e| format!("\"{e}\""));
        let provisional = !t.is_final;
        match (found, self.hits.get_mut(&key)) {
            (Some(evidence), None) => {
                let alert = v.raise(self.party.party(), span, evidence.clone());
                self.hits.insert(
                    key,
                    Hit {
                        alert,
                        provisional,
                        span,
                        evidence,
                    },
                );
            }
            (Some(evidence), Some(hit)) if hit.provisional && t.is_final => {
                if hit.span != span || hit.evidence != evidence {
                    v.retract(hit.alert);
                    hit.alert = v.raise(self.party.party(), span, evidence.clone());
                    hit.span = span;
                    hit.evidence = evidence;
                }
                hit.provisional = false;
            }
            (None, Some(hit)) if hit.provisional && t.is_final => {
                v.retract(hit.alert);
                self.hits.remove(&key);
            }
            _ => return,
        }
        self.restate(v);
    }
}

#[cfg(test)]
mod tests {
    use crate::alerts::RuleOutput;
    use crate::audio::Channel;
    use crate::rules::testing::{same_verdict, Run, Step};
    use crate::rules::Status;

    const PROFANITY: &str =
        "kind = \"forbidden_phrase\"\nparty = \"customer\"\nphrases = [\"damn\", \"shit\"]\non_partials = true\n";

    #[test]
    fn a_partial_is_retracted_when_the_final_disagrees() {
        let mut run = Run::new(PROFANITY);
        run.say(Channel::Customer, 2.0, 3.0, "this is s***", false);
        assert_eq!(run.alerts().len(), 1);
        run.say(Channel::Customer, 2.0, 4.0, "this is super slow", true);
        assert!(
            matches!(run.out.last(), Some(RuleOutput::Retract { id: 1, .. })),
            "{:?}",
            run.out
        );
        run.end(10.0);
        assert_eq!(run.status(), Status::Pass);
    }

    #[test]
    fn an_alert_says_when_it_was_raised() {
        let mut run = Run::new(PROFANITY);
        run.tick(3.6).say(Channel::Customer, 2.0, 3.0, "this is damn", false);
        let alerts = run.alerts();
        assert_eq!(alerts[0].emitted_s, 3.6, "the voice clock when the words arrived");
        assert!((alerts[0].lag_s() - 0.6).abs() < 1e-9, "{}", alerts[0].lag_s());
        assert!(alerts[0].to_string().contains("lag 0.6 s"), "{}", alerts[0]);
    }

    #[test]
    fn a_final_confirming_a_partial_leaves_one_alert_standing() {
        let mut run = Run::new(PROFANITY);
        run.say(Channel::Customer, 2.0, 3.0, "this is damn", false);
        run.say(Channel::Customer, 2.0, 4.0, "this is damn slow", true);
        run.say(Channel::Agent, 5.0, 6.0, "damn", true); // the agent's words are another rule's
        run.end(10.0);
        let standing = run.standing();
        assert_eq!(standing.len(), 1);
        assert_eq!(standing[0].evidence, "\"damn\"");
        assert_eq!((standing[0].start_s, standing[0].end_s), (2.0, 4.0), "the final's span");
        assert_eq!(run.status(), Status::Fail);
    }

    /// Live, partials come first; replayed fast, some are shed and finals of
    /// two utterances may cross. What stands, and the scorecard, agree.
    #[test]
    fn what_stands_does_not_depend_on_partials_or_order() {
        let first = Step::Say(Channel::Customer, 1, 2.0, 4.0, "this is damn slow", true);
        let second = Step::Say(Channel::Customer, 2, 6.0, 8.0, "oh shit", true);
        let verdict = same_verdict(
            PROFANITY,
            &[
                vec![
                    Step::Say(Channel::Customer, 1, 2.0, 3.0, "this is", false),
                    Step::Say(Channel::Customer, 1, 2.0, 3.5, "this is damn", false),
                    first,
                    Step::Say(Channel::Customer, 2, 6.0, 7.0, "oh s***", false),
                    second,
                    Step::End(10.0),
                ],
                vec![second, first, Step::End(10.0)],
                vec![
                    Step::Say(Channel::Customer, 2, 6.0, 7.0, "oh sugar", false),
                    first,
                    second,
                    Step::End(10.0),
                ],
            ],
        );
        assert_eq!(
            verdict.0,
            [
                ("r".to_owned(), 2.0, 4.0, "\"damn\"".to_owned()),
                ("r".to_owned(), 6.0, 8.0, "\"shit\"".to_owned()),
            ]
        );
        assert_eq!(verdict.1, (Status::Fail, Some(2.0), "\"damn\"".to_owned()));
    }
}
