//! The GPU backend's decode-step state (`Backend::Step`): the step block the kernels read and
//! the sampler writes, the context's history, the sampler's workspace, and a small mailbox of
//! page-locked slots the sampled ids are copied into without stopping the stream.
//!
//! The step block, 32 bytes (the kernels' contract; kernels/sampling.hip's sampler
//! (`sample_prep`, `sample_pick`), rope.hip, attention.hip and decode_attention.hip read it):
//!
//! | bytes | field | |
//! |---|---|---|
//! | 0..4 | `token` i32 | the next step's input token; -1 after a row that could not be sampled |
//! | 4..8 | `pos` i32 | its position; the context is `hist[..= pos]` |
//! | 8..12 | `calls` i32 | the sampler's call counter |
//! | 12..16 | `flags` i32 | bit 0: the coin comes from the SplitMix64 state below |
//! | 16..24 | `rng` u64 | SplitMix64 state (`CoinRng`), advanced once per sample |
//! | 24..28 | `coin` f32 | the coin when bit 0 is clear |
//! | 28..32 | reserved | 0 |

use std::collections::VecDeque;
use std::sync::Arc;

use super::ops::sampling::{launch_sample_step, SamplerWorkspace};
use super::vendor::{EventHandle, Vendor};
use super::{bad, GpuBackend, GpuBuffer, GpuTensor};
use crate::backend::{check_tensor, EmbeddingParams};
use crate::error::{Error, Result};
use crate::sampler::SamplingParams;
use crate::tensor::DType;

/// Bytes of the step block.
pub const STEP_BLOCK_BYTES: usize = 32;
/// Flag bit: draw the coin from the block's SplitMix64 state.
pub const STEP_FLAG_RNG: i32 = 1;
/// Ids that may be posted and not yet taken (the decode loop keeps at most two in flight).
const MAILBOX_SLOTS: usize = 4;

/// Page-locked host slots for posted ids, each with the event recorded after its copy.
struct Mailbox {
    vendor: Arc<dyn Vendor>,
    host: *mut u8,
    events: Vec<EventHandle>,
    next: usize,
    posted: VecDeque<usize>,
}

// SAFETY: `host` is owned page-locked memory only this mailbox reads (after the slot's event
// completed) and frees; the handles are plain runtime handles usable from any thread.
unsafe impl Send for Mailbox {}
unsafe impl Sync for Mailbox {}

impl Mailbox {
    fn new(vendor: &Arc<dyn Vendor>) -> Result<Self> {
        let host = vendor.host_alloc(MAILBOX_SLOTS * 4)?;
        let mut m = Mailbox {
            vendor: Arc::clone(vendor),
            host,
            events: Vec::new(),
            next: 0,
            posted: VecDeque::new(),
        };
        for _ in 0..MAILBOX_SLOTS {
            m.events.push(vendor.event_create()?);
        }
        Ok(m)
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        for &e in &self.events {
            let _ = self.vendor.event_destroy(e);
        }
        // SAFETY: `host` came from host_alloc; host_free waits for the stream first, so no
        // queued copy still targets it.
        let _ = unsafe { self.vendor.host_free(self.host) };
    }
}

pub struct GpuStep {
    block: GpuBuffer,
    hist: GpuBuffer,
    hist_cap: usize,
    vocab: usize,
    ws: SamplerWorkspace,
    mailbox: Mailbox,
}

impl GpuStep {
    pub(super) fn new(b: &GpuBackend, vocab: usize, capacity: usize) -> Result<Self> {
        if vocab == 0 || capacity == 0 || vocab > i32::MAX as usize || capacity >= i32::MAX as usize
        {
            return Err(bad(
                "step",
                format!("no step for vocab {vocab} and capacity {capacity}"),
            ));
        }
        let hist_cap = capacity + 1;
        let block = GpuBuffer::new(&b.vendor, STEP_BLOCK_BYTES)?;
        b.vendor.memset(block.ptr, 0, STEP_BLOCK_BYTES)?;
        let hist = GpuBuffer::new(&b.vendor, hist_cap * 4)?;
        Ok(GpuStep {
            block,
            hist,
            hist_cap,
            vocab,
            ws: SamplerWorkspace::new(b, vocab)?,
            mailbox: Mailbox::new(&b.vendor)?,
        })
    }

    /// The device address of the step block (what rope, attention and the embedding read).
    pub(super) fn block_ptr(&self) -> super::vendor::DevicePtr {
        self.block.ptr
    }

    pub(super) fn reset(&mut self, b: &GpuBackend, context: &[u32], seed: u64) -> Result<()> {
        let Some(&last) = context.last() else {
            return Err(bad(
                "step",
                "a decode starts from at least one token".into(),
            ));
        };
        if context.len() > self.hist_cap - 1 {
            return Err(bad(
                "step",
                format!(
                    "{} context tokens for a capacity of {}",
                    context.len(),
                    self.hist_cap - 1
                ),
            ));
        }
        if let Some(&t) = context.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(bad(
                "step",
                format!(
                    "context token {t} is outside the vocabulary ({})",
                    self.vocab
                ),
            ));
        }
        let ids: Vec<u8> = context
            .iter()
            .flat_map(|&t| (t as i32).to_le_bytes())
            .collect();
        b.vendor.htod(self.hist.ptr, &ids)?;
        // token, pos
        let mut head = Vec::with_capacity(8);
        head.extend_from_slice(&(last as i32).to_le_bytes());
        head.extend_from_slice(&((context.len() - 1) as i32).to_le_bytes());
        b.vendor.htod(self.block.ptr, &head)?;
        // flags, rng, coin, reserved — `calls` (bytes 8..12) keeps counting across decodes.
        let mut tail = Vec::with_capacity(20);
        tail.extend_from_slice(&STEP_FLAG_RNG.to_le_bytes());
        tail.extend_from_slice(&seed.to_le_bytes());
        tail.extend_from_slice(&0f32.to_le_bytes());
        tail.extend_from_slice(&0i32.to_le_bytes());
        b.vendor.htod(self.block.ptr + 12, &tail)?;
        self.mailbox.posted.clear();
        Ok(())
    }

    pub(super) fn sample(
        &mut self,
        b: &GpuBackend,
        logits: &GpuTensor,
        row: usize,
        vocab: usize,
        params: &SamplingParams,
        window: usize,
    ) -> Result<()> {
        const OP: &str = "sample_step";
        params.validate()?;
        check_tensor(
            "gpu",
            OP,
            "logits",
            logits,
            (row + 1) * vocab,
            &[DType::F32],
        )?;
        if vocab != self.vocab {
            return Err(bad(
                OP,
                format!("vocab {vocab}, the step was made for {}", self.vocab),
            ));
        }
        launch_sample_step(
            b,
            logits.ptr_at(row * vocab),
            vocab,
            self.block.ptr,
            self.hist.ptr,
            self.hist_cap,
            window.min(self.hist_cap),
            params,
            &self.ws,
        )
    }

    pub(super) fn post(&mut self) -> Result<()> {
        let m = &mut self.mailbox;
        if m.posted.len() == MAILBOX_SLOTS {
            return Err(bad(
                "post_token",
                format!("{MAILBOX_SLOTS} ids posted and not taken"),
            ));
        }
        let slot = m.next;
        // SAFETY: slot < MAILBOX_SLOTS, so the 4 bytes lie in the page-locked allocation, which
        // nothing reads before the slot's event (recorded next) has completed.
        unsafe {
            m.vendor
                .dtoh_async(m.host.add(slot * 4), self.block.ptr, 4)?;
        }
        m.vendor.event_record(m.events[slot])?;
        m.posted.push_back(slot);
        m.next = (slot + 1) % MAILBOX_SLOTS;
        Ok(())
    }

    pub(super) fn take(&mut self) -> Result<u32> {
        let m = &mut self.mailbox;
        let Some(slot) = m.posted.pop_front() else {
            return Err(bad("take_token", "no token was posted".into()));
        };
        m.vendor.event_synchronize(m.events[slot])?;
        // SAFETY: the slot's copy has completed (its event has), and the slot is in bounds.
        let id = unsafe { std::ptr::read_volatile(m.host.add(slot * 4) as *const i32) };
        match usize::try_from(id) {
            Ok(i) if i < self.vocab => Ok(i as u32),
            _ if id == -1 => Err(Error::InvalidRequest(
                "the logits row holds a NaN or +inf (also after the repetition penalty), or \
                 every logit is -inf"
                    .into(),
            )),
            _ => Err(bad(
                "take_token",
                format!(
                    "the sampler returned {id} for a vocabulary of {}",
                    self.vocab
                ),
            )),
        }
    }

    pub(super) fn embedding(
        &self,
        b: &GpuBackend,
        table: &GpuTensor,
        out: &mut GpuTensor,
        p: EmbeddingParams,
    ) -> Result<()> {
        const OP: &str = "embedding";
        if p.vocab != self.vocab {
            return Err(bad(
                OP,
                format!("vocab {}, the step was made for {}", p.vocab, self.vocab),
            ));
        }
        let tables = super::ops::embedding::TABLES;
        check_tensor("gpu", OP, "table", table, p.vocab * p.hidden, tables)?;
        check_tensor("gpu", OP, "out", out, p.hidden, &[DType::F32])?;
        super::ops::embedding::launch_embedding(
            b,
            table,
            self.block.ptr,
            out.ptr(),
            1,
            super::int(OP, "hidden", p.hidden)?,
            super::int(OP, "vocab", p.vocab)?,
            p.scale,
        )
    }
}
