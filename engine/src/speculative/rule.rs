//! The accept/reject rule of draft-model speculation (Leviathan et al. 2023, "Fast Inference
//! from Transformers via Speculative Decoding", Algorithm 1; Chen et al. 2023, "Accelerating
//! Large Language Model Decoding with Speculative Sampling", Algorithm 2).
//!
//! At a drafted position the target's distribution is `p` and the drafter's `q`, both the
//! sampler's final distribution ([`crate::sampler::distribution`]: penalties over the same
//! history window, temperature, top-k, top-p, min-p, renormalised), and the drafter drew `x`
//! from `q`. The token is kept with probability min(1, p(x) / q(x)); otherwise the position's
//! token is drawn from the residual norm(max(0, p − q)) and the verification ends there. The
//! emitted token is then distributed as `p` exactly: P(emit y) = q(y)·min(1, p(y)/q(y)) +
//! (1 − β)·max(0, p(y) − q(y)) / (1 − β) = min(q(y), p(y)) + max(0, p(y) − q(y)) = p(y), with
//! β = Σ min(p, q) the acceptance probability. When every draft is kept, one more token (the
//! bonus) is drawn from `p` of the row after the last draft. Greedy sampling (temperature 0)
//! makes `p` and `q` one-hot, so a draft is kept iff it is the target's argmax and the
//! residual is the target's argmax: greedy output is the plain greedy output.
//!
//! # The coin protocol
//!
//! Coins are `CoinRng::coin()`s (uniform in [0, 1), 24 bits). Two streams:
//! - the **drafter's stream**, `CoinRng::new(draft_seed(seed))`: one coin per drafted token, in
//!   draft order, each drawing the token from `q` by [`crate::sampler::pick`];
//! - the **request's stream**, `CoinRng::new(seed)`, the one the plain decode draws: the first
//!   token (from the prefill's logits) takes one coin as in the plain decode; then each
//!   verification of k drafts takes, for drafted rows i = 0, 1, … in order, one acceptance coin
//!   u_i (keep iff u_i < p(x_i)/q(x_i)); at the first rejection one more coin draws the
//!   residual and the verification ends (j + 2 coins for j kept drafts); if all k are kept, one
//!   coin draws the bonus token from row k's `p` with [`crate::sampler::sample`] (k + 1 coins).
//!
//! A verification of no drafts (k = 0) is therefore one coin and one `sample`, the plain
//! decode's step exactly, and the stream a switched-off speculation hands to the device
//! continues where the host left it.

use crate::error::{Error, Result};
use crate::sampler::CoinRng;
use crate::speculative::SpecBug;

/// What the rule made of one drafted token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The draft is kept.
    Accept,
    /// The draft is rejected; this token, from the residual, replaces it and ends the
    /// verification.
    Reject(u32),
}

/// The seed of the drafter's coin stream for a request seeded with `seed`: a SplitMix64 output
/// of a tagged seed, so that it does not run along the request's own stream.
pub fn draft_seed(seed: u64) -> u64 {
    CoinRng::new(seed ^ 0x6472_6166_7465_7273).next_u64() // "drafters"
}

/// Leviathan/Chen at one position: keeps the drafted `x` with probability min(1, p(x)/q(x))
/// (one coin of `rng`), else draws the correction from norm(max(0, p − q)) (a second coin).
/// `p` and `q` are distributions over the same vocabulary (each summing to 1 up to rounding),
/// and `x` must be a token `q` can produce (q(x) > 0). Should the residual have no mass (p
/// and q equal up to rounding, where a rejection has probability ≈ 0), the correction is drawn
/// from `p`. `planted` is the conformance suite's planted bug, `None` outside it.
pub fn judge(
    p: &[f32],
    q: &[f32],
    x: u32,
    rng: &mut CoinRng,
    planted: Option<SpecBug>,
) -> Result<Verdict> {
    if p.len() != q.len() || p.is_empty() {
        return Err(Error::InvalidRequest(format!(
            "the target's distribution has {} entries, the drafter's {}",
            p.len(),
            q.len()
        )));
    }
    let (px, qx) = match (p.get(x as usize), q.get(x as usize)) {
        (Some(&px), Some(&qx)) if qx > 0.0 => (px as f64, qx as f64),
        _ => {
            return Err(Error::InvalidRequest(format!(
                "drafted token {x} has no probability under the drafter's distribution"
            )))
        }
    };
    let coin = rng.coin() as f64;
    let ratio = px / qx;
    let accept = match planted {
        Some(SpecBug::AcceptUnchecked) => true,
        Some(SpecBug::AcceptInverted) => ratio < coin,
        _ => coin < ratio,
    };
    if accept {
        return Ok(Verdict::Accept);
    }
    let coin = rng.coin();
    if planted == Some(SpecBug::ResampleFromTarget) {
        return Ok(Verdict::Reject(draw(p.iter().map(|&v| v as f64), coin)));
    }
    let residual: Vec<f64> = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| (a as f64 - b as f64).max(0.0))
        .collect();
    let mass: f64 = residual.iter().sum();
    if planted == Some(SpecBug::ResidualUnnormalised) {
        // The mistake: the residual walked against the raw coin, as if it summed to 1.
        return Ok(Verdict::Reject(walk(&residual, coin as f64)));
    }
    if mass <= 0.0 {
        return Ok(Verdict::Reject(draw(p.iter().map(|&v| v as f64), coin)));
    }
    Ok(Verdict::Reject(draw(
        residual.iter().map(|&r| r / mass),
        coin,
    )))
}

/// The first id (ascending) whose cumulative probability exceeds `coin · total`; the last id
/// with mass if rounding leaves none (the sampler's `pick`, in f64).
fn draw(dist: impl Iterator<Item = f64> + Clone, coin: f32) -> u32 {
    let total: f64 = dist.clone().sum();
    let d: Vec<f64> = dist.collect();
    walk(&d, coin as f64 * total)
}

/// The first id whose cumulative mass exceeds `r`; the last id with mass if none does.
fn walk(dist: &[f64], r: f64) -> u32 {
    let mut acc = 0.0;
    for (i, &v) in dist.iter().enumerate() {
        acc += v;
        if r < acc {
            return i as u32;
        }
    }
    dist.iter().rposition(|&v| v > 0.0).unwrap_or(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Coins that make each branch happen: the stream's coins are known, so the verdict of
    /// each is worked out by hand.
    #[test]
    fn verdicts_follow_the_ratio_and_the_residual() {
        let seed = 42;
        let coins: Vec<f32> = {
            let mut r = CoinRng::new(seed);
            (0..2).map(|_| r.coin()).collect()
        };
        // p(x) ≥ q(x): always kept, one coin used.
        let mut rng = CoinRng::new(seed);
        let v = judge(&[0.5, 0.5], &[0.25, 0.75], 0, &mut rng, None).unwrap();
        assert_eq!(v, Verdict::Accept);
        assert_eq!(rng.coin(), coins[1], "exactly one coin for an acceptance");
        // p(x) = 0: always rejected; the residual max(0, p − q) is all on token 1.
        let mut rng = CoinRng::new(seed);
        let v = judge(&[0.0, 1.0, 0.0], &[0.5, 0.25, 0.25], 0, &mut rng, None).unwrap();
        assert_eq!(v, Verdict::Reject(1));
        // The acceptance boundary is the first coin: ratio just above keeps, just below not.
        let c = coins[0] as f64;
        let keep = judge(
            &[(c + 0.01) as f32 * 0.5, 1.0],
            &[0.5, 0.5],
            0,
            &mut CoinRng::new(seed),
            None,
        );
        let drop = judge(
            &[(c - 0.01).max(0.0) as f32 * 0.5, 1.0],
            &[0.5, 0.5],
            0,
            &mut CoinRng::new(seed),
            None,
        );
        assert_eq!(keep.unwrap(), Verdict::Accept);
        assert_eq!(drop.unwrap(), Verdict::Reject(1));
        // Greedy: one-hot distributions keep the argmax and correct to it.
        let p = [0.0, 0.0, 1.0];
        for x in 0..3u32 {
            let mut q = [0.0f32; 3];
            q[x as usize] = 1.0;
            let want = if x == 2 {
                Verdict::Accept
            } else {
                Verdict::Reject(2)
            };
            for s in 0..20 {
                assert_eq!(judge(&p, &q, x, &mut CoinRng::new(s), None).unwrap(), want);
            }
        }
        // p = q: always kept (ratio 1 > every coin).
        let d = [0.25f32, 0.25, 0.5];
        assert!((0..50)
            .all(|s| judge(&d, &d, 1, &mut CoinRng::new(s), None).unwrap() == Verdict::Accept));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let mut rng = CoinRng::new(0);
        for (p, q, x) in [
            (&[0.5f32, 0.5][..], &[1.0f32][..], 0u32),
            (&[][..], &[][..], 0),
            (&[0.5, 0.5], &[1.0, 0.0], 1),
            (&[0.5, 0.5], &[0.5, 0.5], 2),
        ] {
            let e = judge(p, q, x, &mut rng, None).unwrap_err();
            assert!(matches!(e, Error::InvalidRequest(_)), "{e:?}");
        }
    }

    #[test]
    fn the_drafters_stream_is_not_the_requests() {
        for seed in [0u64, 1, 7, u64::MAX] {
            let mut a = CoinRng::new(seed);
            let mut b = CoinRng::new(draft_seed(seed));
            let a: Vec<f32> = (0..64).map(|_| a.coin()).collect();
            let b: Vec<f32> = (0..64).map(|_| b.coin()).collect();
            assert!(a.iter().zip(&b).filter(|(x, y)| x == y).count() < 2);
        }
        assert_eq!(draft_seed(3), draft_seed(3));
    }
}
