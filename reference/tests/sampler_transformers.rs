//! The sampler against transformers' own logits processors: fixtures/sampler/goldens.json,
//! made by fixtures/gen/sampler_goldens.py (see its docstring for the recorded fields).

use std::collections::BTreeSet;

use serde_json::Value;
use wavefront_reference::ops;
use wavefront_reference::sampler::{
    apply_repetition_penalty, distribution, min_p_mask, sample, top_k_mask, top_p_mask,
    SamplingParams,
};

/// Probabilities are f32 softmaxes of the same logits divided by the same temperature; the
/// reference subtracts the max before dividing, torch after, so a scaled logit (|l/T| <= 40
/// here) may differ by ~2 ulp (2 · 2^-23 · 40 ≈ 1e-5) and a probability by that relative
/// amount, from the exponent and again from the normaliser: 3e-5 relative.
const PROB_REL: f64 = 3e-5;

fn goldens() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/sampler/goldens.json"
    );
    let text = std::fs::read_to_string(path).expect("fixtures/sampler/goldens.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ids(v: &Value) -> BTreeSet<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn set(mask: &[bool]) -> BTreeSet<usize> {
    mask.iter()
        .enumerate()
        .filter(|(_, &k)| k)
        .map(|(i, _)| i)
        .collect()
}

fn params(c: &Value) -> SamplingParams {
    let p = &c["params"];
    let f = |k: &str| p[k].as_f64().unwrap() as f32;
    SamplingParams {
        temperature: f("temperature"),
        top_k: p["top_k"].as_u64().unwrap() as usize,
        top_p: f("top_p"),
        min_p: f("min_p"),
        repeat_penalty: f("repeat_penalty"),
        ..SamplingParams::default() // transformers has no presence/frequency processor
    }
}

/// Softmax of `x` over the ids in `keep`, zero elsewhere.
fn softmax_over(x: &[f32], keep: &BTreeSet<usize>) -> Vec<f32> {
    let masked: Vec<f32> = (0..x.len())
        .map(|i| {
            if keep.contains(&i) {
                x[i]
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    ops::softmax(ndarray::ArrayView1::from(&masked)).to_vec()
}

fn close(a: f32, b: f32) -> bool {
    ((a - b).abs() as f64) <= PROB_REL * a.abs().max(b.abs()) as f64 + 1e-12
}

#[derive(Default)]
struct Tally {
    cases: usize,
    exact_top_p: usize,
    split_tie_groups: usize,
    near_boundary_ids: usize,
}

/// Checks one case, stage by stage; each warper gets transformers' own input for that stage.
fn check_case(c: &Value, tally: &mut Tally) {
    let name = c["name"].as_str().unwrap();
    let p = params(c);
    let logits = f32s(&c["logits"]);
    let history: Vec<u32> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let n = logits.len();
    // 1. Repetition penalty: bit for bit (torch divides and multiplies by the f32 penalty).
    let mut penalized = logits.clone();
    apply_repetition_penalty(&mut penalized, &history, p.repeat_penalty);
    if let Some(want) = c.get("penalized") {
        assert_eq!(penalized, f32s(want), "{name}: penalized logits");
    }
    // 2. Greedy.
    if let Some(t) = c.get("greedy_token") {
        assert_eq!(
            sample(&logits, &p, &history, 0.5).unwrap() as u64,
            t.as_u64().unwrap(),
            "{name}"
        );
        return;
    }
    let scaled: Vec<f32> = penalized.iter().map(|&l| l / p.temperature).collect();
    // 3. Top-k, on transformers' scaled logits and on the reference's shifted ones.
    let mut keep: BTreeSet<usize> = (0..n).collect();
    if let Some(want) = c.get("kept_top_k") {
        keep = ids(want);
        assert_eq!(set(&top_k_mask(&scaled, p.top_k)), keep, "{name}: top-k");
        let max = penalized.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let shifted: Vec<f32> = penalized
            .iter()
            .map(|&l| (l - max) / p.temperature)
            .collect();
        assert_eq!(
            set(&top_k_mask(&shifted, p.top_k)),
            keep,
            "{name}: top-k after the shift"
        );
    }
    // 4. Top-p: exact except inside tie groups transformers splits (same count, and the
    //    reference keeps the lowest ids) and at tokens within 1e-6 of the threshold.
    if let Some(want) = c.get("kept_top_p") {
        let want = ids(want);
        let got: BTreeSet<usize> = set(&top_p_mask(&softmax_over(&scaled, &keep), p.top_p))
            .intersection(&keep)
            .copied()
            .collect();
        let near = ids(&c["top_p_near_boundary"]);
        let groups: Vec<BTreeSet<usize>> = c["top_p_split_ties"]
            .as_array()
            .unwrap()
            .iter()
            .map(ids)
            .collect();
        let free: BTreeSet<usize> = groups.iter().flatten().chain(&near).copied().collect();
        let outside = |s: &BTreeSet<usize>| s.difference(&free).copied().collect::<BTreeSet<_>>();
        assert_eq!(
            outside(&got),
            outside(&want),
            "{name}: top-p outside ties and boundary"
        );
        for g in &groups {
            let (kept_got, kept_want) = (got.intersection(g).count(), want.intersection(g).count());
            let slack = g.intersection(&near).count();
            assert!(
                kept_got.abs_diff(kept_want) <= slack,
                "{name}: top-p count in tie group {g:?}"
            );
            let lowest: BTreeSet<usize> = g.iter().take(kept_got).copied().collect();
            assert_eq!(
                got.intersection(g).copied().collect::<BTreeSet<_>>(),
                lowest,
                "{name}: lowest ids first"
            );
        }
        tally.exact_top_p += usize::from(groups.is_empty() && near.is_empty());
        tally.split_tie_groups += groups.len();
        tally.near_boundary_ids += near.len();
        keep = want;
    }
    // 5. Min-p on transformers' top-p output.
    if let Some(want) = c.get("kept_min_p") {
        let want = ids(want);
        let got: BTreeSet<usize> = set(&min_p_mask(&softmax_over(&scaled, &keep), p.min_p))
            .intersection(&keep)
            .copied()
            .collect();
        let near = ids(&c["min_p_near_boundary"]);
        tally.near_boundary_ids += near.len();
        assert_eq!(
            got.difference(&near).collect::<Vec<_>>(),
            want.difference(&near).collect::<Vec<_>>(),
            "{name}: min-p"
        );
    }
    // 6. The whole pipeline: the distribution, position by position, or as a multiset where
    //    transformers split a tie group (tied tokens carry equal probability either way).
    let dist = distribution(&logits, &p, &history).unwrap();
    let want = f32s(&c["final_probs"]);
    let near_any = c
        .get("top_p_near_boundary")
        .is_some_and(|v| !v.as_array().unwrap().is_empty())
        || c.get("min_p_near_boundary")
            .is_some_and(|v| !v.as_array().unwrap().is_empty());
    if near_any {
        return; // the kept set itself may differ by a token; checked above
    }
    let split = c
        .get("top_p_split_ties")
        .is_some_and(|v| !v.as_array().unwrap().is_empty());
    let (mut a, mut b) = (dist.clone(), want.clone());
    if split {
        a.sort_by(f32::total_cmp);
        b.sort_by(f32::total_cmp);
    }
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(close(*x, *y), "{name}: probability {i}: {x} vs {y}");
        assert_eq!(*x > 0.0, *y > 0.0, "{name}: support at {i}");
    }
    tally.cases += 1;
}

#[test]
fn sampler_matches_transformers_logits_processors() {
    let g = goldens();
    assert!(g["transformers_version"]
        .as_str()
        .unwrap()
        .starts_with("5."));
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 100);
    let mut tally = Tally::default();
    for c in cases {
        check_case(c, &mut tally);
    }
    eprintln!(
        "{} cases; distributions compared: {}; top-p exact: {}; split tie groups: {}; near-boundary ids: {}",
        cases.len(),
        tally.cases,
        tally.exact_top_p,
        tally.split_tie_groups,
        tally.near_boundary_ids
    );
    // The fixture exercises what it claims to: split ties exist and most cases compare exactly.
    assert!(tally.split_tie_groups > 0 && tally.exact_top_p > 20 && tally.cases > 100);
}
