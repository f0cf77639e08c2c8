//! Email addresses, written ("john.smith@example.com") or spoken the way
//! Whisper writes them ("john dot smith at example dot com",
//! "john.smith at example.com").

use std::sync::LazyLock;

use regex::Regex;

const TLD: &str = "(?:com|org|net|edu|gov|mil|io|co|uk|us|ca|de|fr|info|biz|me)";

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    let dot = r"(?:\s*\.\s*|\s+dot\s+)";
    let local = r"\b[a-z0-9][a-z0-9._%+-]*(?:\s+(?:dot|underscore)\s+[a-z0-9_-]+)*";
    // Whisper often hears a spoken "at" as "and" and ends the local part
    // with a full stop ("long.smith. And lample.com"): taken only before a
    // domain written with its dot.
    Regex::new(&format!(
        r"(?i){local}(?:\s*@\s*|\s+at\s+)[a-z0-9-]+(?:{dot}[a-z0-9-]+)*{dot}{TLD}\b|{local}[.,]?\s+and\s+[a-z0-9-]+(?:\.[a-z0-9-]+)*\.{TLD}\b"
    ))
    .expect("the email pattern compiles")
});

/// Char spans (start, end) of the addresses in `text`.
pub fn emails(text: &str) -> Vec<(usize, usize)> {
    let char_at = |byte: usize| text[..byte].chars().count();
    EMAIL
        .find_iter(text)
        .map(|m| (char_at(m.start()), char_at(m.end())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        let chars: Vec<char> = text.chars().collect();
        let spans = emails(text);
        spans
            .into_iter()
            .map(|(a, b)| {
                let start = chars[..a].iter().map(|c| c.len_utf8()).sum::<usize>();
                let end = chars[..b].iter().map(|c| c.len_utf8()).sum::<usize>();
                &text[start..end]
            })
            .collect()
    }

    #[test]
    fn written_and_spoken_addresses() {
        let table: &[(&str, &[&str])] = &[
            ("It's john.smith@example.com.", &["john.smith@example.com"]),
            (
                "my email is john dot smith at example dot com",
                &["john dot smith at example dot com"],
            ),
            ("John.Smith at example.com, thanks", &["John.Smith at example.com"]),
            ("Mary at Example Dot Co Dot UK", &["Mary at Example Dot Co Dot UK"]),
            ("It's long.smith. And lample.com.", &["long.smith. And lample.com"]),
            ("I was at home dot then out", &[]),
            ("bread and butter.", &[]),
            ("meet me at the office", &[]),
        ];
        for (text, want) in table {
            assert_eq!(found(text), *want, "{text}");
        }
    }
}
