//! Model-level conformance: an engine against the reference on a whole model — hidden states
//! and logits at every position, the KV state (every layer, every position) through prefill,
//! decode and rollback, sampled tokens with shared coins, and greedy streams under the top-5
//! divergence rule (DESIGN.md; vLLM's `check_logprobs_close`).

use serde::Serialize;
use wavefront::backend::Backend;
use wavefront::sampler::CoinRng;
use wavefront::{DType, Engine, Logits, Result, SamplingParams};
use wavefront_reference as r;

use crate::cases::{sample::to_reference, Check};
use crate::compare::{compare, compare_ids, Comparison};
use crate::tolerance::{tolerance, Kind, Tolerance};

/// The tolerance for hidden states, logits and KV of `engine` on its model: f32 reassociation
/// when the backend keeps activations and KV in f32 (the weights are the same on both sides),
/// else the 16-bit anchor.
pub fn model_tolerance<B: Backend>(engine: &Engine<B>) -> Tolerance {
    let c = engine.config();
    let f32_path = engine
        .backend()
        .matmul_input_dtype(engine.backend().weight_dtype())
        == DType::F32
        && engine.kv_dtype() == DType::F32;
    if f32_path {
        let k = c.hidden_size.max(c.intermediate_size).max(c.q_dim());
        tolerance(Kind::ModelF32 {
            layers: c.n_layers,
            k,
        })
    } else {
        tolerance(Kind::Model16)
    }
}

/// Whether the backend keeps matmul inputs and the KV cache in f32 (then only reassociation
/// separates it from the reference, which gets the engine's weights).
pub fn is_f32_path<B: Backend>(engine: &Engine<B>) -> bool {
    let b = engine.backend();
    b.matmul_input_dtype(b.weight_dtype()) == DType::F32 && engine.kv_dtype() == DType::F32
}

/// Hidden states after every layer, the final norm and the logits of one forward of `tokens`.
pub fn check_trace<B: Backend>(
    engine: &Engine<B>,
    reference: &r::Model,
    tokens: &[u32],
    tol: f64,
) -> Result<Vec<Check>> {
    let mut seq = engine.new_sequence(tokens.len() + 1)?;
    let got = engine.forward_traced(&mut seq, tokens)?;
    let mut cache = reference.new_cache(tokens.len() + 1);
    let want = reference
        .forward_traced(tokens, &mut cache)
        .map_err(reference_error)?;
    let mut checks = Vec::new();
    for (i, (w, g)) in want.hidden.iter().zip(&got.hidden).enumerate() {
        checks.push(Check::new(format!("hidden[{i}]"), compare(flat(w), g, tol)));
    }
    if want.hidden.len() != got.hidden.len() {
        checks.push(Check::new(
            "hidden states",
            Comparison::fail(format!(
                "{} layers recorded, the reference has {}",
                got.hidden.len(),
                want.hidden.len()
            )),
        ));
    }
    checks.push(Check::new(
        "final_hidden",
        compare(flat(&want.final_hidden), &got.final_hidden, tol),
    ));
    checks.push(Check::new(
        "logits",
        compare(flat(&want.logits), &got.logits, tol),
    ));
    Ok(checks)
}

fn flat(a: &ndarray::Array2<f32>) -> &[f32] {
    a.as_slice()
        .expect("the reference returns standard-layout arrays")
}

pub fn reference_error(e: r::Error) -> wavefront::Error {
    wavefront::Error::InvalidRequest(format!("reference: {e}"))
}

/// K and V of every layer and position of the engine's cache against the reference's.
pub fn check_kv<B: Backend>(
    engine: &Engine<B>,
    cache: &wavefront::kv_cache::KvCache<B::Tensor>,
    reference: &r::KvCache,
    label: &str,
    tol: f64,
) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    if cache.len() != reference.len() {
        checks.push(Check::new(
            format!("{label}: length"),
            Comparison::fail(format!(
                "engine cache holds {} positions, the reference {}",
                cache.len(),
                reference.len()
            )),
        ));
        return Ok(checks);
    }
    let (mut gk, mut gv, mut wk, mut wv) = (vec![], vec![], vec![], vec![]);
    for layer in 0..engine.config().n_layers {
        let (k, v) = cache.read_layer(engine.backend(), layer)?;
        gk.extend(k);
        gv.extend(v);
        wk.extend(reference.k(layer).iter().copied());
        wv.extend(reference.v(layer).iter().copied());
    }
    checks.push(Check::new(format!("{label}: K"), compare(&wk, &gk, tol)));
    checks.push(Check::new(format!("{label}: V"), compare(&wv, &gv, tol)));
    Ok(checks)
}

/// The KV state after a prefill of `tokens[..prefill]`, after decoding the rest one at a time,
/// after rolling back to `prefill + 1`, and after decoding again from there.
pub fn kv_lifecycle<B: Backend>(
    engine: &Engine<B>,
    reference: &r::Model,
    tokens: &[u32],
    prefill: usize,
    tol: f64,
) -> Result<Vec<Check>> {
    let cap = tokens.len() + 1;
    let mut seq = engine.new_sequence(cap)?;
    let mut rc = reference.new_cache(cap);
    let mut checks = Vec::new();
    engine.forward(&mut seq, &tokens[..prefill], Logits::Last)?;
    reference
        .forward(&tokens[..prefill], &mut rc)
        .map_err(reference_error)?;
    checks.extend(check_kv(engine, &seq.cache, &rc, "after prefill", tol)?);
    let mark = (prefill + 1).min(tokens.len());
    let mut snap = None;
    for (i, &t) in tokens.iter().enumerate().skip(prefill) {
        if i == mark {
            snap = Some(seq.cache.snapshot());
        }
        engine.forward(&mut seq, &[t], Logits::Last)?;
        reference.decode(t, &mut rc).map_err(reference_error)?;
    }
    checks.extend(check_kv(engine, &seq.cache, &rc, "after decode", tol)?);
    if let Some(snap) = snap {
        seq.cache.rollback_to(snap)?;
        rc.truncate(snap.len());
        checks.extend(check_kv(engine, &seq.cache, &rc, "after rollback", tol)?);
        for &t in &tokens[mark..] {
            engine.forward(&mut seq, &[t], Logits::Last)?;
            reference.decode(t, &mut rc).map_err(reference_error)?;
        }
        checks.extend(check_kv(engine, &seq.cache, &rc, "after re-decode", tol)?);
    }
    Ok(checks)
}

/// How sampled streams may differ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleRule {
    /// Identical: the engine computes in f32 with the reference's weights, so the same coins
    /// must give the same tokens.
    Exact,
    /// Identical up to the first divergence, which is allowed only where 16-bit arithmetic
    /// explains it: both sides' logits at that step within `nmse` of each other, and the shared
    /// coin falling between the two sides' cumulative probabilities at the lower of the two
    /// tokens (the distributions differ there, not the samplers). Later steps are not compared.
    Divergence { nmse: f64 },
}

/// The rule for `engine`: exact on the f32 path, the divergence rule with the model tolerance
/// otherwise.
pub fn sample_rule<B: Backend>(engine: &Engine<B>) -> SampleRule {
    if is_f32_path(engine) {
        SampleRule::Exact
    } else {
        SampleRule::Divergence {
            nmse: model_tolerance(engine).nmse,
        }
    }
}

/// Cumulative probability up to and including `id`, summed in index order as the samplers do.
fn cdf(p: &[f32], id: u32) -> f32 {
    p[..=id as usize].iter().sum()
}

/// `steps` tokens sampled by the engine and by the reference from their own logits with the
/// same coins (a shared seeded stream) and the whole context as penalty history, judged by `rule`.
pub fn sampled_tokens<B: Backend>(
    engine: &Engine<B>,
    reference: &r::Model,
    prompt: &[u32],
    params: &SamplingParams,
    steps: usize,
    seed: u64,
    rule: SampleRule,
) -> Result<Check> {
    let cap = prompt.len() + steps + 1;
    let mut seq = engine.new_sequence(cap)?;
    let mut rc = reference.new_cache(cap);
    let rp = to_reference(params);
    let mut coins = CoinRng::new(seed);
    let (mut ctx_e, mut ctx_r) = (prompt.to_vec(), prompt.to_vec());
    engine.forward(&mut seq, prompt, Logits::Last)?;
    let mut logits = reference
        .forward(prompt, &mut rc)
        .map_err(reference_error)?
        .row(prompt.len() - 1)
        .to_vec();
    let (mut got, mut want) = (Vec::new(), Vec::new());
    let mut divergence = None;
    for step in 0..steps {
        let coin = coins.coin();
        let te = engine.sample(&seq, params, &ctx_e, coin)?;
        let tr = r::sampler::sample(&logits, &rp, &ctx_r, coin).map_err(reference_error)?;
        got.push(te);
        want.push(tr);
        if te != tr {
            divergence = Some((step, coin, engine.last_logits(&seq)?, te, tr));
            break;
        }
        if step + 1 == steps {
            break;
        }
        ctx_e.push(te);
        ctx_r.push(tr);
        engine.forward(&mut seq, &[te], Logits::Last)?;
        logits = reference
            .decode(tr, &mut rc)
            .map_err(reference_error)?
            .to_vec();
    }
    let p = params;
    let what = format!(
        "sampled {steps} (t={},k={},p={},minp={},pen={})",
        p.temperature, p.top_k, p.top_p, p.min_p, p.repeat_penalty
    );
    let cmp = match (divergence, rule) {
        (None, _) | (Some(_), SampleRule::Exact) => compare_ids(&want, &got),
        (Some((step, coin, engine_logits, te, tr)), SampleRule::Divergence { nmse }) => {
            let near = compare(&logits, &engine_logits, nmse);
            let pe = wavefront::sampler::distribution(&engine_logits, params, &ctx_e)?;
            let pr = r::sampler::distribution(&logits, &rp, &ctx_r).map_err(reference_error)?;
            let low = te.min(tr);
            let (fe, fr) = (cdf(&pe, low), cdf(&pr, low));
            let (total_e, total_r): (f32, f32) = (pe.iter().sum(), pr.iter().sum());
            let (ce, cr) = (coin * total_e, coin * total_r);
            // The side that took `low` has its coin below its cdf at `low`; the other not.
            let explained = if te == low {
                ce < fe && cr >= fr
            } else {
                cr < fr && ce >= fe
            };
            match (&near.failure, explained) {
                (Some(f), _) => Comparison::fail(format!("step {step}: {te} vs reference {tr}, and the logits differ: {f}")),
                (None, false) => Comparison::fail(format!(
                    "step {step}: {te} vs reference {tr} with coin {coin}: not explained by the distributions \
                     (cdf at {low}: engine {fe}, reference {fr})"
                )),
                (None, true) => Comparison::exact().with_note(Some(format!(
                    "diverged at step {step} ({te} vs {tr}): coin {coin:.6} between the cdfs {fe:.6} / {fr:.6}, logits NMSE {:.1e}",
                    near.nmse
                ))),
            }
        }
    };
    Ok(Check::new(what, cmp))
}

/// A greedy token stream with, per step, the top candidates `(id, logit)` best first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stream {
    pub tokens: Vec<u32>,
    pub top: Vec<Vec<(u32, f32)>>,
}

/// The best `k` (id, logit) pairs, best first (lowest id first among equals).
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(k)
        .map(|i| (i as u32, logits[i]))
        .collect()
}

/// Greedy decoding of `n` tokens on the engine.
pub fn engine_greedy<B: Backend>(engine: &Engine<B>, prompt: &[u32], n: usize) -> Result<Stream> {
    let mut seq = engine.new_sequence(prompt.len() + n + 1)?;
    engine.forward(&mut seq, prompt, Logits::Last)?;
    let mut s = Stream {
        tokens: vec![],
        top: vec![],
    };
    for i in 0..n {
        let logits = engine.last_logits(&seq)?;
        let t = engine.sample(&seq, &SamplingParams::greedy(), &[], 0.0)?;
        s.top.push(top_k(&logits, 10));
        s.tokens.push(t);
        if i + 1 < n {
            engine.forward(&mut seq, &[t], Logits::Last)?;
        }
    }
    Ok(s)
}

/// Greedy decoding of `n` tokens on the reference.
pub fn reference_greedy(reference: &r::Model, prompt: &[u32], n: usize) -> Result<Stream> {
    let mut cache = reference.new_cache(prompt.len() + n + 1);
    let mut logits = reference
        .forward(prompt, &mut cache)
        .map_err(reference_error)?
        .row(prompt.len() - 1)
        .to_vec();
    let mut s = Stream {
        tokens: vec![],
        top: vec![],
    };
    for i in 0..n {
        let top = top_k(&logits, 10);
        let t = top[0].0;
        s.top.push(top);
        s.tokens.push(t);
        if i + 1 < n {
            logits = reference
                .decode(t, &mut cache)
                .map_err(reference_error)?
                .to_vec();
        }
    }
    Ok(s)
}

/// The divergence rule: the streams must be identical; at the first divergence each side's
/// token must be in the other's top 5, and each side must prefer its own token over the other's
/// by at most `gap` logits (then the streams are allowed to differ; later steps are not compared).
pub fn check_greedy(expected: &Stream, actual: &Stream, gap: f32) -> Comparison {
    let n = expected.tokens.len().min(actual.tokens.len());
    let ok = |note: Option<String>| Comparison::exact().with_note(note);
    if expected.tokens.len() != actual.tokens.len() {
        return Comparison::fail(format!(
            "{} tokens, expected {}",
            actual.tokens.len(),
            expected.tokens.len()
        ));
    }
    let Some(i) = (0..n).find(|&i| expected.tokens[i] != actual.tokens[i]) else {
        return ok(None);
    };
    let (te, ta) = (expected.tokens[i], actual.tokens[i]);
    let logit =
        |top: &[(u32, f32)], id: u32| top.iter().take(5).find(|(t, _)| *t == id).map(|(_, l)| *l);
    let (Some(e_of_a), Some(a_of_e)) = (logit(&expected.top[i], ta), logit(&actual.top[i], te))
    else {
        return Comparison::fail(format!(
            "step {i}: {ta} vs expected {te}, and one is not in the other's top 5 (expected top {:?}, actual top {:?})",
            &expected.top[i][..5.min(expected.top[i].len())],
            &actual.top[i][..5.min(actual.top[i].len())]
        ));
    };
    let gap_e = expected.top[i][0].1 - e_of_a;
    let gap_a = actual.top[i][0].1 - a_of_e;
    if gap_e > gap || gap_a > gap {
        return Comparison::fail(format!(
            "step {i}: {ta} vs expected {te}: logit gaps {gap_e:.4} / {gap_a:.4} exceed {gap:.4}"
        ));
    }
    ok(Some(format!(
        "diverged at step {i} ({ta} vs {te}) within the rule: gaps {gap_e:.4} / {gap_a:.4}"
    )))
}
