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

/// K and V bytes of `len` positions of one layer: what the step's attention reads at least.
pub fn kv_bytes(c: &ModelConfig, len: usize, kv: DType) -> usize {
    2 * c.n_kv_heads * len * c.head_dim * kv.block_bytes()
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
        depth: usize,
        fused_ms: f64,
        separate_ms: Option<f64>,
        copy_gb_s: f64,
    ) -> Self {
        let bytes = kv_bytes(c, depth + 1, DType::F16);
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
pub struct AttentionReport {
    pub backend: String,
    pub device: String,
    /// Device-to-device copy, bytes read + written per second (median).
    pub copy_gb_s: f64,
    pub reps: usize,
    pub rows: Vec<AttentionRow>,
    pub kernels: Vec<KernelSource>,
}

impl AttentionReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Decode attention microbenchmark, one query row, f16 K/V | backend: {} | device: {} | copy bandwidth: {:.1} GB/s | median of {} reps after a warm-up, each rep one call per layer of an arena past the L2 (≥ 150 MB of K/V); fused: decode_attention (RoPE, KV write, split-K attention); separate: rope_kv_write + attention_decode (to depth {SEPARATE_MAX_DEPTH}); GB/s = K/V bytes of the cached positions / time; ratio = fused time / separate time\n\n",
            self.backend, self.device, self.copy_gb_s, self.reps
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
        s
    }
}

/// `n` f16 values of magnitude in [0.5, 1) with random signs, as bytes.
fn random_f16_bytes(n: usize, seed: u64) -> Vec<u8> {
    random_16bit_bytes(n, seed, |r| (r & 0x8000) | 0x3800 | (r & 0x03ff))
}

/// Times one shape at one depth: (fused ms, separate ms where timed).
fn measure(
    b: &GpuBackend,
    c: &ModelConfig,
    depth: usize,
    reps: usize,
) -> Result<(f64, Option<f64>)> {
    let cap = depth + 1;
    let layers = copies(kv_bytes(c, cap, DType::F16));
    let layout = KvLayout {
        n_layers: layers,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        capacity: cap,
        dtype: DType::F16,
    };
    let arena = b.upload(DType::F16, &random_f16_bytes(layout.elems(), 11))?;
    let mut cache = KvCache::from_arena(arena, layout)?;
    cache.set_len(depth)?;
    let (qd, kvd) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
    let mut q = b.upload_f32(&crate::formats::random::values(qd, 1))?;
    let k = b.upload_f32(&crate::formats::random::values(kvd, 2))?;
    let v = b.upload_f32(&crate::formats::random::values(kvd, 3))?;
    let inv_freq = b.upload_f32(&crate::rope::inv_freq(c))?;
    let mut out = b.alloc(DType::F32, qd)?;
    let params = |layer| AttentionParams {
        layer,
        pos0: depth,
        rows: 1,
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
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

/// What to measure: each shape of `shapes` with its depths. `depths` given: each must fit the
/// shape's context (a step at depth d needs d + 1 positions), else an error; `None`: the
/// [`DEPTHS`] that fit it.
pub fn plan<'a>(
    shapes: &[&'a str],
    depths: Option<&[usize]>,
) -> Result<Vec<(&'a str, ModelConfig, Vec<usize>)>> {
    if shapes.is_empty() || depths.is_some_and(|d| d.is_empty()) {
        return Err(Error::InvalidRequest(
            "bench --attention: no model shapes or no depths".into(),
        ));
    }
    let mut out = Vec::new();
    for &name in shapes {
        let c = crate::formats::random::shape(name)?;
        let fits = |d: usize| d < c.max_position_embeddings;
        let ds = match depths {
            Some(ds) => {
                if let Some(&d) = ds.iter().find(|&&d| !fits(d)) {
                    return Err(Error::InvalidRequest(format!(
                        "bench --attention: depth {d} is past {name}'s context of {} positions",
                        c.max_position_embeddings
                    )));
                }
                ds.to_vec()
            }
            None => DEPTHS.into_iter().filter(|&d| fits(d)).collect(),
        };
        out.push((name, c, ds));
    }
    Ok(out)
}

/// Runs the attention microbenchmark for the model shapes `shapes` (names of
/// [`crate::formats::random::shape`]) at `depths` ([`plan`]), with at least [`MIN_REPS`]
/// repetitions.
pub fn run(
    b: &GpuBackend,
    shapes: &[&str],
    depths: Option<&[usize]>,
    reps: usize,
) -> Result<AttentionReport> {
    let plan = plan(shapes, depths)?;
    let reps = reps.max(MIN_REPS);
    let copy_gb_s = copy_bandwidth(b, 256 << 20, reps)?;
    let mut rows = Vec::new();
    for (name, c, depths) in plan {
        for depth in depths {
            let (fused, separate) = measure(b, &c, depth, reps)?;
            rows.push(AttentionRow::new(
                name, &c, depth, fused, separate, copy_gb_s,
            ));
        }
    }
    Ok(AttentionReport {
        backend: b.name().to_string(),
        device: b.device(),
        copy_gb_s,
        reps,
        rows,
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
        // Past the L2 in copies of a layer: 32 MiB at depth 8192 → 5 layers for 150 MB.
        assert_eq!(copies(kv_bytes(&c, 8193, DType::F16)), 5);
    }

    #[test]
    fn the_table_has_a_row_per_shape_and_depth_with_its_rates() {
        let c = crate::formats::random::shape("llama-3.2-1b").unwrap();
        // depth 8191: 8192 positions × 8 heads × 64 dims × 2 × 2 bytes = 16.777216 MB
        let row = AttentionRow::new("llama-3.2-1b", &c, 8191, 0.01, Some(0.04), 2000.0);
        assert_eq!(row.kv_bytes, 16_777_216);
        assert!(
            (row.fused_gb_s - 1677.7216).abs() < 1e-6,
            "{}",
            row.fused_gb_s
        );
        assert!((row.fused_pct_copy - 83.88608).abs() < 1e-9);
        assert!((row.ratio.unwrap() - 0.25).abs() < 1e-12);
        let deep = AttentionRow::new("llama-3.2-1b", &c, 32768, 0.02, None, 2000.0);
        let report = AttentionReport {
            backend: "gpu".into(),
            device: "test".into(),
            copy_gb_s: 2000.0,
            reps: 20,
            rows: vec![row, deep],
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
    fn default_depths_fit_each_shape_and_given_ones_must() {
        let p = plan(&["smollm2-135m", "llama-3.2-1b"], None).unwrap();
        assert_eq!(p[0].2, [1024], "SmolLM2's context is 8192 positions");
        assert_eq!(p[1].2, DEPTHS);
        let e = plan(&["smollm2-135m"], Some(&[8192]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("depth 8192 is past smollm2-135m's context"),
            "{e}"
        );
        assert!(plan(&["llama-3.2-1b"], Some(&[])).is_err());
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
