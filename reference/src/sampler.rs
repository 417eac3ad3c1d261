//! Turning logits into a token: repetition penalty, presence and frequency penalties,
//! temperature, top-k, top-p, min-p, then one draw. The randomness is an argument (`coin`, uniform in [0, 1)), so the reference and the
//! engine, given the same coin, pick the same token.
//!
//! The order and semantics are those of transformers' `RepetitionPenaltyLogitsProcessor`,
//! `TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper` and `MinPLogitsWarper`
//! applied in that order, with ties broken by token id:
//! 1. each distinct id of `history` (ids outside the vocabulary are ignored) has its logit
//!    multiplied by the penalty if negative, divided by it otherwise;
//!    then OpenAI's presence and frequency penalties (transformers has no processor for them;
//!    the formula is OpenAI's API reference, "Parameter details": `mu[j] - c[j] *
//!    alpha_frequency - float(c[j] > 0) * alpha_presence`, as vLLM and llama.cpp apply it after
//!    the repetition penalty): an id occurring c > 0 times in `history` has `c * frequency +
//!    presence` subtracted from its logit, in f32 in that order;
//! 2. temperature <= 0 is greedy: the argmax (lowest id on ties) gets probability 1;
//! 3. logits are divided by the temperature (after subtracting their maximum, which changes
//!    neither the softmax nor any mask, and keeps a tiny temperature from overflowing);
//! 4. top-k keeps the logits >= the k-th largest (ties at the boundary kept);
//! 5. softmax over the kept tokens;
//! 6. top-p ranks the kept tokens by probability (descending, ties by lower id) and keeps a
//!    token iff the mass ranked strictly above it is < top_p (the top token always);
//! 7. min-p keeps tokens with probability >= min_p * the largest;
//! 8. the kept probabilities are renormalised; `r = coin * total`, and the token is the first
//!    id, in ascending order, whose cumulative probability exceeds `r`.

use crate::error::{Error, Result};

/// The sampling knobs; each is off at its `Default`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Divides the logits; <= 0 means greedy (argmax). Not NaN, not infinite.
    pub temperature: f32,
    /// Keep the k most likely tokens (ties included); 0 = off.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose mass reaches top_p; >= 1 = off.
    pub top_p: f32,
    /// Keep tokens with probability >= min_p * the largest; 0 = off; at most 1.
    pub min_p: f32,
    /// Penalise tokens already in the history (> 1 discourages repeats); 1 = off.
    pub repeat_penalty: f32,
    /// Subtracted once from the logit of every id in the history; in [-2, 2], 0 = off.
    pub presence_penalty: f32,
    /// Subtracted from an id's logit once per occurrence in the history; in [-2, 2], 0 = off.
    pub frequency_penalty: f32,
}

impl Default for SamplingParams {
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
    /// Greedy decoding: temperature 0, everything else off.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// Checks every field's domain.
    pub fn validate(&self) -> Result<()> {
        let bad = |param, value, reason| {
            Err(Error::BadSamplingParam {
                param,
                value,
                reason,
            })
        };
        let t = self.temperature;
        if !t.is_finite() {
            return bad(
                "temperature",
                t,
                "must be a finite number (<= 0 for greedy)",
            );
        }
        if self.top_p.is_nan() || self.top_p <= 0.0 {
            return bad("top_p", self.top_p, "must be > 0 (>= 1 for off)");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p, "must be in [0, 1] (0 for off)");
        }
        let r = self.repeat_penalty;
        if !(r > 0.0 && r.is_finite()) {
            return bad(
                "repeat_penalty",
                r,
                "must be a finite number > 0 (1 for off)",
            );
        }
        for (param, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(param, v, "must be in [-2, 2] (0 for off)");
            }
        }
        Ok(())
    }
}

/// Samples a token id from `logits` (vocab) given the `history` of ids and a `coin` in [0, 1).
pub fn sample(logits: &[f32], params: &SamplingParams, history: &[u32], coin: f32) -> Result<u32> {
    if !(0.0..1.0).contains(&coin) {
        let reason = "must be in [0, 1)";
        return Err(Error::BadSamplingParam {
            param: "coin",
            value: coin,
            reason,
        });
    }
    let probs = distribution(logits, params, history)?; // (vocab)
    Ok(pick(&probs, coin) as u32)
}

/// The distribution [`sample`] draws from: (vocab) probabilities summing to 1, zero where masked.
pub fn distribution(logits: &[f32], params: &SamplingParams, history: &[u32]) -> Result<Vec<f32>> {
    params.validate()?;
    check_logits(logits)?;
    // 1. Repetition penalty, then presence and frequency.
    let mut logits = logits.to_vec(); // (vocab)
    apply_repetition_penalty(&mut logits, history, params.repeat_penalty);
    apply_presence_frequency(
        &mut logits,
        history,
        params.presence_penalty,
        params.frequency_penalty,
    );
    if let Some(index) = logits.iter().position(|&l| l == f32::INFINITY) {
        let reason = "overflows to +inf under the penalties";
        return Err(Error::BadLogits {
            index,
            value: f32::INFINITY,
            reason,
        });
    }
    // 2. Greedy: all the mass on the first argmax.
    let best = argmax(&logits).ok_or(Error::Empty { what: "logits" })?;
    if params.temperature <= 0.0 {
        let mut one_hot = vec![0.0; logits.len()];
        one_hot[best] = 1.0;
        return Ok(one_hot);
    }
    // 3. Temperature, on logits shifted so that the largest is 0.
    let max = logits[best];
    let scaled: Vec<f32> = logits
        .iter()
        .map(|&l| (l - max) / params.temperature)
        .collect();
    // 4. Top-k.
    let mut keep = top_k_mask(&scaled, params.top_k);
    // 5. Softmax over the kept tokens.
    let masked: Vec<f32> = mask(&scaled, &keep, f32::NEG_INFINITY);
    let probs = softmax(&masked);
    // 6. Top-p.
    and_assign(&mut keep, &top_p_mask(&probs, params.top_p));
    // 7. Min-p, on the probabilities top-p left.
    let probs = mask(&probs, &keep, 0.0);
    and_assign(&mut keep, &min_p_mask(&probs, params.min_p));
    // 8. Renormalise what is kept.
    let probs = mask(&probs, &keep, 0.0);
    let total: f32 = probs.iter().sum();
    Ok(probs.iter().map(|&p| p / total).collect())
}

/// The draw of step 8: the first id (ascending) whose cumulative probability exceeds
/// `coin * total`. Falls back to the last id with nonzero probability, which only rounding
/// can reach.
pub fn pick(probs: &[f32], coin: f32) -> usize {
    let total: f32 = probs.iter().sum();
    let r = coin * total;
    let mut acc = 0.0f32;
    for (i, &p) in probs.iter().enumerate() {
        acc += p;
        if r < acc {
            return i;
        }
    }
    probs.iter().rposition(|&p| p > 0.0).unwrap_or(0)
}

/// Step 1, in place: each distinct id of `history` below `logits.len()` has its logit
/// multiplied by `penalty` if negative, divided by it otherwise (once, however often it occurs).
pub fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    let mut seen = vec![false; logits.len()];
    for &id in history {
        let id = id as usize;
        if id < logits.len() && !seen[id] {
            seen[id] = true;
            let l = logits[id];
            logits[id] = if l < 0.0 { l * penalty } else { l / penalty };
        }
    }
}

/// Step 1, second part, in place: each id below `logits.len()` occurring c > 0 times in
/// `history` gets `l - (c * frequency + presence)` (c as f32, each operation rounded: the
/// kernels repeat it without contraction). The logits of ids not in the history are untouched.
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

/// Index of the largest logit, the lowest on ties; `None` if empty. Input must be NaN-free.
pub fn argmax(logits: &[f32]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &l) in logits.iter().enumerate() {
        if best.is_none_or(|b| l > logits[b]) {
            best = Some(i);
        }
    }
    best
}

/// Step 4: `true` for the logits >= the k-th largest (ties kept); all `true` if k is 0 or
/// at least the vocabulary size.
pub fn top_k_mask(logits: &[f32], k: usize) -> Vec<bool> {
    if k == 0 || k >= logits.len() {
        return vec![true; logits.len()];
    }
    let mut sorted = logits.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a)); // descending
    let kth = sorted[k - 1];
    logits.iter().map(|&l| l >= kth).collect()
}

/// Step 6: ranks `probs` (descending, ties by lower id) and keeps a token iff the mass ranked
/// strictly above it is < `top_p`; the top-ranked token is always kept. All `true` if
/// `top_p >= 1`.
pub fn top_p_mask(probs: &[f32], top_p: f32) -> Vec<bool> {
    if top_p >= 1.0 {
        return vec![true; probs.len()];
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut keep = vec![false; probs.len()];
    let mut above = 0.0f32;
    for (rank, &i) in order.iter().enumerate() {
        keep[i] = rank == 0 || above < top_p;
        above += probs[i];
    }
    keep
}

/// Step 7: keeps the probabilities >= `min_p` times the largest.
pub fn min_p_mask(probs: &[f32], min_p: f32) -> Vec<bool> {
    let max = probs.iter().fold(0.0f32, |m, &p| m.max(p));
    let threshold = min_p * max;
    probs.iter().map(|&p| p >= threshold).collect()
}

/// Step 5: `e^(x - max) / Σ e^(x - max)` with [`sampler_exp`] and the sum taken in index order;
/// entries at -inf get 0. (Not `ops::softmax`: attention keeps libm's `exp` there.)
pub fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let e: Vec<f32> = x.iter().map(|&v| sampler_exp(v - max)).collect(); // (n), each in [0, 1]
    let sum: f32 = e.iter().sum();
    e.iter().map(|&v| v / sum).collect()
}

/// `e^x` in f32, built only from correctly rounded IEEE operations (fused multiply-add,
/// multiply, round half to even, the bits of 2^n, one f64 → f32 rounding), so that any machine
/// doing those operations in this order gets the same bits: the engine's CPU sampler and its
/// GPU kernel (`wf_sampler_exp` in kernels/common.h) repeat it operation for operation. libm's
/// `expf` and the GPUs' `expf` are each within an ulp or two but differ from each other in the
/// last bit, and one bit of a probability can move a top-p boundary or the draw.
///
/// 1. NaN → NaN; x > 88.722832 (the largest f32 whose e^x is below f32::MAX) → +inf;
///    x < -104 (e^x below half the smallest subnormal) → 0, -inf included;
/// 2. in f64: n = round_half_even(x · log2 e); r = x - n · ln 2 with ln 2 in two parts,
///    |r| ≤ 0.35;
/// 3. e^r by its Taylor polynomial of degree 12 in Horner form, one fma per step (truncation
///    and rounding near 2^-52 relative);
/// 4. times 2^n (exact in f64), rounded once to f32 (subnormals included).
///
/// An f32 evaluation would be within 2 ulp too but not monotone (its own rounding wobbles by
/// an ulp between neighbouring inputs); this one is the correctly rounded e^x except within
/// ~2^-50 of a rounding boundary, and monotone on every f32 (the engine's exhaustive test).
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

/// Rejects what cannot be turned into a distribution: no logits, NaN, +inf, all -inf.
fn check_logits(logits: &[f32]) -> Result<()> {
    if logits.is_empty() {
        return Err(Error::Empty { what: "logits" });
    }
    for (index, &value) in logits.iter().enumerate() {
        if value.is_nan() || value == f32::INFINITY {
            let reason = "must be finite or -inf";
            return Err(Error::BadLogits {
                index,
                value,
                reason,
            });
        }
    }
    if logits.iter().all(|&l| l == f32::NEG_INFINITY) {
        let reason = "every logit is -inf";
        return Err(Error::BadLogits {
            index: 0,
            value: f32::NEG_INFINITY,
            reason,
        });
    }
    Ok(())
}

/// `x` where `keep`, `fill` elsewhere.
fn mask(x: &[f32], keep: &[bool], fill: f32) -> Vec<f32> {
    x.iter()
        .zip(keep)
        .map(|(&v, &k)| if k { v } else { fill })
        .collect()
}

fn and_assign(keep: &mut [bool], other: &[bool]) {
    keep.iter_mut().zip(other).for_each(|(k, &o)| *k &= o);
}

#[cfg(test)]
mod tests {
    use super::sampler_exp;

    /// The error of `got` against e^x (f64), in f32 ulps at e^x (2^-149 below 2^-126).
    fn ulps(x: f32, got: f32) -> f64 {
        let want = (x as f64).exp();
        let exp2 = (want as f32).abs().log2().floor().max(-126.0) as i32;
        (got as f64 - want).abs() / 2f64.powi(exp2 - 23)
    }

    /// Every `stride`-th f32 of [lo, hi] (same sign), ascending.
    fn sweep(lo: f32, hi: f32, stride: usize) -> Vec<f32> {
        let (a, b) = (lo.to_bits(), hi.to_bits());
        let (a, b) = (a.min(b), a.max(b));
        let mut v: Vec<f32> = (a..=b).step_by(stride).map(f32::from_bits).collect();
        v.sort_by(f32::total_cmp);
        v
    }

    #[test]
    fn sampler_exp_is_within_2_ulp_and_monotone() {
        let mut xs = sweep(-104.0, -0.0, 97);
        xs.extend(sweep(0.0, 88.8, 97));
        // every f32 within 3000 of each point where n = round(x log2 e) steps, and of the
        // subnormal boundary
        for k in -151..=128 {
            let c = (k as f32 + 0.5) * std::f32::consts::LN_2;
            xs.extend((-3000..3000).map(|d| f32::from_bits((c.to_bits() as i32 + d) as u32)));
        }
        xs.retain(|x| (-104.0..=88.8).contains(x));
        xs.sort_by(f32::total_cmp);
        let (mut worst, mut at) = (0.0f64, 0.0f32);
        let mut prev = 0.0f32;
        for &x in &xs {
            let got = sampler_exp(x);
            if x > f32::from_bits(0x42b1_7217) {
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
        // the first and last finite nonzero results are e^x rounded (or within 2 ulp)
        for x in [-104.0f32, -103.0, -87.4, -87.3, max_arg] {
            assert!(ulps(x, sampler_exp(x)) <= 2.0, "{x}");
        }
        assert!(sampler_exp(-103.0) > 0.0 && sampler_exp(-103.0) < f32::MIN_POSITIVE);
    }
}
