//! RoPE (Hugging Face rotate-half convention) fused with the KV write: rotates `q` in place,
//! rotates `k` into the cache and copies `v` beside it, for positions `pos0 .. pos0 + rows`.

use super::CpuTensor;
use crate::backend::{check_tensor, RopeKvParams};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::tensor::DType;

const OP: &str = "rope_kv_write";

/// Rotates one head vector `x (head_dim)` for position `pos`: with `h = head_dim / 2`,
/// `x[d] ← x[d]·cos − x[d+h]·sin`, `x[d+h] ← x[d+h]·cos + x[d]·sin`, angle `pos · inv_freq[d]`,
/// cos and sin multiplied by `inv_freq[h]` (the table's attention factor) first.
pub fn rotate(x: &mut [f32], pos: usize, inv_freq: &[f32]) {
    let h = x.len() / 2;
    let a = inv_freq[h];
    for d in 0..h {
        let angle = pos as f32 * inv_freq[d];
        let (sin, cos) = (angle.sin() * a, angle.cos() * a);
        let (a, b) = (x[d], x[d + h]);
        x[d] = a * cos - b * sin;
        x[d + h] = b * cos + a * sin;
    }
}

pub fn rope_kv_write(
    q: &mut CpuTensor,
    k: &CpuTensor,
    v: &CpuTensor,
    inv_freq: &CpuTensor,
    cache: &mut KvCache<CpuTensor>,
    p: RopeKvParams,
) -> Result<()> {
    let hd = p.head_dim;
    let (qd, kvd) = (p.n_heads * hd, p.n_kv_heads * hd);
    check_tensor("cpu", OP, "q", q, p.rows * qd, &[DType::F32])?;
    check_tensor("cpu", OP, "k", k, p.rows * kvd, &[DType::F32])?;
    check_tensor("cpu", OP, "v", v, p.rows * kvd, &[DType::F32])?;
    check_tensor("cpu", OP, "inv_freq", inv_freq, hd / 2 + 1, &[DType::F32])?;
    let layout = *cache.layout();
    if !hd.is_multiple_of(2)
        || layout.head_dim != hd
        || layout.n_kv_heads != p.n_kv_heads
        || p.layer >= layout.n_layers
    {
        return Err(Error::Backend {
            backend: "cpu",
            op: OP.into(),
            detail: format!("params {p:?} do not match the KV layout {layout:?}"),
        });
    }
    if p.pos0 + p.rows > layout.capacity {
        return Err(Error::ContextFull {
            capacity: layout.capacity,
            requested: p.pos0 + p.rows,
        });
    }
    let inv_freq = &inv_freq.f32(OP, "inv_freq")?[..hd / 2 + 1];
    let (k, v) = (k.f32(OP, "k")?, v.f32(OP, "v")?);
    for (i, qrow) in q.f32_mut(OP, "q")?.chunks_mut(qd).take(p.rows).enumerate() {
        let pos = p.pos0 + i;
        // (n_heads, head_dim): rotate each query head in place
        for head in qrow.chunks_mut(hd) {
            rotate(head, pos, inv_freq);
        }
        // (n_kv_heads, head_dim): rotated K and plain V into the arena at `pos`
        let mut kh = vec![0.0f32; hd];
        for h in 0..p.n_kv_heads {
            let src = i * kvd + h * hd;
            kh.copy_from_slice(&k[src..src + hd]);
            rotate(&mut kh, pos, inv_freq);
            cache
                .arena_mut()
                .write_f32(layout.offset(p.layer, 0, h, pos), &kh);
            cache
                .arena_mut()
                .write_f32(layout.offset(p.layer, 1, h, pos), &v[src..src + hd]);
        }
    }
    Ok(())
}
