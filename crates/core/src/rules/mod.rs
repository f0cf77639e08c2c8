//! The compliance rule engine.
//!
//! One [`Engine`] per call consumes that call's events — voice activity,
//! transcript revisions, call control and clock ticks — and emits alerts and
//! retractions. Every rule is a small state machine updated per event; none
//! re-reads the transcript. All time is call time (seconds of audio), so a
//! recording replayed `--fast` raises the same alerts at the same times as
//! live.
//!
//! Events about the same moment do not arrive together: the end of speech is
//! known only after the detector's hangover, a final transcript a few hundred
//! milliseconds after that. So a rule judges a moment only once the clock has
//! passed it by [`SETTLE_S`] (words) or the voice settle time (acoustics).

pub mod builtin;
pub mod config;
pub mod matcher;
pub mod scorecard;
pub mod sidecar;

use std::collections::HashMap;
use std::sync::Arc;

use crate::alerts::{Alert, Party, RuleOutput};
use crate::audio::Channel;
use crate::events::Transcript;
use crate::time::round_ms;
use config::{ControlKind, Kind, Rule, Rulebook, Speaker, State, Trigger, Window};
use matcher::{normalise, Phrase};
pub use scorecard::{Scorecard, Status};

/// Margin past a moment before its words are judged, on the words clock
/// (which already waits for every final of utterances begun before it): a
/// phrase may start a little after the event it belongs to.
pub const SETTLE_S: f64 = 0.5;

/// A call-control event.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    pub t_s: f64,
    pub kind: ControlKind,
    /// Recipient's name, for transfers.
    pub to: Option<String>,
}

/// What the engine consumes.
#[derive(Debug, Clone, Copy)]
pub enum CallEvent<'a> {
    Voice {
        channel: Channel,
        speaking: bool,
        t_s: f64,
    },
    Transcript(&'a Transcript),
    Control(&'a Control),
    /// Voice activity is known up to `t_s` (less the hangover); every
    /// utterance begun before `words_s` has its final transcript delivered.
    Tick {
        t_s: f64,
        words_s: f64,
        /// Per party (agent, customer), the end of its last voiced frame,
        /// when the source knows it: acoustic rules then need not wait for
        /// the hangover that confirms an end of speech.
        voiced_until: Option<[f64; 2]>,
    },
}

/// Speech segments of one party, oldest first.
#[derive(Debug, Default)]
struct Track {
    /// (start, end); end is `None` while speaking.
    segments: Vec<(f64, Option<f64>)>,
}

impl Track {
    fn update(&mut self, speaking: bool, t: f64) {
        if speaking {
            self.segments.push((t, None));
        } else if let Some(last) = self.segments.last_mut() {
            last.1.get_or_insert(t);
        }
    }

    fn speaking(&self) -> bool {
        self.segments.last().is_some_and(|s| s.1.is_none())
    }

    fn last_end(&self) -> f64 {
        self.segments.iter().rev().find_map(|s| s.1).unwrap_or(0.0)
    }
}

/// What the engine knows about the call besides the rules' own state.
#[derive(Debug, Default)]
struct CallState {
    /// Voice clock.
    now: f64,
    /// Words clock.
    words_now: f64,
    agent: Track,
    customer: Track,
    hold_since: Option<f64>,
    last_unhold: f64,
    ended: bool,
    /// Reported end of each party's last voiced frame (agent, customer).
    voiced: Option<[f64; 2]>,
    /// How long a reported end of speech lags the audio (the hangover).
    voice_settle_s: f64,
}

impl CallState {
    fn track(&self, s: Speaker) -> &Track {
        match s {
            Speaker::Agent => &self.agent,
            Speaker::Customer => &self.customer,
        }
    }

    /// Up to when voice activity is known: the clock itself when the source
    /// reports voiced frames, else the clock less the hangover.
    fn voice_known(&self) -> f64 {
        if self.voiced.is_some() {
            self.now
        } else {
            self.now - self.voice_settle_s
        }
    }

    /// The end of a party's speech so far, as far as it is known.
    fn voiced_until(&self, s: Speaker) -> f64 {
        match self.voiced {
            Some(v) => v[s as usize],
            None if self.track(s).speaking() => self.voice_known(),
            None => self.track(s).last_end(),
        }
    }
}

/// Per-rule state, one variant per kind.
#[derive(Debug)]
enum RuleState {
    Required {
        matched: Vec<Option<(f64, String)>>,
        when_seen: bool,
    },
    Forbidden {
        /// (channel, utterance) → (alert id, raised on a partial).
        hits: HashMap<(Channel, u64), (u64, bool)>,
    },
    Sequence {
        last_first: Option<(f64, String)>,
        /// Occurrences waiting for judgement: (time, decide at).
        pending: Vec<(f64, f64)>,
        occurred: bool,
    },
    Periodic {
        /// Last check-in (or the start of the hold) while on hold.
        last: Option<f64>,
        held: bool,
    },
    TalkOver {
        /// Start times of interrupting segments already reported.
        reported: Vec<f64>,
    },
    Silence {
        /// Start of the gap already reported.
        reported: Option<f64>,
        mute_reported: bool,
    },
    Duration {
        /// Start of the call or hold already reported.
        reported: Option<f64>,
        held: bool,
    },
    OnEvent,
}

pub struct Engine {
    call_id: Arc<str>,
    rules: Arc<Rulebook>,
    /// One per rule; taken out while its rule runs.
    states: Vec<Option<RuleState>>,
    call: CallState,
    scorecard: Scorecard,
    next_alert: u64,
}

fn speakers(channel: Channel) -> &'static [Speaker] {
    match channel {
        Channel::Agent => &[Speaker::Agent],
        Channel::Customer => &[Speaker::Customer],
        // A mono recording mixes both parties: any party's rule may apply.
        Channel::Mono => &[Speaker::Agent, Speaker::Customer],
    }
}

fn first_match(phrases: &[Phrase], words: &[String]) -> Option<String> {
    phrases.iter().find_map(|p| p.find(words))
}

impl Engine {
    /// `voice_settle_s`: how late an end of speech is reported (the VAD hangover).
    pub fn new(rules: Arc<Rulebook>, call_id: &str, voice_settle_s: f64) -> Self {
        let states = rules.rules.iter().map(|r| Some(initial_state(r))).collect();
        let scorecard = Scorecard::new(call_id, &rules);
        Self {
            call_id: call_id.into(),
            rules,
            states,
            call: CallState {
                voice_settle_s: voice_settle_s + 0.05,
                ..CallState::default()
            },
            scorecard,
            next_alert: 0,
        }
    }

    pub fn scorecard(&self) -> &Scorecard {
        &self.scorecard
    }

    /// Updates every rule with one event; returns what they raise.
    pub fn process(&mut self, event: CallEvent) -> Vec<RuleOutput> {
        if self.call.ended {
            return Vec::new();
        }
        match event {
            CallEvent::Voice { channel, speaking, t_s } => {
                for s in speakers(channel) {
                    match s {
                        Speaker::Agent => self.call.agent.update(speaking, t_s),
                        Speaker::Customer => self.call.customer.update(speaking, t_s),
                    }
                }
            }
            CallEvent::Control(c) => {
                self.call.now = self.call.now.max(c.t_s);
                match c.kind {
                    ControlKind::Hold => {
                        self.call.hold_since.get_or_insert(c.t_s);
                    }
                    ControlKind::Unhold if self.call.hold_since.take().is_some() => self.call.last_unhold = c.t_s,
                    _ => {}
                }
            }
            CallEvent::Tick {
                t_s,
                words_s,
                voiced_until,
            } => {
                self.call.now = self.call.now.max(t_s);
                self.call.words_now = self.call.words_now.max(words_s.min(t_s));
                if voiced_until.is_some() {
                    self.call.voiced = voiced_until;
                }
            }
            CallEvent::Transcript(_) => {}
        }
        let mut out = Vec::new();
        let rules = self.rules.clone();
        for (i, rule) in rules.rules.iter().enumerate() {
            let mut state = self.states[i].take().expect("rule state present");
            self.update(rule, i, &mut state, &event, &mut out);
            self.states[i] = Some(state);
        }
        if let CallEvent::Control(Control {
            kind: ControlKind::End,
            t_s,
            ..
        }) = event
        {
            out.extend(self.finish(*t_s));
        }
        out
    }

    /// Ends the call at `t_s`: rules waiting for the end decide, the
    /// scorecard becomes final.
    pub fn finish(&mut self, t_s: f64) -> Vec<RuleOutput> {
        if self.call.ended {
            return Vec::new();
        }
        // Everything said has been delivered by now: judge all that is pending.
        let late = t_s + SETTLE_S + self.call.voice_settle_s;
        let mut out = self.process(CallEvent::Tick {
            t_s: late,
            words_s: late,
            voiced_until: None,
        });
        self.call.ended = true;
        let rules = self.rules.clone();
        for (i, rule) in rules.rules.iter().enumerate() {
            let state = self.states[i].take().expect("rule state present");
            self.at_end(rule, i, &state, t_s, &mut out);
            self.states[i] = Some(state);
        }
        self.scorecard.finish();
        out
    }

    fn alert(&mut self, rule: &Rule, party: Party, span: (f64, f64), evidence: String) -> RuleOutput {
        self.next_alert += 1;
        RuleOutput::Alert(Alert {
            kind: "alert",
            id: self.next_alert,
            call_id: self.call_id.clone(),
            rule_id: rule.id.clone(),
            severity: rule.severity,
            audience: rule.audience.clone(),
            party,
            start_s: round_ms(span.0),
            end_s: round_ms(span.1),
            evidence,
            message: rule.message.clone(),
            script: rule.script.clone(),
        })
    }

    fn fail(
        &mut self,
        rule: &Rule,
        i: usize,
        party: Party,
        span: (f64, f64),
        evidence: String,
        out: &mut Vec<RuleOutput>,
    ) {
        self.scorecard.set(i, Status::Fail, span.0, &evidence);
        out.push(self.alert(rule, party, span, evidence));
    }

    fn update(&mut self, rule: &Rule, i: usize, state: &mut RuleState, event: &CallEvent, out: &mut Vec<RuleOutput>) {
        // Rules about words judge on the words clock, acoustic rules on the voice clock.
        let words_now = self.call.words_now;
        let now = self.call.now;
        // Words of a final (or of a partial for the rules that take them).
        let said = |party: Speaker, partials: bool| -> Option<(&Transcript, Vec<String>)> {
            match event {
                CallEvent::Transcript(t) if (t.is_final || partials) && speakers(t.channel).contains(&party) => {
                    Some((t, normalise(&t.text)))
                }
                _ => None,
            }
        };
        match (&rule.kind, state) {
            (
                Kind::RequiredPhrase {
                    party,
                    groups,
                    window,
                    when,
                },
                RuleState::Required { matched, when_seen },
            ) => {
                if let CallEvent::Transcript(t) = event {
                    if t.is_final && !when.is_empty() && !*when_seen {
                        *when_seen = first_match(when, &normalise(&t.text)).is_some();
                    }
                }
                if let Some((t, words)) = said(*party, false) {
                    let in_window = match window {
                        Window::Start(w) => t.start_s <= *w,
                        Window::Call => true,
                    };
                    if in_window {
                        for (slot, group) in matched.iter_mut().zip(groups) {
                            if slot.is_none() {
                                *slot = first_match(group, &words).map(|e| (t.start_s, e));
                            }
                        }
                    }
                }
                // Passes once every group was heard and the rule applies (its
                // `when` may be heard after the phrase itself).
                let applies = when.is_empty() || *when_seen;
                if applies && matched.iter().all(Option::is_some) && self.scorecard.status(i) == Status::Pending {
                    let evidence = matched
                        .iter()
                        .flatten()
                        .map(|m| format!("\"{}\"", m.1))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let at = matched.iter().flatten().map(|m| m.0).fold(0.0, f64::max);
                    self.scorecard.set(i, Status::Pass, at, &evidence);
                }
                if let Window::Start(w) = window {
                    if words_now >= w + SETTLE_S && self.scorecard.status(i) == Status::Pending {
                        let missing = missing_groups(groups, matched);
                        self.fail(
                            rule,
                            i,
                            party.party(),
                            (0.0, *w),
                            format!("not said in the first {w} s: {missing}"),
                            out,
                        );
                    }
                }
            }
            (
                Kind::ForbiddenPhrase {
                    party,
                    phrases,
                    on_partials,
                },
                RuleState::Forbidden { hits },
            ) => {
                let Some((t, words)) = said(*party, *on_partials) else {
                    return;
                };
                let key = (t.channel, t.utterance_id);
                let found = first_match(phrases, &words);
                match (found, hits.get(&key).copied()) {
                    (Some(evidence), None) => {
                        let alert = self.alert(rule, party.party(), (t.start_s, t.end_s), format!("\"{evidence}\""));
                        if let RuleOutput::Alert(a) = &alert {
                            hits.insert(key, (a.id, !t.is_final));
                        }
                        self.scorecard
                            .set(i, Status::Fail, t.start_s, &format!("\"{evidence}\""));
                        out.push(alert);
                    }
                    (None, Some((id, true))) if t.is_final => {
                        hits.remove(&key);
                        out.push(RuleOutput::Retract {
                            id,
                            call_id: self.call_id.clone(),
                        });
                        if hits.is_empty() {
                            self.scorecard.set(i, Status::Pending, 0.0, "");
                        }
                    }
                    (Some(_), Some((id, true))) if t.is_final => {
                        hits.insert(key, (id, false));
                    }
                    _ => {}
                }
            }
            (
                Kind::Sequence {
                    before,
                    first,
                    then,
                    within_s,
                },
                RuleState::Sequence {
                    last_first,
                    pending,
                    occurred,
                },
            ) => {
                let occurs = |trigger: &Trigger| -> Option<(f64, String)> {
                    match (trigger, event) {
                        (Trigger::Event(kind), CallEvent::Control(c)) if c.kind == *kind => {
                            let to = c.to.as_deref().map(|n| format!(" to {n}")).unwrap_or_default();
                            Some((c.t_s, format!("{kind:?}{to} at {:.1} s", c.t_s).to_lowercase()))
                        }
                        (Trigger::Said(party, phrases), CallEvent::Transcript(t))
                            if t.is_final && speakers(t.channel).contains(party) =>
                        {
                            first_match(phrases, &normalise(&t.text)).map(|e| (t.start_s, format!("\"{e}\"")))
                        }
                        _ => None,
                    }
                };
                let (first_hit, then_hit) = (occurs(first), occurs(then));
                if *before {
                    if let Some(f) = first_hit {
                        *last_first = Some(f);
                    }
                    if let Some((t, _)) = then_hit {
                        *occurred = true;
                        pending.push((t, t + SETTLE_S));
                    }
                } else {
                    if let Some((t, _)) = first_hit {
                        *occurred = true;
                        pending.push((t, t + within_s + SETTLE_S));
                    }
                    if let Some((t2, evidence)) = then_hit {
                        let before_len = pending.len();
                        pending.retain(|(t, _)| !(t2 + 0.5 >= *t && t2 <= t + within_s));
                        if pending.len() < before_len && self.scorecard.status(i) != Status::Fail {
                            self.scorecard.set(i, Status::Pass, t2, &evidence);
                        }
                    }
                }
                let due: Vec<(f64, f64)> = pending.iter().copied().filter(|(_, at)| words_now >= *at).collect();
                pending.retain(|(_, at)| words_now < *at);
                let last_first = last_first.clone();
                for (t, _) in due {
                    let party = trigger_party(then).or(trigger_party(first)).unwrap_or(Party::Agent);
                    if *before {
                        match &last_first {
                            Some((tf, evidence)) if *tf >= t - within_s && *tf <= t + 0.5 => {
                                if self.scorecard.status(i) != Status::Fail {
                                    self.scorecard.set(i, Status::Pass, *tf, evidence);
                                }
                            }
                            _ => {
                                let what = describe(then);
                                self.fail(
                                    rule,
                                    i,
                                    party,
                                    (t, t),
                                    format!("{what} at {t:.1} s without {} first", describe(first)),
                                    out,
                                );
                            }
                        }
                    } else {
                        self.fail(
                            rule,
                            i,
                            party,
                            (t, t + within_s),
                            format!(
                                "no {} within {within_s} s of {} at {t:.1} s",
                                describe(then),
                                describe(first)
                            ),
                            out,
                        );
                    }
                }
            }
            (
                Kind::Periodic {
                    every_s,
                    party,
                    phrases,
                },
                RuleState::Periodic { last, held },
            ) => {
                match (self.call.hold_since, *last) {
                    (Some(since), None) => {
                        *last = Some(since);
                        *held = true;
                    }
                    (None, Some(_)) => *last = None,
                    _ => {}
                }
                if let (Some(l), Some((t, words))) = (last.as_mut(), said(*party, false)) {
                    if first_match(phrases, &words).is_some() {
                        *l = l.max(t.start_s);
                    }
                }
                if let Some(l) = *last {
                    if words_now >= l + every_s + SETTLE_S {
                        *last = Some(l + every_s);
                        self.fail(
                            rule,
                            i,
                            party.party(),
                            (l, l + every_s),
                            format!("no check-in for {every_s} s of hold"),
                            out,
                        );
                    }
                }
            }
            (
                Kind::TalkOver {
                    interrupter,
                    min_overlap_s,
                    backchannel_s,
                },
                RuleState::TalkOver { reported },
            ) => {
                let victim = match interrupter {
                    Speaker::Agent => Speaker::Customer,
                    Speaker::Customer => Speaker::Agent,
                };
                let (by, over) = (self.call.track(*interrupter), self.call.track(victim));
                let (by_until, over_until) = (self.call.voiced_until(*interrupter), self.call.voiced_until(victim));
                let mut found = Vec::new();
                for &(a, a_end) in by.segments.iter().rev().take(4) {
                    if reported.contains(&a) {
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
                    // A short interjection ("mm-hm", "okay") is a backchannel, not an interruption.
                    let turn = a_end.unwrap_or(by_until) - a;
                    if end - a >= *min_overlap_s && turn >= *backchannel_s {
                        found.push((a, end.min(a + 10.0), b));
                    }
                }
                for (a, end, b) in found {
                    reported.push(a);
                    let (who, whom) = match interrupter {
                        Speaker::Agent => ("agent", "customer"),
                        Speaker::Customer => ("customer", "agent"),
                    };
                    let evidence = format!(
                        "{who} started at {a:.1} s while the {whom} was speaking (since {b:.1} s), overlap ≥ {:.1} s",
                        end - a
                    );
                    self.fail(rule, i, interrupter.party(), (a, end), evidence, out);
                }
            }
            (Kind::DeadAir { min_s }, RuleState::Silence { reported, .. }) => {
                let c = &self.call;
                if c.hold_since.is_none() {
                    let start = c
                        .voiced_until(Speaker::Agent)
                        .max(c.voiced_until(Speaker::Customer))
                        .max(c.last_unhold);
                    if c.voice_known() - start >= *min_s && *reported != Some(start) {
                        *reported = Some(start);
                        self.fail(
                            rule,
                            i,
                            Party::Both,
                            (start, start + min_s),
                            format!("both parties silent for {min_s} s from {start:.1} s"),
                            out,
                        );
                    }
                }
            }
            (
                Kind::MuteInsteadOfHold { min_s },
                RuleState::Silence {
                    reported,
                    mute_reported,
                },
            ) => {
                if let CallEvent::Control(Control {
                    kind: ControlKind::Mute,
                    t_s,
                    ..
                }) = event
                {
                    if !*mute_reported {
                        *mute_reported = true;
                        let t = *t_s;
                        self.fail(
                            rule,
                            i,
                            Party::Agent,
                            (t, t),
                            format!("mute at {t:.1} s instead of hold"),
                            out,
                        );
                        return;
                    }
                }
                let c = &self.call;
                if c.hold_since.is_none() && !c.agent.segments.is_empty() {
                    let start = c.voiced_until(Speaker::Agent).max(c.last_unhold);
                    if c.voice_known() - start >= *min_s && *reported != Some(start) {
                        *reported = Some(start);
                        self.fail(
                            rule,
                            i,
                            Party::Agent,
                            (start, start + min_s),
                            format!("agent silent for {min_s} s from {start:.1} s without a hold"),
                            out,
                        );
                    }
                }
            }
            (Kind::Duration { state, max_s }, RuleState::Duration { reported, held }) => {
                let since = match state {
                    State::Call => Some(0.0),
                    State::Hold => self.call.hold_since,
                };
                *held |= since.is_some() && *state == State::Hold;
                if let Some(since) = since {
                    if now - since >= *max_s && *reported != Some(since) {
                        *reported = Some(since);
                        let what = if *state == State::Hold { "hold" } else { "call" };
                        self.fail(
                            rule,
                            i,
                            Party::Agent,
                            (since, since + max_s),
                            format!("{what} longer than {max_s} s"),
                            out,
                        );
                    }
                }
            }
            (Kind::OnEvent { event: kind }, RuleState::OnEvent) => {
                if let CallEvent::Control(c) = event {
                    if c.kind == *kind {
                        let name = describe(&Trigger::Event(*kind));
                        self.fail(
                            rule,
                            i,
                            Party::Both,
                            (c.t_s, c.t_s),
                            format!("call {name} at {:.1} s", c.t_s),
                            out,
                        );
                    }
                }
            }
            _ => unreachable!("state built from the same rule"),
        }
    }

    /// Decisions taken when the call ends.
    fn at_end(&mut self, rule: &Rule, i: usize, state: &RuleState, end: f64, out: &mut Vec<RuleOutput>) {
        if self.scorecard.status(i) != Status::Pending {
            return;
        }
        let status = match (&rule.kind, state) {
            (
                Kind::RequiredPhrase {
                    when, party, groups, ..
                },
                RuleState::Required { when_seen, matched },
            ) => {
                if !when.is_empty() && !when_seen {
                    Status::NotApplicable
                } else {
                    let missing = missing_groups(groups, matched);
                    self.fail(
                        rule,
                        i,
                        party.party(),
                        (end, end),
                        format!("never said: {missing}"),
                        out,
                    );
                    return;
                }
            }
            (Kind::Sequence { .. }, RuleState::Sequence { occurred, .. }) if !occurred => Status::NotApplicable,
            (Kind::Periodic { .. }, RuleState::Periodic { held, .. }) if !held => Status::NotApplicable,
            (Kind::Duration { state: State::Hold, .. }, RuleState::Duration { held, .. }) if !held => {
                Status::NotApplicable
            }
            // The event never happened (a failure is already recorded).
            (Kind::OnEvent { .. }, _) => Status::NotApplicable,
            _ => Status::Pass,
        };
        self.scorecard.set(i, status, end, "");
    }
}

fn initial_state(rule: &Rule) -> RuleState {
    match &rule.kind {
        Kind::RequiredPhrase { groups, .. } => RuleState::Required {
            matched: vec![None; groups.len()],
            when_seen: false,
        },
        Kind::ForbiddenPhrase { .. } => RuleState::Forbidden { hits: HashMap::new() },
        Kind::Sequence { .. } => RuleState::Sequence {
            last_first: None,
            pending: Vec::new(),
            occurred: false,
        },
        Kind::Periodic { .. } => RuleState::Periodic {
            last: None,
            held: false,
        },
        Kind::TalkOver { .. } => RuleState::TalkOver { reported: Vec::new() },
        Kind::DeadAir { .. } | Kind::MuteInsteadOfHold { .. } => RuleState::Silence {
            reported: None,
            mute_reported: false,
        },
        Kind::Duration { .. } => RuleState::Duration {
            reported: None,
            held: false,
        },
        Kind::OnEvent { .. } => RuleState::OnEvent,
    }
}

fn missing_groups(groups: &[Vec<Phrase>], matched: &[Option<(f64, String)>]) -> String {
    groups
        .iter()
        .zip(matched)
        .filter(|(_, m)| m.is_none())
        .map(|(g, _)| format!("\"{}\"", g[0].text))
        .collect::<Vec<_>>()
        .join(", ")
}

fn trigger_party(t: &Trigger) -> Option<Party> {
    match t {
        Trigger::Said(s, _) => Some(s.party()),
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
mod tests;

/// Runs a rulebook over one call's pipeline events, injecting call-control
/// events (from a softphone or a sidecar file) when the call's clock
/// reaches them.
pub struct CallRules {
    engine: Engine,
    controls: std::collections::VecDeque<Control>,
}

impl CallRules {
    pub fn new(rules: Arc<Rulebook>, call_id: &str, voice_settle_s: f64, mut controls: Vec<Control>) -> Self {
        controls.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        Self {
            engine: Engine::new(rules, call_id, voice_settle_s),
            controls: controls.into(),
        }
    }

    pub fn feed(&mut self, event: &crate::events::Event) -> Vec<RuleOutput> {
        use crate::events::Event;
        match event {
            Event::Voice {
                channel, speaking, t_s, ..
            } => self.engine.process(CallEvent::Voice {
                channel: *channel,
                speaking: *speaking,
                t_s: *t_s,
            }),
            Event::Transcript(t) => self.engine.process(CallEvent::Transcript(t)),
            Event::Tick {
                t_s,
                words_s,
                voiced_until,
                ..
            } => {
                let mut out = self.controls_until(*t_s);
                let mut voiced = [0.0f64; 2];
                for (channel, t) in voiced_until {
                    for s in speakers(*channel) {
                        voiced[*s as usize] = voiced[*s as usize].max(*t);
                    }
                }
                out.extend(self.engine.process(CallEvent::Tick {
                    t_s: *t_s,
                    words_s: *words_s,
                    voiced_until: Some(voiced),
                }));
                out
            }
        }
    }

    /// The call is over at `end_s`: remaining control events apply, then
    /// the rules decide.
    pub fn finish(&mut self, end_s: f64) -> Vec<RuleOutput> {
        let mut out = self.controls_until(f64::INFINITY);
        out.extend(self.engine.finish(end_s));
        out
    }

    pub fn scorecard(&self) -> &Scorecard {
        self.engine.scorecard()
    }

    /// A call-control event of a live call; it applies when the call's
    /// clock reaches it, like those given up front.
    pub fn control(&mut self, control: Control) {
        let at = self.controls.partition_point(|c| c.t_s <= control.t_s);
        self.controls.insert(at, control);
    }

    fn controls_until(&mut self, t_s: f64) -> Vec<RuleOutput> {
        let mut out = Vec::new();
        while self.controls.front().is_some_and(|c| c.t_s <= t_s) {
            let c = self.controls.pop_front().expect("checked");
            out.extend(self.engine.process(CallEvent::Control(&c)));
        }
        out
    }
}
