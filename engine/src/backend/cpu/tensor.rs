//! Host memory as a backend tensor.

use half::{bf16, f16};

use crate::backend::TensorInfo;
use crate::error::{Error, Result};
use crate::tensor::{DType, Storage};

/// The bytes of a [`CpuTensor::Quant`]: its own, or a model file's (mapped or loader-owned,
/// shared, never copied).
#[derive(Debug, Clone)]
pub enum Blocks {
    Owned(Vec<u8>),
    Shared(Storage),
}

impl std::ops::Deref for Blocks {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Blocks::Owned(v) => v,
            Blocks::Shared(s) => s.bytes(),
        }
    }
}

impl PartialEq for Blocks {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CpuTensor {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    /// The KV cache's Q8_0 ([`crate::kv_quant`]): `len` elements in their bytes.
    Q8_0Kv {
        bytes: Vec<u8>,
        len: usize,
    },
    /// A model file's quantized weights, kept in their GGUF blocks (`dtype` one of
    /// [`super::NATIVE_WEIGHTS`]): `len` elements, whole blocks; read in place from the file's
    /// mapping where the loader has one.
    Quant {
        dtype: DType,
        bytes: Blocks,
        len: usize,
    },
    /// `Quant` tensors of different types stacked along the output dimension
    /// ([`crate::backend::Backend::upload_stack`]); its dtype is the first part's.
    Stack(Vec<CpuTensor>),
}

impl TensorInfo for CpuTensor {
    fn dtype(&self) -> DType {
        match self {
            CpuTensor::F32(_) => DType::F32,
            CpuTensor::F16(_) => DType::F16,
            CpuTensor::BF16(_) => DType::BF16,
            CpuTensor::Q8_0Kv { .. } => DType::Q8_0Kv,
            CpuTensor::Quant { dtype, .. } => *dtype,
            CpuTensor::Stack(parts) => parts[0].dtype(),
        }
    }

    fn len(&self) -> usize {
        match self {
            CpuTensor::F32(v) => v.len(),
            CpuTensor::F16(v) => v.len(),
            CpuTensor::BF16(v) => v.len(),
            CpuTensor::Q8_0Kv { len, .. } | CpuTensor::Quant { len, .. } => *len,
            CpuTensor::Stack(parts) => parts.iter().map(|p| p.len()).sum(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            CpuTensor::Stack(parts) => parts.iter().map(|p| p.bytes()).sum(),
            t => t.dtype().bytes_for(t.len()),
        }
    }
}

fn not_f32(op: &str, what: &str, t: &CpuTensor) -> Error {
    Error::Backend {
        backend: "cpu",
        op: op.into(),
        detail: format!("{what} must be F32, is {}", t.dtype()),
    }
}

impl CpuTensor {
    pub fn zeros(dtype: DType, n: usize) -> Result<Self> {
        Ok(match dtype {
            DType::F32 => CpuTensor::F32(vec![0.0; n]),
            DType::F16 => CpuTensor::F16(vec![f16::ZERO; n]),
            DType::BF16 => CpuTensor::BF16(vec![bf16::ZERO; n]),
            DType::Q8_0Kv => CpuTensor::Q8_0Kv {
                bytes: vec![0; dtype.bytes_for(n)],
                len: n,
            },
            other => {
                return Err(Error::Backend {
                    backend: "cpu",
                    op: "alloc".into(),
                    detail: format!("no CPU tensors of dtype {other}"),
                })
            }
        })
    }

    pub fn f32(&self, op: &str, what: &str) -> Result<&[f32]> {
        match self {
            CpuTensor::F32(v) => Ok(v),
            other => Err(not_f32(op, what, other)),
        }
    }

    pub fn f32_mut(&mut self, op: &str, what: &str) -> Result<&mut [f32]> {
        match self {
            CpuTensor::F32(v) => Ok(v),
            other => Err(not_f32(op, what, other)),
        }
    }

    /// Elements `start .. start + dst.len()` converted into `dst`.
    pub fn read_f32(&self, start: usize, dst: &mut [f32]) {
        let end = start + dst.len();
        match self {
            CpuTensor::F32(v) => dst.copy_from_slice(&v[start..end]),
            CpuTensor::F16(v) => super::simd::f16_to_f32(&v[start..end], dst),
            CpuTensor::BF16(v) => super::simd::bf16_to_f32(&v[start..end], dst),
            CpuTensor::Q8_0Kv { bytes, len } => {
                assert!(end <= *len, "elements {start}..{end} of {len}");
                crate::kv_quant::read(bytes, start, dst)
            }
            CpuTensor::Quant { dtype, bytes, len } => {
                assert!(end <= *len, "elements {start}..{end} of {len}");
                read_blocks(*dtype, bytes, start, dst)
            }
            CpuTensor::Stack(parts) => {
                // Part by part: a range may span parts.
                let (mut at, mut done, mut base) = (start, 0, 0);
                for p in parts {
                    let n = p.len();
                    if done < dst.len() && at < base + n {
                        let take = (base + n - at).min(dst.len() - done);
                        p.read_f32(at - base, &mut dst[done..done + take]);
                        at += take;
                        done += take;
                    }
                    base += n;
                }
                assert!(done == dst.len(), "elements {start}..{end} of {base}");
            }
        }
    }

    /// Writes `src` (rounded to this tensor's dtype, round-to-nearest-even) at `start`; a Q8_0
    /// tensor takes whole blocks (`start` and `src.len()` multiples of 32).
    pub fn write_f32(&mut self, start: usize, src: &[f32]) {
        let end = start + src.len();
        match self {
            CpuTensor::F32(v) => v[start..end].copy_from_slice(src),
            CpuTensor::F16(v) => v[start..end]
                .iter_mut()
                .zip(src)
                .for_each(|(d, &s)| *d = f16::from_f32(s)),
            CpuTensor::BF16(v) => v[start..end]
                .iter_mut()
                .zip(src)
                .for_each(|(d, &s)| *d = bf16::from_f32(s)),
            CpuTensor::Q8_0Kv { bytes, len } => {
                assert!(end <= *len, "elements {start}..{end} of {len}");
                crate::kv_quant::write(bytes, start, src)
            }
            CpuTensor::Quant { .. } | CpuTensor::Stack(_) => {
                panic!(
                    "{} weights are read-only (write_f32 at {start})",
                    self.dtype()
                )
            }
        }
    }

    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.len()];
        self.read_f32(0, &mut out);
        out
    }
}

/// Elements `start .. start + dst.len()` of a blocked tensor, dequantized: whole blocks go
/// straight into `dst`, a partial block at either end through a block-sized buffer.
fn read_blocks(dtype: DType, bytes: &[u8], start: usize, dst: &mut [f32]) {
    let (be, bb) = (dtype.block_elems(), dtype.block_bytes());
    let mut buf = vec![0.0f32; be];
    let (mut at, mut done) = (start, 0);
    while done < dst.len() {
        let (block, within) = (at / be, at % be);
        let n = (be - within).min(dst.len() - done);
        let src = &bytes[block * bb..(block + 1) * bb];
        let out = if n == be {
            &mut dst[done..done + be]
        } else {
            &mut buf[..]
        };
        super::qrow::dequant(dtype, src, out);
        if n != be {
            dst[done..done + n].copy_from_slice(&buf[within..within + n]);
        }
        at += n;
        done += n;
    }
}
