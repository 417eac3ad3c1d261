//! Sampler properties (proptest) and parameter validation.

use proptest::prelude::*;
use wavefront_reference::sampler::{
    apply_presence_frequency, apply_repetition_penalty, argmax, distribution, min_p_mask, pick,
    sample, top_k_mask, top_p_mask, SamplingParams,
};
use wavefront_reference::{ops, Error};

/// Logits on a grid of 1/8 in [-8, 8]: exact in f32 and rich in ties.
fn tied_logits() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec((-64i32..=64).prop_map(|i| i as f32 / 8.0), 1..40)
}

/// Logits spread over [-20, 20], ties unlikely.
fn spread_logits() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-20.0f32..20.0, 1..40)
}

fn any_logits() -> impl Strategy<Value = Vec<f32>> {
    prop_oneof![tied_logits(), spread_logits()]
}

fn probs_of(logits: &[f32]) -> Vec<f32> {
    ops::softmax(ndarray::ArrayView1::from(logits)).to_vec()
}

fn params() -> impl Strategy<Value = SamplingParams> {
    (
        0.05f32..3.0,
        0usize..12,
        prop_oneof![Just(1.0f32), 0.05f32..1.0],
        prop_oneof![Just(0.0f32), 0.0f32..0.5],
        0.5f32..2.0,
        prop_oneof![Just(0.0f32), -2.0f32..=2.0],
        prop_oneof![Just(0.0f32), -2.0f32..=2.0],
    )
        .prop_map(
            |(temperature, top_k, top_p, min_p, repeat_penalty, presence, frequency)| {
                SamplingParams {
                    temperature,
                    top_k,
                    top_p,
                    min_p,
                    repeat_penalty,
                    presence_penalty: presence,
                    frequency_penalty: frequency,
                }
            },
        )
}

proptest! {
    #[test]
    fn top_k_keeps_the_k_largest_with_ties(logits in any_logits(), k in 1usize..45) {
        let keep = top_k_mask(&logits, k);
        let kept: Vec<f32> = logits.iter().zip(&keep).filter(|(_, &k)| k).map(|(&l, _)| l).collect();
        let dropped: Vec<f32> = logits.iter().zip(&keep).filter(|(_, &k)| !k).map(|(&l, _)| l).collect();
        prop_assert!(kept.len() >= k.min(logits.len()));
        let min_kept = kept.iter().cloned().fold(f32::INFINITY, f32::min);
        prop_assert!(dropped.iter().all(|&d| d < min_kept));
        // The smallest kept logit is the k-th largest: fewer than k logits lie above it.
        prop_assert!(logits.iter().filter(|&&l| l > min_kept).count() < k);
    }

    #[test]
    fn top_p_keeps_the_smallest_head_reaching_top_p(logits in any_logits(), top_p in 0.01f32..0.999) {
        let probs = probs_of(&logits);
        let keep = top_p_mask(&probs, top_p);
        let kept: Vec<f64> = probs.iter().zip(&keep).filter(|(_, &k)| k).map(|(&p, _)| p as f64).collect();
        let dropped: Vec<f64> = probs.iter().zip(&keep).filter(|(_, &k)| !k).map(|(&p, _)| p as f64).collect();
        let mass: f64 = kept.iter().sum();
        let smallest = kept.iter().cloned().fold(f64::INFINITY, f64::min);
        // The kept tokens are a head of the ranking...
        prop_assert!(dropped.iter().all(|&d| d <= smallest));
        // ...whose mass reaches top_p (or that is everything)...
        prop_assert!(mass >= top_p as f64 - 1e-6 || dropped.is_empty());
        // ...and without its least likely token would fall short (f32 sums: 1e-6 slack).
        prop_assert!(mass - smallest < top_p as f64 + 1e-6);
    }

    #[test]
    fn min_p_keeps_what_reaches_the_scaled_threshold(logits in any_logits(), min_p in 0.0f32..=1.0) {
        let probs = probs_of(&logits);
        let keep = min_p_mask(&probs, min_p);
        let max = probs.iter().cloned().fold(0.0f32, f32::max);
        for (p, k) in probs.iter().zip(&keep) {
            prop_assert_eq!(*k, *p >= min_p * max);
        }
        prop_assert!(keep[argmax(&probs).unwrap()]);
    }

    #[test]
    fn zero_or_tiny_temperature_is_argmax(logits in tied_logits(), t in prop_oneof![-1.0f32..=0.0, 1e-30f32..1e-5], coin in 0.0f32..1.0) {
        let params = SamplingParams { temperature: t, ..Default::default() };
        let token = sample(&logits, &params, &[], coin).unwrap() as usize;
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        prop_assert_eq!(logits[token], max);
        if t <= 0.0 {
            // Greedy ignores the coin and takes the lowest index on ties.
            prop_assert_eq!(token, logits.iter().position(|&l| l == max).unwrap());
        }
    }

    #[test]
    fn the_distribution_sums_to_one_and_respects_the_masks(logits in any_logits(), p in params(), history in prop::collection::vec(0u32..50, 0..10)) {
        let dist = distribution(&logits, &p, &history).unwrap();
        prop_assert_eq!(dist.len(), logits.len());
        prop_assert!(dist.iter().all(|&x| (0.0..=1.0).contains(&x)));
        prop_assert!((dist.iter().map(|&x| x as f64).sum::<f64>() - 1.0).abs() < 1e-5);
        // Nothing outside top-k of the penalized logits has mass.
        let mut penalized = logits.clone();
        apply_repetition_penalty(&mut penalized, &history, p.repeat_penalty);
        apply_presence_frequency(&mut penalized, &history, p.presence_penalty, p.frequency_penalty);
        let keep = top_k_mask(&penalized, p.top_k);
        prop_assert!(dist.iter().zip(&keep).all(|(&x, &k)| k || x == 0.0));
    }

    #[test]
    fn masked_tokens_are_never_sampled(logits in any_logits(), p in params(), coin in 0.0f32..1.0) {
        let dist = distribution(&logits, &p, &[]).unwrap();
        let token = sample(&logits, &p, &[], coin).unwrap() as usize;
        prop_assert!(dist[token] > 0.0);
    }

    #[test]
    fn a_larger_coin_never_gives_a_smaller_token(logits in any_logits(), p in params(), a in 0.0f32..1.0, b in 0.0f32..1.0) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let t_lo = sample(&logits, &p, &[], lo).unwrap();
        let t_hi = sample(&logits, &p, &[], hi).unwrap();
        prop_assert!(t_lo <= t_hi);
    }

    #[test]
    fn the_coin_lands_in_its_token_interval(logits in spread_logits(), coin in 0.0f32..1.0) {
        // cdf(token - 1) <= coin < cdf(token), in f64 with 1e-5 slack for the f32 walk.
        let dist = distribution(&logits, &SamplingParams::default(), &[]).unwrap();
        let token = pick(&dist, coin);
        let before: f64 = dist[..token].iter().map(|&x| x as f64).sum();
        prop_assert!(before <= coin as f64 + 1e-5 && (coin as f64) < before + dist[token] as f64 + 1e-5);
    }

    #[test]
    fn presence_once_frequency_per_occurrence(logits in any_logits(), history in prop::collection::vec(0u32..60, 0..30), presence in -2.0f32..=2.0, frequency in -2.0f32..=2.0) {
        let mut out = logits.clone();
        apply_presence_frequency(&mut out, &history, presence, frequency);
        for (i, (&before, &after)) in logits.iter().zip(&out).enumerate() {
            let c = history.iter().filter(|&&h| h == i as u32).count();
            let want = if c == 0 { before } else { before - (c as f32 * frequency + presence) };
            prop_assert_eq!(after.to_bits(), want.to_bits(), "id {} seen {} times", i, c);
        }
    }

    #[test]
    fn repetition_penalty_applies_once_per_distinct_id(logits in any_logits(), history in prop::collection::vec(0u32..60, 0..30), penalty in 0.5f32..3.0) {
        let mut out = logits.clone();
        apply_repetition_penalty(&mut out, &history, penalty);
        for (i, (&before, &after)) in logits.iter().zip(&out).enumerate() {
            let want = if history.contains(&(i as u32)) {
                if before < 0.0 { before * penalty } else { before / penalty }
            } else {
                before
            };
            prop_assert_eq!(after, want);
        }
    }
}

#[test]
fn greedy_takes_the_lowest_index_on_ties() {
    assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), Some(1));
    assert_eq!(argmax(&[]), None);
    let p = SamplingParams::greedy();
    assert_eq!(sample(&[0.5, 2.0, 2.0], &p, &[], 0.99).unwrap(), 1);
    // The penalty comes first: penalising token 1 hands the argmax to token 2.
    let p = SamplingParams {
        repeat_penalty: 2.0,
        ..SamplingParams::greedy()
    };
    assert_eq!(sample(&[0.5, 2.0, 1.5], &p, &[1, 1], 0.0).unwrap(), 2);
}

#[test]
fn presence_and_frequency_follow_openais_formula() {
    // OpenAI's API reference: mu[j] - c[j] * alpha_frequency - float(c[j] > 0) * alpha_presence,
    // worked by hand with values exact in f32. History [1, 1, 2, 7]: c = [0, 2, 1, 0] (7 is
    // outside the vocabulary of 4 and ignored).
    let mut l = vec![1.0f32, 2.0, 0.5, -3.0];
    apply_presence_frequency(&mut l, &[1, 1, 2, 7], 0.25, 0.5);
    // id 1: 2 - (2 * 0.5 + 0.25) = 0.75; id 2: 0.5 - (0.5 + 0.25) = -0.25.
    assert_eq!(l, vec![1.0, 0.75, -0.25, -3.0]);
    // Negative values encourage repeats; -inf stays -inf.
    let mut l = vec![f32::NEG_INFINITY, 0.0];
    apply_presence_frequency(&mut l, &[0, 1, 1, 1], -1.0, -0.5);
    assert_eq!(l, vec![f32::NEG_INFINITY, 2.5]);
    // After the repetition penalty (vLLM's and llama.cpp's order): token 1's 4.0 / 2 = 2.0,
    // then 2.0 - (2 * 0.5) = 1.0 < 1.5, so token 2 wins. (Without the frequency penalty
    // token 1 would, at 2.0; in the other order, (4.0 - 1.0) / 2 = 1.5 ties token 2 and the
    // lower id, 1, would.)
    let p = SamplingParams {
        repeat_penalty: 2.0,
        frequency_penalty: 0.5,
        ..SamplingParams::greedy()
    };
    let dist = distribution(&[1.0, 4.0, 1.5], &p, &[1, 1]).unwrap();
    assert_eq!(dist, vec![0.0, 0.0, 1.0]);
    let p = SamplingParams {
        presence_penalty: 1.5,
        ..SamplingParams::greedy()
    };
    assert_eq!(sample(&[0.5, 2.0, 1.0], &p, &[1], 0.0).unwrap(), 2);
    assert_eq!(sample(&[0.5, 2.0, 1.0], &p, &[], 0.0).unwrap(), 1);
}

#[test]
fn a_known_distribution_and_its_draws() {
    // logits ln(1), ln(2), ln(3), ln(4): probabilities 0.1, 0.2, 0.3, 0.4.
    let logits: Vec<f32> = [1f32, 2.0, 3.0, 4.0].iter().map(|x| x.ln()).collect();
    let dist = distribution(&logits, &SamplingParams::default(), &[]).unwrap();
    for (d, w) in dist.iter().zip([0.1, 0.2, 0.3, 0.4]) {
        assert!((d - w).abs() < 1e-6);
    }
    let draw = |coin| sample(&logits, &SamplingParams::default(), &[], coin).unwrap();
    assert_eq!(
        [
            draw(0.0),
            draw(0.05),
            draw(0.15),
            draw(0.35),
            draw(0.65),
            draw(0.999)
        ],
        [0, 0, 1, 2, 3, 3]
    );
    // top_p 0.5: 0.4 ranks first (mass above 0 < 0.5), 0.3 second (0.4 < 0.5), 0.2 third
    // (0.7 >= 0.5): dropped. Renormalised: 3/7, 4/7.
    let p = SamplingParams {
        top_p: 0.5,
        ..Default::default()
    };
    let dist = distribution(&logits, &p, &[]).unwrap();
    assert_eq!(&dist[..2], &[0.0, 0.0]);
    assert!((dist[2] - 3.0 / 7.0).abs() < 1e-6 && (dist[3] - 4.0 / 7.0).abs() < 1e-6);
    // min_p 0.6: threshold 0.24 keeps 0.3 and 0.4; top_k 1 keeps the 0.4.
    let p = SamplingParams {
        min_p: 0.6,
        ..Default::default()
    };
    assert_eq!(
        distribution(&logits, &p, &[])
            .unwrap()
            .iter()
            .filter(|&&x| x > 0.0)
            .count(),
        2
    );
    let p = SamplingParams {
        top_k: 1,
        ..Default::default()
    };
    assert_eq!(
        distribution(&logits, &p, &[]).unwrap(),
        vec![0.0, 0.0, 0.0, 1.0]
    );
}

#[test]
fn minus_infinity_logits_are_allowed_and_never_drawn() {
    let logits = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0];
    let dist = distribution(&logits, &SamplingParams::default(), &[0]).unwrap();
    assert_eq!(dist, vec![0.0, 0.5, 0.0, 0.5]);
    assert_eq!(
        sample(&logits, &SamplingParams::default(), &[], 0.0).unwrap(),
        1
    );
}

#[test]
fn history_ids_outside_the_vocabulary_are_ignored() {
    let mut logits = vec![1.0, -1.0];
    apply_repetition_penalty(&mut logits, &[7, 1, 1, 2], 2.0);
    assert_eq!(logits, vec![1.0, -2.0]);
}

fn param_error(p: SamplingParams) -> &'static str {
    match distribution(&[1.0, 2.0], &p, &[]) {
        Err(Error::BadSamplingParam { param, .. }) => param,
        other => panic!("{p:?}: expected BadSamplingParam, got {other:?}"),
    }
}

#[test]
fn bad_parameters_are_typed_errors() {
    let d = SamplingParams::default();
    assert_eq!(
        param_error(SamplingParams {
            temperature: f32::NAN,
            ..d
        }),
        "temperature"
    );
    assert_eq!(
        param_error(SamplingParams {
            temperature: f32::INFINITY,
            ..d
        }),
        "temperature"
    );
    assert_eq!(param_error(SamplingParams { top_p: 0.0, ..d }), "top_p");
    assert_eq!(
        param_error(SamplingParams {
            top_p: f32::NAN,
            ..d
        }),
        "top_p"
    );
    assert_eq!(param_error(SamplingParams { min_p: -0.1, ..d }), "min_p");
    assert_eq!(param_error(SamplingParams { min_p: 1.5, ..d }), "min_p");
    assert_eq!(
        param_error(SamplingParams {
            repeat_penalty: 0.0,
            ..d
        }),
        "repeat_penalty"
    );
    assert_eq!(
        param_error(SamplingParams {
            repeat_penalty: f32::NAN,
            ..d
        }),
        "repeat_penalty"
    );
    for v in [2.5, -2.01, f32::NAN, f32::INFINITY] {
        let p = SamplingParams {
            presence_penalty: v,
            ..d
        };
        assert_eq!(param_error(p), "presence_penalty");
        let p = SamplingParams {
            frequency_penalty: v,
            ..d
        };
        assert_eq!(param_error(p), "frequency_penalty");
    }
    for coin in [-0.1, 1.0, f32::NAN] {
        match sample(&[1.0, 2.0], &d, &[], coin) {
            Err(Error::BadSamplingParam { param: "coin", .. }) => {}
            other => panic!("coin {coin}: {other:?}"),
        }
    }
}

#[test]
fn bad_logits_are_typed_errors() {
    let d = SamplingParams::default();
    assert_eq!(
        sample(&[], &d, &[], 0.5),
        Err(Error::Empty { what: "logits" })
    );
    let bad = |logits: &[f32]| match distribution(logits, &d, &[]) {
        Err(Error::BadLogits { index, .. }) => index,
        other => panic!("{logits:?}: {other:?}"),
    };
    assert_eq!(bad(&[0.0, f32::NAN]), 1);
    assert_eq!(bad(&[f32::INFINITY, 0.0]), 0);
    assert_eq!(bad(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    // A penalty below 1 can push a large logit to +inf.
    let p = SamplingParams {
        repeat_penalty: 0.5,
        ..d
    };
    match distribution(&[3e38, 1.0], &p, &[0]) {
        Err(Error::BadLogits { index: 0, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn thresholds_at_exact_equality() {
    // Exact binary fractions, so the sums are exact. top-p: a token whose mass above equals
    // top_p is dropped (transformers removes cumulative-ascending mass <= 1 - top_p).
    let probs = [0.5, 0.25, 0.125, 0.125];
    assert_eq!(top_p_mask(&probs, 0.75), vec![true, true, false, false]);
    assert_eq!(top_p_mask(&probs, 0.5), vec![true, false, false, false]);
    assert_eq!(top_p_mask(&probs, 0.875), vec![true, true, true, false]);
    // Ties rank by lower id: of the two 0.125s, id 2 ranks above id 3.
    assert_eq!(
        top_p_mask(&[0.125, 0.5, 0.25, 0.125], 0.8),
        vec![true, true, true, false]
    );
    // min-p: a probability equal to min_p * max is kept (transformers removes p < threshold).
    assert_eq!(
        min_p_mask(&[0.5, 0.25, 0.25 - 1.0 / 1024.0], 0.5),
        vec![true, true, false]
    );
    // top-k: the k-th largest and everything tied with it.
    assert_eq!(
        top_k_mask(&[1.0, 3.0, 2.0, 2.0, 0.0], 2),
        vec![false, true, true, true, false]
    );
}

#[test]
fn pick_walks_ids_in_ascending_order() {
    assert_eq!(pick(&[0.25, 0.0, 0.75], 0.25), 2);
    assert_eq!(pick(&[0.25, 0.0, 0.75], 0.2499), 0);
    // Unnormalised input: the coin scales with the total.
    assert_eq!(pick(&[1.0, 3.0], 0.3), 1);
    // Fallbacks, unreachable from `distribution`: the last id with mass, or 0 if none has any.
    assert_eq!(pick(&[0.5, f32::INFINITY, 0.0], 0.5), 1);
    assert_eq!(pick(&[0.0, 0.0], 0.5), 0);
}
