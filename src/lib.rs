//! callwatch: a real-time call monitor for contact centres.
//!
//! The pipeline, one module per stage, data flowing one way:
//!
//! ```text
//! audio (read, resample to 16 kHz) → vad (speech, utterances) → transcribe (whisper.cpp) → transcript
//! ```
//!
//! [`model`] makes the Whisper model the pipeline runs on. See ARCHITECTURE.md.

pub mod alerts;
pub mod api;
pub mod audio;
pub mod bench;
pub mod buffer;
pub mod capture;
pub mod events;
pub mod model;
pub mod monitor;
pub mod pipeline;
pub mod rules;
pub mod text;
pub mod transcribe;
pub mod transcript;
pub mod vad;
