//! The CPU backend: Rust over a spinning thread pool (`pool`; rayon for the rest), weights in
//! a 16-bit type or as the file's quantized blocks, f32 accumulation.
//! The default when no GPU is present, and what CI exercises.

mod attention;
mod elementwise;
mod embedding;
mod linear;
mod pool;
pub mod q8dot;
pub mod qrow;
#[cfg(target_arch = "x86_64")]
mod qrow_avx2;
mod rms_norm;
mod rope;
pub mod simd;
mod step;
mod tensor;

pub use rope::rotate;
pub use step::CpuStep;
pub use tensor::CpuTensor;

use half::{bf16, f16};

use crate::backend::{
    check_tensor, Activation, AttentionParams, Backend, EmbeddingParams, LinearParams,
    LogitsParams, RmsNormParams, RopeKvParams, TensorInfo,
};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::kv_quant;
use crate::sampler::SamplingParams;
use crate::tensor::{DType, HostTensor};

#[derive(Debug, Clone)]
pub struct CpuBackend {
    weight_dtype: DType,
    dots: Dots,
}

/// How the CPU multiplies activations with block-quantized (GGUF) weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dots {
    /// f32 activations, each weight dequantized in registers to exactly the value
    /// `formats::quants` gives and multiplied in f32: the reference's arithmetic (the default).
    #[default]
    F32,
    /// 8-bit activations and integer dot products ([`q8dot`]), the arithmetic of llama.cpp's
    /// CPU build: faster, and within [`q8dot::error_bound`] of [`Dots::F32`] per product. Still
    /// batch-invariant and the same bits at every SIMD level. Plain (f32/16-bit) weights are
    /// unaffected.
    Q8,
}

impl Default for CpuBackend {
    /// bf16 weights (the 16-bit type with f32's range), f32 dot products.
    fn default() -> Self {
        CpuBackend {
            weight_dtype: DType::BF16,
            dots: Dots::F32,
        }
    }
}

impl CpuBackend {
    /// `weight_dtype`: F32, BF16 or F16.
    pub fn new(weight_dtype: DType) -> Result<Self> {
        if !matches!(weight_dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(Error::InvalidRequest(format!(
                "the CPU backend stores weights as F32, BF16 or F16, not {weight_dtype}"
            )));
        }
        Ok(CpuBackend {
            weight_dtype,
            dots: Dots::F32,
        })
    }

    /// The same backend with quantized weights multiplied as `dots` says.
    pub fn with_dots(self, dots: Dots) -> Self {
        CpuBackend { dots, ..self }
    }

    pub fn dots(&self) -> Dots {
        self.dots
    }
}

/// The quantized weight types the CPU backend keeps as the file stores them (its linear,
/// embedding and logits ops read the blocks): every GGUF block type the loaders know.
pub const NATIVE_WEIGHTS: &[DType] = &DType::WEIGHT_BLOCKS;

/// Every type a weight matrix or embedding table may have on the CPU.
fn weight_types() -> Vec<DType> {
    let mut t = vec![DType::F32, DType::F16, DType::BF16];
    t.extend_from_slice(NATIVE_WEIGHTS);
    t
}

fn bad_bytes(dtype: DType, len: usize) -> Error {
    Error::Backend {
        backend: "cpu",
        op: "upload".into(),
        detail: format!("{len} bytes is not a whole number of {dtype} elements"),
    }
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;
    type Step = CpuStep;
    /// No graphs on the CPU: [`Backend::capture_graph`] returns `None` and the engine queues the
    /// work itself.
    type Graph = ();
    type StepsInput = ();

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device(&self) -> String {
        let dots = match self.dots {
            Dots::F32 => "",
            Dots::Q8 => ", q8 dots",
        };
        format!("CPU ({} threads{dots})", rayon::current_num_threads())
    }

    fn weight_dtype(&self) -> DType {
        self.weight_dtype
    }

    /// With [`Dots::Q8`], activations meet block-quantized weights rounded to 8 bits a
    /// 32-element group with scale `max|x| / 127`: the rounding of the KV cache's Q8_0
    /// (`DType::Q8_0Kv`, whose tolerance the conformance tables already derive), with an f32
    /// scale where the KV's is f16. Otherwise (and for plain weights) not rounded.
    fn matmul_input_dtype(&self, weight: DType) -> DType {
        if self.dots == Dots::Q8 && weight.is_quantized() && NATIVE_WEIGHTS.contains(&weight) {
            DType::Q8_0Kv
        } else {
            DType::F32
        }
    }

    fn native_weight_dtypes(&self) -> &'static [DType] {
        NATIVE_WEIGHTS
    }

    fn mixed_stacks(&self) -> bool {
        true
    }

    fn upload_stack(&self, parts: &[&HostTensor]) -> Result<CpuTensor> {
        let parts = parts
            .iter()
            .map(|t| self.upload_native(t))
            .collect::<Result<Vec<_>>>()?;
        Ok(CpuTensor::Stack(parts))
    }

    /// In place: the tensor shares the loader's bytes (the file's mapping) instead of a copy.
    fn upload_native(&self, t: &HostTensor) -> Result<CpuTensor> {
        let (bb, be) = (t.dtype.block_bytes(), t.dtype.block_elems());
        let n = t.bytes().len();
        if !NATIVE_WEIGHTS.contains(&t.dtype) || !n.is_multiple_of(bb) {
            return Err(Error::Backend {
                backend: "cpu",
                op: "upload_native".into(),
                detail: format!(
                    "{}: {n} bytes of {} is not whole blocks of a block type",
                    t.name, t.dtype
                ),
            });
        }
        Ok(CpuTensor::Quant {
            dtype: t.dtype,
            bytes: tensor::Blocks::Shared(t.storage.clone()),
            len: n / bb * be,
        })
    }

    /// f32: the CPU has the memory, and f32 keeps the engine's KV state within rounding of
    /// the reference's.
    fn preferred_kv_dtype(&self) -> DType {
        DType::F32
    }

    /// The host's available memory (`MemAvailable`).
    fn free_memory(&self) -> Result<Option<usize>> {
        Ok(crate::context::host_available_memory())
    }

    fn alloc(&self, dtype: DType, n: usize) -> Result<CpuTensor> {
        CpuTensor::zeros(dtype, n)
    }

    fn upload(&self, dtype: DType, bytes: &[u8]) -> Result<CpuTensor> {
        let size = dtype.block_bytes();
        if dtype == DType::Q8_0Kv && bytes.len().is_multiple_of(size) {
            return Ok(CpuTensor::Q8_0Kv {
                bytes: bytes.to_vec(),
                len: bytes.len() / size * dtype.block_elems(),
            });
        }
        if NATIVE_WEIGHTS.contains(&dtype) && bytes.len().is_multiple_of(size) {
            return Ok(CpuTensor::Quant {
                dtype,
                bytes: tensor::Blocks::Owned(bytes.to_vec()),
                len: bytes.len() / size * dtype.block_elems(),
            });
        }
        if dtype.is_quantized() || !bytes.len().is_multiple_of(size) {
            return Err(bad_bytes(dtype, bytes.len()));
        }
        let halves = || {
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
        };
        Ok(match dtype {
            DType::F32 => CpuTensor::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::F16 => CpuTensor::F16(halves().map(f16::from_bits).collect()),
            DType::BF16 => CpuTensor::BF16(halves().map(bf16::from_bits).collect()),
            _ => return Err(bad_bytes(dtype, bytes.len())),
        })
    }

    fn upload_f32(&self, data: &[f32]) -> Result<CpuTensor> {
        Ok(CpuTensor::F32(data.to_vec()))
    }

    fn download_f32(&self, t: &CpuTensor) -> Result<Vec<f32>> {
        Ok(t.to_f32_vec())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn copy_into(&self, src: &CpuTensor, dst: &mut CpuTensor, offset: usize) -> Result<()> {
        let detail = format!(
            "{} {} elements into {} {} at {offset}",
            src.len(),
            src.dtype(),
            dst.len(),
            dst.dtype()
        );
        let bad = || Error::Backend {
            backend: "cpu",
            op: "copy".into(),
            detail,
        };
        // In whole blocks for a block type (a tensor's last block is whole in memory).
        let be = src.dtype().block_elems();
        let end = offset
            .checked_add(src.len())
            .filter(|&e| e.div_ceil(be) <= dst.len().div_ceil(be) && offset.is_multiple_of(be));
        let Some(end) = end else {
            return Err(bad());
        };
        match (src, dst) {
            (CpuTensor::F32(s), CpuTensor::F32(d)) => d[offset..end].copy_from_slice(s),
            (CpuTensor::F16(s), CpuTensor::F16(d)) => d[offset..end].copy_from_slice(s),
            (CpuTensor::BF16(s), CpuTensor::BF16(d)) => d[offset..end].copy_from_slice(s),
            // (offset is whole superblocks: checked above)
            (CpuTensor::Q8_0Kv { bytes: s, len }, CpuTensor::Q8_0Kv { bytes: d, .. }) => {
                let at = offset / kv_quant::SUPER * kv_quant::SUPER_BYTES;
                let n = kv_quant::bytes_for(*len);
                d[at..at + n].copy_from_slice(&s[..n]);
            }
            _ => return Err(bad()),
        }
        Ok(())
    }

    fn copy_range(
        &self,
        src: &CpuTensor,
        src_offset: usize,
        dst: &mut CpuTensor,
        dst_offset: usize,
        n: usize,
    ) -> Result<()> {
        crate::backend::check_copy_range("cpu", src, src_offset, dst, dst_offset, n)?;
        let (s, d) = (src_offset..src_offset + n, dst_offset..dst_offset + n);
        match (src, dst) {
            (CpuTensor::F32(a), CpuTensor::F32(b)) => b[d].copy_from_slice(&a[s]),
            (CpuTensor::F16(a), CpuTensor::F16(b)) => b[d].copy_from_slice(&a[s]),
            (CpuTensor::BF16(a), CpuTensor::BF16(b)) => b[d].copy_from_slice(&a[s]),
            _ => {
                return Err(Error::Backend {
                    backend: "cpu",
                    op: "copy_range".into(),
                    detail: "a tensor of a plain dtype held in another form".into(),
                })
            }
        }
        Ok(())
    }

    /// Any: every CPU op computes each row as it computes the row alone (`linear`'s batched
    /// path keeps the batch-1 dot products' order; the other ops are per row).
    fn batch_invariant_rows(&self) -> usize {
        usize::MAX
    }

    fn embedding(
        &self,
        table: &CpuTensor,
        tokens: &[u32],
        out: &mut CpuTensor,
        p: EmbeddingParams,
    ) -> Result<()> {
        embedding::embedding(table, tokens, out, p)
    }

    fn rms_norm(
        &self,
        x: &mut CpuTensor,
        residual: Option<&CpuTensor>,
        w: &CpuTensor,
        out: &mut CpuTensor,
        p: RmsNormParams,
    ) -> Result<()> {
        rms_norm::rms_norm(x, residual, w, out, p)
    }

    fn rms_norm_in_place(&self, x: &mut CpuTensor, w: &CpuTensor, p: RmsNormParams) -> Result<()> {
        rms_norm::rms_norm_in_place(x, w, p)
    }

    fn linear(
        &self,
        x: &CpuTensor,
        w: &CpuTensor,
        bias: Option<&CpuTensor>,
        out: &mut CpuTensor,
        p: LinearParams,
    ) -> Result<()> {
        linear::linear(x, w, bias, out, p, self.dots)
    }

    fn rope_kv_write(
        &self,
        q: &mut CpuTensor,
        k: &CpuTensor,
        v: &CpuTensor,
        inv_freq: &CpuTensor,
        cache: &mut KvCache<CpuTensor>,
        p: RopeKvParams,
        step: Option<&CpuStep>,
    ) -> Result<()> {
        let p = RopeKvParams {
            pos0: step.map_or(p.pos0, CpuStep::pos),
            ..p
        };
        rope::rope_kv_write(q, k, v, inv_freq, cache, p)
    }

    fn attention(
        &self,
        q: &CpuTensor,
        cache: &KvCache<CpuTensor>,
        out: &mut CpuTensor,
        p: AttentionParams,
        step: Option<&CpuStep>,
    ) -> Result<()> {
        let p = AttentionParams {
            pos0: step.map_or(p.pos0, CpuStep::pos),
            ..p
        };
        attention::attention(q, cache, out, p)
    }

    fn swiglu(
        &self,
        gate: &CpuTensor,
        up: &CpuTensor,
        out: &mut CpuTensor,
        n: usize,
        act: Activation,
    ) -> Result<()> {
        elementwise::swiglu(gate, up, out, n, act)
    }

    fn add(&self, x: &mut CpuTensor, y: &CpuTensor, n: usize) -> Result<()> {
        elementwise::add(x, y, n)
    }

    fn logits(
        &self,
        x: &CpuTensor,
        w: &CpuTensor,
        out: &mut CpuTensor,
        p: LogitsParams,
    ) -> Result<()> {
        check_tensor(
            "cpu",
            "logits",
            "x",
            x,
            (p.row0 + p.rows) * p.hidden,
            &[DType::F32],
        )?;
        // The selected rows as their own (rows, hidden) input.
        let rows = CpuTensor::F32(
            x.f32("logits", "x")?[p.row0 * p.hidden..(p.row0 + p.rows) * p.hidden].to_vec(),
        );
        let lp = LinearParams {
            rows: p.rows,
            in_features: p.hidden,
            out_features: p.vocab,
        };
        if let Some(c) = p.softcap {
            check_softcap("logits", c)?;
        }
        linear::linear(&rows, w, None, out, lp, self.dots)?;
        if let Some(c) = p.softcap {
            let n = p.rows * p.vocab;
            for l in &mut out.f32_mut("logits", "out")?[..n] {
                *l = crate::backend::softcap(*l, c);
            }
        }
        Ok(())
    }

    fn new_step(&self, vocab: usize, capacity: usize) -> Result<CpuStep> {
        CpuStep::new(vocab, capacity)
    }

    fn reset_step(&self, step: &mut CpuStep, context: &[u32], seed: u64) -> Result<()> {
        step.reset(context, seed)
    }

    fn sample_step(
        &self,
        logits: &CpuTensor,
        row: usize,
        vocab: usize,
        params: &SamplingParams,
        window: usize,
        step: &mut CpuStep,
    ) -> Result<()> {
        step.sample(vocab, window, |history, coin| {
            self.sample(logits, row, vocab, params, history, coin)
        })
    }

    fn post_token(&self, step: &mut CpuStep) -> Result<()> {
        step.post();
        Ok(())
    }

    fn take_token(&self, step: &mut CpuStep) -> Result<u32> {
        step.take()
    }

    fn embedding_step(
        &self,
        table: &CpuTensor,
        step: &CpuStep,
        out: &mut CpuTensor,
        p: EmbeddingParams,
    ) -> Result<()> {
        step.embedding(table, out, p)
    }

    fn capture_graph(&self, _f: &mut dyn FnMut() -> Result<()>) -> Result<Option<()>> {
        Ok(None)
    }

    fn replay_graph(&self, _g: &()) -> Result<()> {
        Ok(())
    }

    fn linear_stacked(
        &self,
        x: &CpuTensor,
        w: &CpuTensor,
        bias: Option<&CpuTensor>,
        outs: &mut [&mut CpuTensor],
        parts: &[usize],
        rows: usize,
        in_features: usize,
    ) -> Result<()> {
        linear::linear_stacked(x, w, bias, outs, parts, rows, in_features, self.dots)
    }

    fn gate_up_swiglu(
        &self,
        x: &CpuTensor,
        w: &CpuTensor,
        tmp: &mut CpuTensor,
        out: &mut CpuTensor,
        rows: usize,
        in_features: usize,
        inter: usize,
        act: Activation,
    ) -> Result<()> {
        linear::gate_up_swiglu(x, w, tmp, out, rows, in_features, inter, act, self.dots)
    }

    fn sample(
        &self,
        logits: &CpuTensor,
        row: usize,
        vocab: usize,
        params: &SamplingParams,
        history: &[u32],
        coin: f32,
    ) -> Result<u32> {
        check_tensor(
            "cpu",
            "sample",
            "logits",
            logits,
            (row + 1) * vocab,
            &[DType::F32],
        )?;
        let l = &logits.f32("sample", "logits")?[row * vocab..(row + 1) * vocab];
        crate::sampler::sample(l, params, history, coin)
    }
}

/// A typed error for a final logit soft-cap that is not a finite positive number.
fn check_softcap(op: &str, c: f32) -> Result<()> {
    if c.is_finite() && c > 0.0 {
        return Ok(());
    }
    Err(Error::Backend {
        backend: "cpu",
        op: op.into(),
        detail: format!("softcap {c} is not a finite positive number"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TensorInfo;

    /// Block-quantized weights whose rows are not whole blocks, and mixed stacks whose parts are
    /// not whole rows, are refused with the reason, never read out of bounds.
    #[test]
    fn quantized_rows_that_are_not_whole_blocks_are_a_clear_error() {
        let b = CpuBackend::default();
        let w = b.upload(DType::Q4_K, &vec![0u8; 144 * 2]).unwrap(); // 512 elements
        let x = b.upload_f32(&[1.0; 128]).unwrap();
        let mut out = b.alloc(DType::F32, 4).unwrap();
        let p = LinearParams {
            rows: 1,
            in_features: 128,
            out_features: 4,
        };
        let err = b.linear(&x, &w, None, &mut out, p).unwrap_err().to_string();
        assert!(
            err.contains("Q4_K") && err.contains("in_features 128"),
            "{err}"
        );
        // a stack: Q8_0 rows of 64 then a Q4_0 part of 96 elements (not whole rows of 64)
        let host = |name: &str, dtype, bytes: Vec<u8>| HostTensor {
            name: name.into(),
            dtype,
            shape: vec![],
            storage: crate::tensor::Storage::Owned(std::sync::Arc::new(bytes)),
        };
        let (a, c) = (
            host("a", DType::Q8_0, vec![0; 34 * 4]),
            host("c", DType::Q4_0, vec![0; 18 * 3]),
        );
        let s = b.upload_stack(&[&a, &c]).unwrap();
        assert_eq!(
            (s.dtype(), s.len(), s.bytes()),
            (DType::Q8_0, 224, 34 * 4 + 18 * 3)
        );
        let x = b.upload_f32(&[1.0; 64]).unwrap();
        let mut out = b.alloc(DType::F32, 3).unwrap();
        let p = LinearParams {
            rows: 1,
            in_features: 64,
            out_features: 3,
        };
        let err = b.linear(&x, &s, None, &mut out, p).unwrap_err().to_string();
        assert!(err.contains("not whole rows"), "{err}");
        // rows of nothing: an error, not a division by zero
        let empty = LinearParams {
            rows: 1,
            in_features: 0,
            out_features: 3,
        };
        let err = b
            .linear(&x, &w, None, &mut out, empty)
            .unwrap_err()
            .to_string();
        assert!(err.contains("in_features 0"), "{err}");
        // plain types in a stack are refused
        assert!(b
            .upload_stack(&[&host("f", DType::F32, vec![0; 8])])
            .is_err());
    }

    #[test]
    fn upload_download_round_trips_each_dtype() {
        let b = CpuBackend::default();
        let xs = [1.0f32, -2.5, 0.125, 32768.0]; // exact in bf16
        let t = b.upload_f32(&xs).unwrap();
        assert_eq!(b.download_f32(&t).unwrap(), xs);
        let bytes: Vec<u8> = xs
            .iter()
            .flat_map(|x| bf16::from_f32(*x).to_bits().to_le_bytes())
            .collect();
        let t = b.upload(DType::BF16, &bytes).unwrap();
        assert_eq!(t.dtype(), DType::BF16);
        assert_eq!(b.download_f32(&t).unwrap(), xs);
        assert!(b.upload(DType::F32, &[0u8; 7]).is_err());
        // a model file's block type: whole blocks, kept as they are
        assert!(b.upload(DType::Q4_0, &[0u8; 17]).is_err());
        let mut q = vec![0u8; 36];
        q[1] = 0x40; // d = 2.0: element 0 = (0 - 8) * 2
        let t = b.upload(DType::Q4_0, &q).unwrap();
        assert_eq!((t.dtype(), t.len()), (DType::Q4_0, 64));
        assert_eq!(b.download_f32(&t).unwrap()[..2], [-16.0, -16.0]);
        // the KV cache's Q8_0: whole superblocks, values as Q8_0 holds them
        let v: Vec<f32> = (0..300).map(|i| (i as f32 - 150.0) / 37.0).collect();
        let t = b
            .upload(DType::Q8_0Kv, &crate::kv_quant::encode(&v))
            .unwrap();
        assert_eq!((t.dtype(), t.len()), (DType::Q8_0Kv, 512));
        let mut want = v.clone();
        crate::kv_quant::round_trip(&mut want);
        assert_eq!(&b.download_f32(&t).unwrap()[..300], &want[..]);
        assert!(b.upload(DType::Q8_0Kv, &[0u8; 271]).is_err());
    }

    #[test]
    fn q8_0_copies_go_in_whole_superblocks() {
        let b = CpuBackend::default();
        let v: Vec<f32> = (0..256).map(|i| i as f32 / 255.0).collect();
        let src = b
            .upload(DType::Q8_0Kv, &crate::kv_quant::encode(&v))
            .unwrap();
        let mut dst = b.alloc(DType::Q8_0Kv, 600).unwrap();
        b.copy_into(&src, &mut dst, 256).unwrap();
        let got = b.download_f32(&dst).unwrap();
        assert!(got[..256].iter().all(|&x| x == 0.0));
        assert_eq!(&got[256..512], &b.download_f32(&src).unwrap()[..]);
        assert!(
            b.copy_into(&src, &mut dst, 32).is_err(),
            "inside a superblock"
        );
        assert!(
            b.copy_into(&src, &mut dst, 512).is_ok(),
            "the last, partial one"
        );
        assert!(b.copy_into(&src, &mut dst, 768).is_err(), "past the end");
    }

    #[test]
    fn copy_into_writes_the_range_and_refuses_what_does_not_fit() {
        let b = CpuBackend::default();
        let src = b.upload_f32(&[1.0, 2.0]).unwrap();
        let mut dst = b.upload_f32(&[9.0; 5]).unwrap();
        b.copy_into(&src, &mut dst, 3).unwrap();
        assert_eq!(b.download_f32(&dst).unwrap(), [9.0, 9.0, 9.0, 1.0, 2.0]);
        assert!(b.copy_into(&src, &mut dst, 4).is_err(), "past the end");
        assert!(
            b.copy_into(&src, &mut dst, usize::MAX).is_err(),
            "overflowing offset"
        );
        let mut other = b.alloc(DType::F16, 5).unwrap();
        assert!(b.copy_into(&src, &mut other, 0).is_err(), "dtype mismatch");
        assert!(b.copy(&src, &mut dst).is_err(), "copy needs equal lengths");
    }

    /// Seeded values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        crate::formats::random::values(n, seed)
    }

    fn bf16_tensor(b: &CpuBackend, v: &[f32]) -> CpuTensor {
        let bytes: Vec<u8> = v
            .iter()
            .flat_map(|x| bf16::from_f32(*x).to_bits().to_le_bytes())
            .collect();
        b.upload(DType::BF16, &bytes).unwrap()
    }

    #[test]
    fn stacked_projections_equal_separate_linear_calls_bit_for_bit() {
        let b = CpuBackend::default();
        let k = 37;
        for (rows, parts) in [
            (1, vec![5, 3, 3]),
            (3, vec![4, 2]),
            (2, vec![7]),
            (1, vec![6, 0, 2]),
        ] {
            let total: usize = parts.iter().sum();
            let (xv, wv, bv) = (values(rows * k, 1), values(total * k, 2), values(total, 3));
            let x = b.upload_f32(&xv).unwrap();
            let w = bf16_tensor(&b, &wv);
            let bias = b.upload_f32(&bv).unwrap();
            for with_bias in [false, true] {
                let mut outs: Vec<CpuTensor> = parts
                    .iter()
                    .map(|&m| b.alloc(DType::F32, rows * m).unwrap())
                    .collect();
                let mut refs: Vec<&mut CpuTensor> = outs.iter_mut().collect();
                b.linear_stacked(
                    &x,
                    &w,
                    with_bias.then_some(&bias),
                    &mut refs,
                    &parts,
                    rows,
                    k,
                )
                .unwrap();
                let mut row0 = 0;
                for (i, &m) in parts.iter().enumerate() {
                    let wi = bf16_tensor(&b, &wv[row0 * k..(row0 + m) * k]);
                    let bi = b.upload_f32(&bv[row0..row0 + m]).unwrap();
                    let mut want = b.alloc(DType::F32, rows * m).unwrap();
                    let p = LinearParams {
                        rows,
                        in_features: k,
                        out_features: m,
                    };
                    b.linear(&x, &wi, with_bias.then_some(&bi), &mut want, p)
                        .unwrap();
                    assert_eq!(outs[i], want, "rows {rows} parts {parts:?} part {i}");
                    row0 += m;
                }
            }
        }
    }

    #[test]
    fn gate_up_swiglu_equals_two_linear_calls_and_swiglu_bit_for_bit() {
        let b = CpuBackend::default();
        let (k, inter) = (29, 11);
        for (rows, act) in [1, 4]
            .into_iter()
            .flat_map(|r| [(r, Activation::Silu), (r, Activation::GeluTanh)])
        {
            let (xv, wv) = (values(rows * k, 4), values(2 * inter * k, 5));
            let x = b.upload_f32(&xv).unwrap();
            let w = bf16_tensor(&b, &wv);
            let mut tmp = b.alloc(DType::F32, 2 * rows * inter).unwrap();
            let mut out = b.alloc(DType::F32, rows * inter).unwrap();
            b.gate_up_swiglu(&x, &w, &mut tmp, &mut out, rows, k, inter, act)
                .unwrap();
            let p = LinearParams {
                rows,
                in_features: k,
                out_features: inter,
            };
            let mut gate = b.alloc(DType::F32, rows * inter).unwrap();
            let mut up = b.alloc(DType::F32, rows * inter).unwrap();
            let wg = bf16_tensor(&b, &wv[..inter * k]);
            let wu = bf16_tensor(&b, &wv[inter * k..]);
            b.linear(&x, &wg, None, &mut gate, p).unwrap();
            b.linear(&x, &wu, None, &mut up, p).unwrap();
            let mut want = b.alloc(DType::F32, rows * inter).unwrap();
            b.swiglu(&gate, &up, &mut want, rows * inter, act).unwrap();
            assert_eq!(out, want, "rows {rows} {act:?}");
        }
    }

    #[test]
    fn stacked_and_gate_up_refuse_bad_shapes() {
        let b = CpuBackend::default();
        let x = b.upload_f32(&[1.0; 4]).unwrap();
        let w = b.upload_f32(&[1.0; 8]).unwrap();
        let mut o1 = b.alloc(DType::F32, 2).unwrap();
        let mut o2 = b.alloc(DType::F32, 2).unwrap();
        let op = |e: Error| match e {
            Error::Backend { op, .. } => op,
            other => panic!("{other}"),
        };
        // no parts, too many, outputs and parts out of step, parts beyond w
        for parts in [&[][..], &[1, 1, 1, 1][..], &[2][..], &[2, 3][..]] {
            let mut outs = [&mut o1, &mut o2];
            let n = if parts.len() == 1 {
                2
            } else {
                parts.len().min(2)
            };
            let e = b
                .linear_stacked(&x, &w, None, &mut outs[..n], parts, 1, 2)
                .unwrap_err();
            assert_eq!(op(e), "linear_stacked", "parts {parts:?}");
        }
        let e = b
            .linear_stacked(&x, &w, None, &mut [&mut o1], &[usize::MAX], 1, 2)
            .unwrap_err();
        assert_eq!(op(e), "linear_stacked");
        // tmp needs 2·rows·inter
        let mut tmp = b.alloc(DType::F32, 3).unwrap();
        let e = b
            .gate_up_swiglu(&x, &w, &mut tmp, &mut o1, 1, 2, 2, Activation::Silu)
            .unwrap_err();
        assert!(e.to_string().contains("tmp"), "{e}");
        let mut tmp = b.alloc(DType::F32, 4).unwrap();
        b.gate_up_swiglu(&x, &w, &mut tmp, &mut o1, 1, 2, 2, Activation::Silu)
            .unwrap();
        let e = b
            .gate_up_swiglu(&x, &w, &mut tmp, &mut o1, 1, 2, 3, Activation::Silu)
            .unwrap_err();
        assert!(e.to_string().contains("w holds"), "{e}");
    }

    #[test]
    fn ops_refuse_short_buffers() {
        let b = CpuBackend::default();
        let x = b.upload_f32(&[1.0; 4]).unwrap();
        let w = b.upload_f32(&[1.0; 6]).unwrap();
        let mut out = b.alloc(DType::F32, 3).unwrap();
        let p = LinearParams {
            rows: 2,
            in_features: 2,
            out_features: 3,
        };
        let err = b.linear(&x, &w, None, &mut out, p).unwrap_err();
        assert!(
            matches!(&err, Error::Backend { op, .. } if op == "linear"),
            "{err}"
        );
    }
}
