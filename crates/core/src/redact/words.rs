//! Splitting an utterance into words, each with its place in the text in
//! chars (the unit the redaction spans are reported in).

/// One word: a maximal run of letters, digits and apostrophes, lowercased.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub text: String,
    /// First char of the word, and one past its last, in the original text.
    pub start: usize,
    pub end: usize,
}

impl Word {
    /// Written digits only ("4111").
    pub fn is_digits(&self) -> bool {
        self.text.bytes().all(|b| b.is_ascii_digit())
    }
}

pub fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut current: Option<Word> = None;
    for (i, c) in text.chars().enumerate() {
        // Digits and letters split ("4111abc" is not a number), so a
        // written run like "4111-1111" or "4-1-1-1" is one word per group.
        let joins = |w: &Word| {
            let last = w.text.chars().last().unwrap_or(' ');
            (c.is_ascii_digit() && last.is_ascii_digit())
                || ((c.is_alphabetic() || c == '\'') && !last.is_ascii_digit())
        };
        match current.as_mut() {
            Some(w) if c.is_alphanumeric() || c == '\'' => {
                if joins(w) {
                    w.text.extend(c.to_lowercase());
                    w.end = i + 1;
                    continue;
                }
                out.push(current.take().expect("matched Some"));
                current = Some(Word {
                    text: c.to_lowercase().collect(),
                    start: i,
                    end: i + 1,
                });
            }
            _ if c.is_alphanumeric() => {
                if let Some(w) = current.take() {
                    out.push(w);
                }
                current = Some(Word {
                    text: c.to_lowercase().collect(),
                    start: i,
                    end: i + 1,
                });
            }
            _ => {
                if let Some(w) = current.take() {
                    out.push(w);
                }
            }
        }
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<String> {
        words(s).into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn splits_on_punctuation_and_between_digits_and_letters() {
        assert_eq!(texts("It's 4111-1111, OK."), ["it's", "4111", "1111", "ok"]);
        assert_eq!(texts("4-1-1-1"), ["4", "1", "1", "1"]);
        assert_eq!(texts("21st"), ["21", "st"]);
        let w = words("né 42");
        assert_eq!((w[1].start, w[1].end), (3, 5));
    }
}
