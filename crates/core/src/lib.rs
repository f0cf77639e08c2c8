//! callwatch-core: everything about a call that needs neither a Whisper
//! model nor a network. It builds and tests without whisper.cpp or tonic.
//!
//! The live path, one module per stage, data flowing one way:
//!
//! ```text
//! capture (sources) ─ring─▶ pipeline (resample · vad · segment) ─Job─▶ [Decoder] ─▶ events
//!                                                                               ─▶ rules ─▶ alerts, scorecard
//! ```
//!
//! A [`pipeline::Decoder`] is the seam to speech recognition: the
//! `callwatch-asr` crate implements it with whisper.cpp. See ARCHITECTURE.md.

pub mod alerts;
pub mod audio;
pub mod buffer;
pub mod capture;
pub mod events;
pub mod pipeline;
pub mod redact;
pub mod rules;
pub mod sanitize;
pub mod text;
pub mod time;
pub mod transcript;
pub mod vad;
