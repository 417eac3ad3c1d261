//! Sampling on the device. The sampler (`sample_prep`, `sample_topk`, `sample_pick` in
//! `kernels/sampling.hip`: the passes over the vocabulary spread over the device, the draw in
//! one block) is the reference's `distribution` + `pick` bit for bit: it reads the repetition
//! history and writes the token into device buffers, so a decode loop can queue it (or capture
//! it into a graph) with no host round trip; [`launch_sample_step`] only queues it. The
//! `Backend::sample` API (host history, host coin) runs it over a cached workspace and a small
//! step block in the backend's scratch; greedy decoding without a penalty keeps the `argmax`
//! kernel. Either way only the id crosses to the host, -1 when the logits cannot be sampled
//! (which the reference refuses too).

use crate::backend::check_tensor;
use crate::backend::gpu::vendor::{DevicePtr, KernelArg, LaunchConfig};
use crate::backend::gpu::{bad, int, scratch_ptr, GpuBackend, GpuBuffer, GpuTensor};
use crate::error::{Error, Result};
use crate::sampler::{CoinRng, SamplingParams};
use crate::tensor::DType;

const OP: &str = "sample";

/// The 32-byte step block `sample_step` reads and writes (its ABI; the decode loop owns one).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepBlock {
    /// Written by the kernel: the sampled id, or -1 when the row cannot be sampled.
    pub token: i32,
    /// The position of the context's last token (`hist[0 ..= pos]`; -1 = empty); the kernel
    /// appends the token and adds one on success.
    pub pos: i32,
    /// Calls so far (the kernel adds one per call).
    pub calls: u32,
    /// [`StepBlock::DRAW_COIN`]: the coin comes from `rng_state`.
    pub flags: u32,
    /// SplitMix64 state (`CoinRng`'s), advanced once per call when the coin is drawn.
    pub rng_state: u64,
    /// The coin when it is not drawn, in [0, 1).
    pub coin: f32,
}

impl StepBlock {
    pub const BYTES: usize = 32;
    /// Flags bit 0: draw the coin from `rng_state`, as `CoinRng::coin` does.
    pub const DRAW_COIN: u32 = 1;

    /// Little-endian: i32 token, i32 pos, u32 calls, u32 flags, u64 state, f32 coin, 4 zero.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut b = [0u8; Self::BYTES];
        b[0..4].copy_from_slice(&self.token.to_le_bytes());
        b[4..8].copy_from_slice(&self.pos.to_le_bytes());
        b[8..12].copy_from_slice(&self.calls.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.rng_state.to_le_bytes());
        b[24..28].copy_from_slice(&self.coin.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        let w = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[16..24]);
        StepBlock {
            token: i32::from_le_bytes(w(0)),
            pos: i32::from_le_bytes(w(4)),
            calls: u32::from_le_bytes(w(8)),
            flags: u32::from_le_bytes(w(12)),
            rng_state: u64::from_le_bytes(s),
            coin: f32::from_le_bytes(w(24)),
        }
    }

    /// The coin the kernel uses this call, advancing the block as the kernel does (the host
    /// model of the protocol: the state is `CoinRng`'s own).
    pub fn next_coin(&mut self) -> f32 {
        self.calls = self.calls.wrapping_add(1);
        if self.flags & Self::DRAW_COIN == 0 {
            return self.coin;
        }
        let mut rng = CoinRng::new(self.rng_state);
        let coin = rng.coin();
        self.rng_state = rng.state();
        coin
    }
}

/// Ids per block of `sample_prep` and `sample_topk` (ABI: `SAMPLE_CHUNK` in sampling.hip).
pub(in crate::backend::gpu) const SAMPLE_CHUNK: usize = 2048;
/// `sample_pick`'s threads, which fold one chunk's part each (ABI: `SAMPLE_PICK_BLOCK`).
const SAMPLE_PICK_BLOCK: usize = 1024;
/// i32 words per chunk in the parts: the argmax, its id, the flags, the candidates, then the
/// maxima of the chunk's eight 32-thread groups (ABI: `SAMPLE_PART_WORDS`).
const SAMPLE_PART_WORDS: usize = 12;

/// The largest vocabulary the device sampler takes: its chunks are folded by one block of
/// 1024 threads (≤ 1024 · 2048 ids), and its radix histograms count in 16 bits (kernels/
/// sampling.hip).
pub const SAMPLE_MAX_VOCAB: usize = 2_000_000;

/// Chunks (blocks of `sample_prep` / `sample_topk`) of a vocabulary.
pub(in crate::backend::gpu) fn sample_chunks(vocab: usize) -> usize {
    vocab.div_ceil(SAMPLE_CHUNK)
}

/// Device scratch of the sampler for vocabularies up to `vocab`: one allocation holding keys
/// (next power of two ≥ vocab) u64, then work, stage_id, stage_p, tmp_id, tmp_p, cand_id,
/// cand_p (vocab each, 4 bytes), then the parts (chunks × 12 i32).
pub(in crate::backend::gpu) struct SamplerWorkspace {
    buf: GpuBuffer,
    vocab: usize,
}

/// The workspace's vocab-long arrays, in layout order after the keys.
#[derive(Debug, Clone, Copy)]
enum Part {
    Work = 0,
    StageId,
    StageP,
    TmpId,
    TmpP,
    CandId,
    CandP,
    Parts,
}

impl SamplerWorkspace {
    /// Bytes of the workspace for `vocab` (STYLE 11), `None` on overflow.
    pub fn bytes(vocab: usize) -> Option<usize> {
        let keys = vocab.checked_next_power_of_two()?.checked_mul(8)?;
        let parts = sample_chunks(vocab) * SAMPLE_PART_WORDS * 4;
        vocab
            .checked_mul(Part::Parts as usize * 4)?
            .checked_add(keys)?
            .checked_add(parts)
    }

    pub fn new(b: &GpuBackend, vocab: usize) -> Result<Self> {
        if vocab == 0 {
            return Err(bad(OP, "a sampler workspace for vocab 0".into()));
        }
        if vocab > SAMPLE_MAX_VOCAB {
            return Err(bad(
                OP,
                format!(
                    "vocab {vocab} exceeds the device sampler's {SAMPLE_MAX_VOCAB} (one block \
                     folds its {SAMPLE_CHUNK}-id chunks; its radix histograms count in 16 bits)"
                ),
            ));
        }
        int(OP, "vocab", vocab)?;
        let bytes = Self::bytes(vocab)
            .ok_or_else(|| bad(OP, format!("a workspace for vocab {vocab} overflows")))?;
        let buf = GpuBuffer::new(&b.vendor, bytes)?;
        Ok(SamplerWorkspace { buf, vocab })
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    fn keys(&self) -> DevicePtr {
        self.buf.ptr
    }

    fn part(&self, p: Part) -> DevicePtr {
        let keys = self.vocab.next_power_of_two() * 8;
        self.buf.ptr + (keys + p as usize * self.vocab * 4) as u64
    }
}

/// Queues the sampler over the logits row at `row` (vocab f32) with the step block `step`
/// (32 bytes, [`StepBlock`]) and the history `hist` (hist_cap i32 ids), the penalty window the
/// last `window` ids of the context (0 = all of it): `sample_prep` and, for a sampled step
/// (temperature > 0), `sample_topk` over ceil(vocab / 2048) blocks, then `sample_pick`. No
/// allocation, no wait: capturable.
#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn launch_sample_step(
    b: &GpuBackend,
    row: DevicePtr,
    vocab: usize,
    step: DevicePtr,
    hist: DevicePtr,
    hist_cap: usize,
    window: usize,
    p: &SamplingParams,
    ws: &SamplerWorkspace,
) -> Result<()> {
    p.validate()?;
    if vocab == 0 || vocab > ws.vocab {
        return Err(bad(
            OP,
            format!(
                "vocab {vocab} for a sampler workspace of {} (and at least 1)",
                ws.vocab
            ),
        ));
    }
    let n = int(OP, "vocab", vocab)?;
    let chunks = sample_chunks(vocab);
    debug_assert!(chunks <= SAMPLE_PICK_BLOCK, "SAMPLE_MAX_VOCAB keeps it");
    let n_parts = int(OP, "chunks", chunks)?;
    let hist_cap = int(OP, "hist_cap", hist_cap)?;
    // top-k off at 0 and at k ≥ vocab (everything kept), as the reference's top_k_mask
    let top_k = int(OP, "top_k", if p.top_k >= vocab { 0 } else { p.top_k })?;
    let sampled = p.temperature > 0.0;
    let parts = ws.part(Part::Parts);
    let grid = |blocks: usize, threads: u32| LaunchConfig {
        grid: (blocks as u32, 1, 1),
        block: (threads, 1, 1),
        shared_bytes: 0,
    };
    let prep = [
        KernelArg::Ptr(row),
        KernelArg::I32(n),
        KernelArg::Ptr(step),
        KernelArg::Ptr(hist),
        KernelArg::I32(hist_cap),
        KernelArg::I32(int(OP, "window", window)?),
        KernelArg::F32(p.repeat_penalty),
        KernelArg::F32(p.presence_penalty),
        KernelArg::F32(p.frequency_penalty),
        KernelArg::I32(i32::from(sampled)),
        KernelArg::Ptr(ws.part(Part::Work)),
        KernelArg::Ptr(parts),
    ];
    // SAFETY (all three): the caller's row holds vocab f32, step 32 bytes, hist hist_cap i32;
    // the workspace was sized for ≥ vocab (checked above), its parts for ≥ chunks.
    unsafe { b.launch("sample_prep", grid(chunks, 256), &prep)? };
    if sampled {
        let topk = [
            KernelArg::I32(n),
            KernelArg::F32(p.temperature),
            KernelArg::I32(top_k),
            KernelArg::Ptr(ws.part(Part::Work)),
            KernelArg::Ptr(parts),
            KernelArg::I32(n_parts),
            KernelArg::Ptr(ws.part(Part::StageId)),
            KernelArg::Ptr(ws.part(Part::StageP)),
        ];
        unsafe { b.launch("sample_topk", grid(chunks, 256), &topk)? };
    }
    let pick = [
        KernelArg::Ptr(step),
        KernelArg::Ptr(hist),
        KernelArg::I32(hist_cap),
        KernelArg::F32(p.temperature),
        KernelArg::I32(top_k),
        KernelArg::F32(p.top_p),
        KernelArg::F32(p.min_p),
        KernelArg::Ptr(parts),
        KernelArg::I32(n_parts),
        KernelArg::Ptr(ws.part(Part::StageId)),
        KernelArg::Ptr(ws.part(Part::StageP)),
        KernelArg::Ptr(ws.part(Part::TmpId)),
        KernelArg::Ptr(ws.part(Part::TmpP)),
        KernelArg::Ptr(ws.part(Part::CandId)),
        KernelArg::Ptr(ws.part(Part::CandP)),
        KernelArg::Ptr(ws.keys()),
    ];
    unsafe { b.launch("sample_pick", grid(1, 1024), &pick) }
}

/// A token id from the kernels' i32: -1 is the reference's refusal of the row.
fn token(kernel: &str, id: i32, vocab: usize) -> Result<u32> {
    match usize::try_from(id) {
        Ok(i) if i < vocab => Ok(i as u32),
        _ if id == -1 => Err(Error::InvalidRequest(
            "the logits row holds a NaN or +inf, or every logit is -inf (after the penalties: \
             +inf)"
                .into(),
        )),
        _ => Err(bad(
            OP,
            format!("{kernel} returned {id} for a vocabulary of {vocab}"),
        )),
    }
}

pub(in crate::backend::gpu) fn sample(
    b: &GpuBackend,
    logits: &GpuTensor,
    row: usize,
    vocab: usize,
    params: &SamplingParams,
    history: &[u32],
    coin: f32,
) -> Result<u32> {
    check_tensor(
        "gpu",
        OP,
        "logits",
        logits,
        (row + 1) * vocab,
        &[DType::F32],
    )?;
    params.validate()?;
    if vocab == 0 {
        return Err(bad(OP, "vocab is 0".into()));
    }
    if !(0.0..1.0).contains(&coin) {
        return Err(Error::InvalidRequest(format!(
            "coin must be in [0, 1), got {coin}"
        )));
    }
    let row_ptr = logits.ptr_at(row * vocab);
    let n = int(OP, "vocab", vocab)?;
    let mut scratch = b
        .scratch
        .lock()
        .map_err(|_| bad(OP, "scratch lock poisoned".into()))?;
    // Greedy without a penalty: the argmax kernel alone.
    let penalty_applies = params.penalizes() && !history.is_empty();
    if params.is_greedy() && !penalty_applies {
        let out = scratch_ptr(&b.vendor, &mut scratch.argmax, 4)?;
        launch_argmax(b, row_ptr, n, out)?;
        let mut id = [0u8; 4];
        b.vendor.dtoh(&mut id, out)?;
        return token("argmax", i32::from_le_bytes(id), vocab);
    }
    if scratch.sampler.as_ref().is_none_or(|w| w.vocab() < vocab) {
        scratch.sampler = None; // freed (after the stream is done with it) before the new one
        scratch.sampler = Some(SamplerWorkspace::new(b, vocab)?);
    }
    // The step block, then the history as i32 (ids ≥ 2^31 wrap negative: the kernel ignores
    // them with the other ids ≥ vocab). The token word starts at -2, a value the kernel never
    // writes, so a step that did not run cannot pass for a token.
    let step = StepBlock {
        token: -2,
        pos: int(OP, "history length", history.len())? - 1,
        coin,
        ..Default::default()
    };
    let mut bytes = step.to_bytes().to_vec();
    bytes.extend(history.iter().flat_map(|&id| id.to_le_bytes()));
    let step_ptr = scratch_ptr(&b.vendor, &mut scratch.sample_step, bytes.len())?;
    b.vendor.htod(step_ptr, &bytes)?;
    let ws = scratch.sampler.as_ref().expect("created above");
    let hist = step_ptr + StepBlock::BYTES as u64;
    launch_sample_step(
        b,
        row_ptr,
        vocab,
        step_ptr,
        hist,
        history.len(),
        history.len(),
        params,
        ws,
    )?;
    let mut id = [0u8; 4];
    b.vendor.dtoh(&mut id, step_ptr)?;
    token("sample_step", i32::from_le_bytes(id), vocab)
}

/// `argmax`: one block of 1024 threads over `n`; lowest index on ties, NaN never wins.
pub(in crate::backend::gpu) fn launch_argmax(
    b: &GpuBackend,
    x: DevicePtr,
    n: i32,
    out: DevicePtr,
) -> Result<()> {
    let cfg = LaunchConfig {
        grid: (1, 1, 1),
        block: (1024, 1, 1),
        shared_bytes: 0,
    };
    let args = [KernelArg::Ptr(x), KernelArg::I32(n), KernelArg::Ptr(out)];
    // SAFETY: the caller checked x holds ≥ n f32; out is a 4-byte scratch.
    unsafe { b.launch("argmax", cfg, &args) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_block_layout_and_its_coin_protocol() {
        let s = StepBlock {
            token: -1,
            pos: 41,
            calls: 7,
            flags: StepBlock::DRAW_COIN,
            rng_state: 0x0123_4567_89ab_cdef,
            coin: 0.25,
        };
        let b = s.to_bytes();
        assert_eq!(b[0..4], (-1i32).to_le_bytes());
        assert_eq!(b[4..8], 41i32.to_le_bytes());
        assert_eq!(b[8..12], 7u32.to_le_bytes());
        assert_eq!(b[12..16], 1u32.to_le_bytes());
        assert_eq!(b[16..24], 0x0123_4567_89ab_cdefu64.to_le_bytes());
        assert_eq!(b[24..28], 0.25f32.to_le_bytes());
        assert_eq!(b[28..32], [0; 4]);
        assert_eq!(StepBlock::from_bytes(&b), s);
        // Drawn coins: CoinRng's stream for the seed, one per call; given coins: the coin.
        for seed in [0u64, 1, 42, u64::MAX] {
            let mut block = StepBlock {
                flags: StepBlock::DRAW_COIN,
                rng_state: seed,
                ..Default::default()
            };
            let mut rng = CoinRng::new(seed);
            for call in 1..=20 {
                assert_eq!(block.next_coin().to_bits(), rng.coin().to_bits());
                assert_eq!((block.calls, block.rng_state), (call, rng.state()));
            }
        }
        let mut given = StepBlock {
            coin: 0.75,
            rng_state: 9,
            ..Default::default()
        };
        assert_eq!((given.next_coin(), given.rng_state), (0.75, 9));
    }

    #[test]
    fn workspace_bytes() {
        // keys, 7 vocab-long arrays, 12 words per 2048-id chunk
        assert_eq!(SamplerWorkspace::bytes(1), Some(8 + 28 + 48));
        assert_eq!(
            SamplerWorkspace::bytes(1000),
            Some(1024 * 8 + 1000 * 28 + 48)
        );
        assert_eq!(
            SamplerWorkspace::bytes(128_256),
            Some(131_072 * 8 + 128_256 * 28 + 63 * 48)
        );
        assert_eq!(SamplerWorkspace::bytes(usize::MAX), None);
        assert_eq!(sample_chunks(SAMPLE_MAX_VOCAB), 977);
        assert!(sample_chunks(SAMPLE_MAX_VOCAB) <= SAMPLE_PICK_BLOCK);
        assert_eq!((sample_chunks(2048), sample_chunks(2049)), (1, 2));
    }
}
