//! Context: the words that say what the next figure is ("security code",
//! "expires", "date of birth"), and those that say it is harmless ("ticket",
//! "order"). A figure takes the last context said within a few words before it.

use super::words::Word;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Card,
    Cvv,
    Expiry,
    Ssn,
    Dob,
    Account,
    Routing,
    Pin,
    Phone,
    /// A reference the caller may hear back: ticket, order, case numbers.
    Harmless,
}

/// How many words may stand between a context and the figure it announces.
pub const REACH: usize = 8;

const PHRASES: &[(&[&str], Context)] = &[
    (&["card"], Context::Card),
    (&["visa"], Context::Card),
    (&["mastercard"], Context::Card),
    (&["amex"], Context::Card),
    (&["credit"], Context::Card),
    (&["debit"], Context::Card),
    (&["long", "number"], Context::Card),
    // "the card ending 6467"; Whisper sometimes glues the words.
    (&["ending"], Context::Card),
    (&["cardending"], Context::Card),
    (&["cardnumber"], Context::Card),
    (&["security", "code"], Context::Cvv),
    (&["security", "number"], Context::Cvv),
    (&["cvv"], Context::Cvv),
    (&["cvc"], Context::Cvv),
    (&["cv2"], Context::Cvv),
    (&["verification"], Context::Cvv),
    (&["three", "digits"], Context::Cvv),
    (&["back", "of", "the", "card"], Context::Cvv),
    (&["expires"], Context::Expiry),
    (&["expire"], Context::Expiry),
    (&["expiry"], Context::Expiry),
    (&["expiration"], Context::Expiry),
    (&["exp"], Context::Expiry),
    (&["valid", "until"], Context::Expiry),
    (&["valid", "through"], Context::Expiry),
    (&["valid", "thru"], Context::Expiry),
    (&["social", "security"], Context::Ssn),
    (&["social", "security", "number"], Context::Ssn),
    (&["social"], Context::Ssn),
    (&["ssn"], Context::Ssn),
    (&["date", "of", "birth"], Context::Dob),
    (&["birth", "date"], Context::Dob),
    (&["birthdate"], Context::Dob),
    (&["birthday"], Context::Dob),
    (&["born"], Context::Dob),
    (&["dob"], Context::Dob),
    (&["account"], Context::Account),
    (&["iban"], Context::Account),
    (&["routing"], Context::Routing),
    (&["sort", "code"], Context::Routing),
    (&["aba"], Context::Routing),
    (&["pin"], Context::Pin),
    (&["passcode"], Context::Pin),
    (&["phone"], Context::Phone),
    (&["telephone"], Context::Phone),
    (&["mobile"], Context::Phone),
    (&["cell"], Context::Phone),
    (&["call", "me"], Context::Phone),
    (&["reach", "me"], Context::Phone),
    (&["call", "back"], Context::Phone),
    (&["callback"], Context::Phone),
    (&["contact", "number"], Context::Phone),
    (&["ticket"], Context::Harmless),
    (&["order"], Context::Harmless),
    (&["reference"], Context::Harmless),
    (&["case"], Context::Harmless),
    (&["confirmation"], Context::Harmless),
    (&["invoice"], Context::Harmless),
    (&["tracking"], Context::Harmless),
    (&["extension"], Context::Harmless),
    (&["room"], Context::Harmless),
    (&["serial"], Context::Harmless),
    (&["model"], Context::Harmless),
];

/// A context phrase that ends at word `end`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cue {
    pub context: Context,
    pub end: usize,
}

/// Every cue in `words`, in order; where phrases end on the same word the
/// longest wins ("back of the card" is a security code, not a card).
pub fn cues(words: &[Word]) -> Vec<Cue> {
    let mut out = Vec::new();
    for end in 0..words.len() {
        let best = PHRASES
            .iter()
            .filter(|(phrase, _)| {
                phrase.len() <= end + 1
                    && phrase
                        .iter()
                        .zip(&words[end + 1 - phrase.len()..=end])
                        .all(|(p, w)| *p == w.text)
            })
            .max_by_key(|(phrase, _)| phrase.len());
        if let Some((_, context)) = best {
            out.push(Cue { context: *context, end });
        }
    }
    out
}

pub fn is_month(word: &str) -> bool {
    matches!(
        word,
        "january"
            | "february"
            | "march"
            | "april"
            | "may"
            | "june"
            | "july"
            | "august"
            | "september"
            | "sept"
            | "october"
            | "november"
            | "december"
    )
}

#[cfg(test)]
mod tests {
    use super::super::words::words;
    use super::*;

    #[test]
    fn the_longest_phrase_wins() {
        let c = cues(&words("the code on the back of the card"));
        assert_eq!(
            c,
            [Cue {
                context: Context::Cvv,
                end: 7
            }]
        );
        let c = cues(&words("my Social Security number"));
        assert_eq!(c.last().unwrap().context, Context::Ssn);
    }
}
