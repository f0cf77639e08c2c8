//! Positions in the alert feed and the entries found there: the vocabulary
//! the store and the feed share (both import this module; it imports
//! neither).

use std::fmt;
use std::str::FromStr;

use crate::filter::Meta;
use crate::pb;

/// A position in the feed, as clients see it: `c<sequence>`. Sequence
/// numbers grow with every recorded event; `Cursor(0)` is before the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor(pub i64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

impl FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.strip_prefix('c')
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .map(Cursor)
            .ok_or_else(|| format!("malformed cursor {s:?}: pass an AlertEvent.cursor as received (like \"c42\")"))
    }
}

/// One recorded feed event; `event.cursor` is `cursor` as text.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEntry {
    pub cursor: Cursor,
    pub meta: Meta,
    pub event: pb::AlertEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_named() {
        assert_eq!("c42".parse::<Cursor>(), Ok(Cursor(42)));
        assert_eq!(Cursor(7).to_string(), "c7");
        for bad in ["42", "c", "c-1", "cx", ""] {
            let err = bad.parse::<Cursor>().unwrap_err();
            assert!(err.contains("malformed cursor"), "{err}");
        }
    }
}
