//! What every case shares: seeded inputs that are never zero, values rounded to the storage
//! type both sides see, and guarded, poisoned outputs (DESIGN.md: guard regions catch
//! out-of-bounds writes; NaN poisoning makes unwritten elements fail).

use wavefront::backend::{Backend, TensorInfo};
use wavefront::kv_cache::{KvCache, KvLayout};
use wavefront::sampler::CoinRng;
use wavefront::{DType, Result};

use crate::compare::Comparison;

/// Guard elements after every output.
pub const GUARD: usize = 64;
/// What the guard elements hold; exactly representable in f32, f16 and bf16, and a block of it
/// is an exact Q8_0 block (−127 · 8: scale 8, quants −127).
pub const SENTINEL: f32 = -1016.0;

/// Seeded inputs: the engine's SplitMix64 stream (`CoinRng`), the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(CoinRng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(CoinRng::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        self.0.coin()
    }

    /// `n` values with magnitude in [0.1·scale, scale] and a random sign: never zero.
    pub fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.0.never_zero(scale)).collect()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Rounds to `dtype` (round-to-nearest-even) and back: the values both sides then see.
pub fn rounded(dtype: DType, mut v: Vec<f32>) -> Vec<f32> {
    wavefront::tensor::round_to(dtype, &mut v);
    v
}

/// `n` elements of the GGUF block type `dtype` as random blocks (values about `scale` in
/// magnitude, every quant bit pattern reachable): the file's bytes and the values they
/// dequantize to (exactly, `formats::quants`), which the reference gets.
pub fn block_values(dtype: DType, n: usize, scale: f32, rng: &mut Rng) -> (Vec<u8>, Vec<f32>) {
    let blocks = n.div_ceil(dtype.block_elems());
    let bytes = wavefront::formats::quants::random_blocks(dtype, blocks, scale, || rng.next_u64());
    let values = wavefront::formats::quants::dequantize(dtype, &bytes, n)
        .expect("random_blocks gives whole blocks");
    (bytes, values)
}

/// Little-endian bytes of `v` in `dtype` (F32, F16, BF16, the KV cache's Q8_0).
pub fn to_bytes(dtype: DType, v: &[f32]) -> Vec<u8> {
    wavefront::tensor::encode_f32(dtype, v).expect("test data is stored as F32, F16, BF16 or Q8_0")
}

pub fn upload<B: Backend>(b: &B, dtype: DType, v: &[f32]) -> Result<B::Tensor> {
    b.upload(dtype, &to_bytes(dtype, v))
}

/// `v` followed by `GUARD` sentinels.
pub fn with_guard(mut v: Vec<f32>) -> Vec<f32> {
    v.extend(std::iter::repeat_n(SENTINEL, GUARD));
    v
}

/// An output of `n` elements poisoned with NaN, followed by `GUARD` sentinels.
pub fn guarded<B: Backend>(b: &B, dtype: DType, n: usize) -> Result<B::Tensor> {
    upload(b, dtype, &with_guard(vec![f32::NAN; n]))
}

/// Downloads a guarded tensor: the first `n` elements, or a failure if a guard was touched.
pub fn read_guarded<B: Backend>(
    b: &B,
    t: &B::Tensor,
    n: usize,
) -> Result<std::result::Result<Vec<f32>, Comparison>> {
    let mut v = b.download_f32(t)?;
    // (a Q8_0 tensor may hold zero padding past its guard, to the end of its superblock)
    let guard_end = (n + GUARD).min(v.len());
    if let Some(i) = v[n..guard_end].iter().position(|&x| x != SENTINEL) {
        return Ok(Err(Comparison::fail(format!(
            "out-of-bounds write: guard element {i} past the end ({} elements) holds {}",
            n,
            v[n + i]
        ))));
    }
    v.truncate(n);
    Ok(Ok(v))
}

/// A KV cache over a NaN-poisoned, guarded arena.
pub fn poisoned_cache<B: Backend>(b: &B, layout: KvLayout) -> Result<KvCache<B::Tensor>> {
    let arena = guarded(b, layout.dtype, layout.elems())?;
    debug_assert!(arena.len() >= layout.elems());
    KvCache::from_arena(arena, layout)
}

/// Writes K and V for positions `0..len` of `layer` into a host copy of the arena and uploads
/// it: `k`, `v` are (n_kv_heads, len, head_dim), already rounded to the layout's dtype.
pub fn fill_cache<B: Backend>(
    b: &B,
    layout: KvLayout,
    layer: usize,
    k: &[f32],
    v: &[f32],
    len: usize,
) -> Result<KvCache<B::Tensor>> {
    let mut host = with_guard(vec![f32::NAN; layout.elems()]);
    let hd = layout.head_dim;
    for h in 0..layout.n_kv_heads {
        for p in 0..len {
            let src = (h * len + p) * hd;
            let dk = layout.offset(layer, 0, h, p);
            let dv = layout.offset(layer, 1, h, p);
            host[dk..dk + hd].copy_from_slice(&k[src..src + hd]);
            host[dv..dv + hd].copy_from_slice(&v[src..src + hd]);
        }
    }
    let mut cache = KvCache::from_arena(upload(b, layout.dtype, &host)?, layout)?;
    cache.set_len(len)?;
    Ok(cache)
}

/// The whole arena of a guarded cache, or a failure if a guard was touched.
pub fn read_arena<B: Backend>(
    b: &B,
    cache: &KvCache<B::Tensor>,
) -> Result<std::result::Result<Vec<f32>, Comparison>> {
    read_guarded(b, cache.arena(), cache.layout().elems())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_never_zero_and_seeded() {
        let a = Rng::new(3).values(10_000, 1.0);
        assert!(a.iter().all(|x| x.abs() >= 0.1 && x.abs() <= 1.0));
        assert_eq!(a, Rng::new(3).values(10_000, 1.0));
    }

    #[test]
    fn sentinel_survives_every_storage_type() {
        for d in [DType::F32, DType::F16, DType::BF16, DType::Q8_0Kv] {
            assert_eq!(rounded(d, vec![SENTINEL]), vec![SENTINEL]);
            assert_eq!(rounded(d, vec![SENTINEL; GUARD]), vec![SENTINEL; GUARD]);
        }
    }
}
