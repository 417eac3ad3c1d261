//! Draft-model speculation in the generator ([`Generator::with_draft`]): the draft model's
//! own sequence and coin stream, and the verification of its drafts by the Leviathan/Chen rule
//! ([`crate::speculative::rule`], where the coin protocol is written down).

use super::{not_speculating, penalty_window, Generator};
use crate::backend::Backend;
use crate::error::Result;
use crate::model::{Engine, Logits, Sequence};
use crate::sampler::{distribution, pick, sample, CoinRng, SamplingParams};
use crate::speculative::rule::{draft_seed, judge, Verdict};

/// A draft model decoding beside the target: its KV cache holds the first `cached` tokens of
/// the generation's context (never the last one: the next draft feeds it).
pub(super) struct DraftModel<'a, B: Backend> {
    engine: &'a Engine<B>,
    seq: Sequence<B>,
    cached: usize,
    /// The drafter's coin stream ([`draft_seed`] of the request's seed).
    rng: CoinRng,
}

impl<'a, B: Backend> DraftModel<'a, B> {
    pub(super) fn new(engine: &'a Engine<B>, capacity: usize, seed: u64) -> Result<Self> {
        Ok(DraftModel {
            engine,
            seq: engine.new_sequence(capacity)?,
            cached: 0,
            rng: CoinRng::new(draft_seed(seed)),
        })
    }

    /// Up to `k` tokens drawn one after another from the draft model after `context` (each
    /// with the next coin of the drafter's stream, from the distribution the sampler makes of
    /// its logits with the same settings and penalty window as the target's), and the
    /// distribution each was drawn from. The first forward feeds every context token the
    /// cache lacks (the whole prompt the first time); the last draft is not fed.
    pub(super) fn draft(
        &mut self,
        context: &[u32],
        k: usize,
        params: &SamplingParams,
        window: usize,
    ) -> Result<(Vec<u32>, Vec<Vec<f32>>)> {
        let (mut tokens, mut dists) = (Vec::with_capacity(k), Vec::with_capacity(k));
        if k == 0 {
            return Ok((tokens, dists));
        }
        let mut history = context.to_vec();
        let mut feed = context[self.cached.min(context.len())..].to_vec();
        for i in 0..k {
            self.engine.forward(&mut self.seq, &feed, Logits::Last)?;
            let logits = self.engine.last_logits(&self.seq)?;
            let q = distribution(&logits, params, penalty_window(&history, window))?;
            let x = pick(&q, self.rng.coin()) as u32;
            tokens.push(x);
            dists.push(q);
            history.push(x);
            if i + 1 < k {
                feed = vec![x];
            }
        }
        self.cached = self.seq.cache.len();
        Ok((tokens, dists))
    }

    /// After a verification that began at context length `base` and kept `accepted` drafts:
    /// the cache keeps the context and the kept drafts it holds.
    pub(super) fn rollback(&mut self, base: usize, accepted: usize) -> Result<()> {
        let keep = self.seq.cache.len().min(base + accepted);
        self.seq.cache.rollback_to(keep)?;
        self.cached = keep;
        Ok(())
    }
}

impl<B: Backend> Generator<'_, B> {
    /// Verifies a draft model's `draft` (with `q`, the distribution each was drawn from)
    /// against the target's rows `logits` ((draft.len() + 1, vocab)) by the Leviathan/Chen
    /// rule, with the request's coin stream as the protocol says, each row's `p` made with the
    /// penalty window of the context as the plain decode would have it there; queues the kept
    /// drafts and the correction or the bonus token. Returns the drafts kept.
    pub(super) fn verify_drafted(
        &mut self,
        logits: &[f32],
        draft: &[u32],
        q: &[Vec<f32>],
    ) -> Result<usize> {
        let vocab = self.engine.config().vocab_size;
        let (params, window) = self.settings();
        let mut history = self.context.clone();
        let mut accepted = 0;
        for (i, row) in logits.chunks_exact(vocab).take(draft.len() + 1).enumerate() {
            let h = penalty_window(&history, window);
            let spec = self.spec.as_mut().ok_or_else(not_speculating)?;
            let (token, kept) = match (draft.get(i), q.get(i)) {
                (Some(&x), Some(qi)) => {
                    let p = distribution(row, &params, h)?;
                    match judge(&p, qi, x, &mut spec.rng, spec.planted)? {
                        Verdict::Accept => (x, true),
                        Verdict::Reject(t) => (t, false),
                    }
                }
                // The bonus token after every draft was kept: the plain decode's sample.
                _ => (sample(row, &params, h, spec.rng.coin())?, false),
            };
            let lp = self.token_logprobs(row, token, &history)?;
            let spec = self.spec.as_mut().ok_or_else(not_speculating)?;
            spec.queue.push_back((token, lp));
            history.push(token);
            if !kept {
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
}
