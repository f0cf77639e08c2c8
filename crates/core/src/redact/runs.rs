//! The digit-run state machine: adjacent [`Number`]s that are read as one
//! figure ("4111 1111", "four one one one, one one one one", "4-1-1-1")
//! become one [`Run`]. Numbers join while only separators (spaces, `,` `-`
//! `.` `/`) or fillers ("uh", "dash") stand between them; any other word
//! ends the run.

use super::numbers::Number;
use super::words::Word;

/// A figure read in one go: its digits and the groups it was read in.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub digits: String,
    /// Digits per group, in order ("4111 1111" → [4, 4]).
    pub groups: Vec<usize>,
    /// Index of its first and last word.
    pub first: usize,
    pub last: usize,
}

impl Run {
    pub fn len(&self) -> usize {
        self.digits.len()
    }
}

fn filler(word: &str) -> bool {
    matches!(word, "uh" | "um" | "er" | "erm" | "dash" | "hyphen" | "space")
}

/// Only separators between the end of one word and the start of the next;
/// a lone "." is a decimal point ("15.0 s"), not a separator.
fn separated(chars: &[char], from: usize, to: usize) -> bool {
    let gap = &chars[from..to];
    gap != ['.'] && gap.iter().all(|c| c.is_whitespace() || ",-./".contains(*c))
}

enum State {
    /// Between runs.
    Outside,
    /// Inside a run that ends at word `last`.
    InRun(Run),
}

/// Groups `numbers` (from [`super::numbers::numbers`] over `words` of `text`) into runs.
pub fn runs(text: &str, words: &[Word], numbers: &[Number]) -> Vec<Run> {
    let chars: Vec<char> = text.chars().collect();
    let joins = |run: &Run, next: &Number| {
        let between = &words[run.last + 1..next.first];
        between.iter().all(|w| filler(&w.text))
            && (run.last..next.first).all(|k| separated(&chars, words[k].end, words[k + 1].start))
    };
    let mut out = Vec::new();
    let mut state = State::Outside;
    for n in numbers {
        state = match state {
            State::InRun(mut run) if joins(&run, n) => {
                run.digits.push_str(&n.digits);
                run.groups.push(n.digits.len());
                run.last = n.last;
                State::InRun(run)
            }
            other => {
                if let State::InRun(run) = other {
                    out.push(run);
                }
                State::InRun(Run {
                    digits: n.digits.clone(),
                    groups: vec![n.digits.len()],
                    first: n.first,
                    last: n.last,
                })
            }
        };
    }
    if let State::InRun(run) = state {
        out.push(run);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::numbers::numbers;
    use super::super::words::words;
    use super::*;

    fn read(s: &str) -> Vec<(String, Vec<usize>)> {
        let w = words(s);
        runs(s, &w, &numbers(&w))
            .into_iter()
            .map(|r| (r.digits, r.groups))
            .collect()
    }

    #[test]
    fn groups_join_across_separators_and_fillers() {
        assert_eq!(
            read("4111 1111, 1111-1111."),
            [("4111111111111111".into(), vec![4, 4, 4, 4])]
        );
        assert_eq!(
            read("four one one one, uh, double one"),
            [("411111".into(), vec![1, 1, 1, 1, 2])]
        );
        assert_eq!(read("12/27"), [("1227".into(), vec![2, 2])]);
        assert_eq!(read("15.0"), [("15".into(), vec![2]), ("0".into(), vec![1])]);
    }

    #[test]
    fn a_word_ends_the_run() {
        assert_eq!(
            read("five five two eight and then 12"),
            [("5528".into(), vec![1, 1, 1, 1]), ("12".into(), vec![2])]
        );
    }
}
