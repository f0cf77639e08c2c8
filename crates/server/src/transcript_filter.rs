//! The transcript filter: the one place words pass on their way out of a
//! call session — to the store, the feed, `WatchCall` watchers, nudges and
//! the agent's panel. The rules read the words before it (they need them
//! whole); nothing else does. Today's filter is [`Verbatim`]; redaction
//! (card numbers, names) is a filter.

use std::borrow::Cow;

use crate::pb;

pub trait TranscriptFilter: Send + Sync {
    /// `text` as it may leave the session.
    fn words<'a>(&self, text: &'a str) -> Cow<'a, str>;
}

/// Lets every word through.
#[derive(Debug, Default, Clone, Copy)]
pub struct Verbatim;

impl TranscriptFilter for Verbatim {
    fn words<'a>(&self, text: &'a str) -> Cow<'a, str> {
        Cow::Borrowed(text)
    }
}

fn filter_in_place(filter: &dyn TranscriptFilter, text: &mut String) {
    if let Cow::Owned(words) = filter.words(text) {
        *text = words;
    }
}

/// A transcript revision with its text filtered.
pub fn revision(filter: &dyn TranscriptFilter, mut revision: pb::TranscriptRevision) -> pb::TranscriptRevision {
    filter_in_place(filter, &mut revision.text);
    revision
}

/// An alert with its evidence (the words heard) filtered.
pub fn alert(filter: &dyn TranscriptFilter, mut alert: pb::Alert) -> pb::Alert {
    filter_in_place(filter, &mut alert.evidence);
    alert
}

/// A scorecard with every item's evidence filtered.
pub fn scorecard(filter: &dyn TranscriptFilter, mut card: pb::Scorecard) -> pb::Scorecard {
    for item in card.sections.iter_mut().flat_map(|s| s.items.iter_mut()) {
        filter_in_place(filter, &mut item.evidence);
    }
    card
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Masks digits, as a card-number redactor would.
    struct Digits;

    impl TranscriptFilter for Digits {
        fn words<'a>(&self, text: &'a str) -> Cow<'a, str> {
            if !text.chars().any(|c| c.is_ascii_digit()) {
                return Cow::Borrowed(text);
            }
            Cow::Owned(text.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect())
        }
    }

    #[test]
    fn verbatim_changes_nothing() {
        let r = pb::TranscriptRevision {
            text: "It is 4419.".into(),
            ..Default::default()
        };
        assert_eq!(revision(&Verbatim, r.clone()), r);
    }

    #[test]
    fn every_text_field_goes_through_the_filter() {
        let r = revision(
            &Digits,
            pb::TranscriptRevision {
                text: "It is 4419.".into(),
                utterance_id: 7,
                ..Default::default()
            },
        );
        assert_eq!((r.text.as_str(), r.utterance_id), ("It is ####.", 7));
        let a = alert(
            &Digits,
            pb::Alert {
                evidence: "card 1234".into(),
                message: "Do not read back 2 numbers".into(),
                ..Default::default()
            },
        );
        // The rulebook's own message is not transcript: it stays.
        assert_eq!(
            (a.evidence.as_str(), a.message.as_str()),
            ("card ####", "Do not read back 2 numbers")
        );
        let card = scorecard(
            &Digits,
            pb::Scorecard {
                sections: vec![pb::ScorecardSection {
                    name: "Opening".into(),
                    items: vec![
                        pb::ScorecardItem {
                            evidence: "12 ok".into(),
                            ..Default::default()
                        },
                        pb::ScorecardItem::default(),
                    ],
                }],
                ..Default::default()
            },
        );
        let items = &card.sections[0].items;
        assert_eq!((items[0].evidence.as_str(), items[1].evidence.as_str()), ("## ok", ""));
    }
}
