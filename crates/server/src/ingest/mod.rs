//! Ingest adapters: each turns one transport's call stream into a call
//! session ([`crate::session`]) and the session's replies back into its
//! transport. An adapter owns only its wire: validating and converting what
//! arrives ([`crate::session::CallSpec`], audio packets, call-control
//! events, the end) and encoding what goes back
//! ([`crate::session::Outgoing`]). Everything after that — limits, the
//! pipeline, rules, store, feed, nudges — is the session's, so every
//! adapter produces the same call.
//!
//! A new adapter is one new file here: open a session with
//! [`crate::session::open`], feed its [`crate::session::CallHandle`] in a
//! task, forward its replies.

pub mod grpc;
pub mod per_token;
pub mod resume;
pub mod twilio;

pub use grpc::Ingest;
