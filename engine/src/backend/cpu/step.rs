//! The CPU backend's decode-step state (`Backend::Step`): the same contract as the GPU's step
//! block, in host memory.

use std::collections::VecDeque;

use super::CpuTensor;
use crate::backend::EmbeddingParams;
use crate::error::{Error, Result};
use crate::sampler::CoinRng;

#[derive(Debug, Clone)]
pub struct CpuStep {
    /// The next step's input token.
    token: u32,
    /// Its position (the context is `hist[..= pos]`).
    pos: usize,
    hist: Vec<u32>,
    capacity: usize,
    vocab: usize,
    rng: CoinRng,
    posted: VecDeque<u32>,
}

fn bad(op: &str, detail: String) -> Error {
    Error::Backend {
        backend: "cpu",
        op: op.into(),
        detail,
    }
}

impl CpuStep {
    pub fn new(vocab: usize, capacity: usize) -> Result<Self> {
        if vocab == 0 || capacity == 0 {
            return Err(bad(
                "step",
                format!(
                    "a step needs a vocabulary and a context (vocab {vocab}, capacity {capacity})"
                ),
            ));
        }
        Ok(CpuStep {
            token: 0,
            pos: 0,
            hist: Vec::new(),
            capacity,
            vocab,
            rng: CoinRng::new(0),
            posted: VecDeque::new(),
        })
    }

    /// The position the step's token is at.
    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn reset(&mut self, context: &[u32], seed: u64) -> Result<()> {
        let Some(&last) = context.last() else {
            return Err(bad(
                "step",
                "a decode starts from at least one token".into(),
            ));
        };
        if context.len() > self.capacity {
            return Err(bad(
                "step",
                format!(
                    "{} context tokens for a capacity of {}",
                    context.len(),
                    self.capacity
                ),
            ));
        }
        self.hist.clear();
        self.hist.extend_from_slice(context);
        self.token = last;
        self.pos = context.len() - 1;
        self.rng = CoinRng::new(seed);
        self.posted.clear();
        Ok(())
    }

    /// One sampling step: `draw(history, coin)` picks the token from the step's penalty
    /// window of the context and the step's next coin (a backend passes its own `sample` over
    /// the logits row, so a wrapper's sampler is the one its step uses); the token is appended
    /// and becomes the next step's input.
    pub fn sample(
        &mut self,
        vocab: usize,
        window: usize,
        draw: impl FnOnce(&[u32], f32) -> Result<u32>,
    ) -> Result<()> {
        const OP: &str = "sample_step";
        if vocab != self.vocab {
            return Err(bad(
                OP,
                format!("vocab {vocab}, the step was made for {}", self.vocab),
            ));
        }
        // The history holds the KV capacity plus the last sampled token (never decoded).
        if self.pos + 1 > self.capacity {
            return Err(Error::ContextFull {
                capacity: self.capacity,
                requested: self.pos + 2,
            });
        }
        let context = &self.hist[..=self.pos];
        let history = match window {
            0 => context,
            n => &context[context.len().saturating_sub(n)..],
        };
        // One coin per call, as the device draws it.
        let coin = self.rng.coin();
        let id = draw(history, coin)?;
        self.hist.truncate(self.pos + 1);
        self.hist.push(id);
        self.pos += 1;
        self.token = id;
        Ok(())
    }

    pub fn post(&mut self) {
        self.posted.push_back(self.token);
    }

    pub fn take(&mut self) -> Result<u32> {
        self.posted
            .pop_front()
            .ok_or_else(|| bad("take_token", "no token was posted".into()))
    }

    pub fn embedding(
        &self,
        table: &CpuTensor,
        out: &mut CpuTensor,
        p: EmbeddingParams,
    ) -> Result<()> {
        super::embedding::embedding(table, &[self.token], out, p)
    }
}
