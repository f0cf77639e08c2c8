//! whisper.cpp's legacy ggml model file: writing it, and checking one before
//! whisper.cpp sees it.
//!
//! ```text
//! u32 magic "ggml" · 11 × i32 hyper-parameters (the last is ftype)
//! i32 n_mel · i32 n_fft · n_mel×n_fft f32 mel filterbank
//! i32 n_tokens · n_tokens × { i32 len · bytes }
//! tensors × { i32 n_dims · i32 name_len · i32 type · n_dims × i32 ne (ggml order,
//!             fastest dimension first) · name · data }
//! ```
//!
//! whisper.cpp trusts this file: a truncated tensor or a wrong shape can make
//! it abort the process. [`inspect`] walks the whole file and checks it against
//! [`expected_tensors`], the list whisper.cpp's loader builds, so a bad file is
//! refused with a message instead.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

pub const MAGIC: u32 = 0x6767_6d6c;

/// ggml tensor types used by whisper models (values of `enum ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TensorType {
    F32,
    F16,
    Q5_1,
    Q8_0,
}

impl TensorType {
    pub fn id(self) -> i32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
        }
    }

    fn from_id(id: i32) -> Result<Self> {
        Ok(match id {
            0 => Self::F32,
            1 => Self::F16,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            other => bail!("tensor type {other} is not one this tool writes (f32, f16, q5_1, q8_0)"),
        })
    }

    /// Bytes taken by `n` elements of one row (`n` is a multiple of the block size).
    pub fn row_bytes(self, n: usize) -> usize {
        match self {
            Self::F32 => 4 * n,
            Self::F16 => 2 * n,
            // 32-element blocks: f16 scale + f16 min + 4-byte high bits + 16 bytes of nibbles.
            Self::Q5_1 => n / 32 * 24,
            // 32-element blocks: f16 scale + 32 × i8.
            Self::Q8_0 => n / 32 * 34,
        }
    }

    pub fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 => 1,
            Self::Q5_1 | Self::Q8_0 => 32,
        }
    }
}

/// The weight format of a whole file, as stored in the header's `ftype` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    F16,
    Q8_0,
    Q5_1,
}

impl FileType {
    /// whisper.cpp stores `GGML_QNT_VERSION * 1000 + ftype` for quantized files.
    pub fn header_value(self) -> i32 {
        match self {
            Self::F16 => 1,
            Self::Q5_1 => 2009,
            Self::Q8_0 => 2007,
        }
    }

    fn from_header(v: i32) -> Result<Self> {
        Ok(match v {
            1 => Self::F16,
            2007 => Self::Q8_0,
            2009 => Self::Q5_1,
            other => bail!("ftype {other} is not supported (expected 1 = f16, 2007 = q8_0 or 2009 = q5_1)"),
        })
    }

    /// The type of the large 2-D weight matrices.
    pub fn weight_type(self) -> TensorType {
        match self {
            Self::F16 => TensorType::F16,
            Self::Q8_0 => TensorType::Q8_0,
            Self::Q5_1 => TensorType::Q5_1,
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q5_1 => "q5_1",
        })
    }
}

/// Whisper's hyper-parameters, in header order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HParams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
}

impl HParams {
    /// Whisper tiny.en, the model `callwatch model fetch` produces.
    pub const TINY_EN: Self = Self {
        n_vocab: 51864,
        n_audio_ctx: 1500,
        n_audio_state: 384,
        n_audio_head: 6,
        n_audio_layer: 4,
        n_text_ctx: 448,
        n_text_state: 384,
        n_text_head: 6,
        n_text_layer: 4,
        n_mels: 80,
    };

    fn fields(&self) -> [i32; 10] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
        ]
    }
}

/// What a tensor must look like: ggml dimension order (fastest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub ne: Vec<usize>,
    pub ty: TensorType,
}

/// Every tensor whisper.cpp's `whisper_model_load` creates, with its shape and
/// the type it accepts in a file of format `ftype`.
pub fn expected_tensors(hp: &HParams, ftype: FileType) -> BTreeMap<String, TensorSpec> {
    let w = ftype.weight_type();
    let (a, t) = (hp.n_audio_state as usize, hp.n_text_state as usize);
    let mut out = BTreeMap::new();
    let mut add = |name: String, ne: &[usize], ty| {
        out.insert(name, TensorSpec { ne: ne.to_vec(), ty });
    };
    use TensorType::{F16, F32};
    let block = |add: &mut dyn FnMut(String, &[usize], TensorType), p: &str, s: usize| {
        for ln in ["mlp_ln", "attn_ln"] {
            add(format!("{p}.{ln}.weight"), &[s], F32);
            add(format!("{p}.{ln}.bias"), &[s], F32);
        }
        add(format!("{p}.mlp.0.weight"), &[s, 4 * s], w);
        add(format!("{p}.mlp.0.bias"), &[4 * s], F32);
        add(format!("{p}.mlp.2.weight"), &[4 * s, s], w);
        add(format!("{p}.mlp.2.bias"), &[s], F32);
        for proj in ["query", "key", "value", "out"] {
            add(format!("{p}.attn.{proj}.weight"), &[s, s], w);
            if proj != "key" {
                add(format!("{p}.attn.{proj}.bias"), &[s], F32);
            }
        }
    };
    let mels = hp.n_mels as usize;
    add(
        "encoder.positional_embedding".into(),
        &[a, hp.n_audio_ctx as usize],
        F32,
    );
    add("encoder.conv1.weight".into(), &[3, mels, a], F16);
    add("encoder.conv1.bias".into(), &[1, a], F32);
    add("encoder.conv2.weight".into(), &[3, a, a], F16);
    add("encoder.conv2.bias".into(), &[1, a], F32);
    add("encoder.ln_post.weight".into(), &[a], F32);
    add("encoder.ln_post.bias".into(), &[a], F32);
    for l in 0..hp.n_audio_layer {
        block(&mut add, &format!("encoder.blocks.{l}"), a);
    }
    add("decoder.positional_embedding".into(), &[t, hp.n_text_ctx as usize], F32);
    add("decoder.token_embedding.weight".into(), &[t, hp.n_vocab as usize], w);
    add("decoder.ln.weight".into(), &[t], F32);
    add("decoder.ln.bias".into(), &[t], F32);
    for l in 0..hp.n_text_layer {
        let p = format!("decoder.blocks.{l}");
        block(&mut add, &p, t);
        add(format!("{p}.cross_attn_ln.weight"), &[t], F32);
        add(format!("{p}.cross_attn_ln.bias"), &[t], F32);
        for proj in ["query", "key", "value", "out"] {
            add(format!("{p}.cross_attn.{proj}.weight"), &[t, t], w);
            if proj != "key" {
                add(format!("{p}.cross_attn.{proj}.bias"), &[t], F32);
            }
        }
    }
    out
}

/// Builds a ggml file in memory, in the order whisper.cpp reads it.
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(hp: &HParams, ftype: FileType, mel: &MelFilters, vocab: &[Vec<u8>]) -> Self {
        let mut w = Self {
            buf: Vec::with_capacity(80 << 20),
        };
        w.u32(MAGIC);
        for v in hp.fields() {
            w.i32(v);
        }
        w.i32(ftype.header_value());
        w.i32(mel.n_mel as i32);
        w.i32(mel.n_fft as i32);
        for v in &mel.data {
            w.buf.extend(v.to_le_bytes());
        }
        w.i32(vocab.len() as i32);
        for token in vocab {
            w.i32(token.len() as i32);
            w.buf.extend(token);
        }
        w
    }

    /// Appends one tensor; `data` is already in `ty`'s encoding.
    pub fn tensor(&mut self, name: &str, ne: &[usize], ty: TensorType, data: &[u8]) {
        self.i32(ne.len() as i32);
        self.i32(name.len() as i32);
        self.i32(ty.id());
        for &d in ne {
            self.i32(d as i32);
        }
        self.buf.extend(name.as_bytes());
        self.buf.extend(data);
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    fn i32(&mut self, v: i32) {
        self.buf.extend(v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend(v.to_le_bytes());
    }
}

/// The mel filterbank stored in the file (80 × 201 for Whisper).
#[derive(Debug, Clone, PartialEq)]
pub struct MelFilters {
    pub n_mel: usize,
    pub n_fft: usize,
    pub data: Vec<f32>,
}

/// What [`inspect`] found in a valid file.
#[derive(Debug)]
pub struct ModelInfo {
    pub hparams: HParams,
    pub ftype: FileType,
    pub n_tokens: usize,
    pub tensors: BTreeMap<String, TensorSpec>,
    pub file_bytes: u64,
}

impl fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.hparams;
        writeln!(f, "format     ggml ({}), {} bytes", self.ftype, self.file_bytes)?;
        writeln!(f, "vocab      {} ({} text tokens stored)", h.n_vocab, self.n_tokens)?;
        writeln!(
            f,
            "audio      ctx {} · state {} · heads {} · layers {}",
            h.n_audio_ctx, h.n_audio_state, h.n_audio_head, h.n_audio_layer
        )?;
        writeln!(
            f,
            "text       ctx {} · state {} · heads {} · layers {}",
            h.n_text_ctx, h.n_text_state, h.n_text_head, h.n_text_layer
        )?;
        write!(f, "mels       {} · tensors {}", h.n_mels, self.tensors.len())
    }
}

/// Reads a whole ggml file and checks it is complete and has exactly the
/// tensors whisper.cpp expects, so that loading it cannot crash.
pub fn inspect(path: &Path) -> Result<ModelInfo> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
    inspect_bytes(&bytes).with_context(|| {
        format!(
            "{} is not a usable whisper.cpp model (truncated or corrupt?)",
            path.display()
        )
    })
}

pub fn inspect_bytes(bytes: &[u8]) -> Result<ModelInfo> {
    let mut r = Cursor { bytes, pos: 0 };
    let magic = r.i32()? as u32;
    ensure!(
        magic == MAGIC,
        "bad magic {magic:#010x} (a ggml file starts with {MAGIC:#010x})"
    );
    let mut f = [0i32; 10];
    for v in &mut f {
        *v = r.i32()?;
    }
    let hparams = HParams {
        n_vocab: f[0],
        n_audio_ctx: f[1],
        n_audio_state: f[2],
        n_audio_head: f[3],
        n_audio_layer: f[4],
        n_text_ctx: f[5],
        n_text_state: f[6],
        n_text_head: f[7],
        n_text_layer: f[8],
        n_mels: f[9],
    };
    ensure!(
        f.iter().all(|&v| (1..=1 << 20).contains(&v)),
        "implausible hyper-parameters {hparams:?}"
    );
    let ftype = FileType::from_header(r.i32()?)?;
    let (n_mel, n_fft) = (r.i32()?, r.i32()?);
    ensure!(
        n_mel == hparams.n_mels && (1..=4096).contains(&n_fft),
        "mel filterbank is {n_mel} × {n_fft}, expected {} mels",
        hparams.n_mels
    );
    r.take(n_mel as usize * n_fft as usize * 4)?;
    let n_tokens = r.i32()?;
    ensure!(
        (0..=hparams.n_vocab).contains(&n_tokens),
        "vocabulary holds {n_tokens} tokens, more than n_vocab {}",
        hparams.n_vocab
    );
    for _ in 0..n_tokens {
        let len = r.i32()?;
        ensure!((0..=1024).contains(&len), "token of implausible length {len}");
        r.take(len as usize)?;
    }

    let expected = expected_tensors(&hparams, ftype);
    let mut tensors = BTreeMap::new();
    while r.pos < bytes.len() {
        let n_dims = r.i32()?;
        let name_len = r.i32()?;
        let ty = TensorType::from_id(r.i32()?)?;
        ensure!((1..=4).contains(&n_dims), "tensor with {n_dims} dimensions");
        ensure!((1..=256).contains(&name_len), "tensor name of length {name_len}");
        let ne = (0..n_dims)
            .map(|_| r.i32().map(|d| d as usize))
            .collect::<Result<Vec<_>>>()?;
        let name = String::from_utf8_lossy(r.take(name_len as usize)?).into_owned();
        let spec = TensorSpec { ne, ty };
        let Some(want) = expected.get(&name) else {
            bail!("unexpected tensor {name:?}");
        };
        ensure!(
            *want == spec,
            "tensor {name}: found {:?} {:?}, whisper.cpp expects {:?} {:?}",
            spec.ty,
            spec.ne,
            want.ty,
            want.ne
        );
        let rows: usize = spec.ne[1..].iter().product();
        r.take(rows * spec.ty.row_bytes(spec.ne[0]))
            .with_context(|| format!("data of tensor {name}"))?;
        ensure!(
            tensors.insert(name.clone(), spec).is_none(),
            "tensor {name} appears twice"
        );
    }
    if let Some(missing) = expected.keys().find(|k| !tensors.contains_key(*k)) {
        bail!(
            "tensor {missing} is missing ({} of {} present)",
            tensors.len(),
            expected.len()
        );
    }
    Ok(ModelInfo {
        hparams,
        ftype,
        n_tokens: n_tokens as usize,
        tensors,
        file_bytes: bytes.len() as u64,
    })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.saturating_add(n);
        ensure!(
            end <= self.bytes.len(),
            "file ends at byte {} while {n} bytes were expected at byte {}",
            self.bytes.len(),
            self.pos
        );
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_en_has_the_167_tensors_whisper_cpp_loads() {
        let t = expected_tensors(&HParams::TINY_EN, FileType::F16);
        assert_eq!(t.len(), 167);
        assert_eq!(t["decoder.token_embedding.weight"].ne, vec![384, 51864]);
        assert_eq!(t["encoder.conv1.weight"].ne, vec![3, 80, 384]);
        assert!(!t.contains_key("encoder.blocks.0.attn.key.bias"));
        let q = expected_tensors(&HParams::TINY_EN, FileType::Q8_0);
        assert_eq!(q["encoder.blocks.0.mlp.0.weight"].ty, TensorType::Q8_0);
        assert_eq!(q["encoder.conv2.weight"].ty, TensorType::F16);
        assert_eq!(q["decoder.positional_embedding"].ty, TensorType::F32);
    }

    /// A complete file with zero-filled tensors, written by [`Writer`].
    fn zero_model(hp: &HParams) -> Vec<u8> {
        let mel = MelFilters {
            n_mel: hp.n_mels as usize,
            n_fft: 3,
            data: vec![0.0; hp.n_mels as usize * 3],
        };
        let mut w = Writer::new(hp, FileType::F16, &mel, &[b"a".to_vec(), b" b".to_vec()]);
        for (name, spec) in expected_tensors(hp, FileType::F16) {
            let rows: usize = spec.ne[1..].iter().product();
            w.tensor(&name, &spec.ne, spec.ty, &vec![0; rows * spec.ty.row_bytes(spec.ne[0])]);
        }
        w.finish()
    }

    const SMALL: HParams = HParams {
        n_vocab: 10,
        n_audio_ctx: 4,
        n_audio_state: 8,
        n_audio_head: 2,
        n_audio_layer: 1,
        n_text_ctx: 4,
        n_text_state: 8,
        n_text_head: 2,
        n_text_layer: 1,
        n_mels: 2,
    };

    #[test]
    fn written_file_inspects_back() {
        let info = inspect_bytes(&zero_model(&SMALL)).unwrap();
        assert_eq!(info.hparams, SMALL);
        assert_eq!(info.n_tokens, 2);
        assert_eq!(info.tensors, expected_tensors(&SMALL, FileType::F16));
    }

    #[test]
    fn truncation_is_refused() {
        let bytes = zero_model(&SMALL);
        for cut in [0, 3, 20, bytes.len() / 2, bytes.len() - 1] {
            assert!(inspect_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_missing_tensor_is_named() {
        let mel = MelFilters {
            n_mel: 2,
            n_fft: 1,
            data: vec![0.0; 2],
        };
        let w = Writer::new(&SMALL, FileType::F16, &mel, &[]);
        let err = format!("{:#}", inspect_bytes(&w.finish()).unwrap_err());
        assert!(err.contains("is missing (0 of"), "{err}");
    }
}
