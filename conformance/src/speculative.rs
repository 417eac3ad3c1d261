//! Speculative identity (issue 13): a generation with prompt-lookup speculation
//! ([`Generator::with_lookup`]) gives the plain generation's steps — every token, its text, its
//! log-probabilities, the finish reason — greedy and sampled with a seed, with penalties over
//! the history window, stop strings, `max_tokens`, a full context and adaptive k's switch to
//! plain decode. The oracle is the plain run of the same engine. On the CPU the verification
//! rows are bit for bit the decode steps' logits, so the streams must be identical; the check
//! also counts what was drafted, accepted and rejected, so that a run in which speculation never
//! did anything cannot pass as proof (the caller asserts the counts).

use std::path::Path;

use serde::Serialize;
use wavefront::backend::Backend;
use wavefront::speculative::{DraftParams, LookupParams, SpecBug};
use wavefront::{
    DType, Engine, EngineOptions, GenerationRequest, Generator, HostTensor, LoadedModel, Result,
    SamplingParams, Step,
};

use crate::harness::Rng;
use crate::model::{check_greedy, engine_greedy, ModelTolerances, Stream};
use crate::models::greedy_gap;

/// One request's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct SpecRun {
    pub setting: String,
    /// Tokens the plain run generated (and the speculative one must).
    pub tokens: usize,
    pub finish: String,
    pub verifications: usize,
    pub drafted: usize,
    pub accepted: usize,
    pub switched_off: bool,
    /// The first difference, `None` when the streams are identical.
    pub mismatch: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpecReport {
    pub model: String,
    pub label: String,
    pub runs: Vec<SpecRun>,
}

impl SpecReport {
    pub fn all_pass(&self) -> bool {
        self.runs.iter().all(|r| r.mismatch.is_none())
    }

    /// Drafted tokens, accepted ones, and rejections (verifications that kept fewer drafts
    /// than they scored are at least `drafted - accepted > 0`), over all runs.
    pub fn totals(&self) -> (usize, usize) {
        self.runs
            .iter()
            .fold((0, 0), |(d, a), r| (d + r.drafted, a + r.accepted))
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "#### speculative identity: {} {}\n\n| setting | tokens | finish | verifications | drafted | accepted | result |\n|---|---:|---|---:|---:|---:|---|\n",
            self.model, self.label
        );
        for r in &self.runs {
            let result = r.mismatch.as_deref().unwrap_or("identical");
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {result} |\n",
                r.setting, r.tokens, r.finish, r.verifications, r.drafted, r.accepted
            ));
        }
        s
    }
}

/// A request of the check and the lookup settings it speculates with.
#[derive(Debug, Clone)]
pub struct SpecCase {
    pub name: String,
    pub request: GenerationRequest,
    pub lookup: LookupParams,
}

/// A prompt that repeats itself (so the drafter finds n-grams from the start): `len` ids
/// below `vocab`, a random phrase of 7 repeated.
pub fn repeating_prompt(seed: u64, len: usize, vocab: usize) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let phrase: Vec<u32> = (0..7).map(|_| rng.below(vocab) as u32).collect();
    phrase.iter().copied().cycle().take(len).collect()
}

/// The cases every model runs: greedy; sampled with seeds under each family of filters and
/// penalties (windows 0, 64 and 8); log-probabilities; a small `max_tokens`; a context that
/// fills; k = 1; and adaptive k asked to give up at once (`min_acceptance` 1: plain decode on
/// the device after the warm-up).
pub fn cases(prompt: &[u32], planted: Option<SpecBug>) -> Vec<SpecCase> {
    let settings = crate::models::sampling_settings();
    let lookup = |k: usize, ngram: usize| LookupParams {
        ngram,
        planted,
        ..LookupParams::new(k)
    };
    let base = GenerationRequest {
        max_tokens: 48,
        context: Some(prompt.len() + 64),
        ..GenerationRequest::new(prompt.to_vec())
    };
    let mut out = vec![SpecCase {
        name: "greedy k=4".into(),
        request: base.clone(),
        lookup: lookup(4, 3),
    }];
    for (i, (s, window)) in [
        (settings[4], 64),
        (settings[5], 8),
        (settings[3], 0),
        (settings[1], 64),
    ]
    .into_iter()
    .enumerate()
    {
        out.push(SpecCase {
            name: format!("sampled {i} seed {} window {window}", 11 + i),
            request: GenerationRequest {
                sampling: s,
                seed: 11 + i as u64,
                repeat_last_n: window,
                ..base.clone()
            },
            lookup: lookup(5, 2),
        });
    }
    out.push(SpecCase {
        name: "sampled, logprobs 3, k=3".into(),
        request: GenerationRequest {
            sampling: settings[0],
            seed: 5,
            logprobs: Some(3),
            ..base.clone()
        },
        lookup: lookup(3, 3),
    });
    out.push(SpecCase {
        name: "greedy, max_tokens 7, k=8".into(),
        request: GenerationRequest {
            max_tokens: 7,
            ..base.clone()
        },
        lookup: lookup(8, 3),
    });
    out.push(SpecCase {
        name: "greedy, context full, k=6".into(),
        request: GenerationRequest {
            context: Some(prompt.len() + 13),
            ..base.clone()
        },
        lookup: lookup(6, 1),
    });
    out.push(SpecCase {
        name: "sampled, k=1".into(),
        request: GenerationRequest {
            sampling: SamplingParams {
                temperature: 0.5,
                ..SamplingParams::default()
            },
            seed: 3,
            ..base.clone()
        },
        lookup: lookup(1, 2),
    });
    out.push(SpecCase {
        name: "sampled, switched off after the warm-up".into(),
        request: GenerationRequest {
            sampling: settings[1],
            seed: 4,
            ..base.clone()
        },
        lookup: LookupParams {
            min_acceptance: 1.0,
            ..lookup(1, 1)
        },
    });
    out
}

/// Every step of a generation, and its finish reason.
fn run_all<B: Backend>(g: &mut Generator<'_, B>) -> Result<(Vec<Step>, String)> {
    let mut steps = Vec::new();
    while let Some(s) = g.step()? {
        steps.push(s);
    }
    let finish = g
        .finish_reason()
        .map_or("none".into(), |f| format!("{f:?}"));
    Ok((steps, finish))
}

/// The first difference of two step streams (tokens, text, log-probabilities by bits).
fn first_difference(plain: &[Step], spec: &[Step]) -> Option<String> {
    for (i, (a, b)) in plain.iter().zip(spec).enumerate() {
        if a.token != b.token || a.text != b.text {
            return Some(format!(
                "step {i}: plain {:?} {:?}, speculative {:?} {:?}",
                a.token, a.text, b.token, b.text
            ));
        }
        let bits = |s: &Step| {
            s.logprobs.as_ref().map(|l| {
                let mut v = vec![l.token, l.logprob.to_bits()];
                v.extend(l.top.iter().flat_map(|&(id, p)| [id, p.to_bits()]));
                v
            })
        };
        if bits(a) != bits(b) {
            return Some(format!(
                "step {i}: log-probabilities {:?} plain, {:?} speculative",
                a.logprobs, b.logprobs
            ));
        }
    }
    (plain.len() != spec.len())
        .then(|| format!("{} steps plain, {} speculative", plain.len(), spec.len()))
}

/// One case: the plain generation, then the speculative one, compared step by step.
pub fn run_case<B: Backend>(
    engine: &Engine<B>,
    model: &LoadedModel,
    case: &SpecCase,
) -> Result<SpecRun> {
    compare(engine, model, &case.name, &case.request, true, |g| {
        g.with_lookup(case.lookup)
    })
}

/// The plain generation of `request`, then the one `speculate` makes speculative, compared
/// step by step when `identical` (else only run, and its counts kept).
fn compare<'a, B: Backend>(
    engine: &'a Engine<B>,
    model: &'a LoadedModel,
    name: &str,
    request: &GenerationRequest,
    identical: bool,
    speculate: impl FnOnce(Generator<'a, B>) -> Result<Generator<'a, B>>,
) -> Result<SpecRun> {
    let tok = model.tokenizer.as_ref();
    let mut plain = Generator::new(engine, tok, request.clone())?;
    let (want, want_finish) = run_all(&mut plain)?;
    let mut spec = speculate(Generator::new(engine, tok, request.clone())?)?;
    // An error the plain run did not have is a difference too (a planted bug may leave the
    // cache where the plain decode cannot start).
    let (got, got_finish) = match run_all(&mut spec) {
        Ok(r) => r,
        Err(e) => (Vec::new(), format!("error: {e}")),
    };
    let stats = spec.spec_stats().unwrap_or_default();
    let mismatch = if identical {
        (want_finish != got_finish)
            .then(|| format!("finish {want_finish} plain, {got_finish} speculative"))
            .or_else(|| first_difference(&want, &got))
    } else {
        got_finish
            .starts_with("error")
            .then(|| format!("speculative run failed: {got_finish}"))
    };
    Ok(SpecRun {
        setting: if identical {
            name.into()
        } else {
            format!("{name} (run, not compared)")
        },
        tokens: plain.generated().len(),
        finish: want_finish,
        verifications: stats.verifications,
        drafted: stats.drafted,
        accepted: stats.accepted,
        switched_off: stats.switched_off,
        mismatch,
    })
}

/// A draft-model request and its settings; `identical`: greedy, so the speculative stream
/// must be the plain one (a sampled stream is distributed as the plain one, which the χ² test
/// of `draft_rule` proves of the rule; here it is only run and counted).
#[derive(Debug, Clone)]
pub struct DraftCase {
    pub name: String,
    pub request: GenerationRequest,
    pub draft: DraftParams,
    pub identical: bool,
}

/// The draft-model cases every model runs: greedy (with penalties over windows 8 and 0,
/// log-probabilities, a small `max_tokens`, a context that fills, k = 1 and k = 8, adaptive k
/// asked to give up at once), then two sampled ones (not compared: see [`DraftCase`]).
pub fn draft_cases(prompt: &[u32], planted: Option<SpecBug>) -> Vec<DraftCase> {
    let settings = crate::models::sampling_settings();
    let draft = |k: usize| DraftParams {
        planted,
        ..DraftParams::new(k)
    };
    let base = GenerationRequest {
        max_tokens: 40,
        context: Some(prompt.len() + 64),
        ..GenerationRequest::new(prompt.to_vec())
    };
    let greedy_penalties = SamplingParams {
        repeat_penalty: 1.3,
        presence_penalty: 0.5,
        frequency_penalty: 0.25,
        ..SamplingParams::greedy()
    };
    let case = |name: &str, request: GenerationRequest, draft: DraftParams| DraftCase {
        identical: request.sampling.is_greedy(),
        name: name.into(),
        request,
        draft,
    };
    vec![
        case("greedy k=4", base.clone(), draft(4)),
        case(
            "greedy, penalties window 8, k=5",
            GenerationRequest {
                sampling: greedy_penalties,
                repeat_last_n: 8,
                ..base.clone()
            },
            draft(5),
        ),
        case(
            "greedy, penalties window 0, logprobs 3, k=3",
            GenerationRequest {
                sampling: greedy_penalties,
                repeat_last_n: 0,
                logprobs: Some(3),
                ..base.clone()
            },
            draft(3),
        ),
        case(
            "greedy, max_tokens 7, k=8",
            GenerationRequest {
                max_tokens: 7,
                ..base.clone()
            },
            draft(8),
        ),
        case(
            "greedy, context full, k=6",
            GenerationRequest {
                context: Some(prompt.len() + 13),
                ..base.clone()
            },
            draft(6),
        ),
        case("greedy k=1", base.clone(), draft(1)),
        case(
            "greedy, switched off after the warm-up",
            base.clone(),
            DraftParams {
                min_acceptance: 1.0,
                ..draft(2)
            },
        ),
        case(
            "sampled seed 21, k=4",
            GenerationRequest {
                sampling: settings[4],
                seed: 21,
                repeat_last_n: 64,
                ..base.clone()
            },
            draft(4),
        ),
        case(
            "sampled with penalties, seed 22, logprobs 2, k=3",
            GenerationRequest {
                sampling: settings[5],
                seed: 22,
                repeat_last_n: 8,
                logprobs: Some(2),
                ..base.clone()
            },
            draft(3),
        ),
    ]
}

/// [`draft_cases`] over a [`repeating_prompt`] of 40 ids on the model at `path`, drafted by
/// the model at `draft` (both on backends from `make`).
pub fn check_draft_speculation<B: Backend>(
    make: &dyn Fn() -> Result<B>,
    path: &Path,
    draft: &Path,
    label: &str,
    planted: Option<SpecBug>,
) -> Result<SpecReport> {
    let name = |p: &Path| {
        p.file_name()
            .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
    };
    let model = wavefront::load(path)?;
    let draft_model = wavefront::load(draft)?;
    let names = format!("{} drafted by {}", name(path), name(draft));
    check_draft_models(make, &model, &draft_model, &names, label, planted)
}

/// [`draft_cases`] on `model` drafted by `draft` (loaded), named `names` in the report.
pub fn check_draft_models<B: Backend>(
    make: &dyn Fn() -> Result<B>,
    model: &LoadedModel,
    draft: &LoadedModel,
    names: &str,
    label: &str,
    planted: Option<SpecBug>,
) -> Result<SpecReport> {
    wavefront::speculative::check_draft_model(model, draft)?;
    let engine = Engine::new(make()?, model, EngineOptions::default())?;
    let draft_engine = Engine::new(make()?, draft, EngineOptions::default())?;
    let prompt = repeating_prompt(0x5bec, 40, model.config.vocab_size);
    let runs = draft_cases(&prompt, planted)
        .iter()
        .map(|c| {
            compare(&engine, model, &c.name, &c.request, c.identical, |g| {
                g.with_draft(&draft_engine, c.draft)
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SpecReport {
        model: names.into(),
        label: label.into(),
        runs,
    })
}

/// A draft that mostly agrees with `model`: its final norm's weights each scaled by
/// 1 + `scale`·u, u uniform in [−1, 1) (seeded), so that its greedy drafts are kept at some
/// positions and rejected at others.
pub fn perturb_final_norm(model: &mut LoadedModel, scale: f32, seed: u64) -> Result<()> {
    use wavefront::tensor::{encode_f32, Storage};
    let name = wavefront::config::names::FINAL_NORM;
    let t = model.tensor(name)?;
    let mut rng = Rng::new(seed);
    let w: Vec<f32> = t
        .to_f32()?
        .iter()
        .map(|&v| v * (1.0 + scale * (2.0 * rng.unit() - 1.0)))
        .collect();
    let bytes = encode_f32(DType::F32, &w)
        .ok_or_else(|| wavefront::Error::InvalidRequest("f32 encodes every value".into()))?;
    let shape = t.shape.clone();
    model.tensors.insert(
        name.into(),
        HostTensor {
            name: name.into(),
            dtype: DType::F32,
            shape,
            storage: Storage::Owned(std::sync::Arc::new(bytes)),
        },
    );
    Ok(())
}

/// Whether a verification's rows are the decode steps' logits by bits on the model at `path`
/// (a backend from `make`): after [`repeating_prompt`] (40 ids) prefilled, n = 2, 3, 5 and 11
/// drafted ids run through [`Engine::forward_as_steps`] on one sequence and one at a time
/// (one-row forwards: the decode step's products and fused attention) on another. Returns,
/// for each n, `None` when every row is identical by bits, else which rows differ and by how
/// much.
pub fn rows_as_steps<B: Backend>(
    make: &dyn Fn() -> Result<B>,
    path: &Path,
) -> Result<Vec<(usize, Option<String>)>> {
    let model = wavefront::load(path)?;
    let engine = Engine::new(make()?, &model, EngineOptions::default())?;
    let vocab = model.config.vocab_size;
    let prompt = repeating_prompt(0x5bec, 40, vocab);
    let ids = repeating_prompt(0x57e9, 11, vocab);
    let mut out = Vec::new();
    for n in [2, 3, 5, 11] {
        let drafts = &ids[..n];
        let mut rows_seq = engine.new_sequence(prompt.len() + n)?;
        engine.forward(&mut rows_seq, &prompt, wavefront::Logits::Last)?;
        let rows = engine.forward_as_steps(&mut rows_seq, drafts)?;
        let mut one = engine.new_sequence(prompt.len() + n)?;
        engine.forward(&mut one, &prompt, wavefront::Logits::Last)?;
        let mut differ = Vec::new();
        for (i, &id) in drafts.iter().enumerate() {
            let step = engine.forward(&mut one, &[id], wavefront::Logits::All)?;
            let step = step.unwrap_or_default();
            let row = &rows[i * vocab..(i + 1) * vocab];
            let worst = row
                .iter()
                .zip(&step)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let same = step.len() == vocab
                && row
                    .iter()
                    .zip(&step)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
            if !same {
                differ.push(format!("row {i} (max |diff| {worst:.3e})"));
            }
        }
        out.push((n, (!differ.is_empty()).then(|| differ.join(", "))));
    }
    Ok(out)
}

/// SmolLM2's cases (the default model; kept short, the CPU decodes it at ~13 tok/s on CI): an
/// input-grounded prompt (copy a text) where drafts are long and mostly accepted, greedy up to
/// a stop string (k = 8), and sampled with penalties and log-probabilities (k = 6).
pub fn smollm2_copy_cases(model: &LoadedModel) -> Vec<SpecCase> {
    let Some(tok) = model.tokenizer.as_ref() else {
        return Vec::new();
    };
    let text = "Rust is a general-purpose programming language emphasizing performance, \
                type safety and concurrency.";
    let Ok(copy) = tok.encode(
        &format!("Copy the text exactly.\n\nText: {text}\n\nCopy: {text}\n\nCopy:"),
        true,
    ) else {
        return Vec::new();
    };
    vec![
        SpecCase {
            name: "copy, greedy, stop \"safety\", k=8".into(),
            request: GenerationRequest {
                max_tokens: 24,
                stop: vec!["safety".into()],
                ..GenerationRequest::new(copy.clone())
            },
            lookup: LookupParams::new(8),
        },
        SpecCase {
            name: "copy, sampled with penalties, logprobs 2, k=6".into(),
            request: GenerationRequest {
                max_tokens: 16,
                sampling: crate::models::sampling_settings()[5],
                repeat_last_n: 8,
                seed: 9,
                logprobs: Some(2),
                ..GenerationRequest::new(copy)
            },
            lookup: LookupParams::new(6),
        },
    ]
}

/// [`cases`] over a [`repeating_prompt`] of 40 ids on the model at `path`, on a backend from
/// `make`.
pub fn check_speculation<B: Backend>(
    make: &dyn Fn() -> Result<B>,
    path: &Path,
    label: &str,
    planted: Option<SpecBug>,
) -> Result<SpecReport> {
    check_cases(make, path, label, &|model| {
        cases(
            &repeating_prompt(0x5bec, 40, model.config.vocab_size),
            planted,
        )
    })
}

/// The cases `cases_for` makes for the model at `path`, on a backend from `make`.
pub fn check_cases<B: Backend>(
    make: &dyn Fn() -> Result<B>,
    path: &Path,
    label: &str,
    cases_for: &dyn Fn(&LoadedModel) -> Vec<SpecCase>,
) -> Result<SpecReport> {
    let model = wavefront::load(path)?;
    let engine = Engine::new(make()?, &model, EngineOptions::default())?;
    let runs = cases_for(&model)
        .iter()
        .map(|c| run_case(&engine, &model, c))
        .collect::<Result<Vec<_>>>()?;
    Ok(SpecReport {
        model: path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        ),
        label: label.into(),
        runs,
    })
}

/// A greedy generation's tokens and each step's 10 most likely (id, log-probability): a
/// log-probability gap is the logit gap (the same row's log-sum-exp cancels).
fn greedy_stream(steps: &[Step]) -> Stream {
    let mut s = Stream {
        tokens: Vec::new(),
        top: Vec::new(),
    };
    for step in steps {
        if let (Some(t), Some(lp)) = (step.token, &step.logprobs) {
            s.tokens.push(t);
            s.top.push(lp.top.clone());
        }
    }
    s
}

/// The GPU's rule for speculation. A verification's k + 1 rows run the prefill's kernels
/// (GEMM projections, the flash attention kernel) where the plain decode runs the decode
/// step's (GEMV, the fused decode attention), so a row's logits may differ from the decode
/// step's in the last bits (each is within the derived bound of the reference, neither equals
/// the other), and a greedy stream may take the other side of a near-tie. Each greedy case
/// (with the 10 most likely tokens of every step) is compared by the suite's greedy divergence
/// rule ([`check_greedy`]): identical, or at the first divergence each side's token in the
/// other's top 5 with both logit gaps under the bound the suite allows the engine against the
/// reference ([`greedy_gap`] of the engine's derived logits tolerance, from the plain decode's
/// own logits). With penalties the tokens are judged on the penalised logits, the row greedy
/// picks from, under the bound scaled by [`penalty_gain`]. Sampled cases are left to the CPU's
/// exact check (a sampled divergence needs both full distributions). A run's `mismatch` is the rule's failure; an explained divergence
/// is noted in its `setting`.
pub fn check_greedy_divergence<B: Backend>(
    make: &dyn Fn() -> Result<B>,
    path: &Path,
    label: &str,
    cases_for: &dyn Fn(&LoadedModel) -> Vec<SpecCase>,
) -> Result<SpecReport> {
    let model = wavefront::load(path)?;
    let engine = Engine::new(make()?, &model, EngineOptions::default())?;
    let mut runs = Vec::new();
    for case in cases_for(&model)
        .into_iter()
        .filter(|c| c.request.sampling.is_greedy())
    {
        runs.push(divergence_run(
            &engine,
            &model,
            &case.name,
            &case.request,
            |g| g.with_lookup(case.lookup),
        )?);
    }
    Ok(SpecReport {
        model: path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        ),
        label: label.into(),
        runs,
    })
}

/// How much the repetition penalty can scale a logit's error: p on a negative logit (× p), 1/p
/// on a positive one (÷ p); 1 without it.
pub fn penalty_gain(s: &SamplingParams) -> f32 {
    let p = s.repeat_penalty;
    p.max(1.0 / p)
}

/// One greedy case under the GPU's divergence rule ([`check_greedy_divergence`]): the plain
/// generation of `request` (with the 10 most likely tokens of every step) and the one
/// `speculate` makes speculative.
fn divergence_run<'a, B: Backend>(
    engine: &'a Engine<B>,
    model: &'a LoadedModel,
    name: &str,
    request: &GenerationRequest,
    speculate: impl FnOnce(Generator<'a, B>) -> Result<Generator<'a, B>>,
) -> Result<SpecRun> {
    let tol = ModelTolerances::for_engine(engine).logits().nmse;
    let tok = model.tokenizer.as_ref();
    let request = GenerationRequest {
        logprobs: Some(10),
        ..request.clone()
    };
    // Greedy with penalties picks the argmax of the penalised logits: the rule judges that row
    // (`logprobs_after_penalties`). The repetition penalty scales a logit by p or 1/p, and with
    // it the logit's error; presence and frequency penalties shift it by a constant.
    let gain = penalty_gain(&request.sampling);
    let gap = gain * greedy_gap(tol, &engine_greedy(engine, &request.prompt, 1)?);
    let mut plain = Generator::new(engine, tok, request.clone())?.logprobs_after_penalties();
    let (want, want_finish) = run_all(&mut plain)?;
    let mut spec = speculate(Generator::new(engine, tok, request)?.logprobs_after_penalties())?;
    let (got, got_finish) = match run_all(&mut spec) {
        Ok(r) => r,
        Err(e) => (Vec::new(), format!("error: {e}")),
    };
    let stats = spec.spec_stats().unwrap_or_default();
    // After a divergence the streams may end apart (a stop string, an end-of-sequence
    // token): the rule judges their common length, and streams identical over it must
    // also have the same length and finish.
    let (a, b) = (greedy_stream(&want), greedy_stream(&got));
    let n = a.tokens.len().min(b.tokens.len());
    let cut = |s: &Stream| Stream {
        tokens: s.tokens[..n].to_vec(),
        top: s.top[..n].to_vec(),
    };
    let cmp = check_greedy(&cut(&a), &cut(&b), gap);
    let mismatch = match (&cmp.failure, &cmp.note) {
        (Some(f), _) => Some(f.clone()),
        (None, None) if a.tokens.len() != b.tokens.len() || want_finish != got_finish => {
            Some(format!(
                "{} tokens and finish {want_finish} plain, {} and {got_finish} speculative",
                a.tokens.len(),
                b.tokens.len()
            ))
        }
        _ => None,
    };
    Ok(SpecRun {
        setting: match &cmp.note {
            Some(n) => format!("{name} ({n})"),
            None => name.into(),
        },
        tokens: plain.generated().len(),
        finish: want_finish,
        verifications: stats.verifications,
        drafted: stats.drafted,
        accepted: stats.accepted,
        switched_off: stats.switched_off,
        mismatch,
    })
}

/// [`check_greedy_divergence`] for a draft model: the greedy [`draft_cases`] of `model`
/// drafted by `draft`, each under the divergence rule (on a GPU the draft's rows and the
/// verification's run other kernels than the plain decode step's).
pub fn check_draft_greedy_divergence<B: Backend>(
    make: &dyn Fn() -> Result<B>,
    model: &LoadedModel,
    draft: &LoadedModel,
    names: &str,
    label: &str,
    planted: Option<SpecBug>,
) -> Result<SpecReport> {
    wavefront::speculative::check_draft_model(model, draft)?;
    let engine = Engine::new(make()?, model, EngineOptions::default())?;
    let draft_engine = Engine::new(make()?, draft, EngineOptions::default())?;
    let prompt = repeating_prompt(0x5bec, 40, model.config.vocab_size);
    let runs = draft_cases(&prompt, planted)
        .iter()
        .filter(|c| c.identical)
        .map(|c| {
            divergence_run(&engine, model, &c.name, &c.request, |g| {
                g.with_draft(&draft_engine, c.draft)
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SpecReport {
        model: names.into(),
        label: label.into(),
        runs,
    })
}
