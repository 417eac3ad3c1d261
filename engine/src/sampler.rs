//! Sampling: logits → token id, with the randomness passed in as `coin` (STYLE 5) so that the
//! engine and the reference draw the same number and their tokens compare exactly.
//!
//! The pipeline (the same contract as `wavefront_reference::sampler`):
//! 1. repetition penalty (transformers semantics, once per distinct id in `history`), then
//!    presence and frequency (OpenAI's: `c · frequency + presence` subtracted from the logit
//!    of an id seen c > 0 times in `history`);
//! 2. temperature ≤ 0 → argmax (lowest id on ties);
//! 3. divide by temperature; 4. top-k (ties at the boundary kept); 5. softmax;
//! 6. top-p (keep a token iff the mass ranked strictly above it is < top_p);
//! 7. min-p (keep p ≥ min_p · p_max); 8. renormalize, walk ids ascending until the
//!    accumulated mass exceeds `coin · total`.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Finite and ≥ 0; 0 means greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// In (0, 1]; 1 = off.
    pub top_p: f32,
    /// In [0, 1]; 0 = off.
    pub min_p: f32,
    /// Finite and > 0; 1 = off.
    pub repeat_penalty: f32,
    /// In [-2, 2]; 0 = off. Subtracted once from the logit of every id in the history.
    pub presence_penalty: f32,
    /// In [-2, 2]; 0 = off. Subtracted once per occurrence in the history.
    pub frequency_penalty: f32,
}

impl Default for SamplingParams {
    /// No shaping at all: temperature 1, every filter off.
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// The one check of every field's range (the CLI, the generator and the server all call
    /// it): an [`Error::InvalidParam`] naming the field, the value and the range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, value: f32, expected| Err(Error::invalid_param(field, value, expected));
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            return bad("temperature", t, "finite and >= 0 (0 = greedy)");
        }
        // top_k: every value means something (0 = off, k >= the vocabulary keeps all).
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "in (0, 1] (1 = off)");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p, "in [0, 1] (0 = off)");
        }
        let r = self.repeat_penalty;
        if !(r.is_finite() && r > 0.0) {
            return bad("repeat_penalty", r, "finite and > 0 (1 = off)");
        }
        for (field, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(field, v, "in [-2, 2] (0 = off)");
            }
        }
        Ok(())
    }

    /// Whether any penalty over the history changes a logit (given a non-empty history).
    pub fn penalizes(&self) -> bool {
        self.repeat_penalty != 1.0 || self.presence_penalty != 0.0 || self.frequency_penalty != 0.0
    }
}

/// Transformers' `RepetitionPenaltyLogitsProcessor`: each distinct id in `history` once.
pub fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = vec![false; logits.len()];
    for &id in history {
        let i = id as usize;
        if i < logits.len() && !seen[i] {
            seen[i] = true;
            let l = logits[i];
            logits[i] = if l < 0.0 { l * penalty } else { l / penalty };
        }
    }
}

/// OpenAI's presence and frequency penalties, after the repetition penalty (vLLM's and
/// llama.cpp's order): an id seen c > 0 times in `history` gets `l − (c · frequency +
/// presence)`, each operation rounded in f32 (as the reference and `sample_prep`).
pub fn apply_presence_frequency(
    logits: &mut [f32],
    history: &[u32],
    presence: f32,
    frequency: f32,
) {
    if presence == 0.0 && frequency == 0.0 {
        return;
    }
    let mut count = vec![0u32; logits.len()];
    for &id in history {
        if let Some(c) = count.get_mut(id as usize) {
            *c += 1;
        }
    }
    for (l, &c) in logits.iter_mut().zip(&count) {
        if c > 0 {
            *l -= c as f32 * frequency + presence;
        }
    }
}

/// Index of the largest value, lowest index on ties.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Keeps the tokens whose logit is ≥ the k-th largest (ties at the boundary kept). The k-th
/// largest by selection (linear time), not a sort of the vocabulary: the same value.
pub fn top_k_mask(logits: &[f32], k: usize, keep: &mut [bool]) {
    if k == 0 || k >= logits.len() {
        return;
    }
    let mut kept: Vec<f32> = logits
        .iter()
        .zip(keep.iter())
        .filter(|(_, &m)| m)
        .map(|(&l, _)| l)
        .collect();
    if k >= kept.len() {
        return;
    }
    let (_, &mut kth, _) = kept.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    for (m, &l) in keep.iter_mut().zip(logits) {
        *m = *m && l >= kth;
    }
}

/// Keeps a token iff the probability mass ranked strictly above it is < `top_p`
/// (descending probability, ties by lower id first).
pub fn top_p_mask(probs: &[f32], top_p: f32, keep: &mut [bool]) {
    if top_p >= 1.0 {
        return;
    }
    let mut order: Vec<usize> = (0..probs.len()).filter(|&i| keep[i]).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut above = 0.0f32;
    for (rank, &i) in order.iter().enumerate() {
        if rank > 0 && above >= top_p {
            keep[i] = false;
        }
        above += probs[i];
    }
}

/// Keeps tokens with probability ≥ `min_p` · the largest probability.
pub fn min_p_mask(probs: &[f32], min_p: f32, keep: &mut [bool]) {
    if min_p <= 0.0 {
        return;
    }
    let max = probs
        .iter()
        .zip(keep.iter())
        .filter(|(_, &m)| m)
        .map(|(&p, _)| p)
        .fold(0.0f32, f32::max);
    let threshold = min_p * max;
    for (m, &p) in keep.iter_mut().zip(probs) {
        *m = *m && p >= threshold;
    }
}

/// `e^(x − max) / Σ e^(x − max)` with [`sampler_exp`] and the sum taken in index order (as the
/// reference does); entries at −inf get 0.
pub fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let e: Vec<f32> = x.iter().map(|&v| sampler_exp(v - max)).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|&v| v / sum).collect()
}

/// `e^x` from correctly rounded IEEE operations only, the same operations in the same order
/// as `wavefront_reference::sampler::sampler_exp` and `wf_sampler_exp` in kernels/common.h, so
/// the CPU, the GPU kernel and the reference get the same bits (libm's and the GPUs' `expf`
/// differ in the last bit). NaN → NaN; x > 88.722832 → +inf; x < −104 → 0; in f64: n =
/// rne(x · log2 e), r = x − n · ln 2 (two fmas), Taylor degree 12 by fma, × 2^n; one rounding
/// to f32. Within 2 ulp (in practice correctly rounded) and monotone.
pub fn sampler_exp(x: f32) -> f32 {
    const MAX_ARG: f32 = f32::from_bits(0x42b1_7217); // 88.72283172607421875
    const LOG2_E: f64 = std::f64::consts::LOG2_E; // 1.4426950408889634, as common.h
    const LN2_HI: f64 = std::f64::consts::LN_2; // 0.6931471805599453, as common.h
    const LN2_LO: f64 = 2.3190468138462996e-17; // ln 2 - LN2_HI
                                                // 1/k! for k = 12 down to 2, rounded to f64
    const C: [f64; 11] = [
        2.08767569878681e-09,
        2.505210838544172e-08,
        2.755731922398589e-07,
        2.7557319223985893e-06,
        2.48015873015873e-05,
        0.0001984126984126984,
        0.001388888888888889,
        0.008333333333333333,
        0.041666666666666664,
        0.16666666666666666,
        0.5,
    ];
    if x.is_nan() {
        return x;
    }
    if x > MAX_ARG {
        return f32::INFINITY;
    }
    if x < -104.0 {
        return 0.0;
    }
    let x = f64::from(x);
    let n = (x * LOG2_E).round_ties_even(); // in [-150, 128]
    let r = (-n).mul_add(LN2_HI, x);
    let r = (-n).mul_add(LN2_LO, r);
    let mut p = C[0];
    for c in &C[1..] {
        p = p.mul_add(r, *c);
    }
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    let pow2 = f64::from_bits(((n as i64 + 1023) as u64) << 52); // 2^n, exact
    (p * pow2) as f32
}

/// `x` where `keep`, `fill` elsewhere.
pub fn masked(x: &[f32], keep: &[bool], fill: f32) -> Vec<f32> {
    x.iter()
        .zip(keep)
        .map(|(&v, &k)| if k { v } else { fill })
        .collect()
}

fn check_logits(logits: &[f32]) -> Result<()> {
    if logits.is_empty() {
        return Err(Error::InvalidRequest("sampling from empty logits".into()));
    }
    if let Some(i) = logits
        .iter()
        .position(|l| l.is_nan() || *l == f32::INFINITY)
    {
        return Err(Error::InvalidRequest(format!("logit {i} is {}", logits[i])));
    }
    if logits.iter().all(|&l| l == f32::NEG_INFINITY) {
        return Err(Error::InvalidRequest("every logit is -inf".into()));
    }
    Ok(())
}

/// The checked parameters and logits, with the penalties applied (step 1 of both sampling
/// paths); a logit a penalty overflows is an error.
pub fn penalized(logits: &[f32], params: &SamplingParams, history: &[u32]) -> Result<Vec<f32>> {
    params.validate()?;
    check_logits(logits)?;
    let mut l = logits.to_vec();
    apply_repetition_penalty(&mut l, history, params.repeat_penalty);
    apply_presence_frequency(
        &mut l,
        history,
        params.presence_penalty,
        params.frequency_penalty,
    );
    if let Some(i) = l.iter().position(|&v| v == f32::INFINITY) {
        return Err(Error::InvalidRequest(format!(
            "logit {i} overflows under the penalties"
        )));
    }
    Ok(l)
}

/// The final renormalized distribution after every filter (zeros where masked). For greedy
/// parameters this is one-hot on the argmax. Arithmetic step for step as the reference's, so
/// that the same logits and coin give the same id.
pub fn distribution(logits: &[f32], params: &SamplingParams, history: &[u32]) -> Result<Vec<f32>> {
    // 1. repetition penalty
    let l = penalized(logits, params, history)?;
    // 2. greedy
    let best = argmax(&l);
    if params.is_greedy() {
        let mut p = vec![0.0; l.len()];
        p[best] = 1.0;
        return Ok(p);
    }
    // 3. temperature, on logits shifted so the largest is 0
    let max = l[best];
    let scaled: Vec<f32> = l.iter().map(|&v| (v - max) / params.temperature).collect();
    // 4. top-k; 5. softmax over the kept
    let mut keep = vec![true; l.len()];
    top_k_mask(&scaled, params.top_k, &mut keep);
    let probs = softmax(&masked(&scaled, &keep, f32::NEG_INFINITY));
    // 6. top-p; 7. min-p on what top-p left
    top_p_mask(&probs, params.top_p, &mut keep);
    let probs = masked(&probs, &keep, 0.0);
    min_p_mask(&probs, params.min_p, &mut keep);
    // 8. renormalize
    let probs = masked(&probs, &keep, 0.0);
    let total: f32 = probs.iter().sum();
    Ok(probs.iter().map(|&p| p / total).collect())
}

/// Draws a token with the uniform `coin` ∈ [0, 1): the first id (ascending) whose cumulative
/// probability exceeds `coin · total`; the last id with non-zero probability if rounding
/// leaves none.
pub fn sample(logits: &[f32], params: &SamplingParams, history: &[u32], coin: f32) -> Result<u32> {
    if !(0.0..1.0).contains(&coin) {
        return Err(Error::InvalidRequest(format!(
            "coin must be in [0, 1), got {coin}"
        )));
    }
    if let Some(id) = sample_top_k(logits, params, history, coin)? {
        return Ok(id);
    }
    Ok(pick(&distribution(logits, params, history)?, coin) as u32)
}

/// [`sample`] when top-k keeps fewer than the whole vocabulary: the same steps in the same
/// arithmetic, on the kept ids only (ascending), so the id is the one `pick(distribution(..))`
/// gives: every masked entry there is an exact 0 (or −inf before the softmax), which leaves
/// each sum in index order, each maximum and each ranking unchanged. What it saves is the
/// vocabulary-sized passes after the selection (exps, masks, renormalizations). `None`: not
/// that case.
fn sample_top_k(
    logits: &[f32],
    params: &SamplingParams,
    history: &[u32],
    coin: f32,
) -> Result<Option<u32>> {
    if params.is_greedy() || params.top_k == 0 || params.top_k >= logits.len() {
        return Ok(None);
    }
    let l = penalized(logits, params, history)?;
    let max = l[argmax(&l)];
    let scaled: Vec<f32> = l.iter().map(|&v| (v - max) / params.temperature).collect();
    // top-k as top_k_mask: ≥ the k-th largest
    let mut sel = scaled.clone();
    let (_, &mut kth, _) = sel.select_nth_unstable_by(params.top_k - 1, |a, b| b.total_cmp(a));
    let ids: Vec<usize> = (0..scaled.len()).filter(|&i| scaled[i] >= kth).collect();
    // softmax over the kept
    let m = ids.iter().fold(f32::NEG_INFINITY, |m, &i| m.max(scaled[i]));
    let e: Vec<f32> = ids.iter().map(|&i| sampler_exp(scaled[i] - m)).collect();
    let sum: f32 = e.iter().sum();
    let mut probs: Vec<f32> = e.iter().map(|&v| v / sum).collect();
    // top-p (descending probability, ties by lower id)
    if params.top_p < 1.0 {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(ids[a].cmp(&ids[b])));
        let mut above = 0.0f32;
        let mut drop = vec![false; ids.len()];
        for (rank, &j) in order.iter().enumerate() {
            if rank > 0 && above >= params.top_p {
                drop[j] = true;
            }
            above += probs[j];
        }
        for (p, d) in probs.iter_mut().zip(drop) {
            if d {
                *p = 0.0;
            }
        }
    }
    // min-p on what top-p left (a dropped id is an exact 0: below any threshold but 0 itself,
    // and 0 stays 0)
    if params.min_p > 0.0 {
        let top = probs.iter().fold(0.0f32, |a, &p| a.max(p));
        let threshold = params.min_p * top;
        for p in probs.iter_mut() {
            if *p < threshold {
                *p = 0.0;
            }
        }
    }
    // renormalize, then pick as `pick` does
    let total: f32 = probs.iter().sum();
    let dist: Vec<f32> = probs.iter().map(|&p| p / total).collect();
    let r = coin * dist.iter().sum::<f32>();
    let mut acc = 0.0f32;
    for (j, &p) in dist.iter().enumerate() {
        acc += p;
        if r < acc {
            return Ok(Some(ids[j] as u32));
        }
    }
    Ok(Some(
        dist.iter().rposition(|&p| p > 0.0).map_or(0, |j| ids[j]) as u32,
    ))
}

/// Step 8's draw: the first id (ascending) whose cumulative probability exceeds `coin · total`;
/// the last id with non-zero probability if rounding leaves none.
pub fn pick(dist: &[f32], coin: f32) -> usize {
    let total: f32 = dist.iter().sum();
    let r = coin * total;
    let mut acc = 0.0f32;
    for (i, &p) in dist.iter().enumerate() {
        acc += p;
        if r < acc {
            return i;
        }
    }
    dist.iter().rposition(|&p| p > 0.0).unwrap_or(0)
}

/// A seed from the clock (nanoseconds since the Unix epoch): what a request that gives none
/// is sampled with (`wavefront run` without `--seed`, the server without `seed`).
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A small deterministic generator for coins (SplitMix64); `seed` fixes the whole stream.
#[derive(Debug, Clone)]
pub struct CoinRng(u64);

impl CoinRng {
    pub fn new(seed: u64) -> Self {
        CoinRng(seed)
    }

    /// The generator's state: `CoinRng::new(state())` continues the same stream (what a
    /// device-side step is seeded with).
    pub fn state(&self) -> u64 {
        self.0
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 bits (exactly representable in f32).
    pub fn coin(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Magnitude uniform in [0.1·scale, scale], random sign: never zero (test and benchmark
    /// data, so unwritten or mis-indexed outputs show).
    pub fn never_zero(&mut self, scale: f32) -> f32 {
        let r = self.next_u64();
        let m = scale * (0.1 + 0.9 * ((r >> 40) as f32 / (1u64 << 24) as f32));
        if r & 1 == 0 {
            m
        } else {
            -m
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The top-k path draws exactly the id the full distribution gives, over logits with ties
    /// (values on a coarse grid), -inf entries, penalties and every filter setting.
    #[test]
    fn the_top_k_path_draws_what_the_full_distribution_draws() {
        let mut rng = CoinRng::new(9);
        let mut checked = 0;
        for case in 0..400 {
            let n = 50 + case % 300;
            let logits: Vec<f32> = (0..n)
                .map(|i| {
                    if i % 37 == 5 {
                        f32::NEG_INFINITY
                    } else {
                        ((rng.next_u64() % 64) as f32 - 32.0) / 4.0
                    }
                })
                .collect();
            let history: Vec<u32> = (0..8).map(|_| (rng.next_u64() % n as u64) as u32).collect();
            let params = SamplingParams {
                temperature: [0.3, 0.8, 1.0, 2.5][case % 4],
                top_k: [1, 2, 5, 40, n - 1][case % 5],
                top_p: [1.0, 0.95, 0.5, 0.1][(case / 4) % 4],
                min_p: [0.0, 0.05, 0.3][(case / 3) % 3],
                repeat_penalty: [1.0, 1.1, 0.7][(case / 5) % 3],
                presence_penalty: [0.0, 0.5, -1.0][(case / 7) % 3],
                frequency_penalty: [0.0, 1.5, -0.25][(case / 11) % 3],
            };
            for _ in 0..4 {
                let coin = rng.coin();
                let want = pick(&distribution(&logits, &params, &history).unwrap(), coin) as u32;
                let got = sample_top_k(&logits, &params, &history, coin).unwrap();
                assert_eq!(got, Some(want), "case {case}: {params:?} coin {coin}");
                checked += 1;
            }
        }
        assert_eq!(checked, 1600);
        // Not that case: greedy, top-k off or keeping the whole vocabulary.
        let l = [1.0f32, 2.0, 3.0];
        for p in [
            SamplingParams {
                temperature: 0.0,
                top_k: 2,
                ..Default::default()
            },
            SamplingParams {
                top_k: 0,
                ..Default::default()
            },
            SamplingParams {
                top_k: 3,
                ..Default::default()
            },
        ] {
            assert_eq!(sample_top_k(&l, &p, &[], 0.5).unwrap(), None, "{p:?}");
        }
    }

    /// Selection gives the k-th largest of a full sort (total order), ties and signed zeros
    /// included, so the mask is the one a sort would give.
    #[test]
    fn top_k_by_selection_keeps_what_a_sort_keeps() {
        let mut rng = CoinRng::new(5);
        for n in [2usize, 7, 100, 5000] {
            for k in [1usize, 2, 40, n - 1] {
                // Few distinct values (many ties at the boundary), signed zeros among them.
                let logits: Vec<f32> = (0..n)
                    .map(|_| match (rng.coin() * 8.0) as u32 {
                        0 => 0.0,
                        1 => -0.0,
                        v => (v as f32 - 4.0) * 0.5,
                    })
                    .collect();
                let mut sorted = logits.clone();
                sorted.sort_unstable_by(|a, b| b.total_cmp(a));
                let want: Vec<bool> = match sorted.get(k - 1) {
                    Some(&kth) if k < n => logits.iter().map(|&l| l >= kth).collect(),
                    _ => vec![true; n], // k ≥ the vocabulary: everything kept
                };
                let mut keep = vec![true; n];
                top_k_mask(&logits, k, &mut keep);
                assert_eq!(keep, want, "n={n} k={k}");
                assert!(keep.iter().filter(|&&m| m).count() >= k.min(n));
            }
        }
    }

    #[test]
    fn greedy_is_argmax_after_penalty() {
        let logits = [1.0, 3.0, 2.9, -1.0];
        assert_eq!(
            sample(&logits, &SamplingParams::greedy(), &[], 0.7).unwrap(),
            1
        );
        let p = SamplingParams {
            repeat_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        // 3.0 / 2 = 1.5 < 2.9
        assert_eq!(sample(&logits, &p, &[1, 1], 0.0).unwrap(), 2);
    }

    #[test]
    fn penalty_multiplies_negative_and_divides_positive_once() {
        let mut l = [2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut l, &[0, 1, 0, 1], 2.0);
        assert_eq!(l, [1.0, -4.0, 1.0]);
    }

    #[test]
    fn presence_once_and_frequency_per_occurrence() {
        // OpenAI's formula by hand: ids 0 (three times) and 2 (once); 9 is outside.
        let mut l = [2.0, -2.0, 1.0];
        apply_presence_frequency(&mut l, &[0, 2, 0, 9, 0], 0.5, 0.25);
        assert_eq!(l, [2.0 - (3.0 * 0.25 + 0.5), -2.0, 1.0 - (0.25 + 0.5)]);
        let p = SamplingParams {
            frequency_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        assert!(p.penalizes() && p.validate().is_ok());
        assert_eq!(sample(&[2.5, 1.0], &p, &[0], 0.0).unwrap(), 1);
        assert_eq!(sample(&[2.5, 1.0], &p, &[], 0.0).unwrap(), 0);
        let bad = SamplingParams {
            presence_penalty: -2.5,
            ..p
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn top_p_keeps_the_crossing_token() {
        let probs = [0.5, 0.3, 0.2];
        let mut keep = [true; 3];
        top_p_mask(&probs, 0.6, &mut keep);
        assert_eq!(keep, [true, true, false]);
        let mut keep = [true; 3];
        top_p_mask(&probs, 0.5, &mut keep);
        assert_eq!(keep, [true, false, false]);
    }

    #[test]
    fn bad_params_and_inputs_are_errors() {
        let l = [0.0, 1.0];
        let d = SamplingParams::default();
        assert!(sample(&l, &d, &[], 1.0).is_err());
        assert!(sample(&l, &d, &[], -0.1).is_err());
        assert!(sample(&[], &d, &[], 0.5).is_err());
        assert!(sample(&[f32::NAN, 1.0], &d, &[], 0.5).is_err());
        // Every range's both sides and the non-numbers, with the message each must give.
        let cases = [
            (
                SamplingParams {
                    temperature: -0.5,
                    ..d
                },
                "temperature must be finite and >= 0 (0 = greedy), got -0.5",
            ),
            (
                SamplingParams {
                    temperature: f32::NAN,
                    ..d
                },
                "temperature must be finite and >= 0 (0 = greedy), got NaN",
            ),
            (
                SamplingParams {
                    temperature: f32::INFINITY,
                    ..d
                },
                "temperature must be finite and >= 0 (0 = greedy), got inf",
            ),
            (
                SamplingParams { top_p: 0.0, ..d },
                "top_p must be in (0, 1] (1 = off), got 0",
            ),
            (
                SamplingParams { top_p: 2.0, ..d },
                "top_p must be in (0, 1] (1 = off), got 2",
            ),
            (
                SamplingParams {
                    top_p: f32::NAN,
                    ..d
                },
                "top_p must be in (0, 1] (1 = off), got NaN",
            ),
            (
                SamplingParams { min_p: -0.1, ..d },
                "min_p must be in [0, 1] (0 = off), got -0.1",
            ),
            (
                SamplingParams { min_p: 1.5, ..d },
                "min_p must be in [0, 1] (0 = off), got 1.5",
            ),
            (
                SamplingParams {
                    repeat_penalty: 0.0,
                    ..d
                },
                "repeat_penalty must be finite and > 0 (1 = off), got 0",
            ),
            (
                SamplingParams {
                    repeat_penalty: f32::INFINITY,
                    ..d
                },
                "repeat_penalty must be finite and > 0 (1 = off), got inf",
            ),
        ];
        for (p, msg) in cases {
            match sample(&l, &p, &[], 0.5) {
                Err(e @ Error::InvalidParam { .. }) => assert_eq!(e.to_string(), msg, "{p:?}"),
                other => panic!("{p:?}: {other:?}"),
            }
        }
        // The edges that are inside.
        for p in [
            SamplingParams::greedy(),
            SamplingParams {
                top_p: 1.0,
                min_p: 1.0,
                top_k: usize::MAX,
                ..d
            },
            SamplingParams {
                top_p: f32::MIN_POSITIVE,
                min_p: 0.0,
                ..d
            },
        ] {
            assert!(p.validate().is_ok(), "{p:?}");
        }
    }

    /// The error of `got` against e^x (f64), in f32 ulps at e^x (2^-149 below 2^-126).
    fn ulps(x: f32, got: f32) -> f64 {
        let want = (x as f64).exp();
        let exp2 = (want as f32).abs().log2().floor().max(-126.0) as i32;
        (got as f64 - want).abs() / 2f64.powi(exp2 - 23)
    }

    /// Checks `xs` (ascending): within 2 ulp of e^x (+inf past MAX_ARG, where e^x rounds to
    /// +inf too) and non-decreasing; returns the worst error.
    fn check_exp(xs: impl Iterator<Item = f32>) -> f64 {
        let max_arg = f32::from_bits(0x42b1_7217);
        let (mut worst, mut at, mut prev) = (0.0f64, 0.0f32, 0.0f32);
        for x in xs {
            let got = sampler_exp(x);
            if x > max_arg {
                assert!(
                    got.is_infinite() && ((x as f64).exp() as f32).is_infinite(),
                    "{x}"
                );
            } else {
                let e = ulps(x, got);
                if e > worst {
                    (worst, at) = (e, x);
                }
            }
            assert!(got >= prev, "not monotone at {x}: {got} < {prev}");
            prev = got;
        }
        assert!(worst <= 2.0, "{worst} ulp at {at}");
        worst
    }

    /// The f32s of [-104, 88.8] ascending, every `stride`-th.
    fn domain(stride: usize) -> impl Iterator<Item = f32> {
        let neg = (0..=(-104.0f32).to_bits() - (-0.0f32).to_bits())
            .rev()
            .step_by(stride)
            .map(|d| f32::from_bits((-0.0f32).to_bits() + d));
        let pos = (0..=88.8f32.to_bits()).step_by(stride).map(f32::from_bits);
        neg.chain(pos)
    }

    #[test]
    fn sampler_exp_is_within_2_ulp_and_monotone() {
        check_exp(domain(97));
        // every f32 within 3000 of each point where n = rne(x · log2 e) steps
        let mut xs = Vec::new();
        for k in -151..=128 {
            let c = (k as f32 + 0.5) * std::f32::consts::LN_2;
            xs.extend((-3000..3000).map(|d| f32::from_bits((c.to_bits() as i32 + d) as u32)));
        }
        xs.retain(|x| (-104.0..=88.8).contains(x));
        xs.sort_by(f32::total_cmp);
        xs.dedup();
        check_exp(xs.into_iter());
    }

    /// All 2.2e9 f32 inputs of the domain (about three minutes on one core): `cargo test -p
    /// wavefront --release --lib sampler_exp_every_input -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn sampler_exp_every_input() {
        println!("worst {} ulp", check_exp(domain(1)));
    }

    #[test]
    fn sampler_exp_edges() {
        assert!(sampler_exp(f32::NAN).is_nan());
        assert_eq!(sampler_exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(sampler_exp(f32::NEG_INFINITY).to_bits(), 0);
        assert_eq!(sampler_exp(-104.5).to_bits(), 0);
        assert_eq!(sampler_exp(0.0), 1.0);
        assert_eq!(sampler_exp(-0.0), 1.0);
        let max_arg = f32::from_bits(0x42b1_7217);
        assert!(sampler_exp(max_arg).is_finite());
        assert_eq!(
            sampler_exp(f32::from_bits(max_arg.to_bits() + 1)),
            f32::INFINITY
        );
        for x in [-104.0f32, -103.0, -87.4, -87.3, max_arg] {
            assert!(ulps(x, sampler_exp(x)) <= 2.0, "{x}");
        }
        assert!(sampler_exp(-103.0) > 0.0 && sampler_exp(-103.0) < f32::MIN_POSITIVE);
    }

    #[test]
    fn coins_are_in_range_and_seeded() {
        let mut a = CoinRng::new(7);
        let mut b = CoinRng::new(7);
        for _ in 0..1000 {
            let c = a.coin();
            assert!((0.0..1.0).contains(&c));
            assert_eq!(c, b.coin());
        }
        assert_ne!(CoinRng::new(1).coin(), CoinRng::new(2).coin());
    }
}
