//! Redaction: card numbers, security codes, expiry dates, SSNs, dates of
//! birth, bank numbers, PINs, phone numbers and email addresses, found in
//! what people say and replaced by typed markers (`[card]`) before the text
//! leaves the call.
//!
//! The stages, data flowing one way: `words` (tokens with char places) →
//! `numbers` (spoken numbers to digits) → `runs` (the digit-run state
//! machine) → `find` (entity finders, with `context` cues and the state a
//! party's previous utterance left) and `email` → [`Redactor`] (per call
//! and channel; markers and their spans).

mod context;
mod email;
mod entity;
mod find;
mod numbers;
mod redactor;
mod runs;
mod words;

pub use entity::{Entities, Entity};
pub use find::luhn;
pub use redactor::{Redacted, Redactor, Span};

#[cfg(test)]
mod tests;
