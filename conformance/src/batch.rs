//! Batch invariance (issue 11): a batched decode step ([`Engine::queue_decode_batch`]) gives each
//! sequence the logits it gets decoding alone, bit for bit, and so the same tokens. The check
//! decodes `n` sequences (different prompts and lengths, so different positions; greedy and
//! several sampling settings; different seeds) once each alone and once together in batches of
//! `n`, and compares every logit of every step by its bits. No tolerance: the engine promises
//! identity, not closeness (a row reduced in an order that depends on the batch — a split-K or
//! tile choice made from n — gives other bits and fails here though it passes every op case).

use std::path::Path;

use serde::Serialize;
use wavefront::backend::Backend;
use wavefront::{DecodeBatch, Engine, EngineOptions, Logits, Result, SamplingParams, Sequence};

use crate::harness::Rng;

/// One batch size's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRun {
    /// Sequences decoded together.
    pub sequences: usize,
    /// Decode steps compared per sequence.
    pub steps: usize,
    /// Batched passes the engine ran (sequences ÷ its pass size, per step): 0 would mean
    /// nothing was batched.
    pub passes: usize,
    /// Logits compared (all bit-identical when `mismatch` is `None`).
    pub logits_compared: usize,
    pub mismatch: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub model: String,
    pub label: String,
    /// The engine's most sequences per pass ([`Engine::decode_batch_rows`]).
    pub pass_rows: usize,
    pub runs: Vec<BatchRun>,
}

impl BatchReport {
    pub fn all_pass(&self) -> bool {
        self.runs.iter().all(|r| r.mismatch.is_none())
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "#### batch invariance: {} {} (at most {} sequences a pass)\n\n| sequences | steps | passes | logits compared | result |\n|---:|---:|---:|---:|---|\n",
            self.model, self.label, self.pass_rows
        );
        for r in &self.runs {
            let result = r.mismatch.as_deref().unwrap_or("bit-identical");
            s.push_str(&format!(
                "| {} | {} | {} | {} | {result} |\n",
                r.sequences, r.steps, r.passes, r.logits_compared
            ));
        }
        s
    }
}

/// Sequence `i`'s prompt (length 2 + 3i, ids below `vocab`), seed and sampling.
fn setup(i: usize, vocab: usize) -> (Vec<u32>, u64, SamplingParams, usize) {
    let mut rng = Rng::new(0xba7c_0000 + i as u64);
    let prompt = (0..2 + 3 * i).map(|_| rng.below(vocab) as u32).collect();
    let settings = crate::models::sampling_settings();
    let params = if i.is_multiple_of(3) {
        SamplingParams::greedy()
    } else {
        settings[i % settings.len()]
    };
    let window = [0, 64, 8][i % 3];
    (prompt, 1000 + i as u64, params, window)
}

/// Prefills sequence `i` and queues its first sample; its first token.
fn start<B: Backend>(engine: &Engine<B>, i: usize, capacity: usize) -> Result<(Sequence<B>, u32)> {
    let (prompt, seed, params, window) = setup(i, engine.config().vocab_size);
    let mut seq = engine.new_sequence(capacity)?;
    engine.forward(&mut seq, &prompt, Logits::Last)?;
    engine.begin_decode(&mut seq, &prompt, seed)?;
    engine.queue_sample(&mut seq, &params, window)?;
    let first = engine.take_token(&mut seq)?;
    Ok((seq, first))
}

/// A sequence decoding alone: its first token, then every step's logits and token.
type Alone = (u32, Vec<(Vec<f32>, u32)>);

/// Sequence `i` decoding alone for `steps` steps.
fn alone<B: Backend>(engine: &Engine<B>, i: usize, steps: usize, capacity: usize) -> Result<Alone> {
    let (_, _, params, window) = setup(i, engine.config().vocab_size);
    let (mut seq, first) = start(engine, i, capacity)?;
    let mut out = Vec::with_capacity(steps);
    for _ in 0..steps {
        engine.queue_decode(&mut seq, &params, window)?;
        let logits = engine.last_logits(&seq)?;
        out.push((logits, engine.take_token(&mut seq)?));
    }
    Ok((first, out))
}

/// The first difference of `a` (alone) and `b` (batched), by bits.
fn first_difference(a: &[f32], b: &[f32]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} logits alone, {} batched", a.len(), b.len()));
    }
    a.iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
        .map(|j| format!("logit {j}: {:e} alone, {:e} batched", a[j], b[j]))
}

/// Decodes `n` sequences for `steps` steps alone and batched and compares them.
pub fn run_batch<B: Backend>(engine: &Engine<B>, n: usize, steps: usize) -> Result<BatchRun> {
    let capacity = 2 + 3 * n + steps + 2;
    let expected = (0..n)
        .map(|i| alone(engine, i, steps, capacity))
        .collect::<Result<Vec<_>>>()?;
    let mut seqs = Vec::with_capacity(n);
    let mut params = Vec::with_capacity(n);
    let mut mismatch = None;
    for (i, (first, _)) in expected.iter().enumerate() {
        let (seq, t) = start(engine, i, capacity)?;
        if t != *first && mismatch.is_none() {
            mismatch = Some(format!("sequence {i}: first token {t}, alone {first}"));
        }
        seqs.push(seq);
        let (_, _, p, window) = setup(i, engine.config().vocab_size);
        params.push((p, window));
    }
    let mut batch = DecodeBatch::new();
    batch.keep_logits = true;
    let mut compared = 0;
    for s in 0..steps {
        let mut refs: Vec<&mut Sequence<B>> = seqs.iter_mut().collect();
        engine.queue_decode_batch(&mut batch, &mut refs, &params)?;
        for (i, seq) in seqs.iter_mut().enumerate() {
            let logits = engine.last_logits(seq)?;
            let token = engine.take_token(seq)?;
            let (want_logits, want_token) = &expected[i].1[s];
            compared += logits.len();
            if mismatch.is_some() {
                continue;
            }
            if let Some(d) = first_difference(want_logits, &logits) {
                mismatch = Some(format!("sequence {i}, step {s}: {d}"));
            } else if token != *want_token {
                mismatch = Some(format!(
                    "sequence {i}, step {s}: token {token}, alone {want_token}"
                ));
            }
        }
    }
    Ok(BatchRun {
        sequences: n,
        steps,
        passes: batch.counts().0,
        logits_compared: compared,
        mismatch,
    })
}

/// [`run_batch`] at each of `sizes` on the model at `path`, on a backend from `make`.
pub fn check_batch_invariance<B: Backend>(
    make: &dyn Fn() -> Result<B>,
    path: &Path,
    label: &str,
    sizes: &[usize],
    steps: usize,
) -> Result<BatchReport> {
    let model = wavefront::load(path)?;
    let engine = Engine::new(make()?, &model, EngineOptions::default())?;
    let runs = sizes
        .iter()
        .map(|&n| run_batch(&engine, n, steps))
        .collect::<Result<Vec<_>>>()?;
    Ok(BatchReport {
        model: path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        ),
        label: label.into(),
        pass_rows: engine.decode_batch_rows(),
        runs,
    })
}
