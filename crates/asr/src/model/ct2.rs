//! Reader for CTranslate2's `model.bin` (binary format version 6).
//!
//! The layout is the one `ctranslate2/specs/model_spec.py` writes:
//!
//! ```text
//! u32 version (6) · str spec_name · u32 spec_revision · u32 n_variables
//! n_variables × { str name · u8 rank · rank × u32 dim · u8 dtype · u32 n_bytes · bytes }
//! u32 n_aliases · n_aliases × { str alias · str target }
//! ```
//!
//! where `str` is a u16 length (counting a trailing NUL) followed by the bytes
//! and the NUL. Everything is little-endian.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};

/// Element types, numbered as CTranslate2's `DataType` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl DType {
    fn from_id(id: u8) -> Result<Self> {
        Ok(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::BF16,
            other => bail!("unknown CTranslate2 data type id {other}"),
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One named tensor of the model; `data` borrows from the file's bytes.
#[derive(Debug)]
pub struct Variable<'a> {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub data: &'a [u8],
}

impl Variable<'_> {
    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements as f32, whatever the stored float type.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        Ok(match self.dtype {
            DType::F32 => self
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            DType::F16 => self
                .data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => self
                .data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => bail!("expected a float tensor, found {other:?}"),
        })
    }
}

/// A parsed `model.bin`.
#[derive(Debug)]
pub struct Ct2Model<'a> {
    pub spec: String,
    pub revision: u32,
    variables: BTreeMap<String, Variable<'a>>,
    aliases: BTreeMap<String, String>,
}

impl<'a> Ct2Model<'a> {
    /// Parses the bytes of a `model.bin`, checking every length against the buffer.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u32()?;
        ensure!(
            version == 6,
            "unsupported CTranslate2 binary version {version} (this reader knows version 6)"
        );
        let spec = r.string()?;
        let revision = r.u32()?;
        let n_variables = r.u32()?;
        let mut variables = BTreeMap::new();
        for _ in 0..n_variables {
            let name = r.string()?;
            let rank = r.u8()? as usize;
            let shape = (0..rank)
                .map(|_| r.u32().map(|d| d as usize))
                .collect::<Result<Vec<_>>>()?;
            let dtype = DType::from_id(r.u8()?).with_context(|| format!("variable {name}"))?;
            let n_bytes = r.u32()? as usize;
            let expected = shape.iter().product::<usize>() * dtype.size();
            ensure!(
                n_bytes == expected,
                "variable {name}: {n_bytes} bytes stored, shape {shape:?} of {dtype:?} needs {expected}"
            );
            let data = r.take(n_bytes).with_context(|| format!("variable {name}"))?;
            variables.insert(name, Variable { shape, dtype, data });
        }
        let n_aliases = r.u32()?;
        let mut aliases = BTreeMap::new();
        for _ in 0..n_aliases {
            let alias = r.string()?;
            let target = r.string()?;
            aliases.insert(alias, target);
        }
        ensure!(
            r.pos == bytes.len(),
            "{} trailing bytes after the last alias",
            bytes.len() - r.pos
        );
        Ok(Self {
            spec,
            revision,
            variables,
            aliases,
        })
    }

    /// Looks a variable up by name, following aliases.
    pub fn get(&self, name: &str) -> Result<&Variable<'a>> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.variables
            .get(name)
            .with_context(|| format!("CTranslate2 model has no variable {name:?}"))
    }

    /// Reads a scalar integer variable such as `encoder/num_heads`.
    pub fn scalar(&self, name: &str) -> Result<i64> {
        let v = self.get(name)?;
        ensure!(v.element_count() == 1, "{name} is not a scalar (shape {:?})", v.shape);
        Ok(match v.dtype {
            DType::I8 => v.data[0] as i8 as i64,
            DType::I16 => i16::from_le_bytes([v.data[0], v.data[1]]) as i64,
            DType::I32 => i32::from_le_bytes(v.data[..4].try_into().unwrap()) as i64,
            other => bail!("{name} is a {other:?}, expected an integer scalar"),
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            bail!(
                "file ends at byte {} but {n} more bytes were expected at {} (truncated?)",
                self.bytes.len(),
                self.pos
            );
        };
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u16()? as usize;
        ensure!(len > 0, "zero-length string at byte {}", self.pos);
        let raw = self.take(len)?;
        ensure!(raw[len - 1] == 0, "string at byte {} is not NUL-terminated", self.pos);
        Ok(std::str::from_utf8(&raw[..len - 1])
            .context("string is not UTF-8")?
            .to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u16 + 1).to_le_bytes());
        out.extend(s.as_bytes());
        out.push(0);
    }

    /// A two-variable model with one alias, laid out as model_spec.py writes it.
    fn tiny_model() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(6u32.to_le_bytes());
        string(&mut b, "WhisperSpec");
        b.extend(3u32.to_le_bytes());
        b.extend(2u32.to_le_bytes());
        string(&mut b, "w");
        b.push(2);
        b.extend(2u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.push(4);
        b.extend(4u32.to_le_bytes());
        b.extend(half::f16::from_f32(1.5).to_le_bytes());
        b.extend(half::f16::from_f32(-2.0).to_le_bytes());
        string(&mut b, "heads");
        b.push(0);
        b.push(1);
        b.extend(1u32.to_le_bytes());
        b.push(6);
        b.extend(1u32.to_le_bytes());
        string(&mut b, "tied");
        string(&mut b, "w");
        b
    }

    #[test]
    fn parses_variables_scalars_and_aliases() {
        let bytes = tiny_model();
        let m = Ct2Model::parse(&bytes).unwrap();
        assert_eq!((m.spec.as_str(), m.revision), ("WhisperSpec", 3));
        assert_eq!(m.get("tied").unwrap().to_f32().unwrap(), vec![1.5, -2.0]);
        assert_eq!(m.get("w").unwrap().shape, vec![2, 1]);
        assert_eq!(m.scalar("heads").unwrap(), 6);
        assert!(m.get("missing").is_err());
    }

    #[test]
    fn rejects_truncation_anywhere() {
        let bytes = tiny_model();
        for cut in 0..bytes.len() {
            assert!(Ct2Model::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_size_that_disagrees_with_shape() {
        let mut bytes = tiny_model();
        // The "w" byte count lives after version, spec, revision, count, name, rank, dims, dtype.
        let at = 4 + 2 + 12 + 4 + 4 + (2 + 2) + 1 + 8 + 1;
        bytes[at] = 6;
        let err = Ct2Model::parse(&bytes).unwrap_err().to_string();
        assert!(err.contains("bytes stored"), "{err}");
    }
}
