//! The rule kinds, one module each, behind one trait.
//!
//! A rule keeps its own settings and state. It is told of transcripts and
//! call-control events as they apply, and asked to [`Rule::judge`] after every
//! event; it decides only about moments its clock has passed, from facts
//! stamped with call time, so its verdicts do not depend on arrival order.

mod duration;
mod event;
mod forbidden_phrase;
mod periodic;
mod required_phrase;
mod sequence;
mod silence;
mod talk_over;

use super::config::{Kind, Rule as RuleConfig};
use super::facts::{speakers, Facts};
use super::matcher::{normalise, Phrase};
use super::verdicts::Verdicts;
use super::Control;
use crate::events::Transcript;

pub trait Rule: Send {
    /// A transcript revision (partials included), on arrival.
    fn heard(&mut self, _t: &Transcript, _facts: &Facts, _v: &mut Verdicts) {}

    /// A call-control event, when the voice clock reaches it; `facts`
    /// already include it.
    fn control(&mut self, _c: &Control, _facts: &Facts, _v: &mut Verdicts) {}

    /// Decides everything the clocks now allow; called after every event.
    fn judge(&mut self, _facts: &Facts, _v: &mut Verdicts) {}

    /// The call ended at `end` with the item still pending: decides it.
    fn at_end(&mut self, end: f64, _facts: &Facts, v: &mut Verdicts) {
        v.set(super::Status::Pass, end, "");
    }
}

/// The rule for one entry of the rulebook.
pub fn build(rule: &RuleConfig) -> Box<dyn Rule> {
    match &rule.kind {
        Kind::RequiredPhrase {
            party,
            groups,
            window,
            when,
            unless,
        } => Box::new(required_phrase::RequiredPhrase::new(
            *party,
            groups.clone(),
            *window,
            when.clone(),
            *unless,
        )),
        Kind::ForbiddenPhrase {
            party,
            phrases,
            on_partials,
        } => Box::new(forbidden_phrase::ForbiddenPhrase::new(
            *party,
            phrases.clone(),
            *on_partials,
        )),
        Kind::Sequence {
            before,
            first,
            then,
            within_s,
        } => Box::new(sequence::Sequence::new(*before, first.clone(), then.clone(), *within_s)),
        Kind::Periodic {
            every_s,
            party,
            phrases,
        } => Box::new(periodic::Periodic::new(*every_s, *party, phrases.clone())),
        Kind::TalkOver {
            interrupter,
            min_overlap_s,
            backchannel_s,
        } => Box::new(talk_over::TalkOver::new(*interrupter, *min_overlap_s, *backchannel_s)),
        Kind::DeadAir { min_s } => Box::new(silence::Silence::dead_air(*min_s)),
        Kind::MuteInsteadOfHold { min_s } => Box::new(silence::Silence::mute_instead_of_hold(*min_s)),
        Kind::Duration { state, max_s } => Box::new(duration::Duration::new(*state, *max_s)),
        Kind::OnEvent { event } => Box::new(event::OnEvent::new(*event)),
    }
}

/// The first of `phrases` found in `words`, as heard.
fn first_match(phrases: &[Phrase], words: &[String]) -> Option<String> {
    phrases.iter().find_map(|p| p.find(words))
}

/// The words of a final transcript from `party` (or of a partial, when
/// `partials`), normalised for matching.
fn said(t: &Transcript, party: super::config::Speaker, partials: bool) -> Option<Vec<String>> {
    ((t.is_final || partials) && speakers(t.channel).contains(&party)).then(|| normalise(&t.text))
}

/// Inserts `item` keeping `list` sorted by `time`: facts may arrive out of order.
fn insert_by_time<T>(list: &mut Vec<T>, item: T, time: impl Fn(&T) -> f64) {
    let t = time(&item);
    let at = list.partition_point(|x| time(x) <= t);
    list.insert(at, item);
}
