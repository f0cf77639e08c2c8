//! The entity finders: each digit run is judged by its length, grouping,
//! Luhn check and the context before it; dates take the month names around
//! them. Works on one utterance, given what the same party's previous
//! utterance left open ([`Carry`]).

use super::context::{cues, is_month, Context, Cue, REACH};
use super::entity::Entity;
use super::numbers::numbers;
use super::runs::{runs, Run};
use super::words::Word;

/// A span to redact, in words (inclusive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    pub entity: Entity,
    pub first: usize,
    pub last: usize,
}

/// What one utterance leaves open for the same party's next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carry {
    /// The digits of a card being read, which the utterance ended in (the
    /// next may go on with the rest).
    pub card: Option<String>,
    /// Digits the utterance ended in that were let through (at most a
    /// card's first six, which may be shown): if the next utterance goes
    /// on to a card number, its part is masked.
    pub tail: Option<String>,
    /// A context the utterance ended on with no figure after it ("my card
    /// number is").
    pub context: Option<Context>,
}

/// Partials and evidence mask more than finals: a figure of this many
/// digits (or any figure after a cue) that is not yet anything might
/// become a card number or a code.
const HOLD_DIGITS: usize = 3;
/// A final's figure of this many digits at its very end may be the first
/// groups of a card whose rest comes next: it is masked as one.
const CARD_PREFIX_DIGITS: usize = 7;
/// So many digits with no other reading are taken for a card number (one
/// misheard digit fails the Luhn check; it must not leak the rest).
const CARD_LENGTH: usize = 12;

pub fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                if d > 4 {
                    2 * d - 9
                } else {
                    2 * d
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// A Luhn-valid card number of 13–19 digits made of whole groups of `run`.
fn holds_card(run: &Run) -> bool {
    let mut starts = vec![0];
    for g in &run.groups {
        starts.push(starts.last().expect("starts with 0") + g);
    }
    (0..starts.len()).any(|a| {
        (a + 1..starts.len()).any(|b| {
            let n = starts[b] - starts[a];
            (13..=19).contains(&n) && luhn(&run.digits[starts[a]..starts[b]])
        })
    })
}

/// What `run` is, in `context` (if one was said just before it).
fn classify(run: &Run, context: Option<Context>) -> Option<Entity> {
    let n = run.len();
    if holds_card(run) {
        return Some(Entity::Card);
    }
    let by_context = match context {
        Some(Context::Card) if n >= 3 => Some(Entity::Card),
        Some(Context::Cvv) if (3..=4).contains(&n) => Some(Entity::Cvv),
        Some(Context::Expiry) if (2..=6).contains(&n) => Some(Entity::Expiry),
        Some(Context::Dob) if (1..=8).contains(&n) => Some(Entity::Dob),
        Some(Context::Ssn) if (4..=9).contains(&n) => Some(Entity::Ssn),
        Some(Context::Routing) if (6..=9).contains(&n) => Some(Entity::Routing),
        Some(Context::Account) if (4..=17).contains(&n) => Some(Entity::Account),
        Some(Context::Pin) if (4..=8).contains(&n) => Some(Entity::Pin),
        Some(Context::Phone) if (7..=15).contains(&n) => Some(Entity::Phone),
        Some(Context::Harmless) => return None,
        _ => None,
    };
    by_context.or(match (n, run.groups.as_slice()) {
        (9, [3, 2, 4]) => Some(Entity::Ssn),
        (10, _) | (7, [3, 4]) => Some(Entity::Phone),
        (11, _) if run.digits.starts_with('1') => Some(Entity::Phone),
        (n, _) if n >= CARD_LENGTH => Some(Entity::Card),
        _ => None,
    })
}

/// A date with a birth year ("March 5, 1985", "fifth of March 1985"): in
/// a call, a full date in the past century is a date of birth, said so or not
/// (Whisper often mishears "date of birth").
fn birth_date(words: &[Word], run: &Run) -> bool {
    let year = &run.digits[run.len() - run.groups.last().copied().unwrap_or(0)..];
    let birth_year = year.len() == 4 && year.parse::<u32>().is_ok_and(|y| (1900..=2015).contains(&y));
    let after_month = run.first > 0 && is_month(&words[run.first - 1].text);
    birth_year && after_month && run.len() <= 8
}

/// Widens a date's run over the month names and "the"/"of" around it
/// ("March fifth, nineteen eighty five"; "the fifth of March 1985").
fn date_span(words: &[Word], in_number: &[bool], run: &Run) -> (usize, usize) {
    let dateish = |w: &Word, k: usize| in_number[k] || is_month(&w.text) || w.text == "of" || w.text == "the";
    let (mut first, mut last) = (run.first, run.last);
    while first > 0 && dateish(&words[first - 1], first - 1) && words[first - 1].text != "the" {
        first -= 1;
    }
    while last + 1 < words.len() && dateish(&words[last + 1], last + 1) {
        last += 1;
    }
    while last > run.last && matches!(words[last].text.as_str(), "of" | "the") {
        last -= 1;
    }
    if words[first].text == "of" {
        first += 1;
    }
    (first, last)
}

/// The spans to redact in one utterance's `words` (of `text`), given what
/// the party's previous utterance left open, and what this one leaves.
/// `hold`: also mask figures that might still become a card (partials,
/// evidence).
pub fn find(text: &str, words: &[Word], carry: &Carry, hold: bool) -> (Vec<Found>, Carry) {
    let numbers = numbers(words);
    let runs = runs(text, words, &numbers);
    let cues = cues(words);
    let mut in_number = vec![false; words.len()];
    for n in &numbers {
        in_number[n.first..=n.last].iter_mut().for_each(|x| *x = true);
    }
    let mut found: Vec<Found> = Vec::new();
    let mut next = Carry::default();
    // The context in force and the word it was last said (or used) at;
    // one carried over counts as said just before the first word.
    let mut context: Option<(Context, isize)> = carry.context.map(|c| (c, -1));
    let mut card = carry.card.clone();
    let mut cue_at = 0;
    for (i, run) in runs.iter().enumerate() {
        while let Some(Cue { context: c, end }) = cues.get(cue_at).filter(|c| c.end < run.first) {
            context = Some((*c, *end as isize));
            cue_at += 1;
        }
        let near = context
            .filter(|(_, at)| run.first as isize - at <= REACH as isize)
            .map(|(c, _)| c);
        // The rest of a card the previous utterance began.
        let leading = i == 0 && run.first <= 3 && matches!(near, None | Some(Context::Card));
        let continued = leading && card.as_ref().is_some_and(|c| c.len() + run.len() <= 19 + 4);
        let completes = leading
            && carry.tail.as_ref().is_some_and(|t| {
                let joined = format!("{t}{}", run.digits);
                joined.len() >= CARD_LENGTH || ((13..=19).contains(&joined.len()) && luhn(&joined))
            });
        let mut entity = if continued || completes {
            Some(Entity::Card)
        } else {
            card = None;
            classify(run, near).or_else(|| birth_date(words, run).then_some(Entity::Dob))
        };
        let ends_utterance = run.last + 1 == words.len();
        if entity.is_none() && ends_utterance && run.len() >= CARD_PREFIX_DIGITS && near != Some(Context::Harmless) {
            entity = Some(Entity::Card);
        }
        let might_matter = run.len() >= HOLD_DIGITS || near.is_some();
        if entity.is_none() && hold && might_matter && near != Some(Context::Harmless) {
            entity = Some(Entity::Digits);
        }
        if let Some(entity) = entity {
            let (first, last) = match entity {
                Entity::Expiry | Entity::Dob => date_span(words, &in_number, run),
                _ => (run.first, run.last),
            };
            found.push(Found { entity, first, last });
            if let Some((_, at)) = context.as_mut() {
                *at = last as isize;
            }
        }
        if ends_utterance && entity == Some(Entity::Card) {
            let so_far = if continued {
                format!("{}{}", card.take().unwrap_or_default(), run.digits)
            } else {
                run.digits.clone()
            };
            if so_far.len() < 19 {
                next.card = Some(so_far);
            }
        } else if ends_utterance && entity.is_none() && near != Some(Context::Harmless) {
            next.tail = Some(run.digits.clone());
        }
    }
    // A context said at the very end waits for the next utterance's figure.
    if let Some(cue) = cues.last() {
        let after_last_run = runs.last().is_none_or(|r| r.last < cue.end);
        if after_last_run && cue.end + 3 >= words.len() && cue.context != Context::Harmless {
            next.context = Some(cue.context);
        }
    }
    if next.card.is_some() {
        next.context = Some(Context::Card);
    }
    // A date's span may have swallowed the next run: keep spans disjoint.
    found.dedup_by(|b, a| {
        if b.first <= a.last {
            a.last = a.last.max(b.last);
            true
        } else {
            false
        }
    });
    (found, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_checks() {
        assert!(luhn("4111111111111111"));
        assert!(luhn("79927398713"));
        assert!(!luhn("4111111111111112"));
    }
}
