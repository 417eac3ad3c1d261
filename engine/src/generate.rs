//! The decode loop: prefill the prompt, then sample, stream text and stop — the API the CLI
//! (and later the server) drive.

mod draft;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::detok::IncrementalDecoder;
use crate::error::{Error, Result};
use crate::model::{DecodeBatch, Engine, Logits, Sequence};
use crate::sampler::{CoinRng, SamplingParams};
use crate::speculative::{lookup_draft, AdaptiveK, DraftParams, LookupParams, SpecBug, SpecStats};
use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    pub prompt: Vec<u32>,
    /// Most tokens to generate; at least 1 (a request for nothing is refused, as OpenAI's API
    /// refuses `max_tokens: 0`).
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Seeds the coin stream: the same request and seed give the same tokens.
    pub seed: u64,
    /// Generation ends when the text contains one of these (the stop string is not emitted).
    pub stop: Vec<String>,
    /// The repetition penalty looks at the last this-many tokens (0 = the whole context).
    pub repeat_last_n: usize,
    /// KV capacity; `None` = the model's context length capped to what fits in the backend's
    /// free memory (`Engine::context_plan`). At least 2 (one prompt token and one generated), at
    /// most the model's context length, and it must fit.
    pub context: Option<usize>,
    /// `Some(n)`: every generated token's step also carries its log-probability under the
    /// model (the log-softmax of the raw logits, before temperature, penalties and filters) and
    /// the `n` most likely tokens' ([`TokenLogprobs`]; n ≤ [`MAX_TOP_LOGPROBS`]). The logits
    /// row is copied back per token, and the device no longer runs a token ahead.
    pub logprobs: Option<usize>,
}

/// The most alternatives [`GenerationRequest::logprobs`] may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A generated token's log-probability and the most likely alternatives at its position.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub token: u32,
    pub logprob: f32,
    /// `(id, log-probability)`, most likely first (ties: the lower id first).
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprobs {
    /// From one position's raw logits: log-softmax in f64 (max-shifted), the `n` largest.
    pub fn from_logits(logits: &[f32], token: u32, n: usize) -> TokenLogprobs {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max
            + logits
                .iter()
                .map(|&l| (l as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let lp = |id: u32| (logits[id as usize] as f64 - lse) as f32;
        let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
        let order = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let n = n.min(ids.len());
        if n > 0 && n < ids.len() {
            ids.select_nth_unstable_by(n - 1, order);
        }
        ids.truncate(n);
        ids.sort_by(order);
        TokenLogprobs {
            token,
            logprob: lp(token),
            top: ids.into_iter().map(|id| (id, lp(id))).collect(),
        }
    }
}

impl GenerationRequest {
    pub fn new(prompt: Vec<u32>) -> Self {
        GenerationRequest {
            prompt,
            max_tokens: 128,
            sampling: SamplingParams::greedy(),
            seed: 0,
            stop: Vec::new(),
            repeat_last_n: 64,
            context: None,
            logprobs: None,
        }
    }

    /// Checks every field that does not depend on the model or the prompt (sampling ranges,
    /// `max_tokens`, `context`, stop strings), so that a caller can refuse a bad request before
    /// loading anything. [`Generator::new`] checks this and the rest.
    pub fn check_settings(&self) -> Result<()> {
        self.sampling.validate()?;
        if self.max_tokens == 0 {
            return Err(Error::invalid_param("max_tokens", 0, "at least 1"));
        }
        if let Some(c) = self.context.filter(|&c| c < 2) {
            return Err(Error::invalid_param(
                "context",
                c,
                "at least 2 (one prompt token and one generated)",
            ));
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return Err(Error::invalid_param("stop", "\"\"", "a non-empty string"));
        }
        if let Some(n) = self.logprobs.filter(|&n| n > MAX_TOP_LOGPROBS) {
            return Err(Error::invalid_param(
                "logprobs",
                n,
                format!("at most {MAX_TOP_LOGPROBS} alternatives"),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-sequence token.
    Eos,
    /// The text reached a stop string.
    Stop(String),
    /// `max_tokens` were generated.
    MaxTokens,
    /// The KV cache is full.
    ContextFull,
}

impl FinishReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::Stop(_) => "stop",
            FinishReason::MaxTokens => "max_tokens",
            FinishReason::ContextFull => "context_full",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV an earlier generation on the same sequence had prefilled
    /// ([`Generator::resume`]): not prefilled again.
    pub cached_tokens: usize,
    pub prefill: Duration,
    pub generated_tokens: usize,
    pub decode: Duration,
}

impl Timings {
    /// Prompt tokens prefilled (the cached ones not counted) per second; `None` when nothing
    /// was prefilled or no time was measured.
    pub fn prefill_tok_s(&self) -> Option<f64> {
        rate(
            self.prompt_tokens.saturating_sub(self.cached_tokens),
            self.prefill,
        )
    }

    /// Decode rate over the tokens after the first (the first comes from the prefill logits);
    /// `None` when at most one token was generated.
    pub fn decode_tok_s(&self) -> Option<f64> {
        rate(self.generated_tokens.saturating_sub(1), self.decode)
    }
}

/// `tokens / time`, or `None` for a rate of nothing: no tokens, or no time to divide by.
fn rate(tokens: usize, time: Duration) -> Option<f64> {
    (tokens > 0 && !time.is_zero()).then(|| tokens as f64 / time.as_secs_f64())
}

/// One generated token and the text it completed (may be empty mid-character or while a
/// possible stop string is held back). The last step of a generation may carry no token, only
/// the text that was held back until the end; a step of a prompt longer than the engine's
/// `max_batch` prefills one chunk and carries neither token nor text.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub token: Option<u32>,
    pub text: String,
    /// The token's log-probabilities, when the request asked for them.
    pub logprobs: Option<TokenLogprobs>,
}

/// What [`Generator::begin`] left a step in.
enum Begin {
    /// The step is over (finished, or a prompt chunk without a token).
    Done(Option<Step>),
    /// A token is on its way: take it, after queuing the next token's decode step if
    /// `queue_ahead`.
    Take { queue_ahead: bool },
}

/// Speculation set up apart from a generator ([`Generator::plan_lookup`],
/// [`Generator::plan_draft`]) and attached to one with [`Generator::with_plan`]: the server sets
/// it up before it takes a slot's sequence, so a failure (the draft cache's memory) leaves the
/// slot's cache where it was.
pub struct SpecPlan<'a, B: Backend>(Speculation<'a, B>);

/// Speculative decoding's state in a generation ([`Generator::with_lookup`],
/// [`Generator::with_draft`]).
struct Speculation<'a, B: Backend> {
    drafter: Drafter<'a, B>,
    planted: Option<SpecBug>,
    k: AdaptiveK,
    /// The request's coin stream, drawn on the host while speculating (the plain run draws
    /// the same coins on the device, one per token).
    rng: CoinRng,
    /// Verified tokens not yet emitted, with their log-probabilities.
    queue: VecDeque<(u32, Option<TokenLogprobs>)>,
    stats: SpecStats,
    /// Adaptive k switched speculation off and decoding went over to the plain device path.
    handed_off: bool,
}

impl<'a, B: Backend> Speculation<'a, B> {
    /// Fresh state: nothing drafted or queued yet, the coins from the request's `seed`.
    fn new(drafter: Drafter<'a, B>, planted: Option<SpecBug>, k: AdaptiveK, seed: u64) -> Self {
        Speculation {
            drafter,
            planted,
            k,
            rng: CoinRng::new(seed),
            queue: VecDeque::new(),
            stats: SpecStats::default(),
            handed_off: false,
        }
    }
}

/// Where the drafts come from.
enum Drafter<'a, B: Backend> {
    /// Prompt lookup over the last `ngram` tokens: deterministic, drafts kept while equal to
    /// their row's sample.
    Lookup { ngram: usize },
    /// A draft model, drafts kept by the Leviathan/Chen rule (`speculative::rule`).
    Model(Box<draft::DraftModel<'a, B>>),
}

pub struct Generator<'a, B: Backend> {
    engine: &'a Engine<B>,
    tokenizer: Option<&'a Tokenizer>,
    request: GenerationRequest,
    seq: Sequence<B>,
    /// Whether the token the next call returns is already queued on the device (the decode
    /// step runs one token ahead of the host).
    ahead: bool,
    /// Prompt and generated ids (the repetition-penalty history).
    context: Vec<u32>,
    generated: Vec<u32>,
    detok: IncrementalDecoder,
    /// Text decoded but held back because it may begin a stop string.
    pending: String,
    text: String,
    finish: Option<FinishReason>,
    timings: Timings,
    prefilled: bool,
    /// Prompt positions whose KV the sequence holds: the reused ones (`resume`), then each
    /// prefilled chunk's.
    prefill_pos: usize,
    /// When the step in progress began, and whether it was decoding.
    step_start: Option<(Instant, bool)>,
    /// Speculation, when asked for.
    spec: Option<Speculation<'a, B>>,
    /// Log-probabilities of the penalised logits ([`Generator::logprobs_after_penalties`]).
    penalised_logprobs: bool,
}

/// How many of `prompt`'s first tokens equal those of `prefilled` whose KV a cache of `cached`
/// positions still holds ([`Generator::resume`] reuses these, cut to its chunk plan).
pub fn cached_prefix(prefilled: &[u32], cached: usize, prompt: &[u32]) -> usize {
    prefilled[..prefilled.len().min(cached)]
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count()
}

impl<'a, B: Backend> Generator<'a, B> {
    /// Validates the request; the prompt runs on the first call to [`Generator::step`].
    pub fn new(
        engine: &'a Engine<B>,
        tokenizer: Option<&'a Tokenizer>,
        request: GenerationRequest,
    ) -> Result<Self> {
        let capacity = Self::check(engine, &request)?;
        let seq = engine.new_sequence(capacity)?;
        Ok(Self::start(engine, tokenizer, request, seq, 0))
    }

    /// [`Generator::new`] on a sequence an earlier generation used ([`Generator::into_parts`]),
    /// its KV cache kept: the first positions whose tokens that generation *prefilled*
    /// (`prefilled`, its prompt) and this prompt share are reused, not prefilled again — as many
    /// as a multiple of the engine's `max_batch` allows, and never the prompt's last token
    /// (its logits start the generation). The rest is prefilled in exactly the chunks a fresh
    /// generation's prefill runs from position 0, and the reused positions hold what those
    /// chunks wrote, so the tokens are the fresh generation's on every backend (decoded
    /// positions, which a prefill would compute another way, are never reused). The sequence
    /// must hold the capacity the request asks for.
    pub fn resume(
        engine: &'a Engine<B>,
        tokenizer: Option<&'a Tokenizer>,
        request: GenerationRequest,
        mut seq: Sequence<B>,
        prefilled: &[u32],
    ) -> Result<Self> {
        let capacity = Self::check(engine, &request)?;
        if seq.cache.capacity() != capacity {
            return Err(Error::InvalidRequest(format!(
                "the sequence holds {} positions; the request asks for {capacity}",
                seq.cache.capacity()
            )));
        }
        let shared = cached_prefix(prefilled, seq.cache.len(), &request.prompt)
            .min(request.prompt.len() - 1);
        let reused = shared - shared % engine.options().max_batch;
        seq.cache.set_len(reused)?;
        Ok(Self::start(engine, tokenizer, request, seq, reused))
    }

    /// The sequence (its KV cache holding at least the prompt's positions) and the prompt, for
    /// [`Generator::resume`].
    pub fn into_parts(self) -> (Sequence<B>, Vec<u32>) {
        (self.seq, self.request.prompt)
    }

    fn start(
        engine: &'a Engine<B>,
        tokenizer: Option<&'a Tokenizer>,
        request: GenerationRequest,
        seq: Sequence<B>,
        reused: usize,
    ) -> Self {
        Generator {
            engine,
            tokenizer,
            ahead: false,
            context: request.prompt.clone(),
            generated: Vec::new(),
            detok: IncrementalDecoder::new(true),
            pending: String::new(),
            text: String::new(),
            finish: None,
            timings: Timings {
                prompt_tokens: request.prompt.len(),
                cached_tokens: reused,
                ..Default::default()
            },
            prefilled: false,
            prefill_pos: reused,
            step_start: None,
            spec: None,
            penalised_logprobs: false,
            request,
            seq,
        }
    }

    /// Decodes speculatively with prompt lookup (module [`crate::speculative`]): each decode
    /// step drafts up to k tokens from the context, scores them with the last token in one
    /// forward, and keeps the drafts while they equal the tokens sampled from their rows (each
    /// row with the coin and penalty history the plain decode would use at its position), so
    /// the tokens, their log-probabilities, the finish reason and the text are the plain
    /// generation's. Set before the first step.
    pub fn with_lookup(self, params: LookupParams) -> Result<Self> {
        let plan = Self::plan_lookup(params, self.request.seed)?;
        self.with_plan(plan)
    }

    /// [`Generator::with_lookup`]'s speculation for a request of `seed`, set up before the
    /// generator exists ([`Generator::with_plan`] attaches it).
    pub fn plan_lookup(params: LookupParams, seed: u64) -> Result<SpecPlan<'a, B>> {
        params.validate()?;
        let drafter = Drafter::Lookup {
            ngram: params.ngram,
        };
        Ok(SpecPlan(Speculation::new(
            drafter,
            params.planted,
            AdaptiveK::new(&params),
            seed,
        )))
    }

    /// Decodes speculatively with a draft model (`draft`, an engine of the same backend whose
    /// model shares the target's tokenizer: `speculative::check_draft_model` checks the files;
    /// here the vocabulary sizes are checked): each decode step samples up to k tokens from the
    /// draft model (its own KV cache, rolled back with the target's), scores them with the
    /// last token in one forward of the target, and keeps them by the rule of
    /// [`crate::speculative::rule`]. The output is distributed as the plain generation's;
    /// greedy, it is the plain generation's. Set before the first step.
    pub fn with_draft(self, draft: &'a Engine<B>, params: DraftParams) -> Result<Self> {
        let capacity = self.seq.cache.capacity();
        let plan = Self::plan_draft(self.engine, draft, params, capacity, self.request.seed)?;
        self.with_plan(plan)
    }

    /// [`Generator::with_draft`]'s speculation for a request of `seed` on `engine` with a cache
    /// of `capacity` positions (the draft model's cache is allocated here), set up before the
    /// generator exists ([`Generator::with_plan`] attaches it).
    pub fn plan_draft(
        engine: &Engine<B>,
        draft: &'a Engine<B>,
        params: DraftParams,
        capacity: usize,
        seed: u64,
    ) -> Result<SpecPlan<'a, B>> {
        params.validate()?;
        let (tv, dv) = (engine.config().vocab_size, draft.config().vocab_size);
        if tv != dv {
            return Err(Error::InvalidRequest(format!(
                "the draft model's vocabulary has {dv} tokens, the target's {tv}"
            )));
        }
        let model = draft::DraftModel::new(draft, capacity, seed)?;
        Ok(SpecPlan(Speculation::new(
            Drafter::Model(Box::new(model)),
            params.planted,
            AdaptiveK::with_limits(params.max_draft, params.min_acceptance),
            seed,
        )))
    }

    /// Speculates as `plan` (from [`Generator::plan_lookup`] or [`Generator::plan_draft`] for
    /// this request's seed and capacity) says. Set before the first step.
    pub fn with_plan(mut self, plan: SpecPlan<'a, B>) -> Result<Self> {
        if self.prefilled {
            return Err(Error::InvalidRequest(
                "speculation is set before the first token".into(),
            ));
        }
        self.spec = Some(plan.0);
        Ok(self)
    }

    /// The KV capacity a generation of `request` on `engine` runs with, or why the request
    /// cannot run (what [`Generator::new`] checks first).
    pub fn capacity_for(engine: &Engine<B>, request: &GenerationRequest) -> Result<usize> {
        Self::check(engine, request)
    }

    /// Makes the steps' log-probabilities (with [`GenerationRequest::logprobs`]) those of the
    /// logits after the request's penalties over its penalty window — the row greedy decoding
    /// picks from — instead of the raw logits'. For the conformance suite's divergence rule,
    /// which must judge near-ties on the row the choice was made from; the server reports the
    /// raw ones.
    #[doc(hidden)]
    pub fn logprobs_after_penalties(mut self) -> Self {
        self.penalised_logprobs = true;
        self
    }

    /// Speculation's counts so far; `None` without speculation.
    pub fn spec_stats(&self) -> Option<SpecStats> {
        self.spec.as_ref().map(|s| SpecStats {
            switched_off: s.k.is_off(),
            ..s.stats
        })
    }

    /// Every check of a request against the engine; the KV capacity it gets.
    fn check(engine: &Engine<B>, request: &GenerationRequest) -> Result<usize> {
        request.check_settings()?;
        if request.prompt.is_empty() {
            return Err(Error::InvalidRequest("the prompt has no tokens".into()));
        }
        let vocab = engine.config().vocab_size;
        if let Some(&t) = request.prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::InvalidRequest(format!(
                "prompt token {t} is outside the vocabulary ({vocab})"
            )));
        }
        let model_context = engine.config().max_position_embeddings;
        if let Some(c) = request.context.filter(|&c| c > model_context) {
            return Err(Error::invalid_param(
                "context",
                c,
                format!("at most the model's context length, {model_context}"),
            ));
        }
        // The model's context capped to the free memory, or the request's: refused here, before
        // the cache is allocated, when it cannot fit.
        let capacity = engine.context_plan(request.context)?.capacity;
        if request.prompt.len() >= capacity {
            return Err(Error::InvalidRequest(format!(
                "the prompt has {} tokens; the context holds {capacity} (leave room for at least one generated token)",
                request.prompt.len()
            )));
        }
        Ok(capacity)
    }

    /// Generates the next token; `None` once finished (see [`Generator::finish_reason`]). A
    /// prompt is prefilled one `max_batch` chunk a call: the calls before its last chunk return
    /// a step without a token.
    ///
    /// The device runs one token ahead: before this call waits for token t it has queued the
    /// decode step of token t + 1 (which reads t on the device), so the host's detokenizing and
    /// streaming of t overlaps the device's work on t + 1. A step queued past the end (after an
    /// end-of-sequence token or a stop string) is wasted work, never output.
    pub fn step(&mut self) -> Result<Option<Step>> {
        match self.begin()? {
            Begin::Done(step) => Ok(step),
            Begin::Take { queue_ahead } => {
                if queue_ahead {
                    let (params, window) = self.settings();
                    self.engine.queue_decode(&mut self.seq, &params, window)?;
                }
                self.take()
            }
        }
    }

    /// [`Generator::step`] for several generations of one engine at once: each one's step
    /// exactly as its own `step` would run it, except that the decode steps they queue are
    /// queued together, in batched passes ([`Engine::queue_decode_batch`]: each pass reads
    /// the weights once for all its sequences, and each sequence's tokens stay what it alone
    /// generates). Prompts are prefilled one chunk a call, one generation after another, as
    /// `step` does. The outer error is the batched pass's (every generation in it is then in
    /// an unknown state); the inner results are each generation's `step` result.
    pub fn step_batch(
        gens: &mut [&mut Generator<'a, B>],
        batch: &mut DecodeBatch<B>,
    ) -> Result<Vec<Result<Option<Step>>>> {
        let Some(engine) = gens.first().map(|g| g.engine) else {
            return Ok(Vec::new());
        };
        if gens.iter().any(|g| !std::ptr::eq(g.engine, engine)) {
            return Err(Error::InvalidRequest(
                "a decode batch takes generations of one engine".into(),
            ));
        }
        let begun: Vec<Result<Begin>> = gens.iter_mut().map(|g| g.begin()).collect();
        let ahead: Vec<usize> = begun
            .iter()
            .enumerate()
            .filter(|(_, b)| matches!(b, Ok(Begin::Take { queue_ahead: true })))
            .map(|(i, _)| i)
            .collect();
        let params: Vec<(SamplingParams, usize)> =
            ahead.iter().map(|&i| gens[i].settings()).collect();
        let mut seqs: Vec<&mut Sequence<B>> = gens
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| ahead.contains(i))
            .map(|(_, g)| &mut g.seq)
            .collect();
        engine.queue_decode_batch(batch, &mut seqs, &params)?;
        Ok(gens
            .iter_mut()
            .zip(begun)
            .map(|(g, b)| match b? {
                Begin::Done(step) => Ok(step),
                Begin::Take { .. } => g.take(),
            })
            .collect())
    }

    /// The request's sampling settings and repetition window.
    fn settings(&self) -> (SamplingParams, usize) {
        (self.request.sampling, self.request.repeat_last_n)
    }

    /// A step up to the decode step it may queue ahead: finishing, or a prompt chunk, or the
    /// prefill's first sample queued, or (with log-probabilities) this token's decode step.
    fn begin(&mut self) -> Result<Begin> {
        if self.finish.is_some() {
            return Ok(Begin::Done(None));
        }
        if self.generated.len() >= self.request.max_tokens {
            return self.finish_with(FinishReason::MaxTokens).map(Begin::Done);
        }
        let start = Instant::now();
        self.step_start = Some((start, self.prefilled));
        let decoding = self.prefilled;
        let (params, window) = self.settings();
        if !decoding {
            // One chunk of the engine's prefill plan a call (positions from 0 in chunks of
            // max_batch, the chunks a single forward would run), so that a scheduler can step
            // other sequences between the chunks of a long prompt.
            let e = self.engine;
            let prompt = &self.request.prompt;
            let end = (self.prefill_pos + e.options().max_batch).min(prompt.len());
            e.forward(&mut self.seq, &prompt[self.prefill_pos..end], Logits::Last)?;
            self.prefill_pos = end;
            if end < prompt.len() {
                self.timings.prefill += start.elapsed();
                self.step_start = None;
                return Ok(Begin::Done(Some(Step {
                    token: None,
                    text: String::new(),
                    logprobs: None,
                })));
            }
            e.backend().synchronize()?;
            self.timings.prefill += start.elapsed();
            self.prefilled = true;
            if self.spec.is_some() {
                // The first token from the prefill's logits, with the stream's first coin.
                self.step_start = None;
                let logits = e.last_logits(&self.seq)?;
                self.verify_rows(&logits, &[])?;
                return self.emit_verified().map(Begin::Done);
            }
            e.begin_decode(&mut self.seq, &self.request.prompt, self.request.seed)?;
            e.queue_sample(&mut self.seq, &params, window)?;
        } else if self.spec.as_ref().is_some_and(|s| !s.handed_off) {
            if let Some(step) = self.spec_step(start)? {
                return Ok(Begin::Done(step));
            }
            // Handed off: the next token's sample is queued on the device, as after a prefill.
        } else if !self.ahead {
            if self.request.logprobs.is_none() || self.seq.cache.remaining() == 0 {
                // The last call could not queue this token's step: the cache is full.
                self.step_start = None;
                return self.finish_with(FinishReason::ContextFull).map(Begin::Done);
            }
            // Logprobs: this token's step was not queued ahead (its logits must survive
            // until it is taken).
            self.engine.queue_decode(&mut self.seq, &params, window)?;
        }
        // Queue the next token's step before waiting for this one, when one will be wanted
        // (not with logprobs: the next step's forward would overwrite this token's logits).
        self.ahead = self.request.logprobs.is_none()
            && self.generated.len() + 1 < self.request.max_tokens
            && self.seq.cache.remaining() > 0;
        Ok(Begin::Take {
            queue_ahead: self.ahead,
        })
    }

    /// A speculative decode step: the next verified token, verifying a draft first when none
    /// is left (`Ok(None)` instead when adaptive k has just switched speculation off: the
    /// plain decode's sample is then queued on the device).
    fn spec_step(&mut self, start: Instant) -> Result<Option<Option<Step>>> {
        let (params, window) = self.settings();
        let spec = self.spec.as_mut().ok_or_else(not_speculating)?;
        if spec.queue.is_empty() {
            if self.seq.cache.remaining() == 0 {
                // As the plain decode: every position's logits were sampled; the cache is full.
                self.step_start = None;
                return self.finish_with(FinishReason::ContextFull).map(Some);
            }
            let last = *self.context.last().ok_or_else(not_speculating)?;
            if spec.k.is_off() {
                // The cache holds the context but its last token: decode that token, then
                // sample on the device with the coin stream where the host left it.
                spec.handed_off = true;
                let seed = spec.rng.state();
                let e = self.engine;
                e.forward(&mut self.seq, &[last], Logits::Last)?;
                e.begin_decode(&mut self.seq, &self.context, seed)?;
                e.queue_sample(&mut self.seq, &params, window)?;
                return Ok(None);
            }
            // Draft up to k tokens, no more than the tokens still wanted after the one every
            // verification gives, nor the positions the cache has left.
            // And no more than a batched pass's rows beside the last token, so that the
            // verification takes the decode step's arithmetic (Engine::verify_forward).
            let budget = self.request.max_tokens - self.generated.len();
            let k = spec
                .k
                .next_k()
                .min(budget - 1)
                .min(self.seq.cache.remaining() - 1)
                .min(self.engine.decode_batch_rows() - 1);
            let base = self.context.len();
            let (draft, q) = match &mut spec.drafter {
                Drafter::Lookup { ngram } => (lookup_draft(&self.context, *ngram, k), None),
                Drafter::Model(m) => {
                    let (d, q) = m.draft(&self.context, k, &params, window)?;
                    (d, Some(q))
                }
            };
            let mut input = Vec::with_capacity(draft.len() + 1);
            input.push(last);
            input.extend_from_slice(&draft);
            let before = self.seq.cache.len();
            let logits = self.engine.verify_forward(&mut self.seq, &input)?;
            let accepted = match &q {
                None => self.verify_rows(&logits, &draft)?,
                Some(q) => self.verify_drafted(&logits, &draft, q)?,
            };
            let spec = self.spec.as_mut().ok_or_else(not_speculating)?;
            // Keep the KV of the last token and the accepted drafts; the correction (the last
            // sampled token) is the next verification's first row.
            if spec.planted != Some(SpecBug::NoRollback) {
                self.seq.cache.rollback_to(before + 1 + accepted)?;
                if let Drafter::Model(m) = &mut spec.drafter {
                    m.rollback(base, accepted)?;
                }
            }
            spec.k.update(draft.len(), accepted, start.elapsed());
            self.timings.decode += start.elapsed();
        }
        self.step_start = None;
        self.emit_verified().map(Some)
    }

    /// Samples the rows of a verification (`logits`, (draft.len() + 1, vocab)) in order, each
    /// with the next coin of the request's stream and the penalty window of the context as the
    /// plain decode would have it there, and queues the tokens: every accepted draft (equal to
    /// its row's sample) and the first sample that differs from its draft (or follows the
    /// last). Returns the drafts accepted.
    fn verify_rows(&mut self, logits: &[f32], draft: &[u32]) -> Result<usize> {
        let vocab = self.engine.config().vocab_size;
        let (params, window) = self.settings();
        let mut history = self.context.clone();
        let mut accepted = 0;
        for (i, row) in logits.chunks_exact(vocab).take(draft.len() + 1).enumerate() {
            let h = penalty_window(&history, window);
            let spec = self.spec.as_mut().ok_or_else(not_speculating)?;
            let sampled = crate::sampler::sample(row, &params, h, spec.rng.coin())?;
            let token = match (draft.get(i), spec.planted) {
                (Some(&d), Some(SpecBug::AcceptUnchecked)) => d,
                _ => sampled,
            };
            let lp = self.token_logprobs(row, token, &history)?;
            let spec = self.spec.as_mut().ok_or_else(not_speculating)?;
            spec.queue.push_back((token, lp));
            history.push(token);
            if draft.get(i) != Some(&token) {
                break;
            }
            accepted += 1;
        }
        self.spec
            .as_mut()
            .ok_or_else(not_speculating)?
            .stats
            .record(draft.len(), accepted);
        Ok(accepted)
    }

    /// A token's log-probabilities at a position whose logits are `row` and whose context is
    /// `history` (as the request asks: none, of the raw logits, or of the penalised ones).
    fn token_logprobs(
        &self,
        row: &[f32],
        token: u32,
        history: &[u32],
    ) -> Result<Option<TokenLogprobs>> {
        let Some(n) = self.request.logprobs else {
            return Ok(None);
        };
        if !self.penalised_logprobs || !self.request.sampling.penalizes() {
            return Ok(Some(TokenLogprobs::from_logits(row, token, n)));
        }
        let (params, window) = self.settings();
        let h = penalty_window(history, window);
        let penalised = crate::sampler::penalized(row, &params, h)?;
        Ok(Some(TokenLogprobs::from_logits(&penalised, token, n)))
    }

    /// Emits the oldest verified token.
    fn emit_verified(&mut self) -> Result<Option<Step>> {
        let spec = self.spec.as_mut().ok_or_else(not_speculating)?;
        let (token, logprobs) = spec.queue.pop_front().ok_or_else(not_speculating)?;
        self.emit(token, logprobs)
    }

    /// The rest of a step after [`Generator::begin`] (and the decode step it asked for): waits
    /// for the token and emits it.
    fn take(&mut self) -> Result<Option<Step>> {
        let (start, decoding) = self
            .step_start
            .take()
            .ok_or_else(|| Error::InvalidRequest("a step takes a token it began".into()))?;
        let token = self.engine.take_token(&mut self.seq)?;
        let logprobs = match self.request.logprobs {
            Some(_) => {
                let logits = self.engine.last_logits(&self.seq)?;
                self.token_logprobs(&logits, token, &self.context)?
            }
            None => None,
        };
        if decoding {
            self.timings.decode += start.elapsed();
        }
        self.emit(token, logprobs)
    }

    /// Records a generated token and returns its step: the text it completes, or the end at
    /// an end-of-sequence token or a stop string.
    fn emit(&mut self, token: u32, logprobs: Option<TokenLogprobs>) -> Result<Option<Step>> {
        self.timings.generated_tokens += 1;
        self.generated.push(token);
        self.context.push(token);

        if let Some(tok) = self.tokenizer {
            if tok.is_eos(token) {
                self.finish = Some(FinishReason::Eos);
                let rest = std::mem::take(&mut self.pending);
                self.text.push_str(&rest);
                return Ok(Some(Step {
                    token: Some(token),
                    text: rest,
                    logprobs,
                }));
            }
            let piece = self.detok.push(tok, token)?;
            let text = self.release(piece);
            return Ok(Some(Step {
                token: Some(token),
                text,
                logprobs,
            }));
        }
        Ok(Some(Step {
            token: Some(token),
            text: String::new(),
            logprobs,
        }))
    }

    /// Adds `piece` to the held-back text and returns what can be emitted: everything up to a
    /// stop string (finishing), or all but the longest tail that could still begin one.
    fn release(&mut self, piece: String) -> String {
        self.pending.push_str(&piece);
        let stops = &self.request.stop;
        if let Some((at, stop)) = stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()).map(|i| (i, s)))
            .min_by_key(|(i, _)| *i)
        {
            let out = self.pending[..at].to_string();
            self.finish = Some(FinishReason::Stop(stop.clone()));
            self.pending.clear();
            self.text.push_str(&out);
            return out;
        }
        let hold = stops
            .iter()
            .flat_map(|s| {
                // longest suffix of pending that is a proper prefix of s
                (1..s.len().min(self.pending.len() + 1))
                    .rev()
                    .filter(|&k| s.is_char_boundary(k))
                    .find(|&k| self.pending.ends_with(&s[..k]))
            })
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - hold;
        let out: String = self.pending.drain(..cut).collect();
        self.text.push_str(&out);
        out
    }

    fn finish_with(&mut self, reason: FinishReason) -> Result<Option<Step>> {
        // Emit what was held back (an unfinished stop-string prefix, bytes never completed).
        if let Some(tok) = self.tokenizer {
            let tail = self.detok.flush(tok)?;
            self.pending.push_str(&tail);
        }
        let rest = std::mem::take(&mut self.pending);
        self.text.push_str(&rest);
        self.finish = Some(reason);
        if rest.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Step {
                token: None,
                text: rest,
                logprobs: None,
            }))
        }
    }

    pub fn finish_reason(&self) -> Option<&FinishReason> {
        self.finish.as_ref()
    }

    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    /// The text emitted so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn timings(&self) -> Timings {
        self.timings
    }

    pub fn sequence(&self) -> &Sequence<B> {
        &self.seq
    }
}

/// The last `window` tokens of `history` (all of them for 0): what the penalties look at.
fn penalty_window(history: &[u32], window: usize) -> &[u32] {
    match window {
        0 => history,
        n => &history[history.len().saturating_sub(n)..],
    }
}

fn not_speculating() -> Error {
    Error::InvalidRequest("a speculative step without a verified token".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_the_log_softmax_and_the_largest_first() {
        let logits = [1.0f32, 3.0, 3.0, -2.0, 0.5];
        let lse = logits.iter().map(|&l| (l as f64).exp()).sum::<f64>().ln();
        let t = TokenLogprobs::from_logits(&logits, 4, 3);
        assert_eq!(t.token, 4);
        assert!((t.logprob as f64 - (0.5 - lse)).abs() < 1e-6, "{t:?}");
        // 3.0 twice (the lower id first), then 1.0.
        let ids: Vec<u32> = t.top.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, [1, 2, 0]);
        assert!((t.top[0].1 as f64 - (3.0 - lse)).abs() < 1e-6);
        assert_eq!(t.top[0].1, t.top[1].1);
        // Probabilities sum to 1 over the whole row; n past the row is the row.
        let all = TokenLogprobs::from_logits(&logits, 0, 99);
        assert_eq!(all.top.len(), 5);
        let total: f64 = all.top.iter().map(|&(_, l)| (l as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        assert!(TokenLogprobs::from_logits(&logits, 1, 0).top.is_empty());
        // Large logits do not overflow (max-shifted).
        let big = TokenLogprobs::from_logits(&[1000.0, 1000.0], 0, 1);
        assert!(
            (big.logprob - (-std::f32::consts::LN_2)).abs() < 1e-6,
            "{big:?}"
        );
    }

    #[test]
    fn rates_of_nothing_are_none() {
        let ms = Duration::from_millis;
        let t = |prompt_tokens, prefill, generated_tokens, decode| Timings {
            prompt_tokens,
            prefill,
            generated_tokens,
            decode,
            ..Default::default()
        };
        assert_eq!(t(0, ms(5), 0, ms(0)).prefill_tok_s(), None);
        assert_eq!(t(7, ms(0), 0, ms(0)).prefill_tok_s(), None);
        // Cached prompt tokens were not prefilled: the rate counts the others only.
        let cached = Timings {
            cached_tokens: 5,
            ..t(7, ms(10), 0, ms(0))
        };
        assert_eq!(cached.prefill_tok_s(), Some(200.0));
        let all_cached = Timings {
            cached_tokens: 7,
            ..t(7, ms(10), 0, ms(0))
        };
        assert_eq!(all_cached.prefill_tok_s(), None);
        // One generated token comes from the prefill: no decode rate.
        assert_eq!(t(7, ms(10), 1, ms(0)).decode_tok_s(), None);
        assert_eq!(t(7, ms(10), 1, ms(3)).decode_tok_s(), None);
        assert_eq!(t(8, ms(500), 5, ms(2000)).prefill_tok_s(), Some(16.0));
        assert_eq!(t(8, ms(500), 5, ms(2000)).decode_tok_s(), Some(2.0));
    }

    #[test]
    fn settings_are_checked_without_a_model() {
        let ok = GenerationRequest::new(vec![]);
        assert!(ok.check_settings().is_ok());
        let cases = [
            (
                GenerationRequest {
                    max_tokens: 0,
                    ..ok.clone()
                },
                "max_tokens must be at least 1, got 0",
            ),
            (
                GenerationRequest {
                    context: Some(1),
                    ..ok.clone()
                },
                "context must be at least 2 (one prompt token and one generated), got 1",
            ),
            (
                GenerationRequest {
                    stop: vec!["x".into(), String::new()],
                    ..ok.clone()
                },
                "stop must be a non-empty string, got \"\"",
            ),
            (
                GenerationRequest {
                    sampling: SamplingParams {
                        top_p: 2.0,
                        ..Default::default()
                    },
                    ..ok.clone()
                },
                "top_p must be in (0, 1] (1 = off), got 2",
            ),
        ];
        for (r, msg) in cases {
            let e = r.check_settings().unwrap_err();
            assert!(matches!(e, Error::InvalidParam { .. }), "{e:?}");
            assert_eq!(e.to_string(), msg);
        }
    }
}
