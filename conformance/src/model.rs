//! Model-level conformance: an engine against the reference on a whole model — hidden states
//! and logits at every position, the KV state (every layer, every position) through prefill,
//! decode and rollback, sampled tokens with shared coins, and greedy streams under the top-5
//! divergence rule (DESIGN.md; vLLM's `check_logprobs_close`).

use serde::Serialize;
use wavefront::backend::Backend;
use wavefront::sampler::CoinRng;
use wavefront::{DType, Engine, Logits, Result, SamplingParams, Sequence};
use wavefront_reference as r;

use crate::cases::{sample::to_reference, Check};
use crate::compare::{compare, Comparison};
use crate::tolerance::{tolerance, Kind, Tolerance};

/// The derived bounds of one engine on its model (`Kind::Model`): what the engine rounds that
/// the reference does not, and the model's depth and longest reduction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelTolerances {
    pub layers: usize,
    pub k: usize,
    /// Matmul inputs rounded to this (F32: not rounded).
    pub input: DType,
    /// The KV cache's type.
    pub kv: DType,
    /// Weights rounded to this where the oracle's are not (F32 when the reference is built
    /// from the engine's own weights, as in every check of this module).
    pub weights: DType,
    /// The model's final logit soft-cap (Gemma 2), which [`ModelTolerances::logits_nmse`]
    /// accounts for.
    pub final_softcap: Option<f32>,
    /// How much the model multiplies its attention scores beyond `q·k/√head_dim`
    /// ([`ModelTolerances::score_gain_of`]; `Kind::Model`).
    pub score_gain: f64,
}

impl ModelTolerances {
    pub fn for_engine<B: Backend>(engine: &Engine<B>) -> Self {
        let c = engine.config();
        let b = engine.backend();
        ModelTolerances {
            layers: c.n_layers,
            k: c.hidden_size.max(c.intermediate_size).max(c.q_dim()),
            // The coarsest rounding of any matrix's inputs (the backend's own weight type, and
            // the block types the engine holds as stored).
            input: crate::tolerance::coarsest_rounding(
                engine
                    .matrix_dtypes()
                    .into_iter()
                    .chain([b.weight_dtype()])
                    .map(|w| b.matmul_input_dtype(w)),
            ),
            kv: engine.kv_dtype(),
            weights: DType::F32,
            final_softcap: c.final_logit_softcap,
            score_gain: Self::score_gain_of(c),
        }
    }

    /// The scores' gain over the standard `q·k/√head_dim`: LongRoPE's attention factor a
    /// multiplies cos and sin, so q and k, so every score by a²; Gemma's score scale
    /// `query_pre_attn_scalar^-0.5` stands for `head_dim^-0.5`, a gain of √(head_dim / scalar).
    /// (A soft-cap's slope is ≤ 1: it adds no gain.)
    pub fn score_gain_of(c: &wavefront::config::ModelConfig) -> f64 {
        let a = f64::from(wavefront::rope::attention_factor(c));
        let scale = c
            .attn_scale()
            .map_or(1.0, |s| f64::from(s) * (c.head_dim as f64).sqrt());
        a * a * scale
    }

    /// Against an oracle that keeps the f32 weights the engine rounded to its weight dtype
    /// (transformers' goldens); F32 (no rounding) when the engine holds every matrix as the
    /// file stores it (native block types: the oracle's dequantized weights exactly).
    pub fn against_unrounded_weights<B: Backend>(engine: &Engine<B>) -> Self {
        ModelTolerances {
            weights: engine.weight_rounding(),
            ..Self::for_engine(engine)
        }
    }

    /// After `layers` residual blocks, plus the LM head when `head`.
    pub fn at(&self, layers: usize, head: bool) -> Tolerance {
        tolerance(Kind::Model {
            layers,
            k: self.k,
            head,
            input: self.input,
            kv: self.kv,
            weights: self.weights,
            score_gain: self.score_gain,
        })
    }

    /// Logits: every block and the head.
    pub fn logits(&self) -> Tolerance {
        self.at(self.layers, true)
    }

    /// The logits' bound against the reference's logits `want`. Without a final soft-cap,
    /// [`ModelTolerances::logits`]. With one (`c`), the raw logits' errors pass the cap with
    /// slope ≤ 1 while their energy shrinks: the raw bound times Σl²/Σcap(l)², the raw logits
    /// recovered from the reference's capped ones (`l = c·atanh(y / c)`, the cap inverted), plus
    /// the GPU's evaluation of the cap (common.h wf_softcap, ≤ 6u·c an element) over Σcap(l)²,
    /// each doubled for their sum ((a + b)² ≤ 2a² + 2b²).
    pub fn logits_nmse(&self, want: &[f32]) -> f64 {
        let raw_bound = self.logits().nmse;
        let Some(c) = self.final_softcap.map(f64::from) else {
            return raw_bound;
        };
        // |y| reaches c only where tanh rounds to 1: keep atanh finite (a bound no smaller).
        let most = 1.0 - 1e-7;
        let (mut raw, mut capped) = (0.0, 0.0);
        for &y in want {
            let y = f64::from(y);
            let l = c * (y / c).clamp(-most, most).atanh();
            raw += l * l;
            capped += y * y;
        }
        if capped == 0.0 {
            return raw_bound;
        }
        let eval = want.len() as f64 * (6.0 * crate::tolerance::U_F32 * c).powi(2);
        2.0 * (raw_bound * raw / capped + eval / capped)
    }

    /// K and V of every layer (the deepest has been through every block's inputs).
    pub fn kv_state(&self) -> Tolerance {
        self.at(self.layers, false)
    }

    /// Whether the engine rounds nothing the reference does not: then only reassociation
    /// separates them and sampled tokens must be identical.
    pub fn is_f32_path(&self) -> bool {
        self.input == DType::F32 && self.kv == DType::F32 && self.weights == DType::F32
    }
}

/// Hidden states after every layer, the final norm and the logits of one forward of `tokens`,
/// each against its own bound (`hidden[i]` after i blocks).
pub fn check_trace<B: Backend>(
    engine: &Engine<B>,
    reference: &r::Model,
    tokens: &[u32],
    tol: &ModelTolerances,
) -> Result<Vec<Check>> {
    let mut seq = engine.new_sequence(tokens.len() + 1)?;
    let got = engine.forward_traced(&mut seq, tokens)?;
    let mut cache = reference.new_cache(tokens.len() + 1);
    let want = reference
        .forward_traced(tokens, &mut cache)
        .map_err(reference_error)?;
    let mut checks = Vec::new();
    for (i, (w, g)) in want.hidden.iter().zip(&got.hidden).enumerate() {
        let bound = tol.at(i, false).nmse;
        checks.push(Check::new(
            format!("hidden[{i}]"),
            compare(flat(w), g, bound),
        ));
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
        compare(
            flat(&want.final_hidden),
            &got.final_hidden,
            tol.at(tol.layers, false).nmse,
        ),
    ));
    checks.push(Check::new(
        "logits",
        compare(
            flat(&want.logits),
            &got.logits,
            tol.logits_nmse(flat(&want.logits)),
        ),
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
/// after rolling back to `prefill + 1`, and after decoding again from there; and the logits of
/// every decode step against the reference's (the worst step is the row).
pub fn kv_lifecycle<B: Backend>(
    engine: &Engine<B>,
    reference: &r::Model,
    tokens: &[u32],
    prefill: usize,
    tols: &ModelTolerances,
) -> Result<Vec<Check>> {
    let tol = tols.kv_state().nmse;
    let mut worst: Option<Comparison> = None;
    let mut decoded = 0;
    let mut decode = |seq: &mut Sequence<B>, rc: &mut r::KvCache, t: u32| -> Result<()> {
        engine.forward(seq, &[t], Logits::Last)?;
        let want = reference.decode(t, rc).map_err(reference_error)?.to_vec();
        let c = compare(&want, &engine.last_logits(seq)?, tols.logits_nmse(&want));
        decoded += 1;
        // The worst step, or the first that fails.
        let replace = match &worst {
            None => true,
            Some(w) if w.pass() => !c.pass() || c.nmse > w.nmse,
            Some(_) => false,
        };
        if replace {
            worst = Some(c);
        }
        Ok(())
    };
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
        decode(&mut seq, &mut rc, t)?;
    }
    checks.extend(check_kv(engine, &seq.cache, &rc, "after decode", tol)?);
    if let Some(snap) = snap {
        seq.cache.rollback_to(snap.len())?;
        rc.truncate(snap.len());
        checks.extend(check_kv(engine, &seq.cache, &rc, "after rollback", tol)?);
        for &t in &tokens[mark..] {
            decode(&mut seq, &mut rc, t)?;
        }
        checks.extend(check_kv(engine, &seq.cache, &rc, "after re-decode", tol)?);
    }
    if let Some(w) = worst {
        checks.push(Check::new(
            format!("decode logits ({decoded} steps, worst)"),
            w,
        ));
    }
    Ok(checks)
}

/// The prompt `tokens` prefilled in chunks of 1, 7 and 512 positions (one forward per chunk,
/// so a chunk of 1 takes the decode path's kernels): after each, the KV state and the last
/// position's logits against the reference's whole-prompt prefill.
pub fn prefill_chunks<B: Backend>(
    engine: &Engine<B>,
    reference: &r::Model,
    tokens: &[u32],
    tols: &ModelTolerances,
) -> Result<Vec<Check>> {
    let cap = tokens.len() + 1;
    let mut rc = reference.new_cache(cap);
    let want = reference
        .forward(tokens, &mut rc)
        .map_err(reference_error)?;
    let want_last = want.row(want.nrows() - 1).to_vec();
    let mut checks = Vec::new();
    for chunk in [1, 7, 512] {
        let mut seq = engine.new_sequence(cap)?;
        for piece in tokens.chunks(chunk) {
            engine.forward(&mut seq, piece, Logits::Last)?;
        }
        let label = format!("prefill in chunks of {chunk}");
        checks.extend(check_kv(
            engine,
            &seq.cache,
            &rc,
            &label,
            tols.kv_state().nmse,
        )?);
        checks.push(Check::new(
            format!("{label}: last logits"),
            compare(
                &want_last,
                &engine.last_logits(&seq)?,
                tols.logits_nmse(&want_last),
            ),
        ));
    }
    Ok(checks)
}

/// How sampled streams may differ. Either way every step is compared: after a divergence both
/// sides continue from the reference's token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleRule {
    /// The engine computes in f32 with the reference's weights: the same coins must give the
    /// same tokens, and every step's logits stay within the (reassociation) bound `logits`.
    Exact { logits: f64 },
    /// A token may differ only where the two distributions explain it: the shared coin falls
    /// between the two sides' cumulative probabilities at the lower of the two tokens, so each
    /// sampler took the right token from its own logits and the distributions differ there,
    /// not the samplers. Every step's logits NMSE is measured and reported beside
    /// `single_forward`, the derived bound of one forward, but not judged: deep in a decode
    /// stream, 16-bit rounding of K and q is amplified by the attention scores of that step,
    /// which the derivation does not bound (SmolLM2 on the H200 reached 1.9e-3 against 6.5e-4).
    /// The hidden states, logits and KV of the trace and the KV lifecycle, decode steps
    /// included, are judged against the derived bounds.
    Divergence { single_forward: f64 },
}

/// The rule for `engine`: exact on the f32 path, the divergence rule otherwise.
pub fn sample_rule(tol: &ModelTolerances) -> SampleRule {
    let logits = tol.logits().nmse;
    if tol.is_f32_path() {
        SampleRule::Exact { logits }
    } else {
        SampleRule::Divergence {
            single_forward: logits,
        }
    }
}

/// Cumulative probability up to and including `id`, summed in index order as the samplers do.
fn cdf(p: &[f32], id: u32) -> f32 {
    p[..=id as usize].iter().sum()
}

/// Whether a divergence at one step is explained: the coin falls between the two sides'
/// cumulative probabilities at the lower token, so each sampler picked correctly from its own
/// distribution. `Err` carries why not.
fn explain_divergence(
    params: &SamplingParams,
    context: &[u32],
    coin: f32,
    (engine_logits, te): (&[f32], u32),
    (reference_logits, tr): (&[f32], u32),
) -> Result<std::result::Result<String, String>> {
    let pe = wavefront::sampler::distribution(engine_logits, params, context)?;
    let pr = r::sampler::distribution(reference_logits, &to_reference(params), context)
        .map_err(reference_error)?;
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
    Ok(if explained {
        Ok(format!("coin {coin:.6} between the cdfs {fe:.6} / {fr:.6}"))
    } else {
        Err(format!(
            "coin {coin} not between the distributions (cdf at {low}: engine {fe}, reference {fr})"
        ))
    })
}

/// A sampled stream's check with what was compared.
#[derive(Debug, Clone)]
pub struct SampledStream {
    pub check: Check,
    /// Steps compared (all of them: a divergence does not end the comparison).
    pub compared: usize,
    /// Steps where the tokens differed.
    pub divergences: Vec<usize>,
}

/// `steps` tokens sampled by the engine and by the reference from their own logits with the
/// same coins (a shared seeded stream) and the whole context as penalty history, judged by
/// `rule` at every step. Both sides always continue from the reference's token, so a
/// divergence does not end the comparison. The row's NMSE and max abs error are the worst
/// step's logits.
pub fn sampled_tokens<B: Backend>(
    engine: &Engine<B>,
    reference: &r::Model,
    prompt: &[u32],
    params: &SamplingParams,
    steps: usize,
    seed: u64,
    rule: SampleRule,
) -> Result<SampledStream> {
    let (logits_tol, judged) = match rule {
        SampleRule::Exact { logits } => (logits, true),
        SampleRule::Divergence { single_forward } => (single_forward, false),
    };
    let cap = prompt.len() + steps + 1;
    let mut seq = engine.new_sequence(cap)?;
    let mut rc = reference.new_cache(cap);
    let rp = to_reference(params);
    let mut coins = CoinRng::new(seed);
    let mut context = prompt.to_vec();
    // The engine decodes as `wavefront run` does: the device-side step (captured where the
    // backend has graphs) samples with the same coin stream; where its token differs from the
    // reference's, the engine is fed the reference's token and its step restarted there.
    engine.forward(&mut seq, prompt, Logits::Last)?;
    engine.begin_decode(&mut seq, &context, coins.state())?;
    let mut need_sample = true;
    let window = 0; // the whole context, as the reference sampler is given
    let mut logits = reference
        .forward(prompt, &mut rc)
        .map_err(reference_error)?
        .row(prompt.len() - 1)
        .to_vec();
    let (mut max_abs, mut max_nmse, mut worst_step) = (0.0f64, 0.0f64, 0);
    let mut failure: Option<String> = None;
    let mut divergences: Vec<usize> = Vec::new();
    let mut compared = 0;
    for step in 0..steps {
        let engine_logits = engine.last_logits(&seq)?;
        if need_sample {
            engine.queue_sample(&mut seq, params, window)?;
        }
        let te = engine.take_token(&mut seq)?;
        let coin = coins.coin();
        let near = compare(&logits, &engine_logits, logits_tol);
        max_abs = max_abs.max(near.max_abs);
        if near.nmse > max_nmse || near.nmse.is_nan() {
            (max_nmse, worst_step) = (near.nmse, step);
        }
        let broken = near.nmse.is_nan()
            || near
                .failure
                .as_deref()
                .is_some_and(|f| !f.starts_with("NMSE"));
        if let (Some(f), true, None) = (&near.failure, judged || broken, &failure) {
            // NaN or a wrong length always fails; the NMSE only where the rule judges it.
            failure = Some(format!("step {step}: logits: {f}"));
        }
        let tr = r::sampler::sample(&logits, &rp, &context, coin).map_err(reference_error)?;
        compared += 1;
        if te != tr {
            divergences.push(step);
            let why = match rule {
                SampleRule::Exact { .. } => Err("the f32 path must sample identically".to_string()),
                SampleRule::Divergence { .. } => {
                    explain_divergence(params, &context, coin, (&engine_logits, te), (&logits, tr))?
                }
            };
            if let (Err(why), None) = (why, &failure) {
                failure = Some(format!("step {step}: {te} vs reference {tr}: {why}"));
            }
        }
        if step + 1 == steps {
            break;
        }
        context.push(tr);
        need_sample = te != tr;
        if need_sample {
            engine.forward(&mut seq, &[tr], Logits::Last)?;
            engine.begin_decode(&mut seq, &context, coins.state())?;
        } else {
            engine.queue_decode(&mut seq, params, window)?;
        }
        logits = reference
            .decode(tr, &mut rc)
            .map_err(reference_error)?
            .to_vec();
    }
    let p = params;
    let what = format!(
        "sampled {steps} (t={},k={},p={},minp={},pen={},pres={},freq={})",
        p.temperature,
        p.top_k,
        p.top_p,
        p.min_p,
        p.repeat_penalty,
        p.presence_penalty,
        p.frequency_penalty
    );
    let mut summary = format!(
        "{compared} of {steps} compared, {} divergences",
        divergences.len()
    );
    if !divergences.is_empty() {
        let shown: Vec<String> = divergences.iter().take(8).map(|s| s.to_string()).collect();
        summary.push_str(&format!(
            "{} (steps {}{})",
            if failure.is_none() {
                ", all explained"
            } else {
                ""
            },
            shown.join(", "),
            if divergences.len() > 8 { ", …" } else { "" }
        ));
    }
    if !judged {
        summary.push_str(&format!(
            "; logits NMSE reported, not judged: worst {max_nmse:.2e} at step {worst_step} \
             (one forward's bound {logits_tol:.1e})"
        ));
    }
    let cmp = Comparison {
        max_abs,
        nmse: max_nmse,
        tolerance: if judged { logits_tol } else { f64::NAN },
        failure: failure.map(|f| format!("{f} ({summary})")),
        note: Some(summary),
    };
    Ok(SampledStream {
        check: Check::new(what, cmp),
        compared,
        divergences,
    })
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

/// Greedy decoding of `n` tokens on the engine, through the device-side decode step as
/// `wavefront run` decodes (captured where the backend has graphs).
pub fn engine_greedy<B: Backend>(engine: &Engine<B>, prompt: &[u32], n: usize) -> Result<Stream> {
    let mut seq = engine.new_sequence(prompt.len() + n + 1)?;
    engine.forward(&mut seq, prompt, Logits::Last)?;
    engine.begin_decode(&mut seq, prompt, 0)?;
    let greedy = SamplingParams::greedy();
    engine.queue_sample(&mut seq, &greedy, 0)?;
    let mut s = Stream {
        tokens: vec![],
        top: vec![],
    };
    for i in 0..n {
        let logits = engine.last_logits(&seq)?;
        let t = engine.take_token(&mut seq)?;
        s.top.push(top_k(&logits, 10));
        s.tokens.push(t);
        if i + 1 < n {
            engine.queue_decode(&mut seq, &greedy, 0)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tols(final_softcap: Option<f32>) -> ModelTolerances {
        ModelTolerances {
            layers: 2,
            k: 128,
            input: DType::BF16,
            kv: DType::BF16,
            weights: DType::F32,
            final_softcap,
            score_gain: 1.0,
        }
    }

    #[test]
    fn a_final_soft_cap_scales_the_logits_bound_by_the_energy_it_removes() {
        let want: Vec<f32> = [0.1f32, -0.5, 0.7, 0.3].to_vec();
        let plain = tols(None);
        assert_eq!(plain.logits_nmse(&want), plain.logits().nmse);
        // Capped at 0.8: recover l = 0.8·atanh(y / 0.8), the bound grows by 2·Σl²/Σy² (+ the
        // cap's evaluation, far smaller here).
        let capped = tols(Some(0.8));
        let (raw, cap): (f64, f64) = want
            .iter()
            .map(|&y| {
                let (y, c) = (f64::from(y), f64::from(0.8f32));
                ((c * (y / c).atanh()).powi(2), y * y)
            })
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let ratio = raw / cap;
        assert!(ratio > 1.2, "{ratio}");
        let got = capped.logits_nmse(&want);
        let base = 2.0 * plain.logits().nmse * ratio;
        assert!(got >= base && got < base * 1.01, "{got:e} vs {base:e}");
        // A saturated logit (|y| = c after rounding) keeps the bound finite.
        assert!(capped.logits_nmse(&[0.8, -0.8, 0.1]).is_finite());
    }
}
