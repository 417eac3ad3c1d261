//! Causal grouped-query attention over the KV cache (prefill and decode are the same loop):
//! for query row `i` at position `p = pos0 + i` and head `h`, with KV head `h / group`,
//! `out = softmax(cap(q·Kᵀ · scale) over keys 0..=p) · V`, `cap` Gemma 2's soft-cap
//! `c · tanh(s / c)` where the params set one (else the identity).
//!
//! The keys a row sees are cut into chunks of [`CHUNK`] from the first (the window's start, or
//! 0), a cut that depends on the row's position only. Each chunk gives, for every query head of
//! a KV head's group (the group reads each key and value row once), its scores' max `m`, the sum
//! `l` of `exp(s − m)` and `acc = Σ exp(s − m)·V`; the chunks are then combined in order
//! (`M = max m`, `out = Σ acc·e^(m−M) / Σ l·e^(m−M)`). The chunks run in parallel when a decode
//! step has too few KV heads to occupy the threads, or one after another inside a task per
//! (row, KV head) otherwise: the same arithmetic either way, so a row's result never depends on
//! the number of rows, the threads, or which way ran (batch invariance, speculation's rows as
//! steps), and it is the same at every SIMD level (the bodies are compiled per level, not
//! rewritten: the lanes and their order are fixed).

use super::qrow::{level, Level};
use super::{pool::pool, simd, CpuTensor};
use crate::backend::{check_tensor, softcap, window_start, AttentionParams};
use crate::error::{Error, Result};
use crate::kv_cache::{KvCache, KvLayout};
use crate::tensor::DType;

const OP: &str = "attention";

/// Keys a chunk takes.
const CHUNK: usize = 256;
/// Keys converted at a time from a 16-bit or Q8_0 cache (an f32 cache is read in place).
const KEY_BLOCK: usize = 16;
/// Lanes of the dot products (their order fixed; see `dot`).
const LANES: usize = 16;
/// Below this many multiply-adds a call runs on the caller alone.
const SERIAL_WORK: usize = 1 << 16;
/// Most f32 of partial results a chunk-parallel call keeps; past it, chunks run in order
/// inside their row's task (the same arithmetic).
const MAX_PARTIALS: usize = 1 << 22;

pub fn attention(
    q: &CpuTensor,
    cache: &KvCache<CpuTensor>,
    out: &mut CpuTensor,
    p: AttentionParams,
) -> Result<()> {
    attention_at(level(), q, cache, out, p)
}

/// [`attention`] with the chunks' bodies compiled for `level` (which the CPU must have).
fn attention_at(
    level: Level,
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
    if p.rows == 0 {
        return Ok(());
    }
    let ctx = Ctx {
        q: &q.f32(OP, "q")?[..p.rows * qd],
        arena: cache.arena(),
        layout,
        p,
        group: p.n_heads / p.n_kv_heads,
        scale: p.scale(),
        level,
    };
    let out = &mut out.f32_mut(OP, "out")?[..p.rows * qd];
    let keys = |i: usize| {
        let first = window_start(p.pos0 + i, p.window);
        first..p.pos0 + i + 1
    };
    let work = p.rows * p.n_heads * keys(p.rows - 1).len() * hd;
    let tasks = p.rows * p.n_kv_heads;
    let chunks = keys(p.rows - 1).len().div_ceil(CHUNK);
    let slot = ctx.group * (hd + 2);
    let threads = pool().threads();
    if work >= SERIAL_WORK
        && chunks > 1
        && tasks < 4 * threads
        && tasks * chunks * slot <= MAX_PARTIALS
    {
        // Chunks in parallel: task (i, g, c) writes the partials of chunk c of row i's KV
        // head g (nothing past a row's last chunk), then each (i, g) combines them.
        let mut parts = vec![0.0f32; tasks * chunks * slot];
        pool().chunks(&mut parts, slot, |t, part| {
            let (ig, c) = (t / chunks, t % chunks);
            let (i, g) = (ig / p.n_kv_heads, ig % p.n_kv_heads);
            let keys = keys(i);
            if c * CHUNK < keys.len() {
                let a = keys.start + c * CHUNK;
                ctx.chunk(i, g, a..(a + CHUNK).min(keys.end), part);
            }
        });
        let span = ctx.group * hd;
        pool().chunks(out, span, |ig, o| {
            let n = keys(ig / p.n_kv_heads).len().div_ceil(CHUNK);
            ctx.combine(&parts[ig * chunks * slot..][..n * slot], o);
        });
    } else {
        // A task per (row, KV head): its chunks in order, then combined.
        let task = |ig: usize, o: &mut [f32]| {
            let (i, g) = (ig / p.n_kv_heads, ig % p.n_kv_heads);
            let keys = keys(i);
            let n = keys.len().div_ceil(CHUNK);
            let mut parts = vec![0.0f32; n * slot];
            for (c, part) in parts.chunks_mut(slot).enumerate() {
                let a = keys.start + c * CHUNK;
                ctx.chunk(i, g, a..(a + CHUNK).min(keys.end), part);
            }
            ctx.combine(&parts, o);
        };
        let span = ctx.group * hd;
        if work < SERIAL_WORK {
            out.chunks_mut(span)
                .enumerate()
                .for_each(|(ig, o)| task(ig, o));
        } else {
            pool().chunks(out, span, task);
        }
    }
    Ok(())
}

/// One call's inputs.
struct Ctx<'a> {
    q: &'a [f32],
    arena: &'a CpuTensor,
    layout: KvLayout,
    p: AttentionParams,
    group: usize,
    scale: f32,
    level: Level,
}

impl Ctx<'_> {
    /// The partials of keys `keys` (one chunk) for the query heads of KV head `g` of row `i`,
    /// into `part`: for each head of the group, `[m, l, acc (head_dim)]`.
    fn chunk(&self, i: usize, g: usize, keys: std::ops::Range<usize>, part: &mut [f32]) {
        match self.level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `level()` chose this level because the CPU has these features.
            Level::Avx512 => unsafe { chunk_avx512(self, i, g, keys, part) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Level::Avx2 => unsafe { chunk_avx2(self, i, g, keys, part) },
            _ => chunk_body(self, i, g, keys, part, dot),
        }
    }

    /// Combines a (row, KV head)'s chunk partials (`parts`: chunk after chunk, as `chunk`
    /// writes them) into its heads' outputs `o` (group · head_dim), in chunk order.
    fn combine(&self, parts: &[f32], o: &mut [f32]) {
        let hd = self.p.head_dim;
        let slot = self.group * (hd + 2);
        for (hh, oh) in o.chunks_mut(hd).enumerate() {
            let head = |c: usize| &parts[c * slot + hh * (hd + 2)..][..hd + 2];
            let n = parts.len() / slot;
            let max = (0..n).map(|c| head(c)[0]).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            oh.fill(0.0);
            for c in 0..n {
                let h = head(c);
                let w = (h[0] - max).exp();
                sum += h[1] * w;
                for (x, a) in oh.iter_mut().zip(&h[2..]) {
                    *x += a * w;
                }
            }
            let inv = 1.0 / sum;
            oh.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn chunk_avx512(
    ctx: &Ctx<'_>,
    i: usize,
    g: usize,
    keys: std::ops::Range<usize>,
    part: &mut [f32],
) {
    chunk_body(ctx, i, g, keys, part, |a, b| dot_avx512(a, b))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk_avx2(
    ctx: &Ctx<'_>,
    i: usize,
    g: usize,
    keys: std::ops::Range<usize>,
    part: &mut [f32],
) {
    chunk_body(ctx, i, g, keys, part, |a, b| dot_avx2(a, b))
}

/// Σ a·b in `LANES` lanes (element `e` into lane `e % LANES`), the lanes summed pairwise, then
/// the tail (`len % LANES` elements) in order.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(0.0, |t, (x, y)| t + x * y);
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    super::qrow::lanes_reduce(acc) + tail
}

/// [`dot`] in one 16-lane register (the same lanes, the same pairwise reduction: the high
/// 8 lanes onto the low, then 4, 2, 1).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let whole = n - n % LANES;
    let tail: f32 = a[whole..n]
        .iter()
        .zip(&b[whole..n])
        .fold(0.0, |t, (x, y)| t + x * y);
    let mut acc = _mm512_setzero_ps();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    for e in (0..whole).step_by(LANES) {
        acc = _mm512_add_ps(
            acc,
            _mm512_mul_ps(_mm512_loadu_ps(pa.add(e)), _mm512_loadu_ps(pb.add(e))),
        );
    }
    reduce_256(_mm256_add_ps(
        _mm512_castps512_ps256(acc),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc))),
    )) + tail
}

/// [`dot`] in two 8-lane registers (lanes 0..8 and 8..16; the same reduction).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let whole = n - n % LANES;
    let tail: f32 = a[whole..n]
        .iter()
        .zip(&b[whole..n])
        .fold(0.0, |t, (x, y)| t + x * y);
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    for e in (0..whole).step_by(LANES) {
        lo = _mm256_add_ps(
            lo,
            _mm256_mul_ps(_mm256_loadu_ps(pa.add(e)), _mm256_loadu_ps(pb.add(e))),
        );
        hi = _mm256_add_ps(
            hi,
            _mm256_mul_ps(
                _mm256_loadu_ps(pa.add(e + 8)),
                _mm256_loadu_ps(pb.add(e + 8)),
            ),
        );
    }
    reduce_256(_mm256_add_ps(lo, hi)) + tail
}

/// Lanes 0..8 summed as `lanes_reduce` sums them: 4 apart, then 2, then 1.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn reduce_256(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
}

/// The keys' rows `first .. first + n` of KV head `g`'s K (`kv` = 0) or V (1) as f32: the
/// cache itself when it is f32, else converted into `buf`.
#[inline(always)]
fn rows<'r>(
    ctx: &'r Ctx<'_>,
    kv: usize,
    g: usize,
    first: usize,
    n: usize,
    buf: &'r mut [f32],
) -> &'r [f32] {
    let hd = ctx.p.head_dim;
    let at = ctx.layout.offset(ctx.p.layer, kv, g, first);
    match ctx.arena {
        CpuTensor::F32(v) => &v[at..at + n * hd],
        other => {
            other.read_f32(at, &mut buf[..n * hd]);
            &buf[..n * hd]
        }
    }
}

#[inline(always)]
fn chunk_body(
    ctx: &Ctx<'_>,
    i: usize,
    g: usize,
    keys: std::ops::Range<usize>,
    part: &mut [f32],
    dot: impl Fn(&[f32], &[f32]) -> f32,
) {
    let (p, hd, group) = (&ctx.p, ctx.p.head_dim, ctx.group);
    let n = keys.len();
    let qd = p.n_heads * hd;
    let q = &ctx.q[i * qd + g * group * hd..][..group * hd];
    let mut scores = vec![0.0f32; group * n];
    let mut buf = vec![0.0f32; KEY_BLOCK * hd];
    // Scores: every head of the group against each key row, read once.
    for b0 in (0..n).step_by(KEY_BLOCK) {
        let nb = KEY_BLOCK.min(n - b0);
        let k = rows(ctx, 0, g, keys.start + b0, nb, &mut buf);
        for (j, kr) in k.chunks_exact(hd).enumerate() {
            for (hh, qh) in q.chunks_exact(hd).enumerate() {
                let s = dot(qh, kr) * ctx.scale;
                scores[hh * n + b0 + j] = p.softcap.map_or(s, |c| softcap(s, c));
            }
        }
    }
    // Per head: max, exp(s − max) in place, their sum; the accumulators cleared.
    for (s, h) in scores
        .chunks_exact_mut(n)
        .zip(part.chunks_exact_mut(hd + 2))
    {
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for x in s.iter_mut() {
            *x = simd::exp_nonpositive(*x - max);
        }
        for x in s.iter() {
            sum += *x;
        }
        h[0] = max;
        h[1] = sum;
        h[2..].fill(0.0);
    }
    // acc += exp(s − max)·V, each value row read once for the group (a block of rows at a
    // time, each head's accumulators in registers across the block; every element still sums
    // its keys in order).
    for b0 in (0..n).step_by(KEY_BLOCK) {
        let nb = KEY_BLOCK.min(n - b0);
        let v = rows(ctx, 1, g, keys.start + b0, nb, &mut buf);
        for (hh, h) in part.chunks_exact_mut(hd + 2).enumerate() {
            weighted_rows(&scores[hh * n + b0..][..nb], v, &mut h[2..]);
        }
    }
}

/// `acc += Σ_j w[j]·rows[j]` (rows of `acc.len()`), each element summing over `j` in order.
#[inline(always)]
fn weighted_rows(w: &[f32], rows: &[f32], acc: &mut [f32]) {
    let hd = acc.len();
    let mut lanes = acc.chunks_exact_mut(LANES);
    for (e, a) in (0..).step_by(LANES).zip(&mut lanes) {
        let mut r = [0.0f32; LANES];
        r.copy_from_slice(a);
        for (j, &wj) in w.iter().enumerate() {
            let x = &rows[j * hd + e..][..LANES];
            for l in 0..LANES {
                r[l] += wj * x[l];
            }
        }
        a.copy_from_slice(&r);
    }
    let e = hd - hd % LANES;
    for (l, a) in lanes.into_remainder().iter_mut().enumerate() {
        for (j, &wj) in w.iter().enumerate() {
            *a += wj * rows[j * hd + e + l];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::qrow::levels;
    use crate::backend::cpu::CpuBackend;
    use crate::backend::Backend;
    use crate::formats::random::values;

    /// softmax(cap(q·k·scale))·V in f64 over the keys row `pos` sees, from the cache's values.
    fn exact(
        q: &[f32],
        kv: &[f32],
        layout: &KvLayout,
        p: &AttentionParams,
        pos: usize,
    ) -> Vec<f64> {
        let (hd, group) = (p.head_dim, p.n_heads / p.n_kv_heads);
        let mut out = Vec::new();
        for h in 0..p.n_heads {
            let g = h / group;
            let keys = window_start(pos, p.window)..pos + 1;
            let at = |kvi, j| &kv[layout.offset(p.layer, kvi, g, j)..][..hd];
            let s: Vec<f64> = keys
                .clone()
                .map(|j| {
                    let d: f64 = q[h * hd..][..hd]
                        .iter()
                        .zip(at(0, j))
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                    let d = d * p.scale() as f64;
                    p.softcap.map_or(d, |c| (d / c as f64).tanh() * c as f64)
                })
                .collect();
            let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let sum: f64 = w.iter().sum();
            for d in 0..hd {
                out.push(
                    keys.clone()
                        .zip(&w)
                        .map(|(j, w)| w * at(1, j)[d] as f64)
                        .sum::<f64>()
                        / sum,
                );
            }
        }
        out
    }

    /// Rows run together (a task per row and KV head, chunks in order) and each row alone (a
    /// decode step: chunks in parallel) give the same bits, at every SIMD level, for every KV
    /// type, with and without a window and a soft-cap; and they are the exact attention within
    /// f32 rounding. Lengths cross several chunks and end inside one.
    #[test]
    fn rows_together_and_alone_and_every_level_give_the_same_bits_and_the_exact_result() {
        let b = CpuBackend::default();
        let (n_heads, n_kv_heads, hd, rows, pos0) = (6, 2, 64, 5, 3 * CHUNK + 37);
        for dtype in [DType::F32, DType::F16, DType::Q8_0Kv] {
            for (window, softcap) in [(None, None), (Some(CHUNK + 45), None), (None, Some(5.0))] {
                let layout = KvLayout {
                    n_layers: 2,
                    n_kv_heads,
                    head_dim: hd,
                    capacity: pos0 + rows + 3,
                    dtype,
                };
                let mut arena = b.alloc(dtype, layout.elems()).unwrap();
                arena.write_f32(0, &values(layout.elems(), 7));
                let mut read = vec![0.0f32; layout.elems()];
                arena.read_f32(0, &mut read); // what the cache holds (rounded to its type)
                let cache = KvCache::from_arena(arena, layout).unwrap();
                let qd = n_heads * hd;
                let q: Vec<f32> = values(rows * qd, 11).iter().map(|x| x * 3.0).collect();
                let p = |rows, pos0| AttentionParams {
                    layer: 1,
                    pos0,
                    rows,
                    n_heads,
                    n_kv_heads,
                    head_dim: hd,
                    window,
                    score_scale: None,
                    softcap,
                };
                let run = |level, q: &[f32], p: AttentionParams| {
                    let qt = b.upload_f32(q).unwrap();
                    let mut out = b.alloc(DType::F32, q.len()).unwrap();
                    attention_at(level, &qt, &cache, &mut out, p).unwrap();
                    let mut o = vec![0.0f32; q.len()];
                    out.read_f32(0, &mut o);
                    o
                };
                let what = format!("{dtype:?} window {window:?} softcap {softcap:?}");
                let together = run(level(), &q, p(rows, pos0));
                for i in 0..rows {
                    let alone = run(level(), &q[i * qd..][..qd], p(1, pos0 + i));
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&alone),
                        bits(&together[i * qd..][..qd]),
                        "{what} row {i}"
                    );
                    let want = exact(
                        &q[i * qd..][..qd],
                        &read,
                        &layout,
                        &p(1, pos0 + i),
                        pos0 + i,
                    );
                    for (g, w) in alone.iter().zip(&want) {
                        assert!(
                            (*g as f64 - w).abs() <= 2e-6 * (1.0 + w.abs()),
                            "{what} row {i}: {g} vs {w}"
                        );
                    }
                }
                // No rows: nothing to do, and no panic.
                assert!(run(level(), &[], p(0, pos0)).is_empty());
                for l in levels() {
                    assert_eq!(
                        run(l, &q, p(rows, pos0)),
                        together,
                        "{what} at {}",
                        l.name()
                    );
                }
            }
        }
    }
}
