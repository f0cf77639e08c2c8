//! Text normalisation and word error rate, shared by tests, benchmarks and
//! (later) the rule matcher, so that "Thank you," and "thank you" compare equal.

/// Lower-cases, drops punctuation (keeping apostrophes inside words) and
/// splits into words.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '-' | '—' | '–' | '/'))
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .flat_map(char::to_lowercase)
                .collect::<String>()
                .trim_matches('\'')
                .to_owned()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word error rate of `hypothesis` against `reference`, after [`words`]:
/// (substitutions + deletions + insertions) / reference words.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (words(reference), words(hypothesis));
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    word_errors(&r, &h) as f64 / r.len() as f64
}

/// Substitutions, insertions and deletions that turn `reference` into
/// `hypothesis` (Levenshtein distance over words, one row at a time).
pub fn word_errors(reference: &[String], hypothesis: &[String]) -> usize {
    let (r, h) = (reference, hypothesis);
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut row = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            row[j + 1] = (prev[j] + usize::from(rw != hw)).min(prev[j + 1] + 1).min(row[j] + 1);
        }
        prev = row;
    }
    prev[h.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_punctuation() {
        assert_eq!(words("Hi, I'm Sam — THANKS!"), vec!["hi", "i'm", "sam", "thanks"]);
    }

    #[test]
    fn counts_each_kind_of_error() {
        assert_eq!(word_error_rate("a b c d", "a b c d"), 0.0);
        assert_eq!(word_error_rate("a b c d", "a x c d"), 0.25);
        assert_eq!(word_error_rate("a b c d", "a c d"), 0.25);
        assert_eq!(word_error_rate("a b c d", "a b c d e f"), 0.5);
        assert_eq!(word_error_rate("", ""), 0.0);
    }
}
