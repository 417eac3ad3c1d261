//! The engine thread: it owns the engine, takes requests from a bounded queue into at most
//! `slots` sequences (each its own [`Generator`], so its own KV cache), and steps every active
//! sequence one token per round, in admission order, admitting new requests between rounds.
//!
//! A sequence's tokens depend only on its own request: its generator is the one `wavefront
//! run` drives, with the same prompt, settings, seed and capacity, and the sequences share
//! nothing but the weights. Each round steps every active generator together
//! ([`Generator::step_batch`]): their decode steps run in batched passes (continuous
//! batching: each pass reads the weights once for all its sequences, and the engine keeps each
//! sequence's logits bit-identical to its own alone); a prompt is prefilled one chunk of the
//! engine's `max_batch` a round (the generator's prefill steps), so the others keep generating
//! between its chunks, and joins the passes once prefilled.
//!
//! Prompt caching: a finished sequence keeps its KV cache in an idle slot, with the prompt it
//! prefilled. A new request takes the idle slot whose prefilled prompt shares the longest
//! prefix with its own and resumes there ([`Generator::resume`]: the shared positions, to a
//! multiple of the engine's `max_batch`, are not prefilled again, and the tokens stay those of a
//! fresh generation); with no idle slot it gets a new sequence. Live sequences, generating or
//! idle, are at most `slots`: the memory `serve::slot_context` planned for.
//!
//! Speculation (`serve --lookup` / `--draft`): every request's generator drafts and verifies
//! as `wavefront run --lookup` / `--draft` does (its own draft KV cache with a draft model), so
//! a served request still returns `run`'s tokens for the same settings and seed — with lookup,
//! the tokens of plain decoding. A speculating sequence verifies in its own forward (k + 1
//! rows), not in the round's batched pass; once adaptive k switches it off it joins the passes.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::api::{LogprobEntry, Usage};
use super::error::ApiError;
use super::metrics::Metrics;
use crate::backend::Backend;
use crate::generate::{cached_prefix, FinishReason, GenerationRequest, Generator, SpecPlan, Step};
use crate::model::{DecodeBatch, Engine, Sequence};
use crate::speculative::{DraftParams, LookupParams};
use crate::tokenizer::Tokenizer;

/// What the engine thread tells a request's handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Text that one or more tokens completed, and the log-probabilities of the token this
    /// step generated when the request asked for them (at least one of the two is there).
    Piece {
        text: String,
        logprobs: Option<LogprobEntry>,
    },
    /// The generation ended; no event follows.
    Done { finish: FinishReason, usage: Usage },
    /// The generation failed or was cancelled (timeout); no event follows.
    Failed(ApiError),
}

/// A request waiting for a slot.
pub struct Job {
    pub request: GenerationRequest,
    pub events: UnboundedSender<Event>,
    pub arrived: Instant,
    pub timeout: Duration,
}

impl Job {
    /// A job and the receiving end of its events.
    pub fn new(request: GenerationRequest, timeout: Duration) -> (Job, UnboundedReceiver<Event>) {
        let (events, rx) = tokio::sync::mpsc::unbounded_channel();
        let job = Job {
            request,
            events,
            arrived: Instant::now(),
            timeout,
        };
        (job, rx)
    }
}

/// The sending side of the queue, held by the HTTP handlers.
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Job>,
    capacity: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue holds `capacity` requests already.
    Full { capacity: usize },
    /// The engine thread has stopped.
    Closed,
}

impl Queue {
    /// A queue of `capacity` waiting requests (at least 1) and its receiving end.
    pub fn bounded(capacity: usize) -> (Queue, Receiver<Job>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        (Queue { tx, capacity }, rx)
    }

    /// Queues `job` without waiting; counts it in the queue-depth gauge.
    pub fn submit(&self, job: Job, metrics: &Metrics) -> Result<(), SubmitError> {
        metrics.queue_depth.fetch_add(1, Relaxed);
        let r = self.tx.try_send(job);
        if r.is_err() {
            metrics.queue_depth.fetch_sub(1, Relaxed);
        }
        r.map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full {
                capacity: self.capacity,
            },
            TrySendError::Disconnected(_) => SubmitError::Closed,
        })
    }
}

/// Speculative decoding for every request the server runs.
pub enum Speculate<'e, B: Backend> {
    /// Prompt lookup (`--lookup N`).
    Lookup(LookupParams),
    /// A draft model (`--draft MODEL`), its engine on a backend of the target's kind.
    Draft {
        engine: &'e Engine<B>,
        params: DraftParams,
    },
}

impl<'e, B: Backend> Speculate<'e, B> {
    /// The speculation of a request of `seed` on `target` with a cache of `capacity`.
    fn plan(
        &self,
        target: &Engine<B>,
        capacity: usize,
        seed: u64,
    ) -> crate::Result<SpecPlan<'e, B>> {
        match self {
            Speculate::Lookup(p) => Generator::plan_lookup(*p, seed),
            Speculate::Draft { engine, params } => {
                Generator::plan_draft(target, engine, *params, capacity, seed)
            }
        }
    }
}

/// A sequence in a slot.
struct Active<'e, B: Backend> {
    gen: Generator<'e, B>,
    tokenizer: &'e Tokenizer,
    events: UnboundedSender<Event>,
    arrived: Instant,
    deadline: Instant,
    timeout: Duration,
    last_token: Option<Instant>,
}

/// What a round left a sequence in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Still generating.
    Going,
    /// Finished, cancelled or timed out: its sequence may serve the next request.
    Ended,
    /// The engine failed on it: its sequence is dropped.
    Broken,
}

/// A finished sequence kept for the next request, with the prompt it prefilled.
struct Idle<B: Backend> {
    seq: Sequence<B>,
    prefilled: Vec<u32>,
}

impl<B: Backend> Active<'_, B> {
    /// Before a round: `Some(Ended)` for a sequence whose client has gone or whose time is up.
    fn check(&mut self, metrics: &Metrics) -> Option<After> {
        if self.events.is_closed() {
            metrics.cancelled.fetch_add(1, Relaxed);
            return Some(After::Ended);
        }
        if Instant::now() >= self.deadline {
            metrics.timed_out.fetch_add(1, Relaxed);
            let _ = self
                .events
                .send(Event::Failed(ApiError::timeout(self.timeout.as_secs_f64())));
            return Some(After::Ended);
        }
        None
    }

    /// Adds a generation's speculation counts, once, as it ends.
    fn count_speculation(&self, metrics: &Metrics) {
        if let Some(stats) = self.gen.spec_stats() {
            metrics.add_speculation(&stats);
        }
    }

    /// The round's step result, passed on to the client.
    fn after(&mut self, step: Result<Option<Step>, String>, metrics: &Metrics) -> After {
        match step {
            Err(e) => {
                self.count_speculation(metrics);
                let _ = self.events.send(Event::Failed(ApiError::internal(e)));
                After::Broken
            }
            Ok(step) => {
                if let Some(step) = step {
                    if step.token.is_some() {
                        let now = Instant::now();
                        match self.last_token {
                            None => metrics.ttft.observe(now - self.arrived),
                            Some(t) => metrics.itl.observe(now - t),
                        }
                        self.last_token = Some(now);
                        metrics.generated_tokens.fetch_add(1, Relaxed);
                    }
                    let logprobs = step
                        .logprobs
                        .as_ref()
                        .map(|lp| LogprobEntry::new(self.tokenizer, lp));
                    if !step.text.is_empty() || logprobs.is_some() {
                        let _ = self.events.send(Event::Piece {
                            text: step.text,
                            logprobs,
                        });
                    }
                }
                match self.gen.finish_reason() {
                    None => After::Going,
                    Some(finish) => {
                        let usage = Usage {
                            prompt_tokens: self.gen.timings().prompt_tokens,
                            completion_tokens: self.gen.generated().len(),
                        };
                        // Counted before the client hears of the end.
                        self.count_speculation(metrics);
                        let _ = self.events.send(Event::Done {
                            finish: finish.clone(),
                            usage,
                        });
                        After::Ended
                    }
                }
            }
        }
    }
}

/// Starts `job`'s generator — on the idle sequence whose prefilled prompt shares the longest
/// prefix with its prompt, else on a new one — or answers why it cannot start (gone, timed
/// out, refused).
fn admit<'e, B: Backend>(
    engine: &'e Engine<B>,
    tokenizer: &'e Tokenizer,
    job: Job,
    idle: &mut Vec<Idle<B>>,
    spec: Option<&Speculate<'e, B>>,
    metrics: &Metrics,
) -> Option<Active<'e, B>> {
    if job.events.is_closed() {
        metrics.cancelled.fetch_add(1, Relaxed);
        return None;
    }
    let deadline = job.arrived + job.timeout;
    if Instant::now() >= deadline {
        metrics.timed_out.fetch_add(1, Relaxed);
        let _ = job
            .events
            .send(Event::Failed(ApiError::timeout(job.timeout.as_secs_f64())));
        return None;
    }
    let prompt_tokens = job.request.prompt.len();
    // Everything that can fail before a slot's sequence is taken, so a failure leaves every
    // idle slot's cache as it was.
    let planned = Generator::capacity_for(engine, &job.request).and_then(|capacity| {
        let plan = spec
            .map(|s| s.plan(engine, capacity, job.request.seed))
            .transpose()?;
        Ok((capacity, plan))
    });
    let (capacity, plan) = match planned {
        Ok(p) => p,
        Err(e) => {
            let _ = job.events.send(Event::Failed(ApiError::unavailable(format!(
                "the request could not start: {e}"
            ))));
            return None;
        }
    };
    let shared = |i: &Idle<B>| cached_prefix(&i.prefilled, i.seq.cache.len(), &job.request.prompt);
    let best = (0..idle.len())
        .filter(|&i| idle[i].seq.cache.capacity() == capacity)
        .max_by_key(|&i| shared(&idle[i]));
    let started = match best {
        Some(i) => {
            let Idle { seq, prefilled } = idle.swap_remove(i);
            Generator::resume(engine, Some(tokenizer), job.request, seq, &prefilled)
        }
        None => Generator::new(engine, Some(tokenizer), job.request),
    };
    let started = match plan {
        Some(plan) => started.and_then(|g| g.with_plan(plan)),
        None => started,
    };
    match started {
        Ok(gen) => {
            metrics
                .prompt_tokens
                .fetch_add(prompt_tokens as u64, Relaxed);
            metrics
                .prompt_tokens_cached
                .fetch_add(gen.timings().cached_tokens as u64, Relaxed);
            Some(Active {
                gen,
                tokenizer,
                events: job.events,
                arrived: job.arrived,
                deadline,
                timeout: job.timeout,
                last_token: None,
            })
        }
        // The request was checked before it was queued: what fails here is the server's
        // state (the memory for its KV cache), not the request.
        Err(e) => {
            let _ = job.events.send(Event::Failed(ApiError::unavailable(format!(
                "the request could not start: {e}"
            ))));
            None
        }
    }
}

/// Runs until the queue's every sender is gone (the HTTP side has shut down) and the last
/// admitted sequence has finished; every request speculates as `spec` says.
pub fn run<'e, B: Backend>(
    engine: &'e Engine<B>,
    tokenizer: &'e Tokenizer,
    jobs: Receiver<Job>,
    slots: usize,
    spec: Option<&Speculate<'e, B>>,
    metrics: &Metrics,
) {
    let mut active: Vec<Active<'e, B>> = Vec::with_capacity(slots);
    let mut idle: Vec<Idle<B>> = Vec::with_capacity(slots);
    let mut batch = DecodeBatch::new();
    let mut open = true;
    loop {
        // Admit between rounds: wait for work when idle, else take what is already queued.
        while open && active.len() < slots {
            let job = if active.is_empty() {
                match jobs.recv() {
                    Ok(j) => j,
                    Err(_) => {
                        open = false;
                        break;
                    }
                }
            } else {
                match jobs.try_recv() {
                    Ok(j) => j,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            };
            metrics.queue_depth.fetch_sub(1, Relaxed);
            if let Some(a) = admit(engine, tokenizer, job, &mut idle, spec, metrics) {
                active.push(a);
                metrics.set_active(active.len());
            }
        }
        if active.is_empty() && !open {
            return;
        }
        // Cancelled and timed-out sequences leave first; the rest step together.
        let mut afters: Vec<Option<After>> = active.iter_mut().map(|a| a.check(metrics)).collect();
        let stepping: Vec<usize> = (0..active.len()).filter(|&i| afters[i].is_none()).collect();
        let mut gens: Vec<&mut Generator<'_, B>> = active
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| stepping.contains(i))
            .map(|(_, a)| &mut a.gen)
            .collect();
        let before = batch.counts();
        let stepped = Generator::step_batch(&mut gens, &mut batch);
        let (passes, rows) = batch.counts();
        metrics
            .decode_passes
            .fetch_add((passes - before.0) as u64, Relaxed);
        metrics
            .decode_pass_rows
            .fetch_add((rows - before.1) as u64, Relaxed);
        match stepped {
            Ok(steps) => {
                for (&i, step) in stepping.iter().zip(steps) {
                    let step = step.map_err(|e| e.to_string());
                    afters[i] = Some(active[i].after(step, metrics));
                }
            }
            // The batched pass failed: every sequence in it is in an unknown state.
            Err(e) => {
                for &i in &stepping {
                    let failed = Err(format!("the batched decode step failed: {e}"));
                    afters[i] = Some(active[i].after(failed, metrics));
                }
            }
        }
        for (i, after) in afters.into_iter().enumerate().rev() {
            match after.unwrap_or(After::Going) {
                After::Going => {}
                After::Ended => {
                    let (seq, prefilled) = active.remove(i).gen.into_parts();
                    idle.push(Idle { seq, prefilled });
                }
                After::Broken => drop(active.remove(i)),
            }
        }
        metrics.set_active(active.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::tensor::DType;
    use crate::{EngineOptions, ModelConfig};

    fn tiny(vocab_size: usize) -> Engine<CpuBackend> {
        let config = crate::formats::random::shape("smollm2-135m").unwrap();
        let config = ModelConfig {
            n_layers: 2,
            vocab_size,
            max_position_embeddings: 256,
            ..config
        };
        let model = crate::formats::random::random_model(config, 5, DType::F32);
        // Prefill chunks of 16: a cached prompt of 30 tokens reuses 16 positions.
        let options = EngineOptions {
            max_batch: 16,
            ..EngineOptions::default()
        };
        Engine::new(CpuBackend::default(), &model, options).unwrap()
    }

    /// A request whose speculation cannot start (here a draft model of another vocabulary; in
    /// a server, the draft cache's memory) is refused without taking an idle slot's sequence:
    /// the slot keeps its cached prompt for the next request.
    #[test]
    fn a_speculation_that_cannot_start_leaves_the_idle_slot_and_its_cache() {
        let model = crate::load(&crate::fetch::default_model().unwrap()).unwrap();
        let tokenizer = model.tokenizer.as_ref().unwrap();
        let (target, draft) = (tiny(300), tiny(301));
        let request = |prompt: Vec<u32>| GenerationRequest {
            max_tokens: 1,
            context: Some(64),
            ..GenerationRequest::new(prompt)
        };
        let prompt: Vec<u32> = (10..40).collect();
        let mut gen = Generator::new(&target, Some(tokenizer), request(prompt.clone())).unwrap();
        while gen.step().unwrap().is_some() {}
        let (seq, prefilled) = gen.into_parts();
        let cached = seq.cache.len();
        assert!(cached >= prompt.len() - 1, "{cached}");
        let mut idle = vec![Idle { seq, prefilled }];
        let spec = Speculate::Draft {
            engine: &draft,
            params: DraftParams::new(4),
        };
        let metrics = Metrics::new(1);
        let mut longer = prompt.clone();
        longer.extend(40..50);
        let (job, mut events) = Job::new(request(longer), Duration::from_secs(60));
        let admitted = admit(&target, tokenizer, job, &mut idle, Some(&spec), &metrics);
        assert!(admitted.is_none());
        match events.try_recv() {
            Ok(Event::Failed(e)) => assert!(e.message.contains("vocabulary"), "{}", e.message),
            _ => panic!("no failure event"),
        }
        assert_eq!(idle.len(), 1, "the idle slot was taken");
        assert_eq!(idle[0].seq.cache.len(), cached);
        assert_eq!(idle[0].prefilled, prompt);
        // Without speculation the same request resumes on the slot's cached prompt.
        let (job, _events) = Job::new(request(idle[0].prefilled.clone()), Duration::from_secs(60));
        let a = admit(&target, tokenizer, job, &mut idle, None, &metrics).unwrap();
        assert!(idle.is_empty());
        assert_eq!(a.gen.timings().cached_tokens, 16);
    }
}
