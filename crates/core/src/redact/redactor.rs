//! The per-call [`Redactor`]: finds what to hide in each transcript
//! revision and replaces it by typed markers (`[card]`). It keeps, per
//! channel, what the party's last final left open, so a card number read
//! over two utterances is caught; a partial reads that state but never
//! changes it (partials are provisional).

use std::collections::HashMap;

use super::email::emails;
use super::entity::{Entities, Entity};
use super::find::{find, Carry};
use super::words::words;
use crate::audio::Channel;

/// One redacted span: the marker's place in the redacted text, in chars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Span {
    #[serde(rename = "type")]
    pub entity: Entity,
    pub start_char: usize,
    pub end_char: usize,
}

/// Text as it may leave the call, and where its markers are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Redacted {
    pub text: String,
    pub spans: Vec<Span>,
}

/// `text` with the char spans in `hide` (sorted, disjoint) replaced by markers.
fn mask(text: &str, hide: &[(Entity, usize, usize)]) -> Redacted {
    if hide.is_empty() {
        return Redacted {
            text: text.to_owned(),
            spans: Vec::new(),
        };
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = Redacted::default();
    let (mut at, mut out_chars) = (0, 0);
    for &(entity, start, end) in hide {
        out.text.extend(&chars[at..start]);
        out_chars += start - at;
        let marker = format!("[{}]", entity.name());
        let len = marker.chars().count();
        out.text.push_str(&marker);
        out.spans.push(Span {
            entity,
            start_char: out_chars,
            end_char: out_chars + len,
        });
        out_chars += len;
        at = end;
    }
    out.text.extend(&chars[at..]);
    out
}

/// The char spans to hide in `text` and what the utterance leaves open.
fn spans(entities: &Entities, text: &str, carry: &Carry, hold: bool) -> (Vec<(Entity, usize, usize)>, Carry) {
    let words = words(text);
    let (found, next) = find(text, &words, carry, hold);
    let mut hide: Vec<(Entity, usize, usize)> = found
        .into_iter()
        .map(|f| (f.entity, words[f.first].start, words[f.last].end))
        .chain(emails(text).into_iter().map(|(a, b)| (Entity::Email, a, b)))
        .filter(|(e, _, _)| entities.contains(*e))
        .collect();
    hide.sort_by_key(|&(_, a, b)| (a, std::cmp::Reverse(b)));
    // An address's digits may also have been read as a figure: the wider span wins.
    let mut disjoint: Vec<(Entity, usize, usize)> = Vec::with_capacity(hide.len());
    for h in hide {
        match disjoint.last_mut() {
            Some(last) if h.1 < last.2 => last.2 = last.2.max(h.2),
            _ => disjoint.push(h),
        }
    }
    (disjoint, next)
}

/// Redaction for one call: state per channel.
#[derive(Debug, Clone)]
pub struct Redactor {
    entities: Entities,
    open: HashMap<Channel, Carry>,
}

impl Redactor {
    pub fn new(entities: Entities) -> Self {
        Self {
            entities,
            open: HashMap::new(),
        }
    }

    /// A revision of an utterance on `channel`. A final moves the
    /// channel's state on; a partial also masks figures that might still
    /// become a card number (`[digits]`).
    pub fn revision(&mut self, channel: Channel, is_final: bool, text: &str) -> Redacted {
        if self.entities.is_empty() {
            return mask(text, &[]);
        }
        let carry = self.open.get(&channel).cloned().unwrap_or_default();
        let (hide, next) = spans(&self.entities, text, &carry, !is_final);
        if is_final {
            self.open.insert(channel, next);
        }
        mask(text, &hide)
    }

    /// Text heard on the call but shown out of its utterance (an alert's
    /// evidence): judged on its own, holding any figure that might be
    /// part of a card number.
    pub fn evidence(&self, text: &str) -> Redacted {
        if self.entities.is_empty() {
            return mask(text, &[]);
        }
        mask(text, &spans(&self.entities, text, &Carry::default(), true).0)
    }
}
