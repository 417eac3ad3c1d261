//! The op-level `Backend` trait (DESIGN.md "Backends"): the few operations a Llama-family
//! decoder needs, each with its shapes in a params struct. The engine's forward pass is written
//! once against this trait; the CPU and GPU backends implement it; the conformance suite
//! checks every op of every backend against the reference.
//!
//! Decode steps: a step's varying inputs (the token, its position, the context's history and
//! the coin generator) live in a backend-side [`Backend::Step`]; the embedding reads the token
//! from it, RoPE and attention read the position from it (`step: Some(..)`), and
//! [`Backend::sample_step`] writes the next token and position into it. A decode step then
//! queues the same work with the same arguments at every position, so a GPU backend can
//! capture it once ([`Backend::capture_graph`]) and replay it per token, and only the sampled id
//! crosses to the host ([`Backend::post_token`] / [`Backend::take_token`]). The rule for
//! every op: what changes from token to token is read from device memory, never passed as a
//! launch argument.
//!
//! Conventions: activations are f32, row-major `(rows, features)`; weights are stored in the
//! backend's weight dtype (`F32`, `BF16` or `F16`) in PyTorch layout `(out, in)`; every op checks
//! the lengths of the buffers it is given against its params and returns
//! `Error::Backend { op, .. }` on a mismatch instead of reading out of bounds.

pub mod cpu;
pub mod gpu;

use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::sampler::SamplingParams;
use crate::tensor::DType;

/// What every backend tensor can say about itself.
pub trait TensorInfo {
    fn dtype(&self) -> DType;
    /// Elements (not bytes).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes the tensor holds.
    fn bytes(&self) -> usize {
        self.dtype().bytes_for(self.len())
    }
}

/// A kernel source file a backend runs, as reports record it: which kernels produced the
/// numbers, and whether they are the ones the binary embeds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KernelSource {
    pub file: String,
    /// sha256 of the file's text, hex.
    pub sha256: String,
    /// The text this binary was built with (not a `--kernels DIR` edit).
    pub embedded: bool,
}

/// One line for a report: "embedded kernels" or which files are not the embedded ones.
pub fn describe_kernels(sources: &[KernelSource]) -> Option<String> {
    if sources.is_empty() {
        return None;
    }
    let edited: Vec<String> = sources
        .iter()
        .filter(|k| !k.embedded)
        .map(|k| format!("{} {}", k.file, &k.sha256[..12.min(k.sha256.len())]))
        .collect();
    Some(if edited.is_empty() {
        format!("the embedded kernels ({} files)", sources.len())
    } else {
        format!(
            "kernels NOT the embedded ones: {} (the other {} files embedded)",
            edited.join(", "),
            sources.len() - edited.len()
        )
    })
}

/// Rows of an embedding table `(vocab, hidden)`, gathered and converted to f32, then multiplied
/// by `scale` in f32 (Gemma scales by √hidden; 1.0 leaves the row unscaled, exactly).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmbeddingParams {
    pub vocab: usize,
    pub hidden: usize,
    pub scale: f32,
}

/// The activation of a gated MLP: `out = act(gate) ⊙ up`, in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// SwiGLU (Llama, Qwen, Mistral; transformers' `silu`): `silu(x) = x · σ(x) = x / (1 + e^(−x))`.
    #[default]
    Silu,
    /// GeGLU with the tanh approximation (Gemma; transformers' `gelu_pytorch_tanh`, PyTorch's
    /// `gelu(x, approximate='tanh')`): `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
    GeluTanh,
}

/// `out = rms_norm(x (+= residual first, if given)) · w` over rows of `dim`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsNormParams {
    pub rows: usize,
    pub dim: usize,
    pub eps: f32,
}

/// The RMSNorm a fused projection applies to its input first: `rms_norm(x) · weight` with `eps`
/// (the weight f32, one per input feature).
#[derive(Debug)]
pub struct PreNorm<'a, T> {
    pub weight: &'a T,
    pub eps: f32,
}

// Copy whatever T is (a derive would ask T: Copy).
impl<T> Clone for PreNorm<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for PreNorm<'_, T> {}

/// `out (rows, out_features) = x (rows, in_features) · wᵀ (+ bias)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearParams {
    pub rows: usize,
    pub in_features: usize,
    pub out_features: usize,
}

/// Rotary embedding of `q (rows, n_heads·head_dim)` in place and of `k (rows, n_kv_heads·head_dim)`
/// into the cache, with `v` written beside it, for positions `pos0 .. pos0 + rows` of `layer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RopeKvParams {
    pub layer: usize,
    pub pos0: usize,
    pub rows: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// Causal attention of `q (rows, n_heads·head_dim)` at positions `pos0 ..` over the cached keys
/// and values `0 .. pos0 + rows` of `layer`; `out` has q's shape. Query head `h` reads KV head
/// `h / (n_heads / n_kv_heads)`. With a sliding `window` of `w` keys (Mistral) the query at
/// position p sees only the keys `p − w < j ≤ p` ([`window_start`]). The scores are
/// `s = (q·k) · scale` ([`AttentionParams::scale`]: `score_scale`, else `head_dim^-0.5`), then,
/// with a `softcap` of `c`, `c · tanh(s / c)` (Gemma 2's `attn_logit_softcapping`: after the
/// scaling, before the mask and the softmax).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionParams {
    pub layer: usize,
    pub pos0: usize,
    pub rows: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub window: Option<usize>,
    /// The factor on `q·k` where it is not `head_dim^-0.5` (Gemma:
    /// `query_pre_attn_scalar^-0.5`); finite and positive.
    pub score_scale: Option<f32>,
    /// The attention logit soft-cap `c` (finite, positive); `None`: off.
    pub softcap: Option<f32>,
}

/// The first key a query at `pos` sees under a sliding window of `w` keys: `pos + 1 − w`
/// (transformers' `sliding_window_overlay`: `kv_idx > q_idx - sliding_window`), else 0.
pub fn window_start(pos: usize, window: Option<usize>) -> usize {
    window.map_or(0, |w| (pos + 1).saturating_sub(w))
}

impl AttentionParams {
    /// The factor on `q·k`: `score_scale`, else `head_dim^-0.5` computed as transformers does
    /// (a double, used as f32).
    pub fn scale(&self) -> f32 {
        self.score_scale
            .unwrap_or((self.head_dim as f64).powf(-0.5) as f32)
    }

    /// The soft-cap as the kernels take it: `c`, or 0 for none.
    pub fn softcap_arg(&self) -> f32 {
        self.softcap.unwrap_or(0.0)
    }

    /// A typed error for a scale or a cap that is not a finite positive number (the kernels
    /// would turn it into NaN scores).
    pub fn check_scores(&self, backend: &'static str, op: &str) -> Result<()> {
        for (what, v) in [("score_scale", self.score_scale), ("softcap", self.softcap)] {
            if let Some(x) = v.filter(|x| !(x.is_finite() && *x > 0.0)) {
                return Err(Error::Backend {
                    backend,
                    op: op.into(),
                    detail: format!("{what} {x} is not a finite positive number"),
                });
            }
        }
        Ok(())
    }
}

/// Gemma 2's soft-cap `c · tanh(x / c)` in transformers' order of operations (`x / c`, `tanh`,
/// `· c`): the CPU backend's attention scores and final logits.
pub fn softcap(x: f32, c: f32) -> f32 {
    (x / c).tanh() * c
}

/// Logits `out (rows, vocab)` for rows `row0 .. row0 + rows` of `x (.., hidden)`; with a
/// `softcap` of `c` each becomes `c · tanh(l / c)` (Gemma 2's `final_logit_softcapping`),
/// before anything samples them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogitsParams {
    pub row0: usize,
    pub rows: usize,
    pub hidden: usize,
    pub vocab: usize,
    /// The final logit soft-cap `c` (finite, positive); `None`: off.
    pub softcap: Option<f32>,
}

pub trait Backend: Send + Sync + Sized {
    type Tensor: TensorInfo + Send + Sync;
    /// A decode step's device-resident state (module doc): token, position, history, coins,
    /// the sampler's working memory, and the ids posted for the host.
    type Step: Send + Sync;
    /// Work recorded by [`Backend::capture_graph`].
    type Graph: Send + Sync;
    /// Device memory holding the tokens and positions of a pass of one sequence's rows as its
    /// decode steps ([`Backend::steps_input`]).
    type StepsInput: Send + Sync;

    /// Short name used in reports and errors ("cpu", "gpu").
    fn name(&self) -> &'static str;
    /// Human-readable device description.
    fn device(&self) -> String;
    /// The dtype linear weights are stored in on this backend (those of a dtype in
    /// [`Backend::native_weight_dtypes`] excepted).
    fn weight_dtype(&self) -> DType;
    /// Quantized (GGUF block) dtypes this backend keeps as the file stores them: its `linear`,
    /// `logits` and `embedding` ops (and their fused forms) read those blocks and dequantize in
    /// registers, with f32 accumulation. Weights of any other dtype are converted to
    /// [`Backend::weight_dtype`] at load.
    fn native_weight_dtypes(&self) -> &'static [DType] {
        &[]
    }
    /// Whether [`Backend::upload_stack`] works (else the engine converts a stack whose parts
    /// have different native dtypes to [`Backend::weight_dtype`]).
    fn mixed_stacks(&self) -> bool {
        false
    }
    /// A matrix of a native block type as the file stores it (`t.dtype` in
    /// [`Backend::native_weight_dtypes`]); a backend that can read the loader's bytes in place
    /// (the file's mapping) shares them instead of copying. Default: [`Backend::upload`].
    fn upload_native(&self, t: &crate::tensor::HostTensor) -> Result<Self::Tensor> {
        self.upload(t.dtype, t.bytes())
    }
    /// One weight tensor from native-typed matrices stacked along the output dimension (the
    /// QKV and gate/up stacks; types may differ, as a Q4_K_M file's Q4_K query with its Q6_K
    /// value): the ops read each part's rows as that part's type.
    fn upload_stack(&self, parts: &[&crate::tensor::HostTensor]) -> Result<Self::Tensor> {
        let _ = parts;
        Err(Error::Backend {
            backend: self.name(),
            op: "upload_stack".into(),
            detail: "this backend holds no stacks of mixed types".into(),
        })
    }
    /// The type activations are rounded to before a product with `weight`-typed weights (F32:
    /// not rounded). The conformance tolerances derive from it.
    fn matmul_input_dtype(&self, weight: DType) -> DType {
        let _ = weight;
        DType::F32
    }
    /// The kernel sources this backend runs (empty for backends without kernels).
    fn kernel_sources(&self) -> Vec<KernelSource> {
        Vec::new()
    }
    /// The KV cache dtype used unless the caller picks one.
    fn preferred_kv_dtype(&self) -> DType {
        DType::F16
    }

    /// A tensor of `n` elements with unspecified contents.
    fn alloc(&self, dtype: DType, n: usize) -> Result<Self::Tensor>;
    /// A tensor from little-endian bytes of `dtype` (F32, F16 or BF16, or whole blocks of one of
    /// [`Backend::native_weight_dtypes`]).
    fn upload(&self, dtype: DType, bytes: &[u8]) -> Result<Self::Tensor>;
    fn upload_f32(&self, data: &[f32]) -> Result<Self::Tensor> {
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.upload(DType::F32, &bytes)
    }
    /// All elements, converted to f32.
    fn download_f32(&self, t: &Self::Tensor) -> Result<Vec<f32>>;
    /// Elements `start .. start + n`, converted to f32 (a KV layer of a large arena without
    /// the whole arena crossing to the host).
    fn download_range_f32(&self, t: &Self::Tensor, start: usize, n: usize) -> Result<Vec<f32>> {
        let end = start.checked_add(n).filter(|&e| e <= t.len());
        let Some(end) = end else {
            return Err(Error::Backend {
                backend: self.name(),
                op: "download".into(),
                detail: format!("elements {start}..+{n} of a tensor of {}", t.len()),
            });
        };
        Ok(self.download_f32(t)?[start..end].to_vec())
    }
    /// Waits for queued work (no-op on the CPU).
    fn synchronize(&self) -> Result<()>;
    /// Bytes the backend can still allocate, `None` when it cannot tell (then no default
    /// context is capped to memory).
    fn free_memory(&self) -> Result<Option<usize>> {
        Ok(None)
    }
    /// Copies all of `src` into `dst` from element `offset` on (same dtype; `offset +
    /// src.len() ≤ dst.len()`), on the device.
    fn copy_into(&self, src: &Self::Tensor, dst: &mut Self::Tensor, offset: usize) -> Result<()>;
    /// Copies elements `src_offset .. src_offset + n` of `src` to `dst_offset ..` of `dst`
    /// (same plain dtype: F32, F16 or BF16), on the device: a row of a batch's activations to
    /// a sequence's and back ([`crate::model::Engine::queue_decode_batch`]).
    fn copy_range(
        &self,
        src: &Self::Tensor,
        src_offset: usize,
        dst: &mut Self::Tensor,
        dst_offset: usize,
        n: usize,
    ) -> Result<()>;
    /// The most rows a product may have, inside [`Backend::invariant_rows`], for every row's
    /// result to be, bit for bit, what the same op computes for that row alone (each row
    /// reduced in one fixed order whatever the number of rows): a batched decode step over more
    /// sequences runs in groups of at most this many, so no sequence's logits depend on what
    /// else is in the batch.
    fn batch_invariant_rows(&self) -> usize;
    /// Queues the work `f` queues with every product of up to
    /// [`Backend::batch_invariant_rows`] rows computed row by row exactly as for the row alone
    /// (a batched decode pass). Outside it a backend may pick its fastest route per row count
    /// (the GPU: BLAS's GEMM for a prompt chunk of several rows, whose reduction order depends
    /// on the rows). Default: `f()` (a backend whose every route is invariant).
    fn invariant_rows(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        f()
    }
    /// Queues the work `f` queues with attention on the backend's simple kernels where a faster
    /// one would take the shape (the GPU: prefill on `attention_{T}` instead of the flash
    /// kernel, as `WAVEFRONT_NO_FLASH_ATTENTION=1` does for a whole run, and decode on the
    /// vector kernel `decode_attention_{T}` instead of the matrix-instruction one, as
    /// `WAVEFRONT_NO_MMA_DECODE=1` does): conformance checks the simple kernels at the shapes
    /// they are still given that way. Default: `f()` (a backend with one attention route).
    fn simple_attention(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        f()
    }
    /// Queues the work `f` queues with the backend's matrix-core products where it has them
    /// (the GPU: the 16-bit GEMVs of K a multiple of 32 on `gemv_mma_{T}`, as
    /// `WAVEFRONT_GEMV_MMA=1` does for a whole run): conformance checks them beside the default
    /// kernels. Default: `f()` (a backend with one product route).
    fn mma_products(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        f()
    }
    /// Copies all of `src` into `dst` (same dtype and length) on the device.
    fn copy(&self, src: &Self::Tensor, dst: &mut Self::Tensor) -> Result<()> {
        if src.len() != dst.len() {
            return Err(Error::Backend {
                backend: self.name(),
                op: "copy".into(),
                detail: format!("{} elements into {}", src.len(), dst.len()),
            });
        }
        self.copy_into(src, dst, 0)
    }
    /// Milliseconds the device spent on the work `f` queues (device events where the backend
    /// has them; else a host clock between two synchronizations).
    fn time_ms(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        self.synchronize()?;
        let t = std::time::Instant::now();
        f()?;
        self.synchronize()?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    }

    fn embedding(
        &self,
        table: &Self::Tensor,
        tokens: &[u32],
        out: &mut Self::Tensor,
        p: EmbeddingParams,
    ) -> Result<()>;
    /// With `residual`: `x += residual` first (the fused residual add), then `out = norm(x) · w`.
    fn rms_norm(
        &self,
        x: &mut Self::Tensor,
        residual: Option<&Self::Tensor>,
        w: &Self::Tensor,
        out: &mut Self::Tensor,
        p: RmsNormParams,
    ) -> Result<()>;
    /// Gemma's post-norm residual add, row by row: `x += norm(y) · w` (`y`, `x`, `tmp` (rows,
    /// dim) f32, `w` (dim) f32). `tmp` is scratch a backend that adds in the norm's second pass
    /// (the GPU's) may leave unwritten. The default runs [`Backend::rms_norm`] of `y` into `tmp`,
    /// then [`Backend::add`]; a fused form must round as they do (the add one f32 rounding of
    /// `x + norm(y)·w`). `y` is `&mut` for the default's sake only: its values are not changed.
    fn rms_norm_add(
        &self,
        y: &mut Self::Tensor,
        w: &Self::Tensor,
        x: &mut Self::Tensor,
        tmp: &mut Self::Tensor,
        p: RmsNormParams,
    ) -> Result<()> {
        self.rms_norm(y, None, w, tmp, p)?;
        self.add(x, tmp, p.rows * p.dim)
    }
    /// `x = norm(x) · w` in place, row by row: QK-norm (Qwen3), `x` a projection's query (or
    /// key) heads seen as `p.rows` rows of `p.dim` = head_dim, `w` (head_dim) f32.
    fn rms_norm_in_place(
        &self,
        x: &mut Self::Tensor,
        w: &Self::Tensor,
        p: RmsNormParams,
    ) -> Result<()>;
    fn linear(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        out: &mut Self::Tensor,
        p: LinearParams,
    ) -> Result<()>;
    /// `inv_freq` is the rotary table ([`crate::rope::table`]): `head_dim / 2` f32 inverse
    /// frequencies, then the attention factor cos and sin are multiplied by. With `step`, the
    /// position is the step's, read where the step lives (`p.pos0` is only checked).
    #[allow(clippy::too_many_arguments)]
    fn rope_kv_write(
        &self,
        q: &mut Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        inv_freq: &Self::Tensor,
        cache: &mut KvCache<Self::Tensor>,
        p: RopeKvParams,
        step: Option<&Self::Step>,
    ) -> Result<()>;
    /// With `step`, the query's position is the step's (as for [`Backend::rope_kv_write`]).
    fn attention(
        &self,
        q: &Self::Tensor,
        cache: &KvCache<Self::Tensor>,
        out: &mut Self::Tensor,
        p: AttentionParams,
        step: Option<&Self::Step>,
    ) -> Result<()>;
    /// `out = act(gate) · up`, elementwise over `n` (silu for SwiGLU, the name's case).
    fn swiglu(
        &self,
        gate: &Self::Tensor,
        up: &Self::Tensor,
        out: &mut Self::Tensor,
        n: usize,
        act: Activation,
    ) -> Result<()>;
    /// `x += y`, elementwise over `n`.
    fn add(&self, x: &mut Self::Tensor, y: &Self::Tensor, n: usize) -> Result<()>;
    fn logits(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        out: &mut Self::Tensor,
        p: LogitsParams,
    ) -> Result<()>;
    /// A step state for a vocabulary of `vocab` and a KV cache of `capacity` positions (its
    /// history holds `capacity + 1` tokens: the last sampled one is never decoded).
    fn new_step(&self, vocab: usize, capacity: usize) -> Result<Self::Step>;
    /// Resets `step` to the start of a decode: the history is `context` (at least one token,
    /// at most the capacity), the position that of its last token, the token that last token,
    /// the coin generator `CoinRng::new(seed)` (`seed` is the SplitMix64 state, so
    /// `CoinRng::state()` continues a stream), and no ids posted.
    fn reset_step(&self, step: &mut Self::Step, context: &[u32], seed: u64) -> Result<()>;
    /// Queues a sample from row `row` of `logits (.., vocab)` into `step`, with one coin drawn
    /// from the step's generator and the repetition penalty over the last `window` tokens of
    /// its history (0 = all): the token becomes the sampled id (-1 when the row cannot be
    /// sampled), the position advances by one and the id is appended to the history. Nothing
    /// crosses to the host; the arithmetic is [`crate::sampler::sample`]'s.
    fn sample_step(
        &self,
        logits: &Self::Tensor,
        row: usize,
        vocab: usize,
        params: &SamplingParams,
        window: usize,
        step: &mut Self::Step,
    ) -> Result<()>;
    /// Queues the copy of the step's current token to the host, after the work queued so far.
    fn post_token(&self, step: &mut Self::Step) -> Result<()>;
    /// Waits for the oldest posted token and returns it (an error for a row that could not be
    /// sampled, or when nothing was posted). Work queued after it may still be running.
    fn take_token(&self, step: &mut Self::Step) -> Result<u32>;
    /// The embedding of the step's token (one row); a token outside the vocabulary (a failed
    /// sample the host will refuse) gives a zero row.
    fn embedding_step(
        &self,
        table: &Self::Tensor,
        step: &Self::Step,
        out: &mut Self::Tensor,
        p: EmbeddingParams,
    ) -> Result<()>;
    /// Records the work `f` queues instead of running it; `Ok(None)`, with `f` not called,
    /// where the backend has no graphs (then the caller queues the work itself). `f` must not
    /// wait for the device, allocate or read device memory on the host.
    fn capture_graph(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<Option<Self::Graph>>;
    /// Queues a captured graph: the same work with the same arguments.
    fn replay_graph(&self, g: &Self::Graph) -> Result<()>;

    /// Stacked projections (fused QKV): `w` holds `parts.len()` (1..=3) matrices stacked along
    /// the output dimension, `[W_0; W_1; …]`, each `(parts[i], in_features)`; `bias`, when given,
    /// is stacked the same way. Writes `outs[i] (rows, parts[i]) = x (rows, in) · W_iᵀ (+ b_i)`.
    #[allow(clippy::too_many_arguments)]
    fn linear_stacked(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        outs: &mut [&mut Self::Tensor],
        parts: &[usize],
        rows: usize,
        in_features: usize,
    ) -> Result<()>;
    /// `out (rows, inter) = act(x · W_gᵀ) ⊙ (x · W_uᵀ)` for `w = [W_g; W_u]` (2·inter, in).
    /// `tmp` holds at least 2·rows·inter f32 (the GPU's BLAS path for rows > 1 uses it).
    #[allow(clippy::too_many_arguments)]
    fn gate_up_swiglu(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        tmp: &mut Self::Tensor,
        out: &mut Self::Tensor,
        rows: usize,
        in_features: usize,
        inter: usize,
        act: Activation,
    ) -> Result<()>;
    /// The attention block's input: `h = rms_norm(x) · norm.weight` (rows, in_features), then
    /// [`Backend::linear_stacked`] of `h`. `h` is scratch: a backend that fuses the norm into
    /// the projection's prologue may leave it unwritten. The default runs the two ops.
    #[allow(clippy::too_many_arguments)]
    fn norm_linear_stacked(
        &self,
        x: &mut Self::Tensor,
        norm: PreNorm<'_, Self::Tensor>,
        h: &mut Self::Tensor,
        w: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        outs: &mut [&mut Self::Tensor],
        parts: &[usize],
        rows: usize,
        in_features: usize,
    ) -> Result<()> {
        unfused::norm_linear_stacked(self, x, norm, h, w, bias, outs, parts, rows, in_features)
    }
    /// The MLP's input: `h = rms_norm(x) · norm.weight`, then [`Backend::gate_up_swiglu`] of
    /// `h` (`h` scratch as for [`Backend::norm_linear_stacked`]).
    #[allow(clippy::too_many_arguments)]
    fn norm_gate_up_swiglu(
        &self,
        x: &mut Self::Tensor,
        norm: PreNorm<'_, Self::Tensor>,
        h: &mut Self::Tensor,
        w: &Self::Tensor,
        tmp: &mut Self::Tensor,
        out: &mut Self::Tensor,
        rows: usize,
        in_features: usize,
        inter: usize,
        act: Activation,
    ) -> Result<()> {
        unfused::norm_gate_up_swiglu(self, x, norm, h, w, tmp, out, rows, in_features, inter, act)
    }
    /// The residual add after a projection: `acc (rows, out) += x · wᵀ (+ bias)` (the
    /// projection first, then the f32 add). `tmp` (rows·out f32) is scratch a backend that adds
    /// in the projection's epilogue may leave unwritten; `x` must not alias `acc`.
    #[allow(clippy::too_many_arguments)]
    fn linear_residual(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        acc: &mut Self::Tensor,
        tmp: &mut Self::Tensor,
        p: LinearParams,
    ) -> Result<()> {
        unfused::linear_residual(self, x, w, bias, acc, tmp, p)
    }
    /// RoPE on `q` and `k`, `k` and `v` into the cache at positions `pos0 ..` (as
    /// [`Backend::rope_kv_write`]), then causal attention of the rotated `q` into `out` (as
    /// [`Backend::attention`]); `p.rows` rows. `q` is scratch: a backend that rotates it in
    /// registers (the GPU's fused decode kernel) may leave it unrotated. The default runs the
    /// two ops.
    #[allow(clippy::too_many_arguments)]
    fn rope_attention(
        &self,
        q: &mut Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        inv_freq: &Self::Tensor,
        cache: &mut KvCache<Self::Tensor>,
        out: &mut Self::Tensor,
        p: AttentionParams,
        step: Option<&Self::Step>,
    ) -> Result<()> {
        unfused::rope_attention(self, q, k, v, inv_freq, cache, out, p, step)
    }
    /// Row `row` of a batched decode pass: [`Backend::rope_attention`] (`p.rows` = 1) of row
    /// `row` of `q` (rows of `n_heads·head_dim`), `k` and `v` (rows of `n_kv_heads·head_dim`)
    /// over `cache` at the position of `step`, into row `row` of `out` (as `q`'s). The result
    /// must be, bit for bit, what `rope_attention` gives that row alone. The default copies the
    /// row into `one` (the sequence's one-row tensors), runs `rope_attention` there and copies
    /// the result back; a backend that addresses the rows where they are (the GPU's fused
    /// decode kernel) need not touch `one`.
    #[allow(clippy::too_many_arguments)]
    fn rope_attention_row(
        &self,
        row: usize,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        out: &mut Self::Tensor,
        one: RowScratch<'_, Self::Tensor>,
        inv_freq: &Self::Tensor,
        cache: &mut KvCache<Self::Tensor>,
        p: AttentionParams,
        step: Option<&Self::Step>,
    ) -> Result<()> {
        unfused::rope_attention_row(self, row, q, k, v, out, one, inv_freq, cache, p, step)
    }
    /// Rows `0 .. rows.len()` of a batched decode pass, row i over `rows[i]`'s cache at its
    /// step's position: for each row, bit for bit, what [`Backend::rope_attention_row`] gives
    /// it (`rows[i]`'s cache, one-row tensors, frequencies, params and step). The default is
    /// that call row by row; a backend may run the rows in one launch (the GPU).
    fn rope_attention_batch(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        out: &mut Self::Tensor,
        rows: &mut [BatchRow<'_, Self>],
    ) -> Result<()> {
        row_by_row::batch(self, q, k, v, out, rows)
    }
    /// Rows `0 .. p.rows` of one sequence at positions `p.pos0 ..` as its decode steps compute
    /// them: row i, bit for bit, what [`Backend::rope_attention_row`] gives it at position
    /// `p.pos0 + i` (`p.rows` = 1, no step) after rows `0 .. i` wrote their K/V. The default is
    /// that call row by row; a backend may write every row's K/V first and attend in one launch
    /// (the GPU).
    #[allow(clippy::too_many_arguments)]
    fn rope_attention_steps(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        out: &mut Self::Tensor,
        one: RowScratch<'_, Self::Tensor>,
        inv_freq: &Self::Tensor,
        cache: &mut KvCache<Self::Tensor>,
        p: AttentionParams,
    ) -> Result<()> {
        row_by_row::steps(self, q, k, v, out, one, inv_freq, cache, p)
    }
    /// Device memory for the tokens and positions of up to `rows` rows of one sequence as its
    /// decode steps, so that such a pass (a verification) reads them on the device and can be
    /// captured once and replayed at later positions with other tokens:
    /// [`Backend::set_steps_input`] writes them, [`Backend::embedding_steps_input`] and
    /// [`Backend::rope_attention_steps_input`] read them. `Ok(None)` where the backend takes
    /// them from the host (the default; such a pass is not captured).
    fn steps_input(&self, rows: usize) -> Result<Option<Self::StepsInput>> {
        let _ = rows;
        Ok(None)
    }
    /// Writes `tokens` (at most the input's rows, each below `vocab`) and their positions
    /// `pos0 ..` into `input`, in stream order: the pass queued or replayed after reads them.
    fn set_steps_input(
        &self,
        input: &Self::StepsInput,
        tokens: &[u32],
        pos0: usize,
        vocab: usize,
    ) -> Result<()> {
        let _ = (input, tokens, pos0, vocab);
        Err(no_steps_input(self.name()))
    }
    /// Whether [`Backend::rope_attention_steps_input`] takes `p.rows` rows of `p`'s shape over a
    /// KV arena of `kv` (default: never).
    fn steps_input_takes(&self, p: &AttentionParams, kv: DType) -> bool {
        let _ = (p, kv);
        false
    }
    /// [`Backend::embedding`] of the first `n` tokens of `input`.
    fn embedding_steps_input(
        &self,
        table: &Self::Tensor,
        input: &Self::StepsInput,
        n: usize,
        out: &mut Self::Tensor,
        p: EmbeddingParams,
    ) -> Result<()> {
        let _ = (table, input, n, out, p);
        Err(no_steps_input(self.name()))
    }
    /// [`Backend::rope_attention_steps`] with row i's position read from `input` on the device
    /// (where a captured pass is replayed later; `p.pos0` is the position at queueing, checked
    /// on the host). Only where [`Backend::steps_input_takes`] says so.
    #[allow(clippy::too_many_arguments)]
    fn rope_attention_steps_input(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        out: &mut Self::Tensor,
        inv_freq: &Self::Tensor,
        cache: &mut KvCache<Self::Tensor>,
        p: AttentionParams,
        input: &Self::StepsInput,
    ) -> Result<()> {
        let _ = (q, k, v, out, inv_freq, cache, p, input);
        Err(no_steps_input(self.name()))
    }
    /// Samples from row `row` of `logits (.., vocab)`; only the id crosses to the host.
    fn sample(
        &self,
        logits: &Self::Tensor,
        row: usize,
        vocab: usize,
        params: &SamplingParams,
        history: &[u32],
        coin: f32,
    ) -> Result<u32>;
}

fn no_steps_input(backend: &str) -> Error {
    Error::InvalidRequest(format!(
        "the {backend} backend reads a pass's tokens and positions from the host (no steps input)"
    ))
}

/// One sequence's one-row tensors (`q`, `out` of `n_heads·head_dim`, `k`, `v` of
/// `n_kv_heads·head_dim`): where [`Backend::rope_attention_row`]'s default works on a row.
pub struct RowScratch<'a, T> {
    pub q: &'a mut T,
    pub k: &'a mut T,
    pub v: &'a mut T,
    pub out: &'a mut T,
}

impl<T> RowScratch<'_, T> {
    /// The same tensors, borrowed again (one row after another).
    pub fn reborrow(&mut self) -> RowScratch<'_, T> {
        RowScratch {
            q: &mut *self.q,
            k: &mut *self.k,
            v: &mut *self.v,
            out: &mut *self.out,
        }
    }
}

/// One row of a batched decode pass ([`Backend::rope_attention_batch`]): its sequence's cache,
/// one-row tensors and step, the rotary frequencies and the attention params (`pos0` the
/// cache's length, `rows` = 1).
pub struct BatchRow<'a, B: Backend> {
    pub cache: &'a mut KvCache<B::Tensor>,
    pub one: RowScratch<'a, B::Tensor>,
    pub inv_freq: &'a B::Tensor,
    pub p: AttentionParams,
    pub step: Option<&'a B::Step>,
}

/// [`Backend::rope_attention_batch`] and [`Backend::rope_attention_steps`] as a call of
/// [`Backend::rope_attention_row`] a row: the trait's defaults, and what a backend with a
/// several-row route runs where that route does not take the rows.
pub mod row_by_row {
    use super::{AttentionParams, Backend, BatchRow, RowScratch};
    use crate::error::Result;
    use crate::kv_cache::KvCache;

    pub fn batch<B: Backend>(
        b: &B,
        q: &B::Tensor,
        k: &B::Tensor,
        v: &B::Tensor,
        out: &mut B::Tensor,
        rows: &mut [BatchRow<'_, B>],
    ) -> Result<()> {
        for (i, r) in rows.iter_mut().enumerate() {
            let one = r.one.reborrow();
            b.rope_attention_row(i, q, k, v, out, one, r.inv_freq, r.cache, r.p, r.step)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn steps<B: Backend>(
        b: &B,
        q: &B::Tensor,
        k: &B::Tensor,
        v: &B::Tensor,
        out: &mut B::Tensor,
        mut one: RowScratch<'_, B::Tensor>,
        inv_freq: &B::Tensor,
        cache: &mut KvCache<B::Tensor>,
        p: AttentionParams,
    ) -> Result<()> {
        for i in 0..p.rows {
            let row = AttentionParams {
                pos0: p.pos0 + i,
                rows: 1,
                ..p
            };
            let o = one.reborrow();
            b.rope_attention_row(i, q, k, v, out, o, inv_freq, cache, row, None)?;
        }
        Ok(())
    }
}

/// The fused ops of [`Backend`] as the separate ops they stand for: the trait's defaults, and
/// what a fusing backend runs where it does not fuse (e.g. the GPU's BLAS path for rows > 1).
pub mod unfused {
    use super::{
        Activation, AttentionParams, Backend, LinearParams, PreNorm, RmsNormParams, RopeKvParams,
        RowScratch,
    };
    use crate::error::Result;
    use crate::kv_cache::KvCache;

    /// [`Backend::rope_attention_row`] through the sequence's one-row tensors: the row copied
    /// in, [`Backend::rope_attention`] there, the result copied back.
    #[allow(clippy::too_many_arguments)]
    pub fn rope_attention_row<B: Backend>(
        b: &B,
        row: usize,
        q: &B::Tensor,
        k: &B::Tensor,
        v: &B::Tensor,
        out: &mut B::Tensor,
        one: RowScratch<'_, B::Tensor>,
        inv_freq: &B::Tensor,
        cache: &mut KvCache<B::Tensor>,
        p: AttentionParams,
        step: Option<&B::Step>,
    ) -> Result<()> {
        let (qd, kd) = (p.n_heads * p.head_dim, p.n_kv_heads * p.head_dim);
        b.copy_range(q, row * qd, one.q, 0, qd)?;
        b.copy_range(k, row * kd, one.k, 0, kd)?;
        b.copy_range(v, row * kd, one.v, 0, kd)?;
        b.rope_attention(one.q, one.k, one.v, inv_freq, cache, one.out, p, step)?;
        b.copy_range(one.out, 0, out, row * qd, qd)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn rope_attention<B: Backend>(
        b: &B,
        q: &mut B::Tensor,
        k: &B::Tensor,
        v: &B::Tensor,
        inv_freq: &B::Tensor,
        cache: &mut KvCache<B::Tensor>,
        out: &mut B::Tensor,
        p: AttentionParams,
        step: Option<&B::Step>,
    ) -> Result<()> {
        p.check_scores(b.name(), "rope_attention")?; // before anything is written
        let rp = RopeKvParams {
            layer: p.layer,
            pos0: p.pos0,
            rows: p.rows,
            n_heads: p.n_heads,
            n_kv_heads: p.n_kv_heads,
            head_dim: p.head_dim,
        };
        b.rope_kv_write(q, k, v, inv_freq, cache, rp, step)?;
        b.attention(q, cache, out, p, step)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn norm_linear_stacked<B: Backend>(
        b: &B,
        x: &mut B::Tensor,
        norm: PreNorm<'_, B::Tensor>,
        h: &mut B::Tensor,
        w: &B::Tensor,
        bias: Option<&B::Tensor>,
        outs: &mut [&mut B::Tensor],
        parts: &[usize],
        rows: usize,
        in_features: usize,
    ) -> Result<()> {
        let p = RmsNormParams {
            rows,
            dim: in_features,
            eps: norm.eps,
        };
        b.rms_norm(x, None, norm.weight, h, p)?;
        b.linear_stacked(h, w, bias, outs, parts, rows, in_features)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn norm_gate_up_swiglu<B: Backend>(
        b: &B,
        x: &mut B::Tensor,
        norm: PreNorm<'_, B::Tensor>,
        h: &mut B::Tensor,
        w: &B::Tensor,
        tmp: &mut B::Tensor,
        out: &mut B::Tensor,
        rows: usize,
        in_features: usize,
        inter: usize,
        act: Activation,
    ) -> Result<()> {
        let p = RmsNormParams {
            rows,
            dim: in_features,
            eps: norm.eps,
        };
        b.rms_norm(x, None, norm.weight, h, p)?;
        b.gate_up_swiglu(h, w, tmp, out, rows, in_features, inter, act)
    }

    pub fn linear_residual<B: Backend>(
        b: &B,
        x: &B::Tensor,
        w: &B::Tensor,
        bias: Option<&B::Tensor>,
        acc: &mut B::Tensor,
        tmp: &mut B::Tensor,
        p: LinearParams,
    ) -> Result<()> {
        b.linear(x, w, bias, tmp, p)?;
        b.add(acc, tmp, p.rows * p.out_features)
    }
}

/// Checks a [`Backend::copy_range`]: the same plain dtype, both ranges within their tensors.
pub(crate) fn check_copy_range<T: TensorInfo>(
    backend: &'static str,
    src: &T,
    src_offset: usize,
    dst: &T,
    dst_offset: usize,
    n: usize,
) -> Result<()> {
    let within = |off: usize, len: usize| off.checked_add(n).is_some_and(|e| e <= len);
    let plain = matches!(src.dtype(), DType::F32 | DType::F16 | DType::BF16);
    if !plain
        || src.dtype() != dst.dtype()
        || !within(src_offset, src.len())
        || !within(dst_offset, dst.len())
    {
        return Err(Error::Backend {
            backend,
            op: "copy_range".into(),
            detail: format!(
                "{n} elements from {src_offset} of {} {} to {dst_offset} of {} {} (F32, F16 or BF16, both ranges within their tensors)",
                src.len(),
                src.dtype(),
                dst.len(),
                dst.dtype()
            ),
        });
    }
    Ok(())
}

/// `Backend::linear_stacked`'s part list: 1 to 3 parts, one output each.
pub(crate) fn check_parts(
    backend: &'static str,
    op: &str,
    outs: usize,
    parts: &[usize],
) -> Result<()> {
    if parts.is_empty() || parts.len() > 3 || outs != parts.len() {
        return Err(Error::Backend {
            backend,
            op: op.into(),
            detail: format!(
                "{outs} outputs for {} parts (1 to 3 parts, one output each)",
                parts.len()
            ),
        });
    }
    Ok(())
}

/// Checks that `t` holds at least `need` elements of `dtype` (one of `dtypes`).
pub(crate) fn check_tensor<T: TensorInfo>(
    backend: &'static str,
    op: &str,
    what: &str,
    t: &T,
    need: usize,
    dtypes: &[DType],
) -> Result<()> {
    if !dtypes.contains(&t.dtype()) {
        return Err(Error::Backend {
            backend,
            op: op.into(),
            detail: format!("{what} has dtype {}, expected one of {dtypes:?}", t.dtype()),
        });
    }
    if t.len() < need {
        return Err(Error::Backend {
            backend,
            op: op.into(),
            detail: format!("{what} holds {} elements, the op needs {need}", t.len()),
        });
    }
    Ok(())
}
