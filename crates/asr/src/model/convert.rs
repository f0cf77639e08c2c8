//! CTranslate2 Whisper → whisper.cpp ggml.
//!
//! The two formats hold the same weights under different names, with two
//! structural differences: CTranslate2 fuses the attention projections (Q, K
//! and V of self-attention in one matrix; K and V of cross-attention in
//! another), and it stores biases and positional embeddings as f16 where
//! whisper.cpp wants f32. The tied output projection is an alias of the token
//! embedding in both, so nothing is written for it.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};

use super::ct2::Ct2Model;
use super::ggml::{self, FileType, HParams, MelFilters, TensorType, Writer};

/// ggml tensor name → its values as f32, in row-major (PyTorch) order.
type Tensors = BTreeMap<String, Vec<f32>>;

/// Reads the hyper-parameters from the shapes and scalars of the model.
pub fn hparams(m: &Ct2Model) -> Result<HParams> {
    let count_layers = |prefix: &str| {
        (0..)
            .take_while(|l| m.get(&format!("{prefix}/layer_{l}/ffn/linear_0/weight")).is_ok())
            .count() as i32
    };
    let emb = &m.get("decoder/embeddings/weight")?.shape;
    let enc_pos = &m.get("encoder/position_encodings/encodings")?.shape;
    let dec_pos = &m.get("decoder/position_encodings/encodings")?.shape;
    let conv1 = &m.get("encoder/conv1/weight")?.shape;
    Ok(HParams {
        n_vocab: emb[0] as i32,
        n_audio_ctx: enc_pos[0] as i32,
        n_audio_state: enc_pos[1] as i32,
        n_audio_head: m.scalar("encoder/num_heads")? as i32,
        n_audio_layer: count_layers("encoder"),
        n_text_ctx: dec_pos[0] as i32,
        n_text_state: emb[1] as i32,
        n_text_head: m.scalar("decoder/num_heads")? as i32,
        n_text_layer: count_layers("decoder"),
        n_mels: conv1[1] as i32,
    })
}

/// Maps every CTranslate2 variable to the ggml tensors it becomes.
fn collect(m: &Ct2Model, hp: &HParams) -> Result<Tensors> {
    let mut t = Tensors::new();
    let copy = |t: &mut Tensors, ct: &str, gg: &str| -> Result<()> {
        t.insert(gg.to_owned(), m.get(ct)?.to_f32()?);
        Ok(())
    };
    copy(
        &mut t,
        "encoder/position_encodings/encodings",
        "encoder.positional_embedding",
    )?;
    for c in ["conv1", "conv2"] {
        copy(&mut t, &format!("encoder/{c}/weight"), &format!("encoder.{c}.weight"))?;
        copy(&mut t, &format!("encoder/{c}/bias"), &format!("encoder.{c}.bias"))?;
    }
    copy(
        &mut t,
        "decoder/position_encodings/encodings",
        "decoder.positional_embedding",
    )?;
    copy(&mut t, "decoder/embeddings/weight", "decoder.token_embedding.weight")?;
    norm(&mut t, m, "encoder/layer_norm", "encoder.ln_post")?;
    norm(&mut t, m, "decoder/layer_norm", "decoder.ln")?;

    for (side, layers) in [("encoder", hp.n_audio_layer), ("decoder", hp.n_text_layer)] {
        for l in 0..layers {
            let (ct, gg) = (format!("{side}/layer_{l}"), format!("{side}.blocks.{l}"));
            let sa = format!("{ct}/self_attention");
            norm(&mut t, m, &format!("{sa}/layer_norm"), &format!("{gg}.attn_ln"))?;
            split_fused(
                &mut t,
                m,
                &format!("{sa}/linear_0"),
                &format!("{gg}.attn"),
                &["query", "key", "value"],
            )?;
            linear(&mut t, m, &format!("{sa}/linear_1"), &format!("{gg}.attn.out"))?;
            norm(&mut t, m, &format!("{ct}/ffn/layer_norm"), &format!("{gg}.mlp_ln"))?;
            linear(&mut t, m, &format!("{ct}/ffn/linear_0"), &format!("{gg}.mlp.0"))?;
            linear(&mut t, m, &format!("{ct}/ffn/linear_1"), &format!("{gg}.mlp.2"))?;
            if side == "decoder" {
                let ca = format!("{ct}/attention");
                norm(&mut t, m, &format!("{ca}/layer_norm"), &format!("{gg}.cross_attn_ln"))?;
                linear(&mut t, m, &format!("{ca}/linear_0"), &format!("{gg}.cross_attn.query"))?;
                split_fused(
                    &mut t,
                    m,
                    &format!("{ca}/linear_1"),
                    &format!("{gg}.cross_attn"),
                    &["key", "value"],
                )?;
                linear(&mut t, m, &format!("{ca}/linear_2"), &format!("{gg}.cross_attn.out"))?;
            }
        }
    }
    Ok(t)
}

/// A layer norm: CTranslate2's gamma/beta are ggml's weight/bias.
fn norm(t: &mut Tensors, m: &Ct2Model, ct: &str, gg: &str) -> Result<()> {
    t.insert(format!("{gg}.weight"), m.get(&format!("{ct}/gamma"))?.to_f32()?);
    t.insert(format!("{gg}.bias"), m.get(&format!("{ct}/beta"))?.to_f32()?);
    Ok(())
}

fn linear(t: &mut Tensors, m: &Ct2Model, ct: &str, gg: &str) -> Result<()> {
    t.insert(format!("{gg}.weight"), m.get(&format!("{ct}/weight"))?.to_f32()?);
    t.insert(format!("{gg}.bias"), m.get(&format!("{ct}/bias"))?.to_f32()?);
    Ok(())
}

/// Splits a fused projection row-wise into equal parts, in `parts` order.
/// whisper.cpp's key projections have no bias (Whisper was trained without
/// one; CTranslate2 stores zeros there), so that slice of the bias is checked
/// to be zero and dropped.
fn split_fused(t: &mut Tensors, m: &Ct2Model, ct: &str, gg: &str, parts: &[&str]) -> Result<()> {
    let weight = m.get(&format!("{ct}/weight"))?;
    let bias = m.get(&format!("{ct}/bias"))?.to_f32()?;
    let (rows, cols) = (weight.shape[0], weight.shape[1]);
    ensure!(
        rows % parts.len() == 0 && bias.len() == rows,
        "{ct}: a fused projection of {rows} rows cannot be split in {}",
        parts.len()
    );
    let n = rows / parts.len();
    let weight = weight.to_f32()?;
    for (i, part) in parts.iter().enumerate() {
        let rows = i * n..(i + 1) * n;
        t.insert(
            format!("{gg}.{part}.weight"),
            weight[rows.start * cols..rows.end * cols].to_vec(),
        );
        let b = &bias[rows];
        if *part == "key" {
            ensure!(
                b.iter().all(|&v| v == 0.0),
                "{ct}: the key bias is not zero; whisper.cpp has no place for it"
            );
        } else {
            t.insert(format!("{gg}.{part}.bias"), b.to_vec());
        }
    }
    Ok(())
}

/// Turns `tokenizer.json`'s byte-level BPE vocabulary into the raw token bytes
/// whisper.cpp stores, ordered by id, without `<|endoftext|>` and the special
/// tokens that follow it (whisper.cpp generates those itself).
pub fn vocabulary(tokenizer_json: &[u8]) -> Result<Vec<Vec<u8>>> {
    #[derive(serde::Deserialize)]
    struct Tokenizer {
        model: Model,
    }
    #[derive(serde::Deserialize)]
    struct Model {
        vocab: BTreeMap<String, usize>,
    }
    let tok: Tokenizer = serde_json::from_slice(tokenizer_json).context("tokenizer.json is not a BPE tokenizer")?;
    let eot = *tok
        .model
        .vocab
        .get("<|endoftext|>")
        .context("tokenizer.json has no <|endoftext|>")?;
    let decode = byte_decoder();
    let mut out = vec![None; eot];
    for (text, id) in tok.model.vocab {
        if id >= eot {
            continue;
        }
        let bytes = text
            .chars()
            .map(|c| {
                decode
                    .get(&c)
                    .copied()
                    .with_context(|| format!("token {id} has char {c:?} outside GPT-2's byte alphabet"))
            })
            .collect::<Result<Vec<u8>>>()?;
        out[id] = Some(bytes);
    }
    out.into_iter()
        .enumerate()
        .map(|(id, t)| t.with_context(|| format!("tokenizer.json has no token with id {id}")))
        .collect()
}

/// GPT-2's `bytes_to_unicode` table, inverted: printable bytes stand for
/// themselves, the other 68 are shifted to U+0100 and up.
fn byte_decoder() -> BTreeMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut shifted = 0u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (b as char, b)
            } else {
                shifted += 1;
                (char::from_u32(255 + shifted).unwrap(), b)
            }
        })
        .collect()
}

/// Encodes f32 values as one ggml tensor type. Quantized types go through
/// ggml's own `ggml_quantize_chunk`, so the bytes are exactly whisper.cpp's.
fn encode(values: &[f32], ne0: usize, ty: TensorType) -> Vec<u8> {
    match ty {
        TensorType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        TensorType::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        TensorType::Q8_0 | TensorType::Q5_1 => {
            let rows = values.len() / ne0;
            let mut out = vec![0u8; rows * ty.row_bytes(ne0)];
            let ggml_type = match ty {
                TensorType::Q8_0 => whisper_rs_sys::ggml_type_GGML_TYPE_Q8_0,
                _ => whisper_rs_sys::ggml_type_GGML_TYPE_Q5_1,
            };
            // SAFETY: `values` holds rows × ne0 f32s and `out` has exactly the
            // bytes ggml needs for rows × ne0 elements of this type (checked
            // against the returned size); q8_0 and q5_1 take no importance matrix.
            let written = unsafe {
                whisper_rs_sys::ggml_quantize_chunk(
                    ggml_type,
                    values.as_ptr(),
                    out.as_mut_ptr().cast(),
                    0,
                    rows as i64,
                    ne0 as i64,
                    std::ptr::null(),
                )
            };
            assert_eq!(written, out.len(), "ggml disagrees on the size of a {ty:?} row");
            out
        }
    }
}

/// The parts of a conversion that do not depend on the output format.
pub struct Converted {
    pub hparams: HParams,
    tensors: Tensors,
}

impl Converted {
    pub fn from_ct2(m: &Ct2Model) -> Result<Self> {
        ensure!(
            m.spec == "WhisperSpec",
            "model.bin holds a {} model, not Whisper",
            m.spec
        );
        let hparams = hparams(m)?;
        let tensors = collect(m, &hparams)?;
        Ok(Self { hparams, tensors })
    }

    /// Number of tensors, for progress reporting.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// Writes the ggml file, calling `progress` after each tensor.
    pub fn to_ggml(
        &self,
        ftype: FileType,
        mel: &MelFilters,
        vocab: &[Vec<u8>],
        mut progress: impl FnMut(),
    ) -> Result<Vec<u8>> {
        let expected = ggml::expected_tensors(&self.hparams, ftype);
        ensure!(
            self.tensors.len() == expected.len(),
            "converted {} tensors but whisper.cpp expects {}",
            self.tensors.len(),
            expected.len()
        );
        let mut w = Writer::new(&self.hparams, ftype, mel, vocab);
        for (name, spec) in &expected {
            let values = self
                .tensors
                .get(name)
                .with_context(|| format!("no source for tensor {name}"))?;
            ensure!(
                values.len() == spec.ne.iter().product::<usize>(),
                "tensor {name} has {} values, shape {:?} needs {}",
                values.len(),
                spec.ne,
                spec.ne.iter().product::<usize>()
            );
            w.tensor(name, &spec.ne, spec.ty, &encode(values, spec.ne[0], spec.ty));
            progress();
        }
        Ok(w.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_decoder_covers_every_byte_once() {
        let d = byte_decoder();
        assert_eq!(d.len(), 256);
        assert_eq!(d[&'Ġ'], b' ');
        assert_eq!(d[&'Ċ'], b'\n');
        assert_eq!(d[&'a'], b'a');
    }

    #[test]
    fn vocabulary_is_ordered_raw_bytes_without_specials() {
        let json = br#"{"model":{"vocab":{"Hello":1,"\u0120world":0,"<|endoftext|>":2,"<|startoftranscript|>":3}}}"#;
        assert_eq!(vocabulary(json).unwrap(), vec![b" world".to_vec(), b"Hello".to_vec()]);
    }

    #[test]
    fn vocabulary_with_a_gap_is_refused() {
        let json = br#"{"model":{"vocab":{"a":0,"<|endoftext|>":2}}}"#;
        assert!(vocabulary(json).unwrap_err().to_string().contains("id 1"));
    }

    #[test]
    fn q8_0_matches_ggml_block_layout() {
        // One block: scale = max|x| / 127 stored as f16, then round(x / scale).
        let values: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let bytes = encode(&values, 32, TensorType::Q8_0);
        assert_eq!(bytes.len(), 34);
        let scale = half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32();
        assert!((scale - 16.0 / 127.0).abs() < 1e-3);
        assert_eq!(bytes[2] as i8, -127);
        assert_eq!(bytes[2 + 16] as i8, 0);
    }
}
