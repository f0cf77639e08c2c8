//! Each rule kind on synthetic event streams: no audio, exact call times.

use super::*;
use crate::alerts::Alert;

fn book(rule: &str) -> Arc<Rulebook> {
    let text = format!(
        "version = 1\n[[rule]]\nid = \"r\"\nsection = \"S\"\nitem = \"i\"\nseverity = \"warning\"\naudience = [\"agent\", \"supervisor\"]\nmessage = \"m\"\n{rule}"
    );
    Arc::new(Rulebook::parse(&text, "test.toml").unwrap())
}

/// Feeds events in order; returns everything raised, the engine for inspection.
struct Run {
    engine: Engine,
    out: Vec<RuleOutput>,
    utterance: u64,
    /// An utterance has partials but no final yet.
    open: bool,
}

impl Run {
    fn new(rule: &str) -> Self {
        Self {
            engine: Engine::new(book(rule), "call", 0.5),
            out: Vec::new(),
            utterance: 0,
            open: false,
        }
    }

    fn tick(&mut self, t_s: f64) -> &mut Self {
        self.out.extend(self.engine.process(CallEvent::Tick {
            t_s,
            words_s: t_s,
            voiced_until: None,
        }));
        self
    }

    fn voice(&mut self, channel: Channel, speaking: bool, t_s: f64) -> &mut Self {
        self.out
            .extend(self.engine.process(CallEvent::Voice { channel, speaking, t_s }));
        self
    }

    fn say(&mut self, channel: Channel, start_s: f64, end_s: f64, text: &str, is_final: bool) -> &mut Self {
        if !self.open {
            self.utterance += 1;
        }
        self.open = !is_final;
        let t = Transcript {
            call_id: "call".into(),
            channel,
            utterance_id: self.utterance,
            revision: 0,
            is_final,
            start_s,
            end_s,
            text: text.into(),
            tokens: Vec::new(),
            ready_after_s: end_s + 0.6,
        };
        self.out.extend(self.engine.process(CallEvent::Transcript(&t)));
        self
    }

    fn control(&mut self, t_s: f64, kind: ControlKind) -> &mut Self {
        let c = Control { t_s, kind, to: None };
        self.out.extend(self.engine.process(CallEvent::Control(&c)));
        self
    }

    fn end(&mut self, t_s: f64) -> &mut Self {
        self.out.extend(self.engine.finish(t_s));
        self
    }

    fn alerts(&self) -> Vec<&Alert> {
        self.out
            .iter()
            .filter_map(|o| match o {
                RuleOutput::Alert(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    fn status(&self) -> Status {
        self.engine.scorecard().status(0)
    }
}

const GREETING: &str = "kind = \"required_phrase\"\nparty = \"agent\"\nwindow = \"start\"\nwithin_s = 15\ngroups = [[\"thank you for calling\"], [\"my name is\", \"this is\"]]\n";

#[test]
fn required_phrase_passes_when_every_group_is_heard_in_time() {
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
fn required_phrase_fires_on_the_clock_without_new_speech() {
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
fn required_phrase_when_condition_makes_it_not_applicable() {
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

const PROFANITY: &str =
    "kind = \"forbidden_phrase\"\nparty = \"customer\"\nphrases = [\"damn\", \"shit\"]\non_partials = true\n";

#[test]
fn forbidden_phrase_on_a_partial_is_retracted_when_the_final_disagrees() {
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
fn forbidden_phrase_confirmed_by_the_final_alerts_once() {
    let mut run = Run::new(PROFANITY);
    run.say(Channel::Customer, 2.0, 3.0, "this is damn", false);
    run.say(Channel::Customer, 2.0, 4.0, "this is damn slow", true);
    run.say(Channel::Agent, 5.0, 6.0, "damn", true); // the agent's words are another rule's
    run.end(10.0);
    assert_eq!(run.alerts().len(), 1);
    assert_eq!(run.alerts()[0].evidence, "\"damn\"");
    assert_eq!(run.status(), Status::Fail);
}

const PERMISSION: &str = "kind = \"sequence\"\nmode = \"before\"\nfirst = { party = \"agent\", phrases = [\"place you on a brief hold\"] }\nthen = { event = \"hold\" }\nwithin_s = 60\n";

#[test]
fn hold_with_permission_passes_even_if_the_words_arrive_after_the_event() {
    let mut run = Run::new(PERMISSION);
    run.control(14.5, ControlKind::Hold);
    // The final of the question lands after the hold event was processed.
    run.say(Channel::Agent, 10.5, 13.3, "Can I place you on a brief hold?", true);
    run.tick(20.0).end(30.0);
    assert!(run.alerts().is_empty(), "{:?}", run.out);
    assert_eq!(run.status(), Status::Pass);
}

#[test]
fn hold_without_permission_fires() {
    let mut run = Run::new(PERMISSION);
    run.control(14.5, ControlKind::Hold).tick(16.1);
    assert_eq!(run.alerts().len(), 1);
    assert_eq!(run.alerts()[0].start_s, 14.5);
}

#[test]
fn sequence_not_triggered_is_not_applicable() {
    let mut run = Run::new(PERMISSION);
    run.end(30.0);
    assert_eq!(run.status(), Status::NotApplicable);
}

const THANKS: &str = "kind = \"sequence\"\nmode = \"after\"\nfirst = { event = \"unhold\" }\nthen = { party = \"agent\", phrases = [\"thank you for holding\"] }\nwithin_s = 10\n";

#[test]
fn thanks_after_hold_within_the_window() {
    let mut ok = Run::new(THANKS);
    ok.control(5.0, ControlKind::Hold).control(30.0, ControlKind::Unhold);
    ok.say(Channel::Agent, 31.0, 33.0, "Thank you for holding.", true)
        .tick(60.0)
        .end(60.0);
    assert!(ok.alerts().is_empty());
    assert_eq!(ok.status(), Status::Pass);

    let mut late = Run::new(THANKS);
    late.control(5.0, ControlKind::Hold)
        .control(30.0, ControlKind::Unhold)
        .tick(40.4);
    assert!(late.alerts().is_empty());
    late.tick(40.6);
    assert_eq!(late.alerts().len(), 1);
    assert_eq!((late.alerts()[0].start_s, late.alerts()[0].end_s), (30.0, 40.0));
}

#[test]
fn periodic_check_in_during_hold() {
    let rule = "kind = \"periodic\"\nstate = \"hold\"\nevery_s = 60\nparty = \"agent\"\nphrases = [\"still with you\", \"still checking\"]\n";
    let mut run = Run::new(rule);
    run.control(10.0, ControlKind::Hold);
    run.say(Channel::Agent, 60.0, 62.0, "I am still checking for you.", true);
    run.tick(120.4);
    assert!(run.alerts().is_empty(), "check-in at 60 s resets the period");
    run.tick(120.6);
    assert_eq!(run.alerts().len(), 1);
    run.control(150.0, ControlKind::Unhold).tick(300.0);
    assert_eq!(run.alerts().len(), 1, "no alerts once off hold");
}

const TALK_OVER: &str = "kind = \"talk_over\"\ninterrupter = \"agent\"\nmin_overlap_ms = 1000\nbackchannel_ms = 600\n";

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

#[test]
fn dead_air_but_not_on_hold() {
    let rule = "kind = \"silence\"\nmode = \"dead_air\"\nmin_s = 10\n";
    let mut run = Run::new(rule);
    run.voice(Channel::Agent, true, 0.5).voice(Channel::Agent, false, 4.0);
    run.tick(14.4);
    assert!(run.alerts().is_empty());
    run.tick(14.6);
    assert_eq!(run.alerts().len(), 1);
    assert_eq!((run.alerts()[0].start_s, run.alerts()[0].end_s), (4.0, 14.0));

    let mut held = Run::new(rule);
    held.voice(Channel::Agent, true, 0.5)
        .voice(Channel::Agent, false, 4.0)
        .control(5.0, ControlKind::Hold)
        .tick(60.0);
    assert!(held.alerts().is_empty());
}

#[test]
fn mute_event_and_long_agent_silence() {
    let rule = "kind = \"silence\"\nmode = \"mute_instead_of_hold\"\nmin_s = 30\n";
    let mut muted = Run::new(rule);
    muted
        .voice(Channel::Agent, true, 0.5)
        .voice(Channel::Agent, false, 4.0)
        .control(6.0, ControlKind::Mute);
    assert_eq!(muted.alerts().len(), 1);

    let mut silent = Run::new(rule);
    silent
        .voice(Channel::Agent, true, 0.5)
        .voice(Channel::Agent, false, 4.0);
    silent
        .voice(Channel::Customer, true, 10.0)
        .voice(Channel::Customer, false, 20.0)
        .tick(34.6);
    assert_eq!(silent.alerts().len(), 1);
}

#[test]
fn hold_too_long() {
    let rule = "kind = \"duration\"\nstate = \"hold\"\nmax_s = 120\n";
    let mut run = Run::new(rule);
    run.control(10.0, ControlKind::Hold).tick(129.0);
    assert!(run.alerts().is_empty());
    run.tick(130.0);
    assert_eq!(run.alerts().len(), 1);
    let mut none = Run::new(rule);
    none.end(50.0);
    assert_eq!(none.status(), Status::NotApplicable);
}

#[test]
fn call_time_not_arrival_order_decides() {
    // The same events, delivered in two different orders that the pipeline
    // can produce, give the same alerts.
    let mut a = Run::new(TALK_OVER);
    a.voice(Channel::Customer, true, 1.0)
        .voice(Channel::Agent, true, 3.0)
        .voice(Channel::Customer, false, 5.0)
        .tick(6.0);
    let mut b = Run::new(TALK_OVER);
    b.voice(Channel::Agent, true, 3.0)
        .voice(Channel::Customer, true, 1.0)
        .tick(5.5)
        .voice(Channel::Customer, false, 5.0)
        .tick(6.0);
    let span = |r: &Run| r.alerts().iter().map(|x| (x.start_s, x.end_s)).collect::<Vec<_>>();
    assert_eq!(span(&a).len(), 1);
    assert_eq!(span(&a)[0].0, span(&b)[0].0);
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
