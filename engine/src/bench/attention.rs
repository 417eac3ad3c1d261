//! `wavefront bench --attention`: one decode step's attention of a model shape at given KV depths
//! — the fused kernel (`kernels/decode_attention.hip`: RoPE, the KV write and split-K attention)
//! against the separate RoPE and phase-1 attention kernels it replaced — on random f16 K/V. A
//! decode step's attention must read the K and V of every cached position once, so its floor is
//! those bytes / bandwidth: each row reports the achieved GB/s over them and its share of the
//! device's measured copy bandwidth.
//!
//! Each timed sample calls the op once per layer of an arena of enough layers (at least
//! [`super::gemv::STREAM_BYTES`] of K/V in all) that no call finds its K/V in the last-level
//! cache, as in decode where each layer's cache is read once per token. The separate kernels are
//! timed up to depth [`SEPARATE_MAX_DEPTH`] (past it the phase-1 kernel takes seconds a sample).
//!
//! Prefill: the causal attention of `len` query rows from position 0 over bf16 K/V (RoPE and the
//! KV write are not timed), the flash kernel (`kernels/flash_attention.hip`) against the simple
//! kernel (`kernels/attention.hip`, to [`SIMPLE_MAX_LEN`] rows), in TFLOP/s of the FlashAttention
//! benchmarks' count: `4 · len² / 2 · head_dim · n_heads` (QKᵀ and PV over the causal half), as
//! torch's `scaled_dot_product_attention` figures in `../shared/anchors/` are counted.

use serde::Serialize;

use super::copy_bandwidth;
use super::gemv::{copies, random_16bit_bytes, time, MIN_REPS};
use crate::backend::gpu::GpuBackend;
use crate::backend::{unfused, AttentionParams, Backend, KernelSource};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::kv_cache::{KvCache, KvLayout};
use crate::tensor::DType;

/// Default depths (positions already cached before the step).
pub const DEPTHS: [usize; 3] = [1024, 8192, 32768];

/// The deepest cache the separate kernels are timed at.
pub const SEPARATE_MAX_DEPTH: usize = 8192;

/// Default prefill lengths (query rows from position 0).
pub const PREFILL_LENS: [usize; 3] = [512, 4096, 16384];

/// The longest prefill the simple kernel is timed at.
pub const SIMPLE_MAX_LEN: usize = 4096;

/// Floating-point operations of a causal prefill of `len` rows (QKᵀ and PV, 2 a multiply-add,
/// over the causal half of the `len × len` scores), as the FlashAttention benchmarks count them.
pub fn prefill_flops(c: &ModelConfig, len: usize) -> f64 {
    4.0 * (len as f64).powi(2) / 2.0 * c.head_dim as f64 * c.n_heads as f64
}

/// K and V bytes of `len` positions of one layer: what the step's attention reads at least
/// (`KvLayout::bytes_per_position`; Q8_0: 34 bytes a block of 32).
pub fn kv_bytes(c: &ModelConfig, len: usize, kv: DType) -> usize {
    let layer = KvLayout {
        n_layers: 1,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        capacity: len,
        dtype: kv,
    };
    layer.bytes_per_position() * len
}

#[derive(Debug, Clone, Serialize)]
pub struct AttentionRow {
    pub model: String,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Positions cached before the step (the step attends over depth + 1).
    pub depth: usize,
    /// K/V bytes of the depth + 1 positions.
    pub kv_bytes: usize,
    pub fused_us: f64,
    pub fused_gb_s: f64,
    pub fused_pct_copy: f64,
    /// The separate kernels (None past [`SEPARATE_MAX_DEPTH`]).
    pub separate_us: Option<f64>,
    pub separate_gb_s: Option<f64>,
    /// fused_us / separate_us.
    pub ratio: Option<f64>,
}

impl AttentionRow {
    fn new(
        model: &str,
        c: &ModelConfig,
        (depth, kv): (usize, DType),
        fused_ms: f64,
        separate_ms: Option<f64>,
        copy_gb_s: f64,
    ) -> Self {
        let bytes = kv_bytes(c, depth + 1, kv);
        let gb_s = |ms: f64| bytes as f64 / (ms * 1e-3) / 1e9;
        AttentionRow {
            model: model.to_string(),
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            depth,
            kv_bytes: bytes,
            fused_us: fused_ms * 1e3,
            fused_gb_s: gb_s(fused_ms),
            fused_pct_copy: 100.0 * gb_s(fused_ms) / copy_gb_s,
            separate_us: separate_ms.map(|ms| ms * 1e3),
            separate_gb_s: separate_ms.map(gb_s),
            ratio: separate_ms.map(|s| fused_ms / s),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PrefillRow {
    pub model: String,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Query rows, from position 0.
    pub len: usize,
    /// [`prefill_flops`].
    pub flops: f64,
    pub flash_us: f64,
    pub flash_tflop_s: f64,
    /// The simple kernel (None past [`SIMPLE_MAX_LEN`]).
    pub simple_us: Option<f64>,
    pub simple_tflop_s: Option<f64>,
    /// simple_us / flash_us.
    pub speedup: Option<f64>,
}

impl PrefillRow {
    fn new(
        model: &str,
        c: &ModelConfig,
        len: usize,
        flash_ms: f64,
        simple_ms: Option<f64>,
    ) -> Self {
        let flops = prefill_flops(c, len);
        let tflop_s = |ms: f64| flops / (ms * 1e-3) / 1e12;
        PrefillRow {
            model: model.to_string(),
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            len,
            flops,
            flash_us: flash_ms * 1e3,
            flash_tflop_s: tflop_s(flash_ms),
            simple_us: simple_ms.map(|ms| ms * 1e3),
            simple_tflop_s: simple_ms.map(tflop_s),
            speedup: simple_ms.map(|s| s / flash_ms),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AttentionReport {
    pub backend: String,
    pub device: String,
    /// Device-to-device copy, bytes read + written per second (median).
    pub copy_gb_s: f64,
    pub reps: usize,
    /// The decode rows' KV type.
    pub kv: String,
    pub rows: Vec<AttentionRow>,
    /// Prefill attention per shape and length (empty when none was asked for).
    pub prefill: Vec<PrefillRow>,
    pub kernels: Vec<KernelSource>,
}

impl AttentionReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Decode attention microbenchmark, one query row, {} K/V | backend: {} | device: {} | copy bandwidth: {:.1} GB/s | median of {} reps after a warm-up, each rep one call per layer of an arena past the L2 (≥ 150 MB of K/V); fused: decode_attention (RoPE, KV write, split-K attention); separate: rope_kv_write + attention_decode (to depth {SEPARATE_MAX_DEPTH}); GB/s = K/V bytes of the cached positions / time; ratio = fused time / separate time\n\n",
            self.kv, self.backend, self.device, self.copy_gb_s, self.reps
        );
        if let Some(k) = crate::backend::describe_kernels(&self.kernels) {
            s.push_str(&format!("kernels: {k}\n\n"));
        }
        s.push_str(
            "| model | heads (q/kv × dim) | depth | K/V MB | fused µs | fused GB/s | % copy | separate µs | separate GB/s | ratio |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "—".to_string(), |v| format!("{v:.digits$}"))
        };
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {}/{} × {} | {} | {:.2} | {:.1} | {:.0} | {:.1}% | {} | {} | {} |\n",
                r.model,
                r.n_heads,
                r.n_kv_heads,
                r.head_dim,
                r.depth,
                r.kv_bytes as f64 / 1e6,
                r.fused_us,
                r.fused_gb_s,
                r.fused_pct_copy,
                opt(r.separate_us, 1),
                opt(r.separate_gb_s, 0),
                opt(r.ratio, 2),
            ));
        }
        if !self.prefill.is_empty() {
            s.push_str(&format!(
                "\nPrefill attention, causal from position 0, bf16 K/V (RoPE and the KV write not timed), median of {} reps after a warm-up; flash: flash_attention (matrix instructions); simple: attention (f32, to {SIMPLE_MAX_LEN} rows); TFLOP/s = 4 · len²/2 · head_dim · heads / time; speedup = simple time / flash time\n\n\
                 | model | heads (q/kv × dim) | len | GFLOP | flash µs | flash TFLOP/s | simple µs | simple TFLOP/s | speedup |\n\
                 |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
                self.reps
            ));
            for r in &self.prefill {
                s.push_str(&format!(
                    "| {} | {}/{} × {} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} |\n",
                    r.model,
                    r.n_heads,
                    r.n_kv_heads,
                    r.head_dim,
                    r.len,
                    r.flops / 1e9,
                    r.flash_us,
                    r.flash_tflop_s,
                    opt(r.simple_us, 1),
                    opt(r.simple_tflop_s, 2),
                    opt(r.speedup, 1),
                ));
            }
        }
        s
    }
}

/// `n` bf16 values of magnitude in [0.5, 1) with random signs, as bytes.
fn random_bf16_kv_bytes(n: usize, seed: u64) -> Vec<u8> {
    random_16bit_bytes(n, seed, |r| (r & 0x8000) | 0x3f00 | (r & 0x007f))
}

/// Times one shape's prefill of `len` rows: (flash ms, simple ms where timed). Leaves `b`
/// taking the flash kernel.
fn measure_prefill(
    b: &mut GpuBackend,
    c: &ModelConfig,
    len: usize,
    reps: usize,
) -> Result<(f64, Option<f64>)> {
    let layout = KvLayout {
        n_layers: 1,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        capacity: len,
        dtype: DType::BF16,
    };
    let arena = b.upload(DType::BF16, &random_bf16_kv_bytes(layout.elems(), 13))?;
    let mut cache = KvCache::from_arena(arena, layout)?;
    cache.set_len(len)?;
    let qd = c.n_heads * c.head_dim;
    let q = b.upload_f32(&crate::formats::random::values(len * qd, 5))?;
    let mut out = b.alloc(DType::F32, len * qd)?;
    let params = AttentionParams {
        layer: 0,
        pos0: 0,
        rows: len,
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        window: None,
        score_scale: None,
        softcap: None,
    };
    let mut run = |b: &GpuBackend| {
        time(b, reps, 1, &mut |_| {
            b.attention(&q, &cache, &mut out, params, None)
        })
    };
    b.set_flash_attention(true);
    let flash = run(b)?;
    let simple = if len <= SIMPLE_MAX_LEN {
        b.set_flash_attention(false);
        let t = run(b);
        b.set_flash_attention(true);
        Some(t?)
    } else {
        None
    };
    Ok((flash, simple))
}

/// `n` f16 values of magnitude in [0.5, 1) with random signs, as bytes.
fn random_f16_bytes(n: usize, seed: u64) -> Vec<u8> {
    random_16bit_bytes(n, seed, |r| (r & 0x8000) | 0x3800 | (r & 0x03ff))
}

/// Times one shape at one depth over K/V of `kv` (F16 or Q8_0): (fused ms, separate ms where
/// timed).
fn measure(
    b: &GpuBackend,
    c: &ModelConfig,
    (depth, kv): (usize, DType),
    reps: usize,
) -> Result<(f64, Option<f64>)> {
    let cap = depth + 1;
    let layers = copies(kv_bytes(c, cap, kv));
    let layout = KvLayout {
        n_layers: layers,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        capacity: cap,
        dtype: kv,
    };
    let bytes = match kv {
        DType::F16 => random_f16_bytes(layout.elems(), 11),
        DType::Q8_0Kv => {
            // the f16 values' distribution, quantized
            let f16 = random_f16_bytes(layout.elems(), 11);
            let v: Vec<f32> = f16
                .chunks_exact(2)
                .map(|h| half::f16::from_le_bytes([h[0], h[1]]).to_f32())
                .collect();
            crate::kv_quant::encode(&v)
        }
        other => {
            return Err(Error::InvalidRequest(format!(
                "bench --attention: decode rows over f16 or q8_0 K/V, not {other}"
            )))
        }
    };
    let arena = b.upload(kv, &bytes)?;
    let mut cache = KvCache::from_arena(arena, layout)?;
    cache.set_len(depth)?;
    let (qd, kvd) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
    let mut q = b.upload_f32(&crate::formats::random::values(qd, 1))?;
    let k = b.upload_f32(&crate::formats::random::values(kvd, 2))?;
    let v = b.upload_f32(&crate::formats::random::values(kvd, 3))?;
    let inv_freq = b.upload_f32(&crate::rope::table(
        crate::rope::inv_freq(c),
        crate::rope::attention_factor(c),
    ))?;
    let mut out = b.alloc(DType::F32, qd)?;
    let params = |layer| AttentionParams {
        layer,
        pos0: depth,
        rows: 1,
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        window: None,
        score_scale: None,
        softcap: None,
    };
    let fused = time(b, reps, layers, &mut |l| {
        b.rope_attention(
            &mut q,
            &k,
            &v,
            &inv_freq,
            &mut cache,
            &mut out,
            params(l),
            None,
        )
    })?;
    let separate = if depth <= SEPARATE_MAX_DEPTH {
        Some(time(b, reps, layers, &mut |l| {
            let (q, cache, out) = (&mut q, &mut cache, &mut out);
            unfused::rope_attention(b, q, &k, &v, &inv_freq, cache, out, params(l), None)
        })?)
    } else {
        None
    };
    Ok((fused, separate))
}

/// One shape's part of the benchmark: decode depths and prefill lengths.
#[derive(Debug, Clone)]
pub struct ShapePlan<'a> {
    pub name: &'a str,
    pub config: ModelConfig,
    pub depths: Vec<usize>,
    pub lens: Vec<usize>,
}

/// What to measure: each shape of `shapes` with its decode depths and prefill lengths. `depths`
/// given: each must fit the shape's context (a step at depth d needs d + 1 positions), else an
/// error; `None`: the [`DEPTHS`] that fit it. `lens` likewise (a prefill of n rows needs n
/// positions, n ≥ 2), with [`PREFILL_LENS`] the default.
pub fn plan<'a>(
    shapes: &[&'a str],
    depths: Option<&[usize]>,
    lens: Option<&[usize]>,
) -> Result<Vec<ShapePlan<'a>>> {
    if shapes.is_empty()
        || depths.is_some_and(|d| d.is_empty())
        || lens.is_some_and(|l| l.is_empty())
    {
        return Err(Error::InvalidRequest(
            "bench --attention: no model shapes, depths or prefill lengths".into(),
        ));
    }
    if let Some(&n) = lens.into_iter().flatten().find(|&&n| n < 2) {
        return Err(Error::InvalidRequest(format!(
            "bench --attention: prefill length {n}: a prefill is at least 2 rows (1 is decode)"
        )));
    }
    let mut out = Vec::new();
    for &name in shapes {
        let c = crate::formats::random::shape(name)?;
        let ctx = c.max_position_embeddings;
        let pick = |given: Option<&[usize]>, default: &[usize], need: fn(usize) -> usize, what| {
            match given {
                Some(v) => match v.iter().find(|&&x| need(x) > ctx) {
                    Some(x) => Err(Error::InvalidRequest(format!(
                        "bench --attention: {what} {x} is past {name}'s context of {ctx} positions"
                    ))),
                    None => Ok(v.to_vec()),
                },
                None => Ok(default
                    .iter()
                    .copied()
                    .filter(|&x| need(x) <= ctx)
                    .collect()),
            }
        };
        let depths = pick(depths, &DEPTHS, |d| d + 1, "depth")?;
        let lens = pick(lens, &PREFILL_LENS, |n| n, "prefill length")?;
        out.push(ShapePlan {
            name,
            config: c,
            depths,
            lens,
        });
    }
    Ok(out)
}

/// Runs the attention microbenchmark for the model shapes `shapes` (names of
/// [`crate::formats::random::shape`]) at `depths` and prefill lengths `lens` ([`plan`]), with
/// at least [`MIN_REPS`] repetitions.
pub fn run(
    b: &mut GpuBackend,
    shapes: &[&str],
    (depths, kv): (Option<&[usize]>, DType),
    lens: Option<&[usize]>,
    reps: usize,
) -> Result<AttentionReport> {
    let plan = plan(shapes, depths, lens)?;
    let reps = reps.max(MIN_REPS);
    let copy_gb_s = copy_bandwidth(b, 256 << 20, reps)?;
    let mut rows = Vec::new();
    let mut prefill = Vec::new();
    for p in plan {
        let c = &p.config;
        for depth in p.depths {
            let (fused, separate) = measure(b, c, (depth, kv), reps)?;
            rows.push(AttentionRow::new(
                p.name,
                c,
                (depth, kv),
                fused,
                separate,
                copy_gb_s,
            ));
        }
        for len in p.lens {
            let (flash, simple) = measure_prefill(b, c, len, reps)?;
            prefill.push(PrefillRow::new(p.name, c, len, flash, simple));
        }
    }
    Ok(AttentionReport {
        backend: b.name().to_string(),
        device: b.device(),
        copy_gb_s,
        reps,
        kv: crate::kv_cache::kv_type_name(kv),
        rows,
        prefill,
        kernels: b.kernel_sources(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_cached_k_and_v() {
        let c = crate::formats::random::shape("llama-3.1-8b").unwrap();
        // 8 KV heads of 128, K and V, 2 bytes: 4 KiB a position.
        assert_eq!(kv_bytes(&c, 1, DType::F16), 4096);
        assert_eq!(kv_bytes(&c, 8193, DType::F16), 8193 * 4096);
        assert_eq!(kv_bytes(&c, 1, DType::Q8_0Kv), 4096 / 64 * 34); // 34 bytes a block of 32
                                                                    // Past the L2 in copies of a layer: 32 MiB at depth 8192 → 5 layers for 150 MB.
        assert_eq!(copies(kv_bytes(&c, 8193, DType::F16)), 5);
    }

    #[test]
    fn the_table_has_a_row_per_shape_and_depth_with_its_rates() {
        let c = crate::formats::random::shape("llama-3.2-1b").unwrap();
        // depth 8191: 8192 positions × 8 heads × 64 dims × 2 × 2 bytes = 16.777216 MB
        let row = AttentionRow::new(
            "llama-3.2-1b",
            &c,
            (8191, DType::F16),
            0.01,
            Some(0.04),
            2000.0,
        );
        assert_eq!(row.kv_bytes, 16_777_216);
        assert!(
            (row.fused_gb_s - 1677.7216).abs() < 1e-6,
            "{}",
            row.fused_gb_s
        );
        assert!((row.fused_pct_copy - 83.88608).abs() < 1e-9);
        assert!((row.ratio.unwrap() - 0.25).abs() < 1e-12);
        let deep = AttentionRow::new("llama-3.2-1b", &c, (32768, DType::F16), 0.02, None, 2000.0);
        let report = AttentionReport {
            kv: "f16".into(),
            backend: "gpu".into(),
            device: "test".into(),
            copy_gb_s: 2000.0,
            reps: 20,
            rows: vec![row, deep],
            prefill: vec![],
            kernels: vec![],
        };
        let md = report.markdown();
        assert!(md.contains("copy bandwidth: 2000.0 GB/s"), "{md}");
        assert!(
            md.contains("| llama-3.2-1b | 32/8 × 64 | 8191 | 16.78 | 10.0 | 1678 | 83.9% | 40.0 | 419 | 0.25 |"),
            "{md}"
        );
        assert!(
            md.contains("| 32768 |") && md.contains("| — | — | — |"),
            "{md}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["rows"][1]["separate_us"], serde_json::Value::Null);
    }

    #[test]
    fn default_depths_and_lengths_fit_each_shape_and_given_ones_must() {
        let p = plan(&["smollm2-135m", "llama-3.2-1b"], None, None).unwrap();
        assert_eq!(p[0].depths, [1024], "SmolLM2's context is 8192 positions");
        assert_eq!(p[0].lens, [512, 4096]);
        assert_eq!(p[1].depths, DEPTHS);
        assert_eq!(p[1].lens, PREFILL_LENS);
        let e = plan(&["smollm2-135m"], Some(&[8192]), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("depth 8192 is past smollm2-135m's context"),
            "{e}"
        );
        // 8192 rows fit 8192 positions; 8193 do not.
        let p = plan(&["smollm2-135m"], None, Some(&[8192])).unwrap();
        assert_eq!(p[0].lens, [8192]);
        let e = plan(&["smollm2-135m"], None, Some(&[8193]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("prefill length 8193 is past"), "{e}");
        let e = plan(&["llama-3.2-1b"], None, Some(&[1]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 2 rows"), "{e}");
        assert!(plan(&["llama-3.2-1b"], Some(&[]), None).is_err());
        assert!(plan(&["llama-3.2-1b"], None, Some(&[])).is_err());
    }

    #[test]
    fn prefill_rows_count_the_causal_half_in_tflop_s() {
        let c = crate::formats::random::shape("llama-3.1-8b").unwrap();
        // 4 · 4096² / 2 · 128 · 32 = 137.438953472 GFLOP.
        assert_eq!(prefill_flops(&c, 4096), 137_438_953_472.0);
        let r = PrefillRow::new("llama-3.1-8b", &c, 4096, 0.5, Some(20.0));
        assert!(
            (r.flash_tflop_s - 274.877906944).abs() < 1e-9,
            "{}",
            r.flash_tflop_s
        );
        assert!((r.speedup.unwrap() - 40.0).abs() < 1e-12);
        let long = PrefillRow::new("llama-3.1-8b", &c, 16384, 8.0, None);
        let report = AttentionReport {
            kv: "f16".into(),
            backend: "gpu".into(),
            device: "test".into(),
            copy_gb_s: 2000.0,
            reps: 20,
            rows: vec![],
            prefill: vec![r, long],
            kernels: vec![],
        };
        let md = report.markdown();
        assert!(
            md.contains("| llama-3.1-8b | 32/8 × 128 | 4096 | 137.4 | 500.0 | 274.9 | 20000.0 | 6.87 | 40.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| 16384 | 2199.0 | 8000.0 | 274.9 | — | — | — |"),
            "{md}"
        );
    }

    #[test]
    fn random_bf16_kv_is_finite_of_both_signs() {
        let v: Vec<f32> = random_bf16_kv_bytes(1000, 1)
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect();
        assert!(v.iter().all(|x| (0.5..1.0).contains(&x.abs())));
        assert!(v.iter().any(|&x| x < 0.0) && v.iter().any(|&x| x > 0.0));
    }

    #[test]
    fn random_kv_is_finite_f16_of_both_signs() {
        let v: Vec<f32> = random_f16_bytes(1000, 1)
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect();
        assert!(v.iter().all(|x| (0.5..1.0).contains(&x.abs())));
        assert!(v.iter().any(|&x| x < 0.0) && v.iter().any(|&x| x > 0.0));
    }
}
