//! Phrase matching that survives speech recognition.
//!
//! Text and phrases are normalised the same way (case, punctuation,
//! contractions, numbers written as digits). A phrase the agent is expected
//! to say matches a stretch of words with up to one word-level edit when it is
//! four words or longer ("may i play you on a brief hold" still asks for a
//! hold); a forbidden phrase must match exactly, since one substituted word
//! turns "i will call you" into a threat. Whisper censors
//! swear words ("f***"): a censored word matches a phrase word of three or
//! more letters with the same first letter.

/// Marks a sentence end in normalised text: phrases never match across it
/// ("Thank you. Please confirm…" does not say "you please").
pub const SENTENCE_END: &str = ".";

/// Abbreviations whose full stop does not end a sentence.
const ABBREVIATIONS: [&str; 5] = ["mr", "mrs", "ms", "dr", "st"];

/// Normalised words of `text`: lower case, punctuation dropped (`*` kept for
/// censored words), contractions expanded, numbers spelled out, sentence
/// ends marked with [`SENTENCE_END`].
pub fn normalise(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        let ends_sentence = token.trim_end_matches(['"', '\'', ')']).ends_with(['.', '?', '!', ';']);
        let before = out.len();
        words_of(token, &mut out);
        let abbreviation = out.len() == before + 1 && ABBREVIATIONS.contains(&out[before].as_str());
        if ends_sentence && out.len() > before && !abbreviation {
            out.push(SENTENCE_END.to_owned());
        }
    }
    out
}

fn words_of(token: &str, out: &mut Vec<String>) {
    for raw in token.split(['-', '—', '–', '/', ',', '.', '?', '!', ';', ':']) {
        let w: String = raw
            .chars()
            .map(|c| if c == '’' { '\'' } else { c })
            .filter(|c| c.is_alphanumeric() || *c == '\'' || *c == '*')
            .flat_map(char::to_lowercase)
            .collect();
        let w = w.trim_matches('\'');
        if w.is_empty() {
            continue;
        }
        if w.chars().all(|c| c.is_ascii_digit()) {
            out.extend(number_words(w));
        } else {
            out.extend(expand_contraction(w));
        }
    }
}

fn expand_contraction(w: &str) -> Vec<String> {
    let whole: Option<&[&str]> = match w {
        "won't" => Some(&["will", "not"]),
        "can't" | "cannot" => Some(&["can", "not"]),
        "shan't" => Some(&["shall", "not"]),
        "i'm" => Some(&["i", "am"]),
        "let's" => Some(&["let", "us"]),
        "ma'am" => Some(&["madam"]),
        "okay" | "ok" => Some(&["okay"]),
        _ => None,
    };
    if let Some(ws) = whole {
        return ws.iter().map(|s| s.to_string()).collect();
    }
    for (suffix, expansion) in [
        ("n't", "not"),
        ("'re", "are"),
        ("'ll", "will"),
        ("'ve", "have"),
        ("'d", "would"),
    ] {
        if let Some(stem) = w.strip_suffix(suffix) {
            if !stem.is_empty() {
                return vec![stem.to_owned(), expansion.to_owned()];
            }
        }
    }
    // "it's", "that's", "what's": "is"; a possessive ("customer's") keeps its stem.
    if let Some(stem) = w.strip_suffix("'s") {
        return match stem {
            "it" | "that" | "what" | "there" | "here" | "he" | "she" | "who" | "where" => {
                vec![stem.to_owned(), "is".to_owned()]
            }
            _ => vec![stem.to_owned()],
        };
    }
    vec![w.to_owned()]
}

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// Numbers under 1000 as words ("10" → "ten"); longer digit strings (order
/// and ticket numbers) digit by digit, as people read them out.
fn number_words(digits: &str) -> Vec<String> {
    let Ok(n) = digits.parse::<u32>() else {
        return digits
            .chars()
            .map(|d| ONES[d as usize - '0' as usize].to_owned())
            .collect();
    };
    if digits.len() > 3 || (digits.len() > 1 && digits.starts_with('0')) {
        return digits
            .chars()
            .map(|d| ONES[d as usize - '0' as usize].to_owned())
            .collect();
    }
    let mut out = Vec::new();
    let (h, rest) = (n / 100, n % 100);
    if h > 0 {
        out.extend([ONES[h as usize].to_owned(), "hundred".to_owned()]);
    }
    if rest >= 20 {
        out.push(TENS[(rest / 10) as usize].to_owned());
        if rest % 10 > 0 {
            out.push(ONES[(rest % 10) as usize].to_owned());
        }
    } else if rest > 0 || h == 0 {
        out.push(ONES[rest as usize].to_owned());
    }
    out
}

/// A phrase ready to match: normalised words and the edits it tolerates.
#[derive(Debug, Clone, PartialEq)]
pub struct Phrase {
    pub text: String,
    words: Vec<String>,
    tolerance: usize,
}

impl Phrase {
    /// `None` if the phrase has no words after normalisation. `lenient`
    /// phrases tolerate one recognition slip when four words or longer.
    pub fn new(text: &str, lenient: bool) -> Option<Self> {
        let words: Vec<String> = normalise(text).into_iter().filter(|w| w != SENTENCE_END).collect();
        if words.is_empty() || words.iter().any(|w| w.contains('*')) {
            return None;
        }
        let tolerance = usize::from(lenient && words.len() >= 4);
        Some(Self {
            text: text.to_owned(),
            words,
            tolerance,
        })
    }

    /// Finds the phrase within one sentence of `text` (already normalised);
    /// returns the matched words as evidence.
    pub fn find(&self, text: &[String]) -> Option<String> {
        text.split(|w| w == SENTENCE_END)
            .find_map(|sentence| self.find_in(sentence))
    }

    fn find_in(&self, text: &[String]) -> Option<String> {
        // Approximate substring match (Sellers): row j = best edit distance of
        // the phrase prefix ending at text position j, free start anywhere.
        let (m, n) = (self.words.len(), text.len());
        let mut prev: Vec<usize> = vec![0; n + 1];
        let mut starts: Vec<usize> = (0..=n).collect();
        for (i, pw) in self.words.iter().enumerate() {
            let mut row = vec![i + 1; n + 1];
            let mut row_starts = vec![0; n + 1];
            for j in 1..=n {
                let same = words_equal(pw, &text[j - 1]);
                let options = [
                    (prev[j - 1] + usize::from(!same), starts[j - 1]),
                    (prev[j] + 1, starts[j]),
                    (row[j - 1] + 1, row_starts[j - 1]),
                ];
                let best = options.iter().min_by_key(|o| o.0).copied().unwrap_or((usize::MAX, 0));
                row[j] = best.0;
                row_starts[j] = best.1;
            }
            prev = row;
            starts = row_starts;
        }
        // Within tolerance, and no shorter than the phrase: a slip may change
        // or add a word, never drop one ("may i place you on" is not "… on hold").
        let end = (1..=n)
            .filter(|&j| prev[j] <= self.tolerance && j - starts[j] >= m)
            .min_by_key(|&j| prev[j])?;
        Some(text[starts[end]..end].join(" "))
    }
}

fn words_equal(phrase_word: &str, text_word: &str) -> bool {
    if phrase_word == text_word {
        return true;
    }
    // "f***" for a phrase word "fuck": same first letter, rest masked.
    match text_word.split_once('*') {
        Some((prefix, _)) if !prefix.is_empty() => phrase_word.len() >= 3 && phrase_word.starts_with(prefix),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(phrase: &str, text: &str) -> Option<String> {
        Phrase::new(phrase, true).unwrap().find(&normalise(text))
    }

    #[test]
    fn normalisation() {
        assert_eq!(
            normalise("I'm SORRY, we can't — it's 10")[..],
            ["i", "am", "sorry", "we", "can", "not", "it", "is", "ten"]
        );
        assert_eq!(normalise("ticket 4071"), ["ticket", "four", "zero", "seven", "one"]);
        assert_eq!(
            normalise("OK, 42 and 300"),
            ["okay", "forty", "two", "and", "three", "hundred"]
        );
    }

    #[test]
    fn phrases_match_on_word_boundaries_only() {
        assert!(found("hell", "Hello, thank you for calling").is_none());
        assert_eq!(found("yep", "Yep, that's right.").as_deref(), Some("yep"));
    }

    #[test]
    fn one_word_slip_is_tolerated_in_longer_phrases() {
        assert_eq!(
            found(
                "may i place you on a brief hold",
                "May I play you on a brief hold while I check?"
            )
            .as_deref(),
            Some("may i play you on a brief hold")
        );
        assert!(found("brief hold", "a brief fold").is_none());
        assert!(found("thank you for holding", "thank you").is_none());
        let strict = Phrase::new("i will kill you", false).unwrap();
        assert!(strict.find(&normalise("I will call you back")).is_none());
        assert!(strict.find(&normalise("I will kill you")).is_some());
    }

    #[test]
    fn censored_swear_words_match() {
        assert!(found("fucking", "This is f***ing ridiculous").is_some());
        assert!(found("fuck", "This is f***ing ridiculous").is_some());
        assert!(found("shit", "What a load of s***.").is_some());
        assert!(found("shit", "What a load of d***.").is_none());
    }

    #[test]
    fn phrases_stay_within_a_sentence_and_keep_every_word() {
        assert!(found("you please", "Thank you. Please confirm your address.").is_none());
        assert!(found("may i please", "Ms. Lopez, may I please have your order number?").is_some());
        assert!(found("ms lopez", "Thank you, Ms. Lopez.").is_some());
        assert!(found("may i place you on hold", "May I place you on. One moment").is_none());
    }

    #[test]
    fn contractions_and_numbers_meet_halfway() {
        assert!(found("i am not able to", "I'm not able to do that").is_some());
        assert!(found("one moment", "1 moment please").is_some());
    }
}
