//! The engine proper: a model's weights on a backend, and the forward pass written once
//! against the `Backend` trait.

use crate::backend::{
    AttentionParams, Backend, BatchRow, EmbeddingParams, LinearParams, LogitsParams, PreNorm,
    RmsNormParams, RowScratch, TensorInfo,
};
use crate::config::{names, ModelConfig};
use crate::error::{Error, Result};
use crate::formats::LoadedModel;
use crate::kv_cache::{KvCache, KvLayout};
use crate::sampler::SamplingParams;
use crate::tensor::{DType, HostTensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// KV cache element type; `None` = the backend's preference.
    pub kv_dtype: Option<DType>,
    /// Most tokens one forward step processes (prefill is chunked to this).
    pub max_batch: usize,
    /// Capture the decode step once and replay it per token (on backends with graphs);
    /// `false` queues the same kernels directly every step.
    pub graphs: bool,
    /// With `graphs`: capture a verification's forward as steps ([`Engine::forward_as_steps`])
    /// once per row count and replay it, its tokens and positions written on the device first
    /// (where the backend reads them there). On by default; `WAVEFRONT_NO_VERIFY_GRAPH=1`
    /// launches every verification instead (the same bits either way: the model-level
    /// speculation checks passed through the capture on an H100, 2026-12-05).
    pub verify_graphs: bool,
}

/// `WAVEFRONT_NO_GRAPH=1` turns decode-step graphs off (the same kernels run uncaptured).
pub fn graphs_from_env() -> bool {
    std::env::var("WAVEFRONT_NO_GRAPH").map_or(true, |v| v != "1")
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            kv_dtype: None,
            max_batch: 512,
            graphs: graphs_from_env(),
            verify_graphs: !std::env::var("WAVEFRONT_NO_VERIFY_GRAPH")
                .is_ok_and(|v| v.trim() == "1"),
        }
    }
}

/// How a backend holds a model's weights: matrices of a dtype in `native` (GGUF block types the
/// backend computes with directly) as the file stores them, other matrices converted to `dtype`;
/// norm weights and biases in f32 (small, and precision-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightStorage {
    pub dtype: DType,
    pub native: &'static [DType],
    /// Stacks (QKV, gate/up) may mix native types ([`Backend::upload_stack`]).
    pub mixed_stacks: bool,
}

impl WeightStorage {
    pub fn of<B: Backend>(backend: &B) -> Self {
        WeightStorage {
            dtype: backend.weight_dtype(),
            native: backend.native_weight_dtypes(),
            mixed_stacks: backend.mixed_stacks(),
        }
    }

    /// The dtype tensor `name`, stored in the file as `file`, is held in.
    pub fn stored(&self, name: &str, file: DType) -> DType {
        if !is_matrix(name) {
            DType::F32
        } else if self.native.contains(&file) {
            file
        } else {
            self.dtype
        }
    }

    /// The values `t` takes when held this way: dequantized, then (matrices converted to
    /// `dtype`) rounded to `dtype` (round-to-nearest-even). Conformance builds the reference
    /// from exactly these values.
    pub fn values(&self, t: &HostTensor) -> Result<Vec<f32>> {
        let mut v = t.to_f32()?;
        crate::tensor::round_to(self.stored(&t.name, t.dtype), &mut v);
        Ok(v)
    }

    /// Bytes of `model`'s weights held this way (matrices as [`WeightStorage::stored`] says,
    /// the stacks of [`upload_stacked`] converted whole where their parts' types differ and
    /// the backend holds no mixed stacks; norm weights and biases in f32).
    pub fn loaded_bytes(&self, model: &LoadedModel) -> usize {
        let c = &model.config;
        let mut stacked = std::collections::BTreeMap::new();
        for l in 0..c.n_layers {
            for group in [
                &[names::WQ, names::WK, names::WV][..],
                &[names::GATE, names::UP][..],
            ] {
                let names: Vec<String> = group.iter().map(|s| names::layer(l, s)).collect();
                let types: Vec<DType> = names
                    .iter()
                    .filter_map(|n| model.tensors.get(n))
                    .map(|t| self.stored(&t.name, t.dtype))
                    .collect();
                let mixed = !self.mixed_stacks && types.windows(2).any(|w| w[0] != w[1]);
                for n in names {
                    stacked.insert(n, mixed);
                }
            }
        }
        model
            .tensors
            .values()
            .map(|t| {
                let dtype = if stacked.get(&t.name) == Some(&true) {
                    WeightStorage::from(self.dtype).stored(&t.name, t.dtype)
                } else {
                    self.stored(&t.name, t.dtype)
                };
                dtype.bytes_for(t.n_elems())
            })
            .sum()
    }

    /// Whether any matrix of `model` is held in a type other than its file's (so its values
    /// may be rounded).
    pub fn converts_any(&self, model: &LoadedModel) -> bool {
        model
            .tensors
            .values()
            .any(|t| is_matrix(&t.name) && self.stored(&t.name, t.dtype) != t.dtype)
    }
}

/// Storing every matrix as `dtype` (no native block types).
impl From<DType> for WeightStorage {
    fn from(dtype: DType) -> Self {
        WeightStorage {
            dtype,
            native: &[],
            mixed_stacks: false,
        }
    }
}

/// Whether the tensor `name` is stored in the backend's weight dtype (matrices) or in f32
/// (norm weights, biases: small, and precision-sensitive).
pub fn is_matrix(name: &str) -> bool {
    !(name.ends_with("norm.weight") || name.ends_with(".bias"))
}

/// `t`'s bytes in `dtype` (converted unless it already is).
fn stored_bytes(t: &HostTensor, dtype: DType) -> Result<std::borrow::Cow<'_, [u8]>> {
    if t.dtype == dtype {
        return Ok(std::borrow::Cow::Borrowed(t.bytes()));
    }
    crate::tensor::encode_f32(dtype, &t.to_f32()?)
        .map(std::borrow::Cow::Owned)
        .ok_or_else(|| Error::InvalidRequest(format!("weights cannot be stored as {dtype}")))
}

fn upload_weight<B: Backend>(backend: &B, t: &HostTensor) -> Result<B::Tensor> {
    let storage = WeightStorage::of(backend);
    let dtype = storage.stored(&t.name, t.dtype);
    if dtype == t.dtype && storage.native.contains(&dtype) {
        return backend.upload_native(t);
    }
    backend.upload(dtype, &stored_bytes(t, dtype)?)
}

/// `parts` stacked along their first (output) dimension into one tensor, `[T_0; T_1; …]`: the
/// fused QKV and gate/up layouts (one read of the activation, one launch at batch 1). Parts of
/// different native block types (a Q4_K_M file's Q4_K query and Q6_K value) make a mixed stack
/// ([`Backend::upload_stack`]) where the backend holds those, else the stack is converted to
/// the backend's weight dtype.
pub(crate) fn upload_stacked<B: Backend>(backend: &B, parts: &[&HostTensor]) -> Result<B::Tensor> {
    let storage = WeightStorage::of(backend);
    let native = |t: &&HostTensor| storage.native.contains(&storage.stored(&t.name, t.dtype));
    if storage.mixed_stacks && parts.iter().all(native) {
        // Each part as the file stores it (in place where the backend can).
        return backend.upload_stack(parts);
    }
    let mut dtype = storage.stored(&parts[0].name, parts[0].dtype);
    if parts
        .iter()
        .any(|t| storage.stored(&t.name, t.dtype) != dtype)
    {
        dtype = WeightStorage::from(storage.dtype).stored(&parts[0].name, parts[0].dtype);
    }
    let mut bytes = Vec::new();
    for t in parts {
        bytes.extend_from_slice(&stored_bytes(t, dtype)?);
    }
    backend.upload(dtype, &bytes)
}

struct Layer<B: Backend> {
    attn_norm: B::Tensor,
    /// `[Wq; Wk; Wv]` (q_dim + 2·kv_dim, hidden).
    wqkv: B::Tensor,
    /// `[bq; bk; bv]` (Qwen2).
    bias: Option<B::Tensor>,
    /// `(q_norm, k_norm)`, each (head_dim) (Qwen3's and Gemma 3's QK-norm).
    qk_norm: Option<(B::Tensor, B::Tensor)>,
    /// `(post_attn_norm, post_mlp_norm)`, each (hidden) (Gemma's norms of the attention and
    /// MLP outputs).
    post_norms: Option<(B::Tensor, B::Tensor)>,
    wo: B::Tensor,
    mlp_norm: B::Tensor,
    /// `[W_gate; W_up]` (2·intermediate, hidden).
    gate_up: B::Tensor,
    down: B::Tensor,
}

/// Per-sequence working memory, sized for `rows` tokens per step.
struct Scratch<B: Backend> {
    rows: usize,
    x: B::Tensor,       // (rows, hidden) residual stream
    h: B::Tensor,       // (rows, hidden) normed
    q: B::Tensor,       // (rows, q_dim)
    k: B::Tensor,       // (rows, kv_dim)
    v: B::Tensor,       // (rows, kv_dim)
    attn: B::Tensor,    // (rows, q_dim)
    o: B::Tensor,       // (rows, hidden) a sublayer's output
    gate_up: B::Tensor, // (2, rows, intermediate) gate then up (the batched path's GEMMs)
    act: B::Tensor,     // (rows, intermediate)
    logits: B::Tensor,  // (logit_rows, vocab)
    logit_rows: usize,
}

impl<B: Backend> Scratch<B> {
    /// Its first row's attention tensors, where a backend that cannot address a row of a
    /// several-row pass in place runs that row's attention ([`Backend::rope_attention_row`]).
    fn row(&mut self) -> RowScratch<'_, B::Tensor> {
        RowScratch {
            q: &mut self.q,
            k: &mut self.k,
            v: &mut self.v,
            out: &mut self.attn,
        }
    }
}

/// A fresh value for [`Sequence::buffers`]: never repeats within the process.
fn next_buffers_serial() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SERIAL: AtomicU64 = AtomicU64::new(1);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// A captured decode step and the sampling it was captured with.
struct DecodeGraph<B: Backend> {
    params: SamplingParams,
    window: usize,
    graph: B::Graph,
}

/// One sequence being generated: its KV cache and working memory.
pub struct Sequence<B: Backend> {
    pub cache: KvCache<B::Tensor>,
    scratch: Option<Scratch<B>>,
    /// Rows of logits the last forward left in `scratch.logits`.
    logits_ready: usize,
    /// The device-side decode state (`Engine::begin_decode`).
    step: Option<B::Step>,
    /// The captured decode step; dropped when the scratch it points into is reallocated.
    graph: Option<DecodeGraph<B>>,
    /// Decode steps queued since `begin_decode` (graph replays among them).
    decode_steps: usize,
    replays: usize,
    /// Names the device buffers a captured step of this sequence points into (scratch, step
    /// state, cache): a new value whenever one of them is (re)allocated, so a batched pass
    /// captured with the old ones is never replayed ([`DecodeBatch`]'s graphs).
    buffers: u64,
    /// One row's tensors for [`Engine::forward_as_steps`] (where a backend that cannot address
    /// a row of the chunk in place runs its attention), made on first use.
    row_scratch: Option<Scratch<B>>,
    /// [`Engine::forward_as_steps`]'s device-side tokens and positions (on backends that have
    /// them), made on first use, and its passes captured with them, one per row count (the
    /// newest [`STEPS_GRAPHS`]); dropped with the scratch they point into.
    steps_input: Option<B::StepsInput>,
    steps_graphs: Vec<StepsGraph<B>>,
    /// Forwards as steps, and of them replays of a captured pass.
    steps_passes: usize,
    steps_replays: usize,
}

/// A captured [`Engine::forward_as_steps`] pass of `rows` rows over the sequence's buffers as
/// they were ([`Sequence::buffers`]).
struct StepsGraph<B: Backend> {
    rows: usize,
    buffers: u64,
    graph: B::Graph,
}

/// The most captured forwards as steps a sequence keeps: one per draft length an adaptive
/// speculation comes back to.
const STEPS_GRAPHS: usize = 8;

impl<B: Backend> Sequence<B> {
    /// `(decode steps queued, of which graph replays)` since the last `begin_decode`.
    pub fn decode_counts(&self) -> (usize, usize) {
        (self.decode_steps, self.replays)
    }

    /// `(forwards as steps, of which replays of a captured pass)` over the sequence's life.
    pub fn steps_counts(&self) -> (usize, usize) {
        (self.steps_passes, self.steps_replays)
    }

    /// The one-row scratch and the step state a batched decode row uses.
    fn decode_parts(&mut self) -> Result<(&mut Scratch<B>, &B::Step)> {
        match (self.scratch.as_mut(), self.step.as_ref()) {
            (Some(s), Some(st)) => Ok((s, st)),
            _ => Err(not_decoding()),
        }
    }
}

/// `WAVEFRONT_VERIFY_PREFILL=1`: [`Engine::verify_forward`] takes the prefill path for every
/// verification (for A/B measurements), read once.
pub fn verify_prefill() -> bool {
    static PREFILL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PREFILL
        .get_or_init(|| std::env::var("WAVEFRONT_VERIFY_PREFILL").is_ok_and(|v| v.trim() == "1"))
}

/// Appends `item`, first dropping the oldest when `list` holds `most` already.
fn keep_newest<T>(list: &mut Vec<T>, most: usize, item: T) {
    if list.len() >= most {
        list.remove(0);
    }
    list.push(item);
}

fn not_decoding() -> Error {
    Error::InvalidRequest("a decode step needs begin_decode first".into())
}

/// Where a forward's tokens come from.
#[derive(Clone, Copy)]
enum Input<'a> {
    Tokens(&'a [u32]),
    /// One token, the decode step's, read on the device.
    Step,
}

/// What a forward's rows are: a chunk of one sequence (its cache, and with `step` positions
/// read on the device), or one decode row of each of several sequences (each row's token and
/// position its sequence's step's, each row attending over its own cache).
enum Rows<'a, 's, B: Backend> {
    One {
        cache: &'a mut KvCache<B::Tensor>,
        step: Option<&'a B::Step>,
        input: Input<'a>,
    },
    /// A chunk of one sequence computed as its decode steps would compute it, row by row
    /// ([`Engine::forward_as_steps`]): the products over every row (batch-invariant, inside
    /// [`Backend::invariant_rows`]), row i's RoPE, KV write and attention as a decode row at
    /// position `cache.len() + i`, through `one` where the backend cannot address the row in
    /// place.
    /// With `input`, the tokens and positions are read from it on the device (a pass that is
    /// captured and replayed later); `tokens` then gives only their number.
    Steps {
        cache: &'a mut KvCache<B::Tensor>,
        tokens: &'a [u32],
        one: &'a mut Scratch<B>,
        input: Option<&'a B::StepsInput>,
    },
    Batch(&'a mut [&'s mut Sequence<B>]),
}

/// A batched pass's captured work (forward and each row's sample), for one ordered set of
/// sequences (their [`Sequence::buffers`]) with their sampling settings.
struct BatchGraph<B: Backend> {
    buffers: Vec<u64>,
    params: Vec<(SamplingParams, usize)>,
    graph: B::Graph,
}

/// The most captured batched passes a [`DecodeBatch`] keeps (the oldest goes first): one for
/// each group of a steady set of sequences, and a few for sets that come and go.
const BATCH_GRAPHS: usize = 8;

/// The working memory of a batched decode step ([`Engine::queue_decode_batch`]): activations
/// for its rows; each sequence's own scratch holds its row around the attention where the
/// backend cannot address it in place; the passes captured as graphs.
pub struct DecodeBatch<B: Backend> {
    scratch: Option<Scratch<B>>,
    graphs: Vec<BatchGraph<B>>,
    /// Copy each row's logits into its sequence's scratch ([`Engine::last_logits`] then reads
    /// them as after [`Engine::queue_decode`]); off by default: a copy per row and step.
    pub keep_logits: bool,
    /// Passes queued, and rows in them, since the batch was made; replays of captured passes
    /// among the passes.
    passes: usize,
    rows: usize,
    replays: usize,
}

impl<B: Backend> DecodeBatch<B> {
    pub fn new() -> Self {
        DecodeBatch {
            scratch: None,
            graphs: Vec::new(),
            keep_logits: false,
            passes: 0,
            rows: 0,
            replays: 0,
        }
    }

    /// `(batched passes queued, rows in them)`.
    pub fn counts(&self) -> (usize, usize) {
        (self.passes, self.rows)
    }

    /// Batched passes that were replays of a captured graph.
    pub fn replays(&self) -> usize {
        self.replays
    }
}

impl<B: Backend> Default for DecodeBatch<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// Which logits a forward step computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position's (generation).
    Last,
    /// Every position's, downloaded to the host (conformance, scoring).
    All,
}

/// Per-layer hidden states of one forward, as f32 on the host.
#[derive(Debug, Clone)]
pub struct Trace {
    /// `n_layers + 1` entries of (rows, hidden): the embedding output, then each layer's output
    /// (before the final norm).
    pub hidden: Vec<Vec<f32>>,
    /// (rows, hidden) after the final norm.
    pub final_hidden: Vec<f32>,
    /// (rows, vocab).
    pub logits: Vec<f32>,
}

pub struct Engine<B: Backend> {
    backend: B,
    config: ModelConfig,
    options: EngineOptions,
    embed: B::Tensor,
    layers: Vec<Layer<B>>,
    final_norm: B::Tensor,
    /// `None` when tied to `embed`.
    lm_head: Option<B::Tensor>,
    inv_freq: B::Tensor,
    /// The sliding layers' frequencies where they have a RoPE base of their own (Gemma 3).
    inv_freq_local: Option<B::Tensor>,
    /// LongRoPE's long-factor frequencies, for sequences longer than the original context
    /// ([`ModelConfig::longrope_long`]); `inv_freq` holds the short ones.
    inv_freq_long: Option<B::Tensor>,
    /// [`Engine::weight_rounding`].
    weight_rounding: DType,
}

impl<B: Backend> Engine<B> {
    /// Uploads `model`'s weights to `backend` (converting to its weight dtype).
    pub fn new(backend: B, model: &LoadedModel, options: EngineOptions) -> Result<Self> {
        if options.max_batch == 0 {
            return Err(Error::InvalidRequest("max_batch must be at least 1".into()));
        }
        let config = model.config.clone();
        let get = |name: &str| model.tensor(name).and_then(|t| upload_weight(&backend, t));
        let stacked = |names: &[String]| -> Result<B::Tensor> {
            let parts = names
                .iter()
                .map(|n| model.tensor(n))
                .collect::<Result<Vec<_>>>()?;
            upload_stacked(&backend, &parts)
        };
        let mut layers = Vec::with_capacity(config.n_layers);
        for l in 0..config.n_layers {
            let n = |s: &str| names::layer(l, s);
            let bias = if config.attention_bias {
                Some(stacked(&[n(names::BQ), n(names::BK), n(names::BV)])?)
            } else {
                None
            };
            let qk_norm = if config.qk_norm {
                Some((get(&n(names::Q_NORM))?, get(&n(names::K_NORM))?))
            } else {
                None
            };
            let post_norms = if config.post_norms {
                Some((
                    get(&n(names::POST_ATTN_NORM))?,
                    get(&n(names::POST_MLP_NORM))?,
                ))
            } else {
                None
            };
            layers.push(Layer {
                post_norms,
                attn_norm: get(&n(names::ATTN_NORM))?,
                wqkv: stacked(&[n(names::WQ), n(names::WK), n(names::WV)])?,
                bias,
                qk_norm,
                wo: get(&n(names::WO))?,
                mlp_norm: get(&n(names::MLP_NORM))?,
                gate_up: stacked(&[n(names::GATE), n(names::UP)])?,
                down: get(&n(names::DOWN))?,
            });
        }
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(get(names::LM_HEAD)?)
        };
        // Each table: the frequencies, then the attention factor (LongRoPE's; Gemma 3's local
        // layers have none).
        let af = crate::rope::attention_factor(&config);
        let table = |f: Vec<f32>, a: f32| backend.upload_f32(&crate::rope::table(f, a));
        let inv_freq = table(crate::rope::inv_freq(&config), af)?;
        let inv_freq_local = crate::rope::local_inv_freq(&config)
            .map(|f| table(f, 1.0))
            .transpose()?;
        let inv_freq_long = crate::rope::longrope_inv_freq(&config, true)
            .map(|f| table(f, af))
            .transpose()?;
        let weight_rounding = if WeightStorage::of(&backend).converts_any(model) {
            backend.weight_dtype()
        } else {
            DType::F32
        };
        Ok(Engine {
            weight_rounding,
            embed: get(names::EMBED)?,
            final_norm: get(names::FINAL_NORM)?,
            layers,
            lm_head,
            inv_freq,
            inv_freq_local,
            inv_freq_long,
            config,
            options,
            backend,
        })
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The dtype some matrices were converted (rounded) to at load, or F32 when every matrix is
    /// held as the file stores it.
    pub fn weight_rounding(&self) -> DType {
        self.weight_rounding
    }

    /// Bytes of weights the backend holds.
    /// The types the matrices are held in, distinct, in first-seen order (embedding, then
    /// each layer's QKV, O, gate/up, down, then the LM head): `BF16`, or a file's block
    /// types such as `Q4_K, Q6_K` (a mixed stack counts its first part's type).
    pub fn matrix_dtypes(&self) -> Vec<DType> {
        let mut seen = Vec::new();
        let layers = self
            .layers
            .iter()
            .flat_map(|l| [&l.wqkv, &l.wo, &l.gate_up, &l.down]);
        for t in std::iter::once(&self.embed)
            .chain(layers)
            .chain(self.lm_head.as_ref())
        {
            if !seen.contains(&t.dtype()) {
                seen.push(t.dtype());
            }
        }
        seen
    }

    pub fn weight_bytes(&self) -> usize {
        let size = |t: &B::Tensor| t.bytes();
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                let bias: usize = l.bias.iter().map(size).sum();
                [
                    &l.attn_norm,
                    &l.wqkv,
                    &l.wo,
                    &l.mlp_norm,
                    &l.gate_up,
                    &l.down,
                ]
                .into_iter()
                .map(size)
                .sum::<usize>()
                    + bias
            })
            .sum();
        layers + size(&self.embed) + size(&self.final_norm) + self.lm_head.as_ref().map_or(0, size)
    }

    /// Bytes of weights one decoded token must read: every matrix and norm of every layer, the
    /// final norm, the LM head (the embedding table itself when tied) and the token's one
    /// embedding row. An untied embedding table is not read beyond that row. The KV cache read
    /// at the current depth comes on top (`KvLayout::bytes_per_position` per position).
    pub fn decode_weight_bytes(&self) -> usize {
        let size = |t: &B::Tensor| t.bytes();
        let embed_row = self.embed.dtype().bytes_for(self.config.hidden_size);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        self.weight_bytes() - size(&self.embed) - self.lm_head.as_ref().map_or(0, size)
            + size(head)
            + embed_row
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The KV dtype sequences of this engine use.
    pub fn kv_dtype(&self) -> DType {
        self.options
            .kv_dtype
            .unwrap_or_else(|| self.backend.preferred_kv_dtype())
    }

    /// The KV layout of a sequence of `capacity` positions.
    pub fn kv_layout(&self, capacity: usize) -> KvLayout {
        KvLayout {
            n_layers: self.config.n_layers,
            n_kv_heads: self.config.n_kv_heads,
            head_dim: self.config.head_dim,
            capacity,
            dtype: self.kv_dtype(),
        }
    }

    /// Bytes of a sequence's working memory at `max_batch` rows with one row of logits (the
    /// activations of `Scratch`, and the 16-bit copy of a matmul input the GPU makes).
    pub fn scratch_bytes(&self) -> usize {
        let c = &self.config;
        let rows = self.options.max_batch;
        let per_row = 3 * c.hidden_size + 2 * c.q_dim() + 2 * c.kv_dim() + 3 * c.intermediate_size;
        let widest_input = c.hidden_size.max(c.intermediate_size).max(c.q_dim());
        4 * (rows * per_row + c.vocab_size) + 2 * rows * widest_input
    }

    /// The KV capacity of a new sequence: `requested`, or the model's context capped to the
    /// backend's free memory less [`crate::context::RESERVE_BYTES`]; an error, before any
    /// allocation, when it cannot fit.
    pub fn context_plan(&self, requested: Option<usize>) -> Result<crate::context::ContextPlan> {
        crate::context::ContextBudget {
            model_context: self.config.max_position_embeddings,
            kv_bytes_per_position: self.kv_layout(1).bytes_per_position(),
            scratch_bytes: self.scratch_bytes(),
            free_bytes: self.backend.free_memory()?,
            reserve_bytes: crate::context::RESERVE_BYTES,
        }
        .plan(requested)
    }

    /// A new sequence with room for `capacity` positions (≤ the model's context length is
    /// sensible, but not enforced: RoPE extrapolates).
    pub fn new_sequence(&self, capacity: usize) -> Result<Sequence<B>> {
        let layout = self.kv_layout(capacity);
        Ok(Sequence {
            cache: KvCache::new(&self.backend, layout)?,
            scratch: None,
            logits_ready: 0,
            step: None,
            graph: None,
            decode_steps: 0,
            replays: 0,
            row_scratch: None,
            buffers: next_buffers_serial(),
            steps_input: None,
            steps_graphs: Vec::new(),
            steps_passes: 0,
            steps_replays: 0,
        })
    }

    fn scratch(&self, seq: &mut Sequence<B>, rows: usize, logit_rows: usize) -> Result<()> {
        let fits = seq
            .scratch
            .as_ref()
            .is_some_and(|s| s.rows >= rows && s.logit_rows >= logit_rows);
        if fits {
            return Ok(());
        }
        // A captured step points into the old scratch.
        seq.graph = None;
        seq.steps_graphs.clear();
        seq.buffers = next_buffers_serial();
        seq.scratch = Some(self.alloc_scratch(seq.scratch.as_ref(), rows, logit_rows)?);
        Ok(())
    }

    /// Scratch for `rows` rows and `logit_rows` rows of logits, at least `old`'s.
    fn alloc_scratch(
        &self,
        old: Option<&Scratch<B>>,
        rows: usize,
        logit_rows: usize,
    ) -> Result<Scratch<B>> {
        let c = &self.config;
        let rows = rows.max(old.map_or(0, |s| s.rows));
        let logit_rows = logit_rows.max(old.map_or(0, |s| s.logit_rows));
        let f = |n: usize| self.backend.alloc(DType::F32, n);
        Ok(Scratch {
            rows,
            x: f(rows * c.hidden_size)?,
            h: f(rows * c.hidden_size)?,
            q: f(rows * c.q_dim())?,
            k: f(rows * c.kv_dim())?,
            v: f(rows * c.kv_dim())?,
            attn: f(rows * c.q_dim())?,
            o: f(rows * c.hidden_size)?,
            gate_up: f(2 * rows * c.intermediate_size)?,
            act: f(rows * c.intermediate_size)?,
            logits: f(logit_rows * c.vocab_size)?,
            logit_rows,
        })
    }

    /// Runs `tokens` through the model at the sequence's next positions, appending to its KV
    /// cache. `Logits::Last` leaves the last position's logits on the device for
    /// [`Engine::sample`]; `Logits::All` returns every position's logits (rows, vocab).
    pub fn forward(
        &self,
        seq: &mut Sequence<B>,
        tokens: &[u32],
        logits: Logits,
    ) -> Result<Option<Vec<f32>>> {
        if tokens.is_empty() {
            return Err(Error::InvalidRequest(
                "forward needs at least one token".into(),
            ));
        }
        seq.cache.check_room(tokens.len())?;
        let mut all = Vec::new();
        let chunks: Vec<&[u32]> = tokens.chunks(self.options.max_batch).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let want = match logits {
                Logits::All => Some((0, chunk.len())),
                Logits::Last if last => Some((chunk.len() - 1, 1)),
                Logits::Last => None,
            };
            self.step(seq, chunk, want, None)?;
            if logits == Logits::All {
                let s = seq.scratch.as_ref().expect("scratch allocated by step");
                let v = self.backend.download_f32(&s.logits)?;
                all.extend_from_slice(&v[..chunk.len() * self.config.vocab_size]);
            }
        }
        Ok((logits == Logits::All).then_some(all))
    }

    /// Runs `tokens` (at most [`Engine::decode_batch_rows`]) at the sequence's next positions
    /// as that many decode steps would, and returns every row's logits (rows, vocab): row i's
    /// are, bit for bit, the logits of the decode step at position `len + i` after the rows
    /// before it (the products over all rows batch-invariant, as in a batched decode pass; each
    /// row's RoPE, KV write and attention the decode step's at its position). A speculative
    /// verification that reads them accepts exactly the tokens plain decoding gives, on every
    /// backend, where [`Engine::forward`]'s prefill path (BLAS and the flash kernel on the GPU)
    /// may round differently from a decode step.
    pub fn forward_as_steps(&self, seq: &mut Sequence<B>, tokens: &[u32]) -> Result<Vec<f32>> {
        let n = tokens.len();
        if n == 0 || n > self.decode_batch_rows() {
            return Err(Error::InvalidRequest(format!(
                "a forward as decode steps takes 1..={} tokens, got {n}",
                self.decode_batch_rows()
            )));
        }
        seq.cache.check_room(n)?;
        // With graphs on, where the backend reads the rows' tokens and positions on the device,
        // the pass is captured once per row count and replayed (written first: a replay at a
        // later position with other tokens computes what a fresh pass would).
        let device_input = self.options.graphs
            && self.options.verify_graphs
            && self
                .backend
                .steps_input_takes(&self.steps_shape(n), seq.cache.layout().dtype);
        // Captured: room for the longest such pass at once (a pass that grew the scratch would
        // drop the passes captured for shorter ones; an adaptive draft length goes up and down).
        let room = if device_input {
            self.decode_batch_rows()
        } else {
            n
        };
        self.scratch(seq, room, room)?;
        if seq.row_scratch.is_none() {
            seq.row_scratch = Some(self.alloc_scratch(None, 1, 1)?);
        }
        seq.logits_ready = 0;
        if device_input && seq.steps_input.is_none() {
            seq.steps_input = self.backend.steps_input(self.decode_batch_rows())?;
        }
        let Sequence {
            cache,
            scratch,
            row_scratch,
            steps_input,
            steps_graphs,
            buffers,
            ..
        } = seq;
        let s = scratch.as_mut().expect("allocated above");
        let one = row_scratch.as_mut().expect("allocated above");
        let input = steps_input.as_ref().filter(|_| device_input);
        if let Some(i) = input {
            let vocab = self.config.vocab_size;
            self.backend
                .set_steps_input(i, tokens, cache.len(), vocab)?;
        }
        let found = steps_graphs
            .iter()
            .position(|g| g.rows == n && g.buffers == *buffers)
            .filter(|_| input.is_some());
        let replayed = match found {
            Some(g) => {
                self.backend.replay_graph(&steps_graphs[g].graph)?;
                true
            }
            None => {
                let mut work = || {
                    self.backend.invariant_rows(&mut || {
                        let rows = Rows::Steps {
                            cache: &mut *cache,
                            tokens,
                            one: &mut *one,
                            input,
                        };
                        self.queue_forward(rows, s, Some((0, n)), None)
                    })
                };
                if let Some(graph) = self.queue_captured(input.is_some(), &mut work)? {
                    let g = StepsGraph {
                        rows: n,
                        buffers: *buffers,
                        graph,
                    };
                    keep_newest(steps_graphs, STEPS_GRAPHS, g);
                }
                false
            }
        };
        seq.steps_passes += 1;
        seq.steps_replays += usize::from(replayed);
        seq.cache.advance(n)?;
        seq.logits_ready = n;
        let s = seq.scratch.as_ref().expect("allocated above");
        // Only the pass's rows: the scratch may hold more from an earlier, longer pass.
        self.backend
            .download_range_f32(&s.logits, 0, n * self.config.vocab_size)
    }

    /// Queues `work` once: with `capture` (on a backend with graphs) recorded, then replayed,
    /// and the graph returned to keep; otherwise queued directly.
    fn queue_captured(
        &self,
        capture: bool,
        work: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Option<B::Graph>> {
        let captured = match capture {
            true => self.backend.capture_graph(work)?,
            false => None,
        };
        match captured {
            Some(graph) => {
                self.backend.replay_graph(&graph)?;
                Ok(Some(graph))
            }
            None => work().map(|()| None),
        }
    }

    /// The attention shape of a forward as `rows` steps (layer 0's: what decides whether the
    /// backend reads its positions on the device; every layer has the same heads and dims).
    fn steps_shape(&self, rows: usize) -> AttentionParams {
        let c = &self.config;
        AttentionParams {
            layer: 0,
            pos0: 0,
            rows,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            window: c.layer_window(0),
            score_scale: c.attn_scale(),
            softcap: c.attn_logit_softcap,
        }
    }

    /// A speculative verification's forward: every row's logits (rows, vocab) of `tokens` at
    /// the sequence's next positions, through [`Engine::forward_as_steps`] (each row the decode
    /// step's logits, bit for bit) when the rows fit a batched pass, else [`Engine::forward`]'s
    /// prefill path. `WAVEFRONT_VERIFY_PREFILL=1` takes the prefill path always (to compare).
    pub fn verify_forward(&self, seq: &mut Sequence<B>, tokens: &[u32]) -> Result<Vec<f32>> {
        if !verify_prefill() && tokens.len() <= self.decode_batch_rows() {
            return self.forward_as_steps(seq, tokens);
        }
        let logits = self.forward(seq, tokens, Logits::All)?;
        logits.ok_or_else(|| Error::InvalidRequest("a verification returned no logits".into()))
    }

    /// One forward of at most `max_batch` tokens, downloading every hidden state on the way.
    pub fn forward_traced(&self, seq: &mut Sequence<B>, tokens: &[u32]) -> Result<Trace> {
        if tokens.is_empty() || tokens.len() > self.options.max_batch {
            return Err(Error::InvalidRequest(format!(
                "a traced forward takes 1..={} tokens, got {}",
                self.options.max_batch,
                tokens.len()
            )));
        }
        seq.cache.check_room(tokens.len())?;
        let mut trace = Trace {
            hidden: Vec::new(),
            final_hidden: Vec::new(),
            logits: Vec::new(),
        };
        self.step(seq, tokens, Some((0, tokens.len())), Some(&mut trace))?;
        let s = seq.scratch.as_ref().expect("scratch allocated by step");
        let n = tokens.len();
        trace.logits = self.backend.download_f32(&s.logits)?[..n * self.config.vocab_size].to_vec();
        Ok(trace)
    }

    /// Samples the next token from the logits the last `forward(.., Logits::Last)` left.
    pub fn sample(
        &self,
        seq: &Sequence<B>,
        params: &SamplingParams,
        history: &[u32],
        coin: f32,
    ) -> Result<u32> {
        let s = match (&seq.scratch, seq.logits_ready) {
            (Some(s), n) if n > 0 => s,
            _ => {
                return Err(Error::InvalidRequest(
                    "no logits to sample from: run a forward first".into(),
                ))
            }
        };
        self.backend.sample(
            &s.logits,
            seq.logits_ready - 1,
            self.config.vocab_size,
            params,
            history,
            coin,
        )
    }

    /// The logits the last forward left (rows, vocab), on the host.
    pub fn last_logits(&self, seq: &Sequence<B>) -> Result<Vec<f32>> {
        match (&seq.scratch, seq.logits_ready) {
            (Some(s), n) if n > 0 => {
                Ok(self.backend.download_f32(&s.logits)?[..n * self.config.vocab_size].to_vec())
            }
            _ => Err(Error::InvalidRequest(
                "no logits: run a forward first".into(),
            )),
        }
    }

    /// The decoder over one chunk: `want = Some((row0, rows))` computes those rows' logits.
    fn step(
        &self,
        seq: &mut Sequence<B>,
        tokens: &[u32],
        want: Option<(usize, usize)>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let n = tokens.len();
        self.scratch(seq, n, want.map_or(0, |w| w.1))?;
        seq.logits_ready = 0;
        let Sequence { cache, scratch, .. } = seq;
        let s = scratch.as_mut().expect("allocated above");
        let rows = Rows::One {
            cache,
            step: None,
            input: Input::Tokens(tokens),
        };
        self.queue_forward(rows, s, want, trace)?;
        seq.cache.advance(n)?;
        seq.logits_ready = want.map_or(0, |w| w.1);
        Ok(())
    }

    /// Starts decoding on the device after a prefill: the step state's history becomes
    /// `context` (the prompt, and anything generated since), its token the last of them, its
    /// coins `CoinRng::new(seed)`'s. Then [`Engine::queue_sample`] samples the prefill's logits.
    pub fn begin_decode(&self, seq: &mut Sequence<B>, context: &[u32], seed: u64) -> Result<()> {
        if context.len() != seq.cache.len() {
            return Err(Error::InvalidRequest(format!(
                "a decode starts from the {} cached tokens, not {}",
                seq.cache.len(),
                context.len()
            )));
        }
        if seq.step.is_none() {
            let capacity = seq.cache.layout().capacity;
            seq.step = Some(self.backend.new_step(self.config.vocab_size, capacity)?);
            seq.buffers = next_buffers_serial();
        }
        let step = seq.step.as_mut().expect("made above");
        self.backend.reset_step(step, context, seed)?;
        seq.decode_steps = 0;
        seq.replays = 0;
        Ok(())
    }

    /// Queues a sample from the logits the last forward left (one coin from the step's
    /// generator, the repetition penalty over the last `window` tokens, 0 = all) and posts the
    /// id for [`Engine::take_token`]. The next decode step reads the id on the device.
    pub fn queue_sample(
        &self,
        seq: &mut Sequence<B>,
        params: &SamplingParams,
        window: usize,
    ) -> Result<()> {
        let (Some(s), Some(step), n) = (&seq.scratch, seq.step.as_mut(), seq.logits_ready) else {
            return Err(Error::InvalidRequest(
                "queue_sample needs begin_decode and a forward first".into(),
            ));
        };
        if n == 0 {
            return Err(Error::InvalidRequest(
                "no logits to sample from: run a forward first".into(),
            ));
        }
        let vocab = self.config.vocab_size;
        self.backend
            .sample_step(&s.logits, n - 1, vocab, params, window, step)?;
        self.backend.post_token(step)
    }

    /// Queues one decode step on the step's token — the forward at the next position, then
    /// the sample — and posts the sampled id. With graphs on (`EngineOptions::graphs`, on a
    /// backend that has them) the step is captured once per sampling setting and replayed.
    pub fn queue_decode(
        &self,
        seq: &mut Sequence<B>,
        params: &SamplingParams,
        window: usize,
    ) -> Result<()> {
        if seq.step.is_none() {
            return Err(Error::InvalidRequest(
                "queue_decode needs begin_decode first".into(),
            ));
        }
        params.validate()?;
        seq.cache.check_room(1)?;
        self.scratch(seq, 1, 1)?;
        let fresh = seq
            .graph
            .as_ref()
            .is_none_or(|g| g.params != *params || g.window != window);
        if self.options.graphs && fresh {
            seq.graph = None;
            let Sequence {
                cache,
                scratch,
                step,
                ..
            } = &mut *seq;
            let s = scratch.as_mut().expect("allocated above");
            let step = step.as_mut().expect("checked above");
            let captured = self
                .backend
                .capture_graph(&mut || self.queue_decode_work(cache, s, step, params, window))?;
            if let Some(graph) = captured {
                seq.graph = Some(DecodeGraph {
                    params: *params,
                    window,
                    graph,
                });
            }
        }
        let Sequence {
            cache,
            scratch,
            step,
            graph,
            ..
        } = &mut *seq;
        let step = step.as_mut().expect("checked above");
        let replayed = match graph.as_ref().filter(|_| self.options.graphs) {
            Some(g) => {
                self.backend.replay_graph(&g.graph)?;
                true
            }
            None => {
                let s = scratch.as_mut().expect("allocated above");
                self.queue_decode_work(cache, s, step, params, window)?;
                false
            }
        };
        self.backend.post_token(step)?;
        seq.replays += usize::from(replayed);
        seq.cache.advance(1)?;
        seq.logits_ready = 1;
        seq.decode_steps += 1;
        Ok(())
    }

    /// The most sequences one batched decode pass takes ([`Engine::queue_decode_batch`]): the
    /// backend's [`Backend::batch_invariant_rows`], at most the engine's `max_batch`.
    pub fn decode_batch_rows(&self) -> usize {
        self.backend
            .batch_invariant_rows()
            .min(self.options.max_batch)
            .max(1)
    }

    /// Queues one decode step for each of `seqs`, as [`Engine::queue_decode`] queues it for
    /// each alone with `params[i]` (sampling, repetition window), in batched passes of at most
    /// [`Engine::decode_batch_rows`] sequences: the norms, projections and LM head over every
    /// row of a pass at once (each weight read once a pass, not once a sequence), each row's
    /// RoPE, KV write and attention over its own cache at its own position (its sequence's
    /// step state); then each sequence's sample from its row, and its id posted. A row's logits
    /// are, bit for bit, what its sequence alone computes, whatever else is in the pass (the
    /// backend's batch-invariance contract), so its tokens are too. A pass of one sequence is
    /// [`Engine::queue_decode`] (its captured graph); a pass of several is captured once too
    /// (with graphs on) and replayed while the same sequences, with the same buffers, come in
    /// the same order with the same settings. Every sequence is checked (decoding, room
    /// for a token, valid sampling) before anything is queued. The logits of a batched row stay
    /// in the batch (`last_logits` of its sequence is an error) unless `batch.keep_logits`.
    pub fn queue_decode_batch(
        &self,
        batch: &mut DecodeBatch<B>,
        seqs: &mut [&mut Sequence<B>],
        params: &[(SamplingParams, usize)],
    ) -> Result<()> {
        if seqs.len() != params.len() {
            return Err(Error::InvalidRequest(format!(
                "a decode batch of {} sequences with {} sampling settings",
                seqs.len(),
                params.len()
            )));
        }
        for (seq, (p, _)) in seqs.iter().zip(params) {
            if seq.step.is_none() {
                return Err(not_decoding());
            }
            p.validate()?;
            seq.cache.check_room(1)?;
        }
        let vocab = self.config.vocab_size;
        let most = self.decode_batch_rows();
        for (group, settings) in seqs.chunks_mut(most).zip(params.chunks(most)) {
            let n = group.len();
            if n == 1 {
                let (p, window) = &settings[0];
                self.queue_decode(group[0], p, *window)?;
                continue;
            }
            for seq in group.iter_mut() {
                self.scratch(seq, 1, 1)?;
            }
            let fits = batch
                .scratch
                .as_ref()
                .is_some_and(|s| s.rows >= n && s.logit_rows >= n);
            if !fits {
                // The captured passes point into the old scratch.
                batch.graphs.clear();
                batch.scratch = Some(self.alloc_scratch(batch.scratch.as_ref(), n, n)?);
            }
            let DecodeBatch {
                scratch, graphs, ..
            } = &mut *batch;
            let s = scratch.as_mut().expect("allocated above");
            // The pass's work: the forward over every row, then each row's sample (what a
            // graph captures; positions and tokens are read from the step states on the device).
            let buffers: Vec<u64> = group.iter().map(|seq| seq.buffers).collect();
            let found = graphs
                .iter()
                .position(|g| g.buffers == buffers && g.params == settings)
                .filter(|_| self.options.graphs);
            let replayed = match found {
                Some(i) => {
                    self.backend.replay_graph(&graphs[i].graph)?;
                    true
                }
                None => {
                    let mut work = || -> Result<()> {
                        self.backend.invariant_rows(&mut || {
                            self.queue_forward(Rows::Batch(&mut *group), s, Some((0, n)), None)
                        })?;
                        for (i, (seq, (p, window))) in group.iter_mut().zip(settings).enumerate() {
                            let step = seq.step.as_mut().ok_or_else(not_decoding)?;
                            self.backend
                                .sample_step(&s.logits, i, vocab, p, *window, step)?;
                        }
                        Ok(())
                    };
                    if let Some(graph) = self.queue_captured(self.options.graphs, &mut work)? {
                        let g = BatchGraph {
                            buffers,
                            params: settings.to_vec(),
                            graph,
                        };
                        keep_newest(graphs, BATCH_GRAPHS, g);
                    }
                    false
                }
            };
            batch.replays += usize::from(replayed);
            let s = batch.scratch.as_mut().expect("allocated above");
            for (i, (seq, _)) in group.iter_mut().zip(settings).enumerate() {
                let step = seq.step.as_mut().ok_or_else(not_decoding)?;
                self.backend.post_token(step)?;
                seq.cache.advance(1)?;
                seq.decode_steps += 1;
                seq.logits_ready = 0;
                if batch.keep_logits {
                    let one = seq.scratch.as_mut().ok_or_else(not_decoding)?;
                    let row = i * vocab;
                    self.backend
                        .copy_range(&s.logits, row, &mut one.logits, 0, vocab)?;
                    seq.logits_ready = 1;
                }
            }
            batch.passes += 1;
            batch.rows += n;
        }
        Ok(())
    }

    /// Waits for the oldest posted id (work queued after it may still run).
    pub fn take_token(&self, seq: &mut Sequence<B>) -> Result<u32> {
        match seq.step.as_mut() {
            Some(step) => self.backend.take_token(step),
            None => Err(Error::InvalidRequest(
                "take_token needs begin_decode first".into(),
            )),
        }
    }

    /// The work of one decode step, queued (what a graph captures).
    fn queue_decode_work(
        &self,
        cache: &mut KvCache<B::Tensor>,
        s: &mut Scratch<B>,
        step: &mut B::Step,
        params: &SamplingParams,
        window: usize,
    ) -> Result<()> {
        let rows = Rows::One {
            cache,
            step: Some(&*step),
            input: Input::Step,
        };
        self.queue_forward(rows, s, Some((0, 1)), None)?;
        let vocab = self.config.vocab_size;
        self.backend
            .sample_step(&s.logits, 0, vocab, params, window, step)
    }

    /// The residual add after a projection: `x += y·wᵀ`, or with Gemma's post-norm gain `post`
    /// `x += rms_norm(y·wᵀ)·post` (`o` and `h` scratch of `p.rows × p.out_features`).
    #[allow(clippy::too_many_arguments)]
    fn residual(
        &self,
        y: &B::Tensor,
        w: &B::Tensor,
        post: Option<&B::Tensor>,
        x: &mut B::Tensor,
        o: &mut B::Tensor,
        h: &mut B::Tensor,
        p: LinearParams,
    ) -> Result<()> {
        let b = &self.backend;
        let Some(post) = post else {
            return b.linear_residual(y, w, None, x, o, p);
        };
        b.linear(y, w, None, o, p)?;
        let norm = RmsNormParams {
            rows: p.rows,
            dim: p.out_features,
            eps: self.config.rms_norm_eps,
        };
        b.rms_norm_add(o, post, x, h, norm)
    }

    /// Queues the decoder over one chunk at the cache's next positions (no host bookkeeping:
    /// the caller advances the cache). `step`: positions and, for `Input::Step`, the token
    /// are read from the step state on the device.
    fn queue_forward(
        &self,
        mut rows: Rows<'_, '_, B>,
        s: &mut Scratch<B>,
        want: Option<(usize, usize)>,
        mut trace: Option<&mut Trace>,
    ) -> Result<()> {
        let c = &self.config;
        let b = &self.backend;
        let n = match &rows {
            Rows::One {
                input: Input::Tokens(t),
                ..
            } => t.len(),
            Rows::One {
                input: Input::Step, ..
            } => 1,
            Rows::Steps { tokens, .. } => tokens.len(),
            Rows::Batch(seqs) => seqs.len(),
        };
        let (hidden, eps) = (c.hidden_size, c.rms_norm_eps);
        let norm = RmsNormParams {
            rows: n,
            dim: hidden,
            eps,
        };
        let lin = |i: usize, o: usize| LinearParams {
            rows: n,
            in_features: i,
            out_features: o,
        };
        let mut record = |t: &B::Tensor| -> Result<()> {
            if let Some(tr) = trace.as_deref_mut() {
                tr.hidden.push(b.download_f32(t)?[..n * hidden].to_vec());
            }
            Ok(())
        };
        // x = embed(tokens)                                   (n, hidden)
        // (Gemma: × √hidden, in f32 after the row is read)
        let ep = EmbeddingParams {
            vocab: c.vocab_size,
            hidden,
            scale: c.embed_scale.unwrap_or(1.0),
        };
        match &mut rows {
            Rows::Steps {
                tokens,
                input: Some(input),
                ..
            } => b.embedding_steps_input(&self.embed, input, tokens.len(), &mut s.x, ep)?,
            Rows::One {
                input: Input::Tokens(tokens),
                ..
            }
            | Rows::Steps { tokens, .. } => b.embedding(&self.embed, tokens, &mut s.x, ep)?,
            Rows::One {
                input: Input::Step,
                step: Some(st),
                ..
            } => b.embedding_step(&self.embed, st, &mut s.x, ep)?,
            Rows::One {
                input: Input::Step,
                step: None,
                ..
            } => {
                return Err(Error::InvalidRequest(
                    "a step-input forward needs the step state".into(),
                ))
            }
            // Each row the embedding of its sequence's step token, made in the sequence's
            // scratch and copied into the batch's.
            Rows::Batch(seqs) => {
                for (i, seq) in seqs.iter_mut().enumerate() {
                    let (one, step) = seq.decode_parts()?;
                    b.embedding_step(&self.embed, step, &mut one.x, ep)?;
                    b.copy_range(&one.x, 0, &mut s.x, i * hidden, hidden)?;
                }
            }
        }
        record(&s.x)?;
        for (l, w) in self.layers.iter().enumerate() {
            if l > 0 {
                record(&s.x)?; // x after the previous layer's residual adds
            }
            // q, k, v = h·Wqᵀ (+b), h·Wkᵀ (+b), h·Wvᵀ (+b) for h = rms_norm(x), over one
            // stacked [Wq; Wk; Wv] (the norm fused into the projection where the backend can)
            //                                                    (n, q_dim), (n, kv_dim) ×2
            let attn_norm = PreNorm {
                weight: &w.attn_norm,
                eps,
            };
            b.norm_linear_stacked(
                &mut s.x,
                attn_norm,
                &mut s.h,
                &w.wqkv,
                w.bias.as_ref(),
                &mut [&mut s.q, &mut s.k, &mut s.v],
                &[c.q_dim(), c.kv_dim(), c.kv_dim()],
                n,
                hidden,
            )?;
            // Qwen3: q, k = rms_norm(q)·w_qn, rms_norm(k)·w_kn over each head's head_dim
            if let Some((q_norm, k_norm)) = &w.qk_norm {
                let heads = |h: usize| RmsNormParams {
                    rows: n * h,
                    dim: c.head_dim,
                    eps,
                };
                b.rms_norm_in_place(&mut s.q, q_norm, heads(c.n_heads))?;
                b.rms_norm_in_place(&mut s.k, k_norm, heads(c.n_kv_heads))?;
            }
            // rotate q and k (Gemma 3's sliding layers with their own base); k, v → cache at
            // pos0..pos0+n; then attn = causal softmax(cap(q·Kᵀ·scale))·V over positions
            // 0..pos0+n, within this layer's window if it slides, scale 1/√d or Gemma's
            // query_pre_attn_scalar^-0.5, cap Gemma 2's soft-cap (else none)  (n, q_dim)
            // (one fused kernel for a decode row where the backend has it)
            // (LongRoPE: the long factors for a sequence whose context exceeds the original)
            let inv_freq = |capacity: usize| match (&self.inv_freq_local, &self.inv_freq_long) {
                (Some(local), _) if c.layer_uses_local_rope(l) => local,
                (_, Some(long)) if c.longrope_long(capacity) => long,
                _ => &self.inv_freq,
            };
            let ap = |pos0: usize, rows: usize| AttentionParams {
                layer: l,
                pos0,
                rows,
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: c.head_dim,
                window: c.layer_window(l),
                score_scale: c.attn_scale(),
                softcap: c.attn_logit_softcap,
            };
            match &mut rows {
                Rows::One { cache, step, .. } => {
                    let p = ap(cache.len(), n);
                    let f = inv_freq(cache.capacity());
                    b.rope_attention(&mut s.q, &s.k, &s.v, f, cache, &mut s.attn, p, *step)?
                }
                // Row i as the decode step at position pos0 + i computes it (after the rows
                // before it wrote their K/V).
                Rows::Steps {
                    cache, one, input, ..
                } => {
                    let f = inv_freq(cache.capacity());
                    let p = ap(cache.len(), n);
                    let (q, k, v) = (&s.q, &s.k, &s.v);
                    match input {
                        Some(i) => {
                            b.rope_attention_steps_input(q, k, v, &mut s.attn, f, cache, p, i)?
                        }
                        None => {
                            b.rope_attention_steps(q, k, v, &mut s.attn, one.row(), f, cache, p)?
                        }
                    }
                }
                // Row i over sequence i's cache at its step's position (through its one-row
                // scratch where the backend cannot address the row in place).
                Rows::Batch(seqs) => {
                    let mut batch = Vec::with_capacity(seqs.len());
                    for seq in seqs.iter_mut() {
                        let p = ap(seq.cache.len(), 1);
                        let Sequence {
                            cache,
                            scratch,
                            step,
                            ..
                        } = &mut **seq;
                        let (Some(one), Some(step)) = (scratch.as_mut(), step.as_ref()) else {
                            return Err(not_decoding());
                        };
                        batch.push(BatchRow {
                            inv_freq: inv_freq(cache.capacity()),
                            cache,
                            one: one.row(),
                            p,
                            step: Some(step),
                        });
                    }
                    b.rope_attention_batch(&s.q, &s.k, &s.v, &mut s.attn, &mut batch)?;
                }
            }
            // x += attn·Woᵀ (Gemma: x += rms_norm(attn·Woᵀ)·w_post)   (n, hidden)
            let o_proj = lin(c.q_dim(), hidden);
            let post = w.post_norms.as_ref();
            let post_attn = post.map(|p| &p.0);
            self.residual(
                &s.attn, &w.wo, post_attn, &mut s.x, &mut s.o, &mut s.h, o_proj,
            )?;
            // act = act(h·Wgᵀ) ⊙ h·Wuᵀ for h = rms_norm(x), over one stacked [Wg; Wu], act
            // SiLU or GELU-tanh                                     (n, intermediate)
            let mlp_norm = PreNorm {
                weight: &w.mlp_norm,
                eps,
            };
            b.norm_gate_up_swiglu(
                &mut s.x,
                mlp_norm,
                &mut s.h,
                &w.gate_up,
                &mut s.gate_up,
                &mut s.act,
                n,
                hidden,
                c.intermediate_size,
                c.activation,
            )?;
            // x += act·Wdᵀ (Gemma: x += rms_norm(act·Wdᵀ)·w_post)      (n, hidden)
            let down = lin(c.intermediate_size, hidden);
            let post_mlp = post.map(|p| &p.1);
            self.residual(
                &s.act, &w.down, post_mlp, &mut s.x, &mut s.o, &mut s.h, down,
            )?;
        }
        // h = final_norm(x)
        b.rms_norm(&mut s.x, None, &self.final_norm, &mut s.h, norm)?;
        record(&s.x)?;
        if let Some(tr) = trace {
            tr.final_hidden = b.download_f32(&s.h)?[..n * hidden].to_vec();
        }
        if let Some((row0, rows)) = want {
            let head = self.lm_head.as_ref().unwrap_or(&self.embed);
            let lp = LogitsParams {
                row0,
                rows,
                hidden,
                vocab: c.vocab_size,
                softcap: c.final_logit_softcap,
            };
            b.logits(&s.h, head, &mut s.logits, lp)?;
        }
        Ok(())
    }
}
