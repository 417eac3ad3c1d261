//! Host-side tensors as they come out of a model file: raw bytes in the file's dtype, usually
//! borrowed from a memory map, with the shape PyTorch would give them (outermost first).

use std::sync::Arc;

use crate::error::{Error, Result};

/// Storage types the loaders understand. Quantized types use llama.cpp's block layouts
/// (see `formats::quants`); a block runs along the innermost (last) dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4_K,
    Q5_K,
    Q6_K,
    /// The KV cache's Q8_0: llama.cpp's Q8_0 values in 256-element superblocks with the scales
    /// gathered at the end ([`crate::kv_quant`]); never a model file's type.
    Q8_0Kv,
}

impl DType {
    /// The GGUF block types model files hold weights in (the KV cache's Q8_0 is not one).
    pub const WEIGHT_BLOCKS: [DType; 8] = [
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Q8_0 => "Q8_0",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
            DType::Q8_0Kv => "Q8_0_KV",
        }
    }

    /// Elements per block (1 for plain types).
    pub fn block_elems(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => 32,
            DType::Q4_K | DType::Q5_K | DType::Q6_K | DType::Q8_0Kv => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q5_1 => 24,
            DType::Q4_K => 144,
            DType::Q5_K => 176,
            DType::Q6_K => 210,
            DType::Q8_0Kv => crate::kv_quant::SUPER_BYTES,
        }
    }

    /// Bytes of a tensor of `n` elements: whole blocks, the last one padded.
    pub fn bytes_for(self, n: usize) -> usize {
        n.div_ceil(self.block_elems()) * self.block_bytes()
    }

    /// Bytes needed for a row of `n` elements, or `None` if `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        n.is_multiple_of(self.block_elems())
            .then(|| n / self.block_elems() * self.block_bytes())
    }

    pub fn is_quantized(self) -> bool {
        self.block_elems() > 1
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Rounds `v` in place to the values `dtype` can hold (round-to-nearest-even; F32 unchanged;
/// the KV cache's Q8_0 block by block from `v[0]`).
pub fn round_to(dtype: DType, v: &mut [f32]) {
    match dtype {
        DType::BF16 => v
            .iter_mut()
            .for_each(|x| *x = half::bf16::from_f32(*x).to_f32()),
        DType::F16 => v
            .iter_mut()
            .for_each(|x| *x = half::f16::from_f32(*x).to_f32()),
        DType::Q8_0Kv => crate::kv_quant::round_trip(v),
        _ => {}
    }
}

/// Little-endian bytes of `v` stored as `dtype` (F32, F16 or BF16, rounded to nearest even; or
/// the KV cache's Q8_0, [`crate::kv_quant::encode`]), or `None` for any other dtype.
pub fn encode_f32(dtype: DType, v: &[f32]) -> Option<Vec<u8>> {
    Some(match dtype {
        DType::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::BF16 => v
            .iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_bits().to_le_bytes())
            .collect(),
        DType::F16 => v
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_bits().to_le_bytes())
            .collect(),
        DType::Q8_0Kv => crate::kv_quant::encode(v),
        _ => return None,
    })
}

/// Where a tensor's bytes live.
#[derive(Clone)]
pub enum Storage {
    /// A byte range of a memory-mapped file.
    Mapped {
        map: Arc<memmap2::Mmap>,
        offset: usize,
        len: usize,
    },
    /// Bytes the loader had to rewrite (e.g. GGUF Q/K rows un-permuted).
    Owned(Arc<Vec<u8>>),
}

impl Storage {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped { map, offset, len } => &map[*offset..*offset + *len],
            Storage::Owned(v) => v.as_slice(),
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Mapped { offset, len, .. } => write!(f, "Mapped({offset}..+{len})"),
            Storage::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HostTensor {
    /// Canonical (Hugging Face) name, see [`crate::config::names`].
    pub name: String,
    pub dtype: DType,
    /// Outermost first: a linear weight is `(out_features, in_features)`.
    pub shape: Vec<usize>,
    pub storage: Storage,
}

impl HostTensor {
    pub fn n_elems(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// Rows `start .. start + n` of a matrix `(rows, cols)` as a tensor of its own named
    /// `name`, sharing the bytes (a block format's rows are whole blocks: row-major bytes of a
    /// row range are contiguous). `None` when the tensor is not a matrix, the range passes its
    /// end or a row is not whole blocks; callers turn that into their typed error.
    pub fn rows(&self, name: &str, start: usize, n: usize) -> Option<HostTensor> {
        let [rows, cols] = self.shape[..] else {
            return None;
        };
        let end = start.checked_add(n).filter(|&e| e <= rows)?;
        let row_bytes = self.dtype.row_bytes(cols)?;
        let (from, len) = (start * row_bytes, (end - start) * row_bytes);
        if from + len > self.bytes().len() {
            return None;
        }
        let storage = match &self.storage {
            Storage::Mapped { map, offset, .. } => Storage::Mapped {
                map: map.clone(),
                offset: offset + from,
                len,
            },
            Storage::Owned(v) => Storage::Owned(Arc::new(v.get(from..from + len)?.to_vec())),
        };
        Some(HostTensor {
            name: name.to_string(),
            dtype: self.dtype,
            shape: vec![n, cols],
            storage,
        })
    }

    /// All elements as f32, dequantizing block formats (row-major, outermost first).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        crate::formats::quants::dequantize(self.dtype, self.bytes(), self.n_elems()).map_err(
            |detail| Error::Corrupt {
                path: Default::default(),
                detail: format!("tensor `{}`: {detail}", self.name),
            },
        )
    }
}
