//! Causal grouped-query attention over the KV cache (prefill and decode are the same loop):
//! for query row `i` at position `p = pos0 + i` and head `h`, with KV head `h / group`,
//! `out = softmax(cap(q·Kᵀ · scale) over keys 0..=p) · V`, `cap` Gemma 2's soft-cap
//! `c · tanh(s / c)` where the params set one (else the identity).

use super::{simd, CpuTensor};
use crate::backend::{check_tensor, softcap, window_start, AttentionParams};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::tensor::DType;

const OP: &str = "attention";

pub fn attention(
    q: &CpuTensor,
    cache: &KvCache<CpuTensor>,
    out: &mut CpuTensor,
    p: AttentionParams,
) -> Result<()> {
    let hd = p.head_dim;
    let qd = p.n_heads * hd;
    check_tensor("cpu", OP, "q", q, p.rows * qd, &[DType::F32])?;
    check_tensor("cpu", OP, "out", out, p.rows * qd, &[DType::F32])?;
    let layout = *cache.layout();
    let kv_len = p.pos0 + p.rows;
    if p.n_kv_heads == 0
        || !p.n_heads.is_multiple_of(p.n_kv_heads)
        || layout.head_dim != hd
        || layout.n_kv_heads != p.n_kv_heads
        || p.layer >= layout.n_layers
        || kv_len > layout.capacity
    {
        return Err(Error::Backend {
            backend: "cpu",
            op: OP.into(),
            detail: format!("params {p:?} do not match the KV layout {layout:?}"),
        });
    }
    p.check_scores("cpu", OP)?;
    let group = p.n_heads / p.n_kv_heads;
    let (scale, cap) = (p.scale(), p.softcap);
    let q = &q.f32(OP, "q")?[..p.rows * qd];
    let arena = cache.arena();
    // One task per (row, head): out[(row, head)] is a contiguous run of head_dim.
    let task = |(task, o): (usize, &mut [f32])| {
        let (i, h) = (task / p.n_heads, task % p.n_heads);
        let kvh = h / group;
        // causal, within the window: positions first..=pos0+i
        let first = window_start(p.pos0 + i, p.window);
        let keys = first..p.pos0 + i + 1;
        let qh = &q[i * qd + h * hd..i * qd + (h + 1) * hd];
        let mut row = vec![0.0f32; hd];
        // scores (keys)
        let mut scores: Vec<f32> = keys
            .map(|j| {
                arena.read_f32(layout.offset(p.layer, 0, kvh, j), &mut row);
                let s = simd::dot(qh, &row) * scale;
                cap.map_or(s, |c| softcap(s, c))
            })
            .collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        // (head_dim) ← Σ_j softmax_j · V[j]
        o.fill(0.0);
        for (j, &s) in (first..).zip(&scores) {
            arena.read_f32(layout.offset(p.layer, 1, kvh, j), &mut row);
            simd::axpy(s / sum, &row, o);
        }
    };
    let out = &mut out.f32_mut(OP, "out")?[..p.rows * qd];
    // Parallel over (row, head) once there is enough work to pay for the thread pool's wake-ups.
    if p.rows * p.n_heads * kv_len * hd < 1 << 16 {
        out.chunks_mut(hd).enumerate().for_each(task);
    } else {
        super::pool::pool().chunks(out, hd, |i, o| task((i, o)));
    }
    Ok(())
}
