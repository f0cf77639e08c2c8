//! The caller's name, as the caller gives it.
//!
//! The protocol asks the agent to use the caller's name, so the rules must
//! know it. Callers give it in a few set ways: "my name is Maria Lopez",
//! "this is John", "it's Dana Smith", or the bare name in answer to the
//! agent's "may I have your name?". Whisper writes names capitalised, which
//! tells "this is John" from "this is ridiculous"; words every sentence may
//! start with ("Okay", "Sure") are never names.

use super::matcher::normalise;
use crate::audio::Channel;
use crate::events::Transcript;

/// Words that introduce a name (normalised; contractions already expanded).
const INTRODUCTIONS: [&[&str]; 7] = [
    &["my", "name", "is"],
    &["name", "is"],
    &["this", "is"],
    &["it", "is"],
    &["i", "am"],
    &["call", "me"],
    &["speaking", "with"],
];

/// Capitalised words that are not names: interjections, titles, days,
/// months, and what else a sentence commonly starts with.
const NOT_NAMES: [&str; 44] = [
    "i",
    "okay",
    "ok",
    "yes",
    "yeah",
    "yep",
    "no",
    "hi",
    "hello",
    "hey",
    "sure",
    "well",
    "so",
    "oh",
    "um",
    "uh",
    "thanks",
    "thank",
    "please",
    "sorry",
    "the",
    "a",
    "an",
    "mr",
    "mrs",
    "ms",
    "miss",
    "mister",
    "dr",
    "sir",
    "madam",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "calling",
    "just",
    "still",
    "not",
    "here",
    "good",
];

/// Titles skipped before a surname ("this is Mr. Smith").
const TITLES: [&str; 7] = ["mr", "mrs", "ms", "miss", "mister", "dr", "doctor"];

/// Openers a bare answer may start with ("Sure, John Smith.").
const ANSWER_OPENERS: [&str; 9] = ["yes", "yeah", "sure", "okay", "hi", "hello", "oh", "it", "is"];

/// Phrases by which the agent asks for the caller's name (besides "your
/// name", "your full name").
const NAME_QUESTIONS: [&[&str]; 3] = [
    &["who", "am", "i", "speaking"],
    &["whom", "am", "i", "speaking"],
    &["who", "is", "calling"],
];

/// Longest a name is, in words (first, middle, last).
const MAX_NAME_WORDS: usize = 3;

/// One word of `text` as spoken: its normalised form and whether it was
/// written capitalised.
struct Word {
    norm: String,
    capital: bool,
    /// The word ends a sentence or clause (a comma or full stop follows).
    ends_clause: bool,
}

fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        let capital = token
            .trim_start_matches(|c: char| !c.is_alphanumeric())
            .starts_with(|c: char| c.is_uppercase());
        let ends_clause = token
            .trim_end_matches(['"', '\'', ')'])
            .ends_with(['.', ',', '?', '!', ';', ':']);
        let normalised: Vec<String> = normalise(token)
            .into_iter()
            .filter(|w| w != super::matcher::SENTENCE_END)
            .collect();
        let count = normalised.len();
        for (i, norm) in normalised.into_iter().enumerate() {
            out.push(Word {
                norm,
                capital: capital && i == 0,
                ends_clause: ends_clause && i + 1 == count,
            });
        }
    }
    out
}

fn is_name(w: &Word) -> bool {
    w.capital && w.norm.len() >= 2 && w.norm.chars().all(char::is_alphabetic) && !NOT_NAMES.contains(&w.norm.as_str())
}

/// The name starting at `from`: up to three capitalised words, after an
/// optional title, ending at the first word that is not one.
fn name_at(ws: &[Word], mut from: usize) -> Vec<String> {
    if ws.get(from).is_some_and(|w| TITLES.contains(&w.norm.as_str())) {
        from += 1;
    }
    let mut name = Vec::new();
    for w in ws.iter().skip(from).take(MAX_NAME_WORDS) {
        if !is_name(w) {
            break;
        }
        name.push(w.norm.clone());
        if w.ends_clause {
            break;
        }
    }
    name
}

/// How long after the agent starts asking a bare answer counts as the name.
const ANSWER_WINDOW_S: f64 = 15.0;

/// What the call has told about the caller's name so far.
#[derive(Debug, Default)]
pub struct CallerName {
    /// Every word of every name the caller gave, lower case, first heard first.
    pub words: Vec<String>,
    /// Starts of the agent's utterances that asked for the name.
    asked: Vec<f64>,
    /// Bare answers no question is known to precede yet: (start, name).
    /// Finals may arrive out of order, so an answer may come before its question.
    unasked: Vec<(f64, Vec<String>)>,
}

impl CallerName {
    /// Takes in a final. Only separate channels tell who gave a name: on a
    /// mono recording the agent's own "this is Sam" would count.
    pub fn heard(&mut self, t: &Transcript) {
        if !t.is_final {
            return;
        }
        match t.channel {
            Channel::Customer => {
                let name = introduced(&t.text);
                if !name.is_empty() {
                    self.add(name);
                } else {
                    let name = answered(&t.text);
                    if !name.is_empty() {
                        self.unasked.push((t.start_s, name));
                    }
                }
            }
            Channel::Agent if asks_name(&t.text) => self.asked.push(t.start_s),
            _ => {}
        }
        let asked = &self.asked;
        let (answers, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unasked)
            .into_iter()
            .partition(|(at, _)| asked.iter().any(|q| q < at && *at <= q + ANSWER_WINDOW_S));
        self.unasked = rest;
        for (_, name) in answers {
            self.add(name);
        }
    }

    fn add(&mut self, name: Vec<String>) {
        for w in name {
            if !self.words.contains(&w) {
                self.words.push(w);
            }
        }
    }
}

/// The name a speaker gives for themselves in `text` ("my name is Maria
/// Lopez" → ["maria", "lopez"]), lower case; empty when there is none.
pub fn introduced(text: &str) -> Vec<String> {
    let ws = words(text);
    for start in 0..ws.len() {
        for intro in INTRODUCTIONS {
            let fits = intro.len() + start <= ws.len()
                && ws[start..start + intro.len()]
                    .iter()
                    .zip(intro)
                    .all(|(w, i)| w.norm == *i);
            if fits {
                let name = name_at(&ws, start + intro.len());
                if !name.is_empty() {
                    return name;
                }
            }
        }
    }
    Vec::new()
}

/// The name in a bare answer to "may I have your name?" ("John Smith.",
/// "Sure, Dana."): the whole utterance is the name and an opener.
pub fn answered(text: &str) -> Vec<String> {
    let ws = words(text);
    let from = ws
        .iter()
        .take_while(|w| ANSWER_OPENERS.contains(&w.norm.as_str()))
        .count();
    let name = name_at(&ws, from);
    let title = usize::from(ws.get(from).is_some_and(|w| TITLES.contains(&w.norm.as_str())));
    if name.is_empty() || from + title + name.len() != ws.len() {
        return Vec::new();
    }
    name
}

/// Whether `text` asks for the listener's name.
pub fn asks_name(text: &str) -> bool {
    let ws: Vec<String> = normalise(text);
    let your_name = ws
        .iter()
        .enumerate()
        .any(|(i, w)| w == "your" && ws.iter().skip(i + 1).take(2).any(|n| n == "name"));
    your_name
        || NAME_QUESTIONS
            .iter()
            .any(|q| ws.windows(q.len()).any(|w| w.iter().zip(q.iter()).all(|(a, b)| a == b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn final_(channel: Channel, start_s: f64, text: &str) -> Transcript {
        Transcript {
            call_id: "call".into(),
            channel,
            utterance_id: 0,
            revision: 0,
            is_final: true,
            start_s,
            end_s: start_s + 2.0,
            text: text.into(),
            tokens: Vec::new(),
            ready_after_s: 0.0,
        }
    }

    #[test]
    fn a_bare_answer_counts_after_the_question_in_any_arrival_order() {
        let question = final_(Channel::Agent, 0.5, "May I have your name please?");
        let answer = final_(Channel::Customer, 4.0, "Dana Reyes.");
        for order in [[&question, &answer], [&answer, &question]] {
            let mut name = CallerName::default();
            for t in order {
                name.heard(t);
            }
            assert_eq!(name.words, ["dana", "reyes"]);
        }
        let mut unasked = CallerName::default();
        unasked.heard(&final_(Channel::Customer, 4.0, "Northwind."));
        unasked.heard(&final_(Channel::Agent, 9.0, "What is your name?"));
        assert!(unasked.words.is_empty(), "an answer before the question is no answer");
    }

    #[test]
    fn only_the_customer_channel_gives_the_callers_name() {
        let mut name = CallerName::default();
        name.heard(&final_(Channel::Agent, 0.5, "Thank you for calling, this is Sam."));
        name.heard(&final_(Channel::Mono, 3.0, "This is Alex."));
        assert!(name.words.is_empty());
        name.heard(&final_(Channel::Customer, 5.0, "Hi, this is John Smith."));
        name.heard(&final_(Channel::Customer, 9.0, "Yes, it's John."));
        assert_eq!(name.words, ["john", "smith"]);
    }

    #[test]
    fn introductions_give_the_name() {
        for (text, name) in [
            ("This is John Smith. I was charged twice.", vec!["john", "smith"]),
            (
                "Hi, my name is Maria Lopez, and my order is late.",
                vec!["maria", "lopez"],
            ),
            ("Yeah, it's Dana.", vec!["dana"]),
            ("This is Mr. Okafor calling about my bill.", vec!["okafor"]),
            ("I'm Priya, I called yesterday.", vec!["priya"]),
            ("Hello, this is David Chen speaking.", vec!["david", "chen"]),
        ] {
            assert_eq!(introduced(text), name, "{text}");
        }
    }

    #[test]
    fn ordinary_sentences_give_no_name() {
        for text in [
            "This is ridiculous, I want a refund.",
            "It is four four one nine.",
            "I'm calling about my bill.",
            "It's Monday and it still hasn't arrived.",
            "This is the third time I call.",
            "I am Okay with that.",
        ] {
            assert!(introduced(text).is_empty(), "{text}: {:?}", introduced(text));
        }
    }

    #[test]
    fn bare_answers_are_names_only_when_nothing_else_is_said() {
        assert_eq!(answered("John Smith."), vec!["john", "smith"]);
        assert_eq!(answered("Sure, it's Dana Reyes."), vec!["dana", "reyes"]);
        assert_eq!(answered("Mrs. Okafor."), vec!["okafor"]);
        assert!(answered("Sure.").is_empty());
        assert!(answered("Yes, those are all correct.").is_empty());
        assert!(answered("Northwind charged me twice.").is_empty());
    }

    #[test]
    fn name_questions() {
        assert!(asks_name("May I have your name please?"));
        assert!(asks_name("And who am I speaking with today?"));
        assert!(asks_name("Could I get your full name?"));
        assert!(!asks_name("My name is Alex."));
    }
}
