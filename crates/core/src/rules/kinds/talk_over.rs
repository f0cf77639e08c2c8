//! `talk_over`: one party starts speaking while the other is mid-turn and
//! both keep going for at least `min_overlap_s`. A short interjection
//! ("mm-hm", "okay") under `backchannel_s` is a backchannel, not an
//! interruption.
//!
//! The alert spans the interruption's start to the moment the overlap
//! reached `min_overlap_s`: a fact about the call, the same however often
//! the clock ticked while it was being decided.

use super::Rule;
use crate::rules::config::Speaker;
use crate::rules::facts::Facts;
use crate::rules::verdicts::Verdicts;

pub struct TalkOver {
    interrupter: Speaker,
    min_overlap_s: f64,
    backchannel_s: f64,
    /// The interrupter's segments before this one are decided.
    next: usize,
    /// Start times of interrupting segments already reported.
    reported: Vec<f64>,
}

impl TalkOver {
    pub fn new(interrupter: Speaker, min_overlap_s: f64, backchannel_s: f64) -> Self {
        Self {
            interrupter,
            min_overlap_s,
            backchannel_s,
            next: 0,
            reported: Vec::new(),
        }
    }
}

impl Rule for TalkOver {
    fn judge(&mut self, facts: &Facts, v: &mut Verdicts) {
        let victim = match self.interrupter {
            Speaker::Agent => Speaker::Customer,
            Speaker::Customer => Speaker::Agent,
        };
        let (by, over) = (facts.track(self.interrupter), facts.track(victim));
        let (by_until, over_until) = (facts.voiced_until(self.interrupter), facts.voiced_until(victim));
        for (n, &(a, a_end)) in by.segments.iter().enumerate().skip(self.next) {
            // Decided once reported, or once over and every voice event up to its end is in.
            let settled =
                |reported: &[f64]| reported.contains(&a) || a_end.is_some_and(|e| e <= facts.segments_known());
            if settled(&self.reported) {
                if n == self.next {
                    self.next += 1;
                }
                continue;
            }
            // The other party must have started first and still be speaking at `a`.
            let Some(&(b, b_end)) = over.segments.iter().rev().find(|(b, _)| *b < a) else {
                continue;
            };
            if b_end.is_some_and(|e| e <= a) {
                continue;
            }
            let end = a_end.unwrap_or(by_until).min(b_end.unwrap_or(over_until));
            let turn = a_end.unwrap_or(by_until) - a;
            if end - a >= self.min_overlap_s && turn >= self.backchannel_s {
                self.reported.push(a);
                let (who, whom) = match self.interrupter {
                    Speaker::Agent => ("agent", "customer"),
                    Speaker::Customer => ("customer", "agent"),
                };
                let evidence = format!(
                    "{who} started at {a:.1} s while the {whom} was speaking (since {b:.1} s), overlap ≥ {:.1} s",
                    self.min_overlap_s
                );
                v.fail(self.interrupter.party(), (a, a + self.min_overlap_s), evidence);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::audio::Channel;
    use crate::rules::testing::{same_verdict, ticks, Run, Step};
    use crate::rules::CallEvent;

    const TALK_OVER: &str =
        "kind = \"talk_over\"\ninterrupter = \"agent\"\nmin_overlap_ms = 1000\nbackchannel_ms = 600\n";

    #[test]
    fn agent_talking_over_the_customer_fires_once_known() {
        let mut run = Run::new(TALK_OVER);
        run.voice(Channel::Customer, true, 1.0).voice(Channel::Agent, true, 3.0);
        run.tick(4.4);
        assert!(run.alerts().is_empty(), "1.0 s of overlap not yet settled");
        run.tick(4.6);
        assert_eq!(run.alerts().len(), 1);
        assert_eq!(run.alerts()[0].start_s, 3.0);
        run.tick(8.0);
        assert_eq!(run.alerts().len(), 1, "one alert per interruption");
    }

    #[test]
    fn backchannels_and_customer_interruptions_do_not_count() {
        let mut run = Run::new(TALK_OVER);
        // "mm-hm" from the agent: 0.4 s inside the customer's turn.
        run.voice(Channel::Customer, true, 1.0)
            .voice(Channel::Agent, true, 3.0)
            .voice(Channel::Agent, false, 3.4);
        // The customer cuts in on the agent: not the agent's fault.
        run.voice(Channel::Customer, false, 5.0)
            .voice(Channel::Agent, true, 6.0)
            .voice(Channel::Customer, true, 7.0);
        run.tick(12.0);
        assert!(run.alerts().is_empty(), "{:?}", run.out);
    }

    /// With voiced frames reported by the front end, acoustic rules do not wait
    /// for the hangover: talk-over is known the moment both were voiced long enough.
    #[test]
    fn reported_voiced_frames_remove_the_hangover_wait() {
        let mut run = Run::new(TALK_OVER);
        run.voice(Channel::Customer, true, 1.0).voice(Channel::Agent, true, 3.0);
        let tick = |run: &mut Run, t: f64| {
            run.out.extend(run.engine.process(CallEvent::Tick {
                t_s: t,
                words_s: t,
                voiced_until: Some([t, t]),
            }));
        };
        tick(&mut run, 3.9);
        assert!(run.alerts().is_empty());
        tick(&mut run, 4.0);
        assert_eq!(run.alerts().len(), 1, "fires at the condition, not 0.55 s later");
    }

    /// The two channels' events interleaved differently, ticks dense or one
    /// jump over several interruptions: the same alerts, the same spans.
    #[test]
    fn verdict_does_not_depend_on_arrival_order_or_ticks() {
        use Channel::{Agent, Customer};
        let customer = [
            Step::Voice(Customer, true, 1.0),
            Step::Voice(Customer, false, 5.0),
            Step::Voice(Customer, true, 10.0),
            Step::Voice(Customer, false, 14.0),
        ];
        let agent = [
            Step::Voice(Agent, true, 3.0),
            Step::Voice(Agent, false, 6.0),
            Step::Voice(Agent, true, 12.0),
            Step::Voice(Agent, false, 13.5),
        ];
        // Each voice event arrives before the clock, less the hangover, passes it.
        let live = vec![
            customer[0],
            Step::Tick(2.0, 2.0),
            agent[0],
            Step::Tick(4.0, 4.0),
            Step::Tick(5.0, 5.0),
            customer[1],
            Step::Tick(5.5, 5.5),
            agent[1],
            Step::Tick(6.5, 6.5),
            Step::Tick(10.0, 10.0),
            customer[2],
            Step::Tick(11.0, 11.0),
            agent[2],
            Step::Tick(13.6, 13.6),
            agent[3],
            Step::Tick(14.0, 14.0),
            customer[3],
            Step::Tick(20.0, 20.0),
        ];
        let verdict = same_verdict(
            TALK_OVER,
            &[
                live,
                [agent.to_vec(), customer.to_vec(), vec![Step::Tick(20.0, 20.0)]].concat(),
                [customer.to_vec(), agent.to_vec(), ticks(0.0, 20.0, 0.1)].concat(),
            ],
        );
        let spans: Vec<(f64, f64)> = verdict.0.iter().map(|a| (a.1, a.2)).collect();
        assert_eq!(spans, [(3.0, 4.0), (12.0, 13.0)]);
    }
}
