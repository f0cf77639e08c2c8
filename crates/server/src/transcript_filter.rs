//! The transcript filter: the one place words pass on their way out of a
//! call session — to the store, the feed, `WatchCall` watchers, nudges and
//! the agent's panel. The rules read the words before it (they need them
//! whole); nothing else does.
//!
//! A [`TranscriptFilter`] gives each call its own [`CallFilter`], which may
//! keep state across the call's utterances (a card number read over two
//! finals). The service's filter is [`Redaction`]; [`Verbatim`] lets every
//! word through.

use callwatch_core::audio::Channel;
use callwatch_core::redact::{Entities, Redacted, Redactor, Span};

use crate::pb;

/// Makes each call's filter.
pub trait TranscriptFilter: Send + Sync {
    fn for_call(&self) -> Box<dyn CallFilter>;
}

/// One call's filter. Revisions of a channel arrive in call order.
pub trait CallFilter: Send {
    /// A transcript revision's text as it may leave the session, and where
    /// it was changed. Only a final may move the filter's state on.
    fn revision(&mut self, channel: Channel, is_final: bool, text: &str) -> Redacted;
    /// Words shown out of their utterance (an alert's or a scorecard
    /// item's evidence).
    fn evidence(&self, text: &str) -> String;
}

/// Lets every word through.
#[derive(Debug, Default, Clone, Copy)]
pub struct Verbatim;

impl TranscriptFilter for Verbatim {
    fn for_call(&self) -> Box<dyn CallFilter> {
        Box::new(Verbatim)
    }
}

impl CallFilter for Verbatim {
    fn revision(&mut self, _: Channel, _: bool, text: &str) -> Redacted {
        Redacted {
            text: text.to_owned(),
            spans: Vec::new(),
        }
    }

    fn evidence(&self, text: &str) -> String {
        text.to_owned()
    }
}

/// Redaction of the configured entity types (`[privacy] redact`).
#[derive(Debug, Clone)]
pub struct Redaction(pub Entities);

impl TranscriptFilter for Redaction {
    fn for_call(&self) -> Box<dyn CallFilter> {
        Box::new(Redactor::new(self.0.clone()))
    }
}

impl CallFilter for Redactor {
    fn revision(&mut self, channel: Channel, is_final: bool, text: &str) -> Redacted {
        Redactor::revision(self, channel, is_final, text)
    }

    fn evidence(&self, text: &str) -> String {
        Redactor::evidence(self, text).text
    }
}

fn span(s: &Span) -> pb::RedactedSpan {
    pb::RedactedSpan {
        r#type: s.entity.name().to_owned(),
        start_char: s.start_char as u32,
        end_char: s.end_char as u32,
    }
}

/// A transcript revision (of `channel`) with its text filtered and its markers listed.
pub fn revision(
    filter: &mut dyn CallFilter,
    channel: Channel,
    mut revision: pb::TranscriptRevision,
) -> pb::TranscriptRevision {
    let out = filter.revision(channel, revision.is_final, &revision.text);
    revision.text = out.text;
    revision.redacted = out.spans.iter().map(span).collect();
    revision
}

/// An alert with its evidence (the words heard) filtered.
pub fn alert(filter: &dyn CallFilter, mut alert: pb::Alert) -> pb::Alert {
    alert.evidence = filter.evidence(&alert.evidence);
    alert
}

/// A scorecard with every item's evidence filtered.
pub fn scorecard(filter: &dyn CallFilter, mut card: pb::Scorecard) -> pb::Scorecard {
    for item in card.sections.iter_mut().flat_map(|s| s.items.iter_mut()) {
        item.evidence = filter.evidence(&item.evidence);
    }
    card
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Masks digits, as a card-number redactor would.
    struct Digits;

    impl CallFilter for Digits {
        fn revision(&mut self, _: Channel, _: bool, text: &str) -> Redacted {
            Redacted {
                text: self.evidence(text),
                spans: Vec::new(),
            }
        }

        fn evidence(&self, text: &str) -> String {
            text.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect()
        }
    }

    #[test]
    fn verbatim_changes_nothing() {
        let r = pb::TranscriptRevision {
            text: "It is 4419.".into(),
            ..Default::default()
        };
        assert_eq!(revision(&mut *Verbatim.for_call(), Channel::Agent, r.clone()), r);
    }

    #[test]
    fn every_text_field_goes_through_the_filter() {
        let r = revision(
            &mut Digits,
            Channel::Agent,
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

    #[test]
    fn redaction_keeps_state_per_call_and_lists_its_markers() {
        let redaction = Redaction(Entities::default());
        let final_of = |filter: &mut dyn CallFilter, text: &str| {
            revision(
                filter,
                Channel::Customer,
                pb::TranscriptRevision {
                    is_final: true,
                    text: text.into(),
                    ..Default::default()
                },
            )
        };
        let mut call = redaction.for_call();
        let first = final_of(&mut *call, "My card number is four one one one.");
        assert_eq!(first.text, "My card number is [card].");
        assert_eq!(
            first.redacted,
            [pb::RedactedSpan {
                r#type: "card".into(),
                start_char: 18,
                end_char: 24,
            }]
        );
        assert_eq!(final_of(&mut *call, "1111 1111 1111").text, "[card]");
        // Another call starts afresh.
        let mut other = redaction.for_call();
        assert_eq!(final_of(&mut *other, "Room 1111, please").text, "Room 1111, please");
    }
}
