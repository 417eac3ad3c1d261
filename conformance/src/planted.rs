//! The suite proves its own power: a CPU backend with one planted bug at a time. Each bug is a
//! mistake real kernels make; `tests/planted_bugs.rs` asserts that named cases catch every one.

use wavefront::backend::cpu::{rotate, CpuBackend, CpuStep, CpuTensor};
use wavefront::backend::{
    AttentionParams, Backend, LinearParams, LogitsParams, RmsNormParams, RopeKvParams,
};
use wavefront::kv_cache::KvCache;
use wavefront::sampler::{self, SamplingParams};
use wavefront::{DType, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// RoPE rotates the wrong way (sin with the wrong sign).
    RopeSignFlipped,
    /// Attention lets a query see one key past its position.
    CausalMaskOffByOne,
    /// Query head h reads KV head h % n_kv_heads instead of h / group.
    WrongGqaHeadMapping,
    /// K and V of row i are written at position pos0 + i + 1.
    KvWrittenAtWrongPosition,
    /// A sliding window lets a query see one key before it (W + 1 keys, `p − W ≤ j ≤ p`).
    SlidingWindowOneKeyTooMany,
    /// Top-p keeps the token after the one that crosses top_p.
    TopPKeepsOneTooMany,
    /// Attention's softmax exponentiates raw scores (no max subtraction): overflows.
    SoftmaxWithoutMaxSubtraction,
    /// Gemma 2's attention soft-cap taken of the unscaled product, `cap(q·k) · scale` instead
    /// of `cap(q·k · scale)` (the cap applied where the dot product ends, before the scale).
    SoftcapBeforeScale,
    /// The sampler's softmax sums its exponentials in descending id order (a GPU reduction
    /// tree would reorder it too): the same math, other bits.
    SamplerSumReordered,
    /// The frequency penalty counts each distinct id once (presence semantics), as a kernel
    /// flagging ids instead of counting them would.
    FrequencyCountedOnce,
    /// The LM head of a batch (rows > 1) sums each row's products in descending order, as a
    /// kernel choosing its reduction by the number of rows would: every op case passes (the
    /// same math within tolerance), but a row's logits depend on the batch it came in. Not in
    /// [`Bug::ALL`] (no op case can see it): the batch-invariance check must.
    BatchRowsReordered,
}

impl Bug {
    pub const ALL: [Bug; 10] = [
        Bug::RopeSignFlipped,
        Bug::CausalMaskOffByOne,
        Bug::SlidingWindowOneKeyTooMany,
        Bug::WrongGqaHeadMapping,
        Bug::KvWrittenAtWrongPosition,
        Bug::TopPKeepsOneTooMany,
        Bug::SoftmaxWithoutMaxSubtraction,
        Bug::SoftcapBeforeScale,
        Bug::SamplerSumReordered,
        Bug::FrequencyCountedOnce,
    ];
}

/// The CPU backend with its RoPE, attention and sampler replaced by plain copies in which
/// `bug` (if any) is switched on. With no bug the copies must pass every case, so a caught bug
/// is the bug, not an artefact of the copy.
pub struct Planted {
    inner: CpuBackend,
    pub bug: Option<Bug>,
}

impl Planted {
    pub fn new(bug: Bug) -> Self {
        Planted {
            inner: CpuBackend::new(DType::BF16).expect("BF16 is a CPU weight type"),
            bug: Some(bug),
        }
    }

    /// The planted code paths with no bug switched on.
    pub fn clean() -> Self {
        Planted {
            inner: CpuBackend::new(DType::BF16).expect("BF16 is a CPU weight type"),
            bug: None,
        }
    }
}

impl Planted {
    /// Matmul inputs go in as they are (the wrappers' `forward_to_cpu!` asks).
    fn matmul_input(&self, _x: &CpuTensor) -> Result<Option<CpuTensor>> {
        Ok(None)
    }
}

/// RoPE + KV write in the plainest form, with the rope and position bugs as switches.
fn rope_kv_write(
    bug: Option<Bug>,
    q: &mut CpuTensor,
    k: &CpuTensor,
    v: &CpuTensor,
    inv_freq: &CpuTensor,
    cache: &mut KvCache<CpuTensor>,
    p: RopeKvParams,
) -> Result<()> {
    let hd = p.head_dim;
    let table = inv_freq.f32("rope", "inv_freq")?;
    let (inv, factor) = (table[..hd / 2 + 1].to_vec(), table[hd / 2]);
    // sin(−θ) = −sin θ, cos unchanged (the attention factor, last, as it is)
    let flip: Vec<f32> = (inv[..hd / 2].iter().map(|f| -f)).chain([factor]).collect();
    let freqs = if bug == Some(Bug::RopeSignFlipped) {
        &flip
    } else {
        &inv
    };
    let layout = *cache.layout();
    let (k, v) = (k.f32("rope", "k")?.to_vec(), v.f32("rope", "v")?.to_vec());
    let q = q.f32_mut("rope", "q")?;
    for i in 0..p.rows {
        let pos = p.pos0 + i;
        for h in 0..p.n_heads {
            rotate(&mut q[(i * p.n_heads + h) * hd..][..hd], pos, freqs);
        }
        let dest = if bug == Some(Bug::KvWrittenAtWrongPosition) && pos + 1 < layout.capacity {
            pos + 1
        } else {
            pos
        };
        for h in 0..p.n_kv_heads {
            let src = (i * p.n_kv_heads + h) * hd;
            let mut kh = k[src..src + hd].to_vec();
            rotate(&mut kh, pos, freqs);
            cache
                .arena_mut()
                .write_f32(layout.offset(p.layer, 0, h, dest), &kh);
            cache
                .arena_mut()
                .write_f32(layout.offset(p.layer, 1, h, dest), &v[src..src + hd]);
        }
    }
    Ok(())
}

/// Attention in the plainest form, with the mask, head-mapping and softmax bugs as switches.
fn attention(
    bug: Option<Bug>,
    q: &CpuTensor,
    cache: &KvCache<CpuTensor>,
    out: &mut CpuTensor,
    p: AttentionParams,
) -> Result<()> {
    let hd = p.head_dim;
    let group = p.n_heads / p.n_kv_heads;
    let layout = *cache.layout();
    let q = q.f32("attention", "q")?;
    let out = out.f32_mut("attention", "out")?;
    let (mut kr, mut vr) = (vec![0.0f32; hd], vec![0.0f32; hd]);
    for i in 0..p.rows {
        let pos = p.pos0 + i;
        let mut first = wavefront::backend::window_start(pos, p.window);
        if bug == Some(Bug::SlidingWindowOneKeyTooMany) {
            first = first.saturating_sub(1);
        }
        let last = if bug == Some(Bug::CausalMaskOffByOne) {
            (pos + 1).min(layout.capacity - 1)
        } else {
            pos
        };
        for h in 0..p.n_heads {
            let kvh = if bug == Some(Bug::WrongGqaHeadMapping) {
                h % p.n_kv_heads
            } else {
                h / group
            };
            let qh = &q[(i * p.n_heads + h) * hd..][..hd];
            let scores: Vec<f32> = (first..=last)
                .map(|j| {
                    cache
                        .arena()
                        .read_f32(layout.offset(p.layer, 0, kvh, j), &mut kr);
                    let dot = qh.iter().zip(&kr).map(|(a, b)| a * b).sum::<f32>();
                    match p.softcap {
                        Some(c) if bug == Some(Bug::SoftcapBeforeScale) => {
                            wavefront::backend::softcap(dot, c) * p.scale()
                        }
                        Some(c) => wavefront::backend::softcap(dot * p.scale(), c),
                        None => dot * p.scale(),
                    }
                })
                .collect();
            let max = if bug == Some(Bug::SoftmaxWithoutMaxSubtraction) {
                0.0
            } else {
                scores.iter().copied().fold(f32::NEG_INFINITY, f32::max)
            };
            let e: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f32 = e.iter().sum();
            let o = &mut out[(i * p.n_heads + h) * hd..][..hd];
            o.fill(0.0);
            for (j, w) in (first..).zip(&e) {
                cache
                    .arena()
                    .read_f32(layout.offset(p.layer, 1, kvh, j), &mut vr);
                o.iter_mut().zip(&vr).for_each(|(o, v)| *o += w / sum * v);
            }
        }
    }
    Ok(())
}

/// The sampler's softmax with its sum taken in descending id order.
fn softmax_summed_backwards(x: &[f32]) -> Vec<f32> {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let e: Vec<f32> = x.iter().map(|&v| sampler::sampler_exp(v - max)).collect();
    let sum: f32 = e.iter().rev().sum();
    e.iter().map(|&v| v / sum).collect()
}

/// The sampler pipeline spelled out (the engine's steps), with top-p keeping one extra token
/// or the softmax summed backwards when `bug` says so.
fn sample(
    bug: Option<Bug>,
    logits: &[f32],
    params: &SamplingParams,
    history: &[u32],
    coin: f32,
) -> Result<u32> {
    params.validate()?;
    let unsamplable = logits.is_empty()
        || logits.iter().any(|x| x.is_nan() || *x == f32::INFINITY)
        || logits.iter().all(|&x| x == f32::NEG_INFINITY);
    if unsamplable {
        return Err(wavefront::Error::InvalidRequest(
            "logits with a NaN or +inf, or all -inf".into(),
        ));
    }
    let mut l = logits.to_vec();
    sampler::apply_repetition_penalty(&mut l, history, params.repeat_penalty);
    if bug == Some(Bug::FrequencyCountedOnce) {
        let mut distinct = history.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let (p, f) = (params.presence_penalty, params.frequency_penalty);
        sampler::apply_presence_frequency(&mut l, &distinct, p, f);
    } else {
        let (p, f) = (params.presence_penalty, params.frequency_penalty);
        sampler::apply_presence_frequency(&mut l, history, p, f);
    }
    if l.contains(&f32::INFINITY) {
        return Err(wavefront::Error::InvalidRequest(
            "a logit overflows under the penalties".into(),
        ));
    }
    let best = sampler::argmax(&l);
    if params.is_greedy() {
        return Ok(best as u32);
    }
    let max = l[best];
    let scaled: Vec<f32> = l.iter().map(|&v| (v - max) / params.temperature).collect();
    let mut keep = vec![true; l.len()];
    sampler::top_k_mask(&scaled, params.top_k, &mut keep);
    let masked = sampler::masked(&scaled, &keep, f32::NEG_INFINITY);
    let probs = if bug == Some(Bug::SamplerSumReordered) {
        softmax_summed_backwards(&masked)
    } else {
        sampler::softmax(&masked)
    };
    let before = keep.clone();
    sampler::top_p_mask(&probs, params.top_p, &mut keep);
    if bug == Some(Bug::TopPKeepsOneTooMany) {
        // re-admit the most probable token top-p dropped
        let dropped = (0..probs.len()).filter(|&i| before[i] && !keep[i]);
        if let Some(extra) = dropped.max_by(|&a, &b| probs[a].total_cmp(&probs[b]).then(b.cmp(&a)))
        {
            keep[extra] = true;
        }
    }
    let probs = sampler::masked(&probs, &keep, 0.0);
    sampler::min_p_mask(&probs, params.min_p, &mut keep);
    let probs = sampler::masked(&probs, &keep, 0.0);
    let total: f32 = probs.iter().sum();
    let dist: Vec<f32> = probs.iter().map(|&p| p / total).collect();
    Ok(sampler::pick(&dist, coin) as u32)
}

impl Backend for Planted {
    type Tensor = CpuTensor;

    forward_to_cpu!();

    fn name(&self) -> &'static str {
        "planted"
    }

    fn device(&self) -> String {
        match self.bug {
            Some(b) => format!("CPU with planted bug {b:?}"),
            None => "CPU through the planted code paths, no bug".into(),
        }
    }

    fn preferred_kv_dtype(&self) -> DType {
        self.inner.preferred_kv_dtype()
    }

    fn rms_norm(
        &self,
        x: &mut CpuTensor,
        residual: Option<&CpuTensor>,
        w: &CpuTensor,
        out: &mut CpuTensor,
        p: RmsNormParams,
    ) -> Result<()> {
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
        self.inner.linear(x, w, bias, out, p)
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
        rope_kv_write(self.bug, q, k, v, inv_freq, cache, p)
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
        attention(self.bug, q, cache, out, p)
    }

    fn logits(
        &self,
        x: &CpuTensor,
        w: &CpuTensor,
        out: &mut CpuTensor,
        p: LogitsParams,
    ) -> Result<()> {
        if self.bug != Some(Bug::BatchRowsReordered) || p.rows < 2 {
            return self.inner.logits(x, w, out, p);
        }
        let xs = self.inner.download_f32(x)?;
        let ws = self.inner.download_f32(w)?;
        let (h, v) = (p.hidden, p.vocab);
        let o = out.f32_mut("logits", "out")?;
        if o.len() < p.rows * v || xs.len() < (p.row0 + p.rows) * h || ws.len() < v * h {
            return Err(wavefront::Error::InvalidRequest(
                "planted logits: short tensors".into(),
            ));
        }
        for r in 0..p.rows {
            let xr = &xs[(p.row0 + r) * h..(p.row0 + r + 1) * h];
            for j in 0..v {
                let wr = &ws[j * h..(j + 1) * h];
                let l: f32 = (0..h).rev().map(|i| xr[i] * wr[i]).sum();
                o[r * v + j] = p.softcap.map_or(l, |c| wavefront::backend::softcap(l, c));
            }
        }
        Ok(())
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
        let Some(l) = logits
            .f32("sample", "logits")?
            .get(row * vocab..(row + 1) * vocab)
        else {
            return Err(wavefront::Error::InvalidRequest(format!(
                "no logits row {row} of {vocab}"
            )));
        };
        sample(self.bug, l, params, history, coin)
    }
}
