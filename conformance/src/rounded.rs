//! The GPU's 16-bit arithmetic on the CPU: the CPU backend with every matmul input rounded to
//! 16 bits first and the KV cache in f16, as the GPU backend computes (it converts activations
//! to the weights' type for the BLAS call and stores K and V in f16). With it the whole-model
//! bounds for 16-bit paths (`tolerance::Kind::Model`) are exercised in CI, where there is no
//! GPU, and an end-to-end bug planted on that path must fail them.

use wavefront::backend::cpu::{CpuBackend, CpuStep, CpuTensor};
use wavefront::backend::{
    AttentionParams, Backend, LinearParams, LogitsParams, RmsNormParams, RopeKvParams,
};
use wavefront::kv_cache::KvCache;
use wavefront::sampler::SamplingParams;
use wavefront::{DType, Result};

/// A small end-to-end mistake: every op still runs, the model still talks, the numbers are off
/// by about the size of 16-bit rounding. The suite must tell it from rounding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ModelBug {
    /// RMSNorm adds `delta` to the model's epsilon.
    RmsNormEpsilon { delta: f32 },
    /// RoPE runs with θ·`factor` instead of the model's θ (inv_freq_i = θ^(−2i/d)).
    RopeTheta { factor: f64 },
}

/// The CPU backend rounding matmul inputs to `input` and keeping K/V in `kv`, with an optional
/// planted [`ModelBug`].
pub struct Rounded {
    inner: CpuBackend,
    input: DType,
    kv: DType,
    pub bug: Option<ModelBug>,
}

impl Rounded {
    /// What the GPU backend rounds: bf16 weights and matmul inputs, f16 K/V.
    pub fn gpu_like() -> Self {
        Rounded {
            inner: CpuBackend::new(DType::BF16).expect("BF16 is a CPU weight type"),
            input: DType::BF16,
            kv: DType::F16,
            bug: None,
        }
    }

    /// The CPU's own f32 path with `bug` planted: to measure the bug's size on its own.
    pub fn f32_with(bug: ModelBug) -> Self {
        Rounded {
            inner: CpuBackend::new(DType::BF16).expect("BF16 is a CPU weight type"),
            input: DType::F32,
            kv: DType::F32,
            bug: Some(bug),
        }
    }

    pub fn with_bug(mut self, bug: ModelBug) -> Self {
        self.bug = Some(bug);
        self
    }

    /// `x` rounded to the matmul input type (a copy; `x` itself is the residual stream).
    fn matmul_input(&self, x: &CpuTensor) -> Result<Option<CpuTensor>> {
        if self.input == DType::F32 {
            return Ok(None);
        }
        let mut v = x.f32("linear", "x")?.to_vec();
        wavefront::tensor::round_to(self.input, &mut v);
        self.inner.upload_f32(&v).map(Some)
    }
}

impl Backend for Rounded {
    type Tensor = CpuTensor;

    forward_to_cpu!();

    fn name(&self) -> &'static str {
        "cpu-rounded"
    }

    fn device(&self) -> String {
        let bug = self
            .bug
            .map(|b| format!(", planted {b:?}"))
            .unwrap_or_default();
        format!(
            "CPU with matmul inputs rounded to {} and K/V in {}{bug}",
            self.input, self.kv
        )
    }

    fn matmul_input_dtype(&self, _weight: DType) -> DType {
        self.input
    }

    fn preferred_kv_dtype(&self) -> DType {
        self.kv
    }

    fn rms_norm(
        &self,
        x: &mut CpuTensor,
        residual: Option<&CpuTensor>,
        w: &CpuTensor,
        out: &mut CpuTensor,
        mut p: RmsNormParams,
    ) -> Result<()> {
        if let Some(ModelBug::RmsNormEpsilon { delta }) = self.bug {
            p.eps += delta;
        }
        self.inner.rms_norm(x, residual, w, out, p)
    }

    fn linear(
        &self,
        x: &CpuTensor,
        w: &CpuTensor,
        bias: Option<&CpuTensor>,
        out: &mut CpuTensor,
        p: LinearParams,
    ) -> Result<()> {
        match self.matmul_input(x)? {
            Some(xr) => self.inner.linear(&xr, w, bias, out, p),
            None => self.inner.linear(x, w, bias, out, p),
        }
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
        let Some(ModelBug::RopeTheta { factor }) = self.bug else {
            return self.inner.rope_kv_write(q, k, v, inv_freq, cache, p, step);
        };
        // θ^(−2i/d) · factor^(−2i/d) = (θ·factor)^(−2i/d)
        let d = p.head_dim as f64;
        // (the table's last entry, the attention factor, stays as it is)
        let table = inv_freq.f32("rope_kv_write", "inv_freq")?;
        let half = p.head_dim / 2;
        let wrong: Vec<f32> = (table.iter().enumerate())
            .map(|(i, &f)| match i < half {
                true => (f as f64 * factor.powf(-2.0 * i as f64 / d)) as f32,
                false => f,
            })
            .collect();
        let wrong = self.inner.upload_f32(&wrong)?;
        self.inner.rope_kv_write(q, k, v, &wrong, cache, p, step)
    }

    fn attention(
        &self,
        q: &CpuTensor,
        cache: &KvCache<CpuTensor>,
        out: &mut CpuTensor,
        p: AttentionParams,
        step: Option<&CpuStep>,
    ) -> Result<()> {
        self.inner.attention(q, cache, out, p, step)
    }

    fn logits(
        &self,
        x: &CpuTensor,
        w: &CpuTensor,
        out: &mut CpuTensor,
        p: LogitsParams,
    ) -> Result<()> {
        match self.matmul_input(x)? {
            Some(xr) => self.inner.logits(&xr, w, out, p),
            None => self.inner.logits(x, w, out, p),
        }
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
        self.inner.sample(logits, row, vocab, params, history, coin)
    }
}
