//! Helpers shared by the end-to-end tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use callwatch_asr::model;

pub mod service;

/// The converted models, fetched and converted on first use (a no-op when
/// `make test` has already done it). Tests never run without the real model.
pub fn models_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(model::DEFAULT_DIR);
        model::fetch(&dir).expect("fetching the Whisper model failed");
        dir
    })
}

pub fn q8_model() -> PathBuf {
    model::model_path(models_dir(), model::ggml::FileType::Q8_0)
}

pub fn f16_model() -> PathBuf {
    model::model_path(models_dir(), model::ggml::FileType::F16)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A fixture's reference transcript (`<name>.ref.json` beside the WAV).
#[derive(serde::Deserialize)]
pub struct Reference {
    pub utterances: Vec<RefUtterance>,
}

#[derive(serde::Deserialize)]
pub struct RefUtterance {
    pub channel: String,
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
}

impl Reference {
    pub fn load(wav: &str) -> Self {
        let path = fixture(&wav.replace(".wav", ".ref.json"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// The channel's utterances joined in order.
    pub fn text_of(&self, channel: &str) -> String {
        self.utterances
            .iter()
            .filter(|u| u.channel == channel)
            .map(|u| u.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The `callwatch` binary built for this test run.
pub fn callwatch() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("callwatch").unwrap()
}
