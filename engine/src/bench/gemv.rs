//! `wavefront bench --gemv`: every batch-1 projection of a decode step, the custom GEMV kernels
//! (`kernels/gemv.hip`) against the BLAS path they replace (x converted to bf16, then a GEMM
//! with N = 1), on random bf16 weights. A batch-1 projection reads its weight once, so its floor
//! is weight bytes / bandwidth: each row reports the achieved GB/s and its share of the
//! device's measured copy bandwidth (the number [`super::copy_bandwidth`] gives the decode
//! roofline), and the time ratio custom / BLAS.
//!
//! The custom side runs each projection as the decode step does: QKV and gate/up with the
//! RMSNorm in the GEMV's prologue, o_proj and down adding into the residual stream in its
//! epilogue (the BLAS side: rms_norm, convert, GEMM and add as separate launches where the
//! step would need them). Each timed sample queues one call per copy of the weight, back to
//! back, over enough copies (at least [`STREAM_BYTES`] in all) that no call finds its weight in
//! the last-level cache, as in decode where a layer's matrices are read once per token; the time
//! per call is the sample over the copies.

use serde::Serialize;

use super::{copy_bandwidth, median};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::{Activation, Backend, KernelSource, PreNorm, RmsNormParams};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::tensor::{DType, HostTensor, Storage};

/// Timed repetitions of each side at least (after one warm-up).
pub const MIN_REPS: usize = 20;

/// Weight bytes streamed per timed sample at least: three times the H200's 50 MiB L2 (MI300X:
/// 4 MiB L2 + 256 MiB Infinity Cache is the larger last level; 150 MB still covers its L2).
pub const STREAM_BYTES: usize = 150_000_000;

/// Copies of a weight of `bytes` that make one timed sample: enough for [`STREAM_BYTES`], at
/// most 256.
pub fn copies(bytes: usize) -> usize {
    STREAM_BYTES.div_ceil(bytes.max(1)).clamp(1, 256)
}

/// What a projection computes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionKind {
    /// Matrices stacked along the output dimension (one entry: a plain projection).
    Stacked { parts: Vec<usize> },
    /// `[W_gate; W_up]` with SwiGLU fused.
    GateUp { inter: usize },
}

/// One decode-step projection of a model shape: W (`rows()`, `k`) in bf16.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Projection {
    /// `qkv`, `o_proj`, `gate_up`, `down`, `lm_head`.
    pub name: &'static str,
    pub kind: ProjectionKind,
    /// Input features.
    pub k: usize,
}

impl Projection {
    /// Rows of the stacked weight.
    pub fn rows(&self) -> usize {
        match &self.kind {
            ProjectionKind::Stacked { parts } => parts.iter().sum(),
            ProjectionKind::GateUp { inter } => 2 * inter,
        }
    }

    /// Bytes of weight one call reads when W is of `dtype` (bf16, or a GGUF block type).
    pub fn weight_bytes(&self, dtype: DType) -> usize {
        dtype.bytes_for(self.rows() * self.k)
    }

    /// `576+192+192 x 576`, `2·1536 x 576`.
    pub fn shape(&self) -> String {
        match &self.kind {
            ProjectionKind::Stacked { parts } => {
                let p: Vec<String> = parts.iter().map(usize::to_string).collect();
                format!("{} x {}", p.join("+"), self.k)
            }
            ProjectionKind::GateUp { inter } => format!("2·{inter} x {}", self.k),
        }
    }
}

/// The projections of one decode step of `c`, in forward order: stacked QKV, o_proj, stacked
/// gate/up with SwiGLU, down, and the LM head.
pub fn projections(c: &ModelConfig) -> Vec<Projection> {
    let stacked = |name, parts: Vec<usize>, k| Projection {
        name,
        kind: ProjectionKind::Stacked { parts },
        k,
    };
    vec![
        stacked(
            "qkv",
            vec![c.q_dim(), c.kv_dim(), c.kv_dim()],
            c.hidden_size,
        ),
        stacked("o_proj", vec![c.hidden_size], c.q_dim()),
        Projection {
            name: "gate_up",
            kind: ProjectionKind::GateUp {
                inter: c.intermediate_size,
            },
            k: c.hidden_size,
        },
        stacked("down", vec![c.hidden_size], c.intermediate_size),
        stacked("lm_head", vec![c.vocab_size], c.hidden_size),
    ]
}

#[derive(Debug, Clone, Serialize)]
pub struct GemvRow {
    /// The model shape (`smollm2-135m`, …).
    pub model: String,
    pub projection: Projection,
    pub weight_bytes: usize,
    /// Median device time of the custom GEMV, µs.
    pub gemv_us: f64,
    /// Median device time of convert + GEMM (N = 1), µs.
    pub blas_us: f64,
    /// weight bytes / time.
    pub gemv_gb_s: f64,
    pub blas_gb_s: f64,
    /// GB/s as a percentage of the copy bandwidth.
    pub gemv_pct_copy: f64,
    pub blas_pct_copy: f64,
    /// gemv_us / blas_us (below 1: the custom kernel is faster).
    pub ratio: f64,
}

impl GemvRow {
    fn new(
        model: &str,
        p: Projection,
        weight: DType,
        (gemv_ms, blas_ms): (f64, f64),
        copy_gb_s: f64,
    ) -> Self {
        let bytes = p.weight_bytes(weight);
        let gb_s = |ms: f64| bytes as f64 / (ms * 1e-3) / 1e9;
        let (g, b) = (gb_s(gemv_ms), gb_s(blas_ms));
        GemvRow {
            model: model.to_string(),
            projection: p,
            weight_bytes: bytes,
            gemv_us: gemv_ms * 1e3,
            blas_us: blas_ms * 1e3,
            gemv_gb_s: g,
            blas_gb_s: b,
            gemv_pct_copy: 100.0 * g / copy_gb_s,
            blas_pct_copy: 100.0 * b / copy_gb_s,
            ratio: gemv_ms / blas_ms,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GemvReport {
    pub backend: String,
    pub device: String,
    /// Device-to-device copy, bytes read + written per second (median).
    pub copy_gb_s: f64,
    /// Timed repetitions per side (after one warm-up).
    pub reps: usize,
    /// The weights' type: bf16, or a GGUF block type (`--quant`).
    #[serde(serialize_with = "dtype_name")]
    pub weight: DType,
    pub rows: Vec<GemvRow>,
    pub kernels: Vec<KernelSource>,
}

fn dtype_name<S: serde::Serializer>(d: &DType, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(d.name())
}

impl GemvReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "GEMV microbenchmark, batch 1, {} weights | backend: {} | device: {} | copy bandwidth: {:.1} GB/s | median of {} reps after a warm-up, each rep one call per weight copy back to back (≥ 150 MB of weights, past the L2); custom: the decode step's fused form (norm prologue for qkv and gate_up, residual epilogue for o_proj and down); BLAS: the same with separate rms_norm / convert{} / GEMM / add; GB/s = weight bytes / time; ratio = custom time / BLAS time\n\n",
            self.weight.name().to_lowercase(),
            self.backend,
            self.device,
            self.copy_gb_s,
            self.reps,
            if self.weight.is_quantized() {
                " / dequantize to f16"
            } else {
                ""
            }
        );
        if let Some(k) = crate::backend::describe_kernels(&self.kernels) {
            s.push_str(&format!("kernels: {k}\n\n"));
        }
        s.push_str(
            "| model | projection | W (rows x in) | MB | custom µs | custom GB/s | % copy | BLAS µs | BLAS GB/s | % copy | ratio |\n\
             |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.1} | {:.0} | {:.1}% | {:.1} | {:.0} | {:.1}% | {:.2} |\n",
                r.model,
                r.projection.name,
                r.projection.shape(),
                r.weight_bytes as f64 / 1e6,
                r.gemv_us,
                r.gemv_gb_s,
                r.gemv_pct_copy,
                r.blas_us,
                r.blas_gb_s,
                r.blas_pct_copy,
                r.ratio
            ));
        }
        s
    }
}

/// `n` 16-bit values as little-endian bytes, each `bits(r)` of a random `r` (xorshift64*):
/// generated directly in the storage type, since the 8B LM head alone is half a billion of them.
pub(super) fn random_16bit_bytes(n: usize, seed: u64, bits: impl Fn(u16) -> u16) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..n {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u16;
        out.extend_from_slice(&bits(r).to_le_bytes());
    }
    out
}

/// `n` bf16 values of magnitude in [2^-7, 2^-6) with random signs (never NaN or inf), as bytes.
fn random_bf16_bytes(n: usize, seed: u64) -> Vec<u8> {
    random_16bit_bytes(n, seed, |r| (r & 0x8000) | 0x3c00 | (r & 0x007f))
}

/// Median device time (ms) of `f(i)` per call: each of `reps` samples times `f(0..copies)`
/// back to back (after one warm-up sample) and divides by `copies`.
pub(super) fn time(
    b: &GpuBackend,
    reps: usize,
    copies: usize,
    f: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<f64> {
    let mut all = || (0..copies).try_for_each(&mut *f);
    all()?;
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        samples.push(Backend::time_ms(b, &mut all)? / copies as f64);
    }
    Ok(median(samples))
}

/// One f32 output per stacked part.
fn outputs(b: &GpuBackend, parts: &[usize]) -> Result<Vec<GpuTensor>> {
    parts.iter().map(|&m| b.alloc(DType::F32, m)).collect()
}

/// Random weights of `dtype` for `p`: bf16 bytes, or valid blocks of a GGUF block type (values
/// up to 1/√k, as the random models'), from `seed`.
fn random_weights(p: &Projection, dtype: DType, seed: u64) -> Vec<u8> {
    if !dtype.is_quantized() {
        return random_bf16_bytes(p.rows() * p.k, seed);
    }
    let mut rng = crate::sampler::CoinRng::new(seed);
    let blocks = (p.rows() * p.k).div_ceil(dtype.block_elems());
    let scale = 1.0 / (p.k as f32).sqrt();
    crate::formats::quants::random_blocks(dtype, blocks, scale, || rng.next_u64())
}

/// W (`bytes` of `dtype`, all its rows) on the device as the model puts it there: the parts of
/// a stacked projection (QKV, gate and up) through the model's stack upload
/// ([`crate::model::upload_stacked`]: over block types one segment a run of one type, so one
/// launch), any other whole. (Uploading a stack whole once hid that the model's quantized
/// stacks launched once a part: bench/results/2026-12-07-qgemv-stacks-h100.)
fn upload_weight(
    b: &GpuBackend,
    p: &Projection,
    dtype: DType,
    bytes: Vec<u8>,
) -> Result<GpuTensor> {
    let parts = match &p.kind {
        ProjectionKind::Stacked { parts } if parts.len() > 1 => parts.clone(),
        ProjectionKind::GateUp { inter } => vec![*inter, *inter],
        ProjectionKind::Stacked { .. } => return b.upload(dtype, &bytes),
    };
    let mut at = 0;
    let mut tensors = Vec::with_capacity(parts.len());
    for (i, &m) in parts.iter().enumerate() {
        let n = dtype.bytes_for(m * p.k);
        tensors.push(HostTensor {
            name: format!("bench.{}.{i}.weight", p.name),
            dtype,
            shape: vec![m, p.k],
            storage: Storage::Owned(std::sync::Arc::new(bytes[at..at + n].to_vec())),
        });
        at += n;
    }
    let refs: Vec<&HostTensor> = tensors.iter().collect();
    crate::model::upload_stacked(b, &refs)
}

/// Times one projection both ways, as the decode step runs it.
fn measure(b: &GpuBackend, p: &Projection, weight: DType, reps: usize) -> Result<(f64, f64)> {
    let n = copies(p.weight_bytes(weight));
    let ws = (0..n)
        .map(|i| upload_weight(b, p, weight, random_weights(p, weight, 7 + i as u64)))
        .collect::<Result<Vec<_>>>()?;
    let mut x = b.upload_f32(&crate::formats::random::values(p.k, 3))?;
    let g = b.upload_f32(&vec![1.0; p.k])?;
    let norm = PreNorm {
        weight: &g,
        eps: 1e-5,
    };
    let mut h = b.alloc(DType::F32, p.k)?;
    let norm_params = RmsNormParams {
        rows: 1,
        dim: p.k,
        eps: 1e-5,
    };
    match &p.kind {
        ProjectionKind::Stacked { parts } if p.name == "qkv" => {
            let mut outs = outputs(b, parts)?;
            let mut refs: Vec<&mut GpuTensor> = outs.iter_mut().collect();
            let gemv = time(b, reps, n, &mut |i| {
                let (x, h, o) = (&mut x, &mut h, &mut refs);
                b.norm_linear_stacked(x, norm, h, &ws[i], None, o, parts, 1, p.k)
            })?;
            let blas = time(b, reps, n, &mut |i| {
                b.rms_norm(&mut x, None, &g, &mut h, norm_params)?;
                b.linear_stacked_blas(&h, &ws[i], None, &mut refs, parts, 1, p.k)
            })?;
            Ok((gemv, blas))
        }
        ProjectionKind::Stacked { parts } if p.name != "lm_head" => {
            // o_proj, down: into the residual stream.
            let m = parts.iter().sum();
            let mut acc = b.upload_f32(&vec![0.0; m])?;
            let mut tmp = b.alloc(DType::F32, m)?;
            let lp = crate::backend::LinearParams {
                rows: 1,
                in_features: p.k,
                out_features: m,
            };
            let gemv = time(b, reps, n, &mut |i| {
                b.linear_residual(&x, &ws[i], None, &mut acc, &mut tmp, lp)
            })?;
            let blas = time(b, reps, n, &mut |i| {
                let mut refs = [&mut tmp];
                b.linear_stacked_blas(&x, &ws[i], None, &mut refs, parts, 1, p.k)?;
                b.add(&mut acc, &tmp, m)
            })?;
            Ok((gemv, blas))
        }
        ProjectionKind::Stacked { parts } => {
            let mut outs = outputs(b, parts)?;
            let mut refs: Vec<&mut GpuTensor> = outs.iter_mut().collect();
            let gemv = time(b, reps, n, &mut |i| {
                b.linear_stacked(&x, &ws[i], None, &mut refs, parts, 1, p.k)
            })?;
            let blas = time(b, reps, n, &mut |i| {
                b.linear_stacked_blas(&x, &ws[i], None, &mut refs, parts, 1, p.k)
            })?;
            Ok((gemv, blas))
        }
        ProjectionKind::GateUp { inter } => {
            let mut tmp = b.alloc(DType::F32, 2 * inter)?;
            let mut out = b.alloc(DType::F32, *inter)?;
            let gemv = time(b, reps, n, &mut |i| {
                let (x, h, t, o) = (&mut x, &mut h, &mut tmp, &mut out);
                b.norm_gate_up_swiglu(x, norm, h, &ws[i], t, o, 1, p.k, *inter, Activation::Silu)
            })?;
            let blas = time(b, reps, n, &mut |i| {
                b.rms_norm(&mut x, None, &g, &mut h, norm_params)?;
                b.gate_up_swiglu_blas(
                    &h,
                    &ws[i],
                    &mut tmp,
                    &mut out,
                    1,
                    p.k,
                    *inter,
                    Activation::Silu,
                )
            })?;
            Ok((gemv, blas))
        }
    }
}

/// Runs the GEMV microbenchmark for the model shapes `shapes` (names of
/// [`crate::formats::random::shape`]) with at least [`MIN_REPS`] repetitions per side, weights
/// of `weight` (bf16, or a GGUF block type whose blocks divide every row).
pub fn run(b: &GpuBackend, shapes: &[&str], reps: usize, weight: DType) -> Result<GemvReport> {
    let configs = shapes
        .iter()
        .map(|s| crate::formats::random::shape(s).map(|c| (*s, c)))
        .collect::<Result<Vec<_>>>()?;
    if configs.is_empty() {
        return Err(Error::InvalidRequest(
            "bench --gemv: no model shapes".into(),
        ));
    }
    let reps = reps.max(MIN_REPS);
    let copy_gb_s = copy_bandwidth(b, 256 << 20, reps)?;
    let mut rows = Vec::new();
    for (name, c) in configs {
        for p in projections(&c) {
            let times = measure(b, &p, weight, reps)?;
            rows.push(GemvRow::new(name, p, weight, times, copy_gb_s));
        }
    }
    Ok(GemvReport {
        backend: b.name().to_string(),
        device: b.device(),
        copy_gb_s,
        reps,
        weight,
        rows,
        kernels: b.kernel_sources(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projections_are_the_decode_steps_matrices() {
        let c = crate::formats::random::shape("smollm2-135m").unwrap();
        let p = projections(&c);
        let names: Vec<&str> = p.iter().map(|p| p.name).collect();
        assert_eq!(names, ["qkv", "o_proj", "gate_up", "down", "lm_head"]);
        let shapes: Vec<String> = p.iter().map(Projection::shape).collect();
        assert_eq!(
            shapes,
            [
                "576+192+192 x 576",
                "576 x 576",
                "2·1536 x 576",
                "576 x 1536",
                "49152 x 576"
            ]
        );
        // One layer's matrices + the head: what a decode step reads per layer (and once).
        let layer: usize = p[..4].iter().map(|q| q.weight_bytes(DType::BF16)).sum();
        assert_eq!(layer, 2 * (576 * 960 + 576 * 576 + 3 * 576 * 1536));
        assert_eq!(p[4].weight_bytes(DType::BF16), 2 * 49152 * 576);
        assert_eq!(p[4].weight_bytes(DType::Q4_0), 49152 * 576 / 32 * 18);
        // The 8B shape: GQA 32/8 heads of 128, intermediate 14336.
        let c = crate::formats::random::shape("llama-3.1-8b").unwrap();
        let p = projections(&c);
        assert_eq!(p[0].rows(), 4096 + 2 * 1024);
        assert_eq!(p[2].rows(), 2 * 14336);
        assert_eq!((p[3].rows(), p[3].k), (4096, 14336));
        assert_eq!(p[4].rows(), 128256);
    }

    #[test]
    fn each_sample_streams_past_the_cache_in_at_most_256_copies() {
        assert_eq!(copies(1_050_000_000), 1, "the 8B LM head: one copy");
        assert_eq!(copies(50_000_000), 3);
        assert_eq!(
            copies(1_105_920),
            136,
            "SmolLM2 qkv: 150 MB over 1.1 MB copies"
        );
        assert_eq!(copies(1000), 256, "capped");
        assert!(copies(663_552) * 663_552 >= STREAM_BYTES);
    }

    #[test]
    fn the_table_has_a_row_per_projection_with_its_rates() {
        let c = crate::formats::random::shape("smollm2-135m").unwrap();
        let p = projections(&c).remove(0); // 960 x 576 bf16 = 1.10592 MB
        let row = GemvRow::new("smollm2-135m", p, DType::BF16, (0.001, 0.004), 2000.0);
        assert!((row.gemv_gb_s - 1105.92).abs() < 1e-6, "{}", row.gemv_gb_s);
        assert!((row.blas_gb_s - 276.48).abs() < 1e-6);
        assert!((row.gemv_pct_copy - 55.296).abs() < 1e-9);
        assert!((row.ratio - 0.25).abs() < 1e-12);
        let report = GemvReport {
            backend: "gpu".into(),
            device: "test".into(),
            copy_gb_s: 2000.0,
            reps: 20,
            weight: DType::BF16,
            rows: vec![row],
            kernels: vec![],
        };
        let md = report.markdown();
        assert!(md.contains("copy bandwidth: 2000.0 GB/s"), "{md}");
        assert!(
            md.contains("| model | projection | W (rows x in) |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| smollm2-135m | qkv | 576+192+192 x 576 | 1.11 | 1.0 | 1106 | 55.3% | 4.0 | 276 | 13.8% | 0.25 |"
            ),
            "{md}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["rows"][0]["projection"]["name"], "qkv");
        assert_eq!(
            json["rows"][0]["projection"]["kind"]["stacked"]["parts"][0],
            576
        );
    }

    #[test]
    fn random_weights_are_finite_bf16_of_both_signs() {
        let bytes = random_bf16_bytes(1000, 1);
        let v: Vec<f32> = bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect();
        assert!(v.iter().all(|x| (0.0078125..0.015625).contains(&x.abs())));
        assert!(v.iter().any(|&x| x < 0.0) && v.iter().any(|&x| x > 0.0));
    }
}
