//! The redactor on a table of spoken forms (what Whisper writes for them),
//! near misses that must stay, and a property: a Luhn-valid card number,
//! however it is grouped, spelled or split over two utterances, never
//! survives.

use proptest::prelude::*;

use super::*;
use crate::audio::Channel;

fn finals(lines: &[&str]) -> Vec<String> {
    let mut r = Redactor::new(Entities::default());
    lines
        .iter()
        .map(|l| r.revision(Channel::Customer, true, l).text)
        .collect()
}

fn one(line: &str) -> String {
    finals(&[line]).remove(0)
}

#[test]
fn spoken_forms_are_redacted() {
    let table = [
        ("My card number is 4111 1111 1111 1111.", "My card number is [card]."),
        ("It's 4111-1111-1111-1111, thanks.", "It's [card], thanks."),
        (
            "four one one one one one one one one one one one one one one one",
            "[card]",
        ),
        ("5-5-5-5 5-5-5-5 5-5-5-5 4-4-4-4", "[card]"),
        ("The security code is 123.", "The security code is [cvv]."),
        ("CVV, double one two.", "CVV, [cvv]."),
        ("It expires twelve twenty seven.", "It expires [expiry]."),
        ("Expiry 12/27.", "Expiry [expiry]."),
        ("It expires in June 2027.", "It expires in [expiry]."),
        (
            "My social security number is 123-45-6789.",
            "My social security number is [ssn].",
        ),
        ("It's 078 05 1120", "It's [ssn]"),
        (
            "My date of birth is March fifth, nineteen eighty five.",
            "My date of birth is [dob].",
        ),
        ("I was born on the fifth of March 1985.", "I was born on the [dob]."),
        ("My native bird is March 5, 1985.", "My native bird is [dob]."),
        ("Routing number 021000021", "Routing number [routing]"),
        ("My account number is 12345678.", "My account number is [account]."),
        ("The PIN is 4 4 2 1.", "The PIN is [pin]."),
        ("Call me on 555-867-5309.", "Call me on [phone]."),
        ("It's 212 555 0123", "It's [phone]"),
        ("My email is john dot smith at example dot com.", "My email is [email]."),
        ("Write to jane.doe42@example.org please", "Write to [email] please"),
        ("the card ending one one one one", "the card ending [card]"),
        (
            "That's the Cardending 647 and the code.",
            "That's the Cardending [card] and the code.",
        ),
    ];
    for (said, want) in table {
        assert_eq!(one(said), want, "{said}");
    }
}

#[test]
fn near_misses_stay() {
    for said in [
        "Your ticket number is five five two eight.",
        "The order number is 7 7 3 4 2 1 9 8.",
        "I'll call you at twelve thirty.",
        "I have been a customer for twenty two years.",
        "Press one for sales.",
        "It happened on the third of March.",
        "The outage started on March 5, 2026.",
        "Meet me at the office at five.",
        "Reference 4821, please.",
    ] {
        assert_eq!(one(said), said);
    }
}

#[test]
fn a_card_read_over_two_utterances_is_caught_in_both() {
    let out = finals(&[
        "My card number is four one one one, one one one one.",
        "one one one one, one one one one.",
        "And the security code is one two three.",
    ]);
    assert_eq!(
        out,
        [
            "My card number is [card].",
            "[card].",
            "And the security code is [cvv]."
        ]
    );
    // Without a cue: a long figure at the end of an utterance is held as a card.
    let out = finals(&["It's 4111 1111.", "1111 1111"]);
    assert_eq!(out, ["It's [card].", "[card]"]);
    // The other party's next utterance does not continue it.
    let mut r = Redactor::new(Entities::default());
    r.revision(Channel::Customer, true, "My card number is");
    assert_eq!(r.revision(Channel::Agent, true, "4 people").text, "4 people");
    assert_eq!(r.revision(Channel::Customer, true, "4111 1111").text, "[card]");
}

#[test]
fn partials_hold_what_might_become_a_card() {
    let mut r = Redactor::new(Entities::default());
    let p = r.revision(Channel::Customer, false, "It's four one one one and");
    assert_eq!(p.text, "It's [digits] and");
    // The partial left no state: the final decides alone.
    assert_eq!(r.revision(Channel::Customer, true, "It's 4111.").text, "It's 4111.");
    // A harmless reference is not held.
    let said = "ticket five five two eight";
    assert_eq!(r.revision(Channel::Customer, false, said).text, said);
}

#[test]
fn spans_point_at_the_markers() {
    let mut r = Redactor::new(Entities::default());
    let out = r.revision(Channel::Customer, true, "né: 4111 1111 1111 1111 or a@b.com");
    assert_eq!(out.text, "né: [card] or [email]");
    let chars: Vec<char> = out.text.chars().collect();
    let marked: Vec<String> = out
        .spans
        .iter()
        .map(|s| chars[s.start_char..s.end_char].iter().collect())
        .collect();
    assert_eq!(marked, ["[card]", "[email]"]);
    assert_eq!(
        serde_json::to_string(&out.spans[0]).unwrap(),
        r#"{"type":"card","start_char":4,"end_char":10}"#
    );
}

#[test]
fn only_configured_entities_are_redacted() {
    let mut r = Redactor::new(Entities::parse(&["email"]).unwrap());
    let out = r.revision(Channel::Agent, true, "Card 4111 1111 1111 1111, mail a@b.com");
    assert_eq!(out.text, "Card 4111 1111 1111 1111, mail [email]");
    let mut off = Redactor::new(Entities::none());
    assert_eq!(off.revision(Channel::Agent, true, "a@b.com").text, "a@b.com");
}

#[test]
fn evidence_is_judged_on_its_own_and_held() {
    let r = Redactor::new(Entities::default());
    assert_eq!(r.evidence("read back 4111 to me").text, "read back [digits] to me");
}

const WORDS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// A Luhn-valid number of `len` digits from `body` (len - 1 digits).
fn card(mut body: Vec<u8>) -> String {
    for check in 0..10 {
        body.push(check);
        let s: String = body.iter().map(|d| char::from(b'0' + d)).collect();
        if luhn(&s) {
            return s;
        }
        body.pop();
    }
    unreachable!("one check digit always fits")
}

/// `digits` written in `groups` (sizes), each group as digits or spoken words.
fn render(digits: &str, groups: &[usize], spoken: &[bool]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    for (k, g) in groups.iter().enumerate() {
        let end = (at + g).min(digits.len());
        if at >= end {
            break;
        }
        let group = &digits[at..end];
        out.push(if spoken[k % spoken.len()] {
            group
                .bytes()
                .map(|b| WORDS[usize::from(b - b'0')])
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            group.to_owned()
        });
        at = end;
    }
    if at < digits.len() {
        out.push(digits[at..].to_owned());
    }
    out
}

/// Digits shown: at most a card's first six (what PCI DSS lets a screen show).
fn shown(text: &str) -> usize {
    text.chars().filter(|c| c.is_ascii_digit()).count()
}

proptest! {
    #[test]
    fn a_luhn_valid_card_never_survives(
        body in proptest::collection::vec(0u8..10, 12..19),
        groups in proptest::collection::vec(1usize..6, 1..8),
        spoken in proptest::collection::vec(any::<bool>(), 1..4),
        sep in prop::sample::select(vec![" ", ", ", "-", ". ", " dash "]),
        split in 0usize..8,
        intro in prop::sample::select(vec!["", "My card number is ", "It's ", "okay "]),
    ) {
        let number = card(body);
        let parts = render(&number, &groups, &spoken);
        let mut r = Redactor::new(Entities::default());
        // One utterance, or two: the first part said, the rest in the next.
        let cut = split.min(parts.len());
        let (first, second) = parts.split_at(cut);
        let mut said = Vec::new();
        if !first.is_empty() && !second.is_empty() {
            said.push(format!("{intro}{}.", first.join(sep)));
            said.push(format!("{}.", second.join(sep)));
        } else {
            said.push(format!("{intro}{}.", parts.join(sep)));
        }
        let out: Vec<String> = said.iter().map(|l| r.revision(Channel::Customer, true, l).text).collect();
        prop_assert!(out.iter().map(|t| shown(t)).sum::<usize>() <= 6, "{said:?} → {out:?}");
    }
}
