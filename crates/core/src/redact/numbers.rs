//! The spoken-number normaliser: words to digits. People read numbers as
//! digits ("four one one one", "oh" for zero, "double two"), as pairs
//! ("twelve thirty four"), as amounts ("four hundred and twelve"), and
//! Whisper writes some of them as digits ("4111", "4-1-1-1"). Each becomes
//! one [`Number`]: the digits it stands for and the words it covers.

use super::words::Word;

/// Digits read from one or more adjacent words.
#[derive(Debug, Clone, PartialEq)]
pub struct Number {
    pub digits: String,
    /// Index of its first and last word.
    pub first: usize,
    pub last: usize,
}

fn unit(word: &str) -> Option<u32> {
    Some(match word {
        "zero" | "oh" | "o" | "nought" => 0,
        "one" | "first" => 1,
        "two" | "second" => 2,
        "three" | "third" => 3,
        "four" | "fourth" => 4,
        "five" | "fifth" => 5,
        "six" | "sixth" => 6,
        "seven" | "seventh" => 7,
        "eight" | "eighth" => 8,
        "nine" | "ninth" => 9,
        _ => return None,
    })
}

fn teen(word: &str) -> Option<u32> {
    Some(match word {
        "ten" | "tenth" => 10,
        "eleven" | "eleventh" => 11,
        "twelve" | "twelfth" => 12,
        "thirteen" | "thirteenth" => 13,
        "fourteen" | "fourteenth" => 14,
        "fifteen" | "fifteenth" => 15,
        "sixteen" | "sixteenth" => 16,
        "seventeen" | "seventeenth" => 17,
        "eighteen" | "eighteenth" => 18,
        "nineteen" | "nineteenth" => 19,
        _ => return None,
    })
}

fn tens(word: &str) -> Option<u32> {
    Some(match word {
        "twenty" | "twentieth" => 20,
        "thirty" | "thirtieth" => 30,
        "forty" | "fortieth" => 40,
        "fifty" | "fiftieth" => 50,
        "sixty" | "sixtieth" => 60,
        "seventy" | "seventieth" => 70,
        "eighty" | "eightieth" => 80,
        "ninety" | "ninetieth" => 90,
        _ => return None,
    })
}

fn repeat(word: &str) -> Option<usize> {
    match word {
        "double" => Some(2),
        "triple" => Some(3),
        _ => None,
    }
}

/// Reads 1–99 at `i` ("seven", "twelve", "thirty four"): value and words used.
fn small(words: &[Word], i: usize) -> Option<(u32, usize)> {
    let w = words.get(i)?.text.as_str();
    if let Some(t) = tens(w) {
        return match words.get(i + 1).and_then(|n| unit(&n.text)) {
            // "twenty oh five" is 20 then 05, not 20 + 0.
            Some(u) if u > 0 && words[i + 1].text != "o" && words[i + 1].text != "oh" => Some((t + u, 2)),
            _ => Some((t, 1)),
        };
    }
    teen(w)
        .map(|v| (v, 1))
        .or_else(|| unit(w).filter(|&u| u > 0).map(|u| (u, 1)))
}

/// Reads a spoken amount at `i` ("four hundred and twelve", "two thousand
/// and five", "thirty four"): its digits and words used.
fn amount(words: &[Word], i: usize) -> Option<(String, usize)> {
    let (mut value, mut used) = small(words, i)?;
    let next = |k: usize| words.get(k).map(|w| w.text.as_str());
    for (scale, name) in [(100, "hundred"), (1000, "thousand")] {
        if next(i + used) != Some(name) {
            continue;
        }
        value *= scale;
        used += 1;
        let and = usize::from(next(i + used) == Some("and"));
        if let Some((rest, n)) = small(words, i + used + and) {
            if rest < scale {
                value += rest;
                used += and + n;
            }
        }
    }
    Some((value.to_string(), used))
}

/// Every number in `words`, in order.
pub fn numbers(words: &[Word]) -> Vec<Number> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].text.as_str();
        let found = if words[i].is_digits() {
            Some((w.to_owned(), 1))
        } else if let (Some(times), Some(d)) = (repeat(w), words.get(i + 1).and_then(|n| unit(&n.text))) {
            Some((d.to_string().repeat(times), 2))
        } else if let Some(d) = unit(w).filter(|&d| d == 0) {
            Some((d.to_string(), 1))
        } else {
            amount(words, i)
        };
        match found {
            Some((digits, used)) => {
                out.push(Number {
                    digits,
                    first: i,
                    last: i + used - 1,
                });
                i += used;
            }
            None => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::words::words;
    use super::*;

    fn digits(s: &str) -> Vec<String> {
        numbers(&words(s)).into_iter().map(|n| n.digits).collect()
    }

    #[test]
    fn spoken_forms_become_digits() {
        let table: &[(&str, &[&str])] = &[
            ("four one one one", &["4", "1", "1", "1"]),
            ("double two oh five", &["22", "0", "5"]),
            ("triple seven", &["777"]),
            ("twelve thirty four", &["12", "34"]),
            ("twenty twenty-seven", &["20", "27"]),
            ("twenty oh five", &["20", "0", "5"]),
            ("four hundred and twelve", &["412"]),
            ("two thousand and five", &["2005"]),
            ("nineteen eighty five", &["19", "85"]),
            ("March fifth", &["5"]),
            ("4111 1111", &["4111", "1111"]),
            ("4-1-1-1", &["4", "1", "1", "1"]),
            ("nothing to see here", &[]),
        ];
        for (spoken, want) in table {
            assert_eq!(digits(spoken), *want, "{spoken}");
        }
    }

    #[test]
    fn numbers_know_their_words() {
        let n = numbers(&words("it is thirty four now"));
        assert_eq!((n[0].first, n[0].last), (2, 3));
    }
}
