//! Host memory as a backend tensor.

use half::{bf16, f16};

use crate::backend::TensorInfo;
use crate::error::{Error, Result};
use crate::tensor::DType;

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
}

impl TensorInfo for CpuTensor {
    fn dtype(&self) -> DType {
        match self {
            CpuTensor::F32(_) => DType::F32,
            CpuTensor::F16(_) => DType::F16,
            CpuTensor::BF16(_) => DType::BF16,
            CpuTensor::Q8_0Kv { .. } => DType::Q8_0Kv,
        }
    }

    fn len(&self) -> usize {
        match self {
            CpuTensor::F32(v) => v.len(),
            CpuTensor::F16(v) => v.len(),
            CpuTensor::BF16(v) => v.len(),
            CpuTensor::Q8_0Kv { len, .. } => *len,
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
        }
    }

    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.len()];
        self.read_f32(0, &mut out);
        out
    }
}
