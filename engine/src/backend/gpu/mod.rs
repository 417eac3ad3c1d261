//! The GPU backend: one implementation over two vendor runtimes (DESIGN.md "Backends").
//!
//! `vendor/` is the only code that calls CUDA or HIP; `module.rs` compiles and caches the
//! kernels of `kernels/`; `ops/` holds one file per op family, each with its `launch_*`
//! function (the only place grid and block sizes are computed, per the kernel ABI) and the Rust
//! entry that checks shapes before launching.
//!
//! Tensors are device buffers with a dtype and a length: activations f32, weights bf16 or, for
//! a GGUF file's block types, the file's blocks ([`quant`]), the KV arena f16 by default. Every
//! op is queued on the vendor's single stream, so ops run in call order; `download_f32`,
//! `sample` and `synchronize` wait for the stream.
//!
//! The wave size is fixed when the backend is built (`GpuOptions::wave`): the device's own by
//! default; on NVIDIA a backend with `wave: Some(64)` runs the WAVE=64 build of every kernel,
//! with the 64-lane logical wave emulated by `kernels/common.h`.

pub mod coverage;
mod device;
pub mod module;
mod ops;
pub mod quant;
pub mod step;

/// The head dims at which fused decode rows over 16-bit KV run on the matrix-instruction
/// decode kernel (q and the softmax weights rounded to the KV type for its products), unless
/// `WAVEFRONT_NO_MMA_DECODE=1` or [`crate::backend::Backend::simple_attention`].
pub use ops::decode_attention::MMA_HEAD_DIMS as MMA_DECODE_HEAD_DIMS;
#[cfg(test)]
mod tests;
pub mod vendor;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use device::{
    detect, detect_with, device_report, devices, require_gpu, runtime_order, select, BackendChoice,
    SelectError, Selected,
};
pub use ops::sync::{BarrierKind, GemvChain, SyncProbe};
pub use vendor::{DeviceInfo, OpenError, Runtime};

use crate::backend::{
    Activation, AttentionParams, Backend, EmbeddingParams, LinearParams, LogitsParams, PreNorm,
    RmsNormParams, RopeKvParams, TensorInfo,
};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::kv_quant;
use crate::sampler::SamplingParams;
use crate::tensor::DType;
pub use module::KernelSources;
use module::{CompileRequest, ModuleCache, Origin};
pub use ops::sampling::StepBlock;
use vendor::{DevicePtr, FunctionHandle, KernelArg, LaunchConfig, Vendor};

/// Which device, which wave size to build the kernels for, and from which sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuOptions {
    /// Device ordinal within the runtime.
    pub device: usize,
    /// `None`: the device's wave. `Some(64)` on a wave32 NVIDIA device: emulated wave64.
    pub wave: Option<u32>,
    /// The embedded kernels, or a directory of edited ones (`--kernels DIR`).
    pub kernels: KernelSources,
    /// Build the kernels with `-DWF_COVERAGE`: their path marks record which branches a case
    /// reaches (`coverage.rs`). Only the conformance suite's coverage pass asks for it.
    pub coverage: bool,
}

impl GpuOptions {
    /// Device 0 at its own wave, with `$WAVEFRONT_KERNELS_DIR`'s kernels when that is set.
    pub fn from_env() -> Self {
        GpuOptions {
            kernels: KernelSources::from_env(),
            ..Default::default()
        }
    }
}

/// Captured stream work (see [`GpuBackend::capture`]), destroyed on drop.
pub struct Graph {
    vendor: Arc<dyn Vendor>,
    handle: vendor::GraphHandle,
}

impl Drop for Graph {
    fn drop(&mut self) {
        let _ = self.vendor.graph_destroy(self.handle);
    }
}

/// An allocation on the device, freed on drop (after the stream has finished with it).
pub struct GpuBuffer {
    vendor: Arc<dyn Vendor>,
    ptr: DevicePtr,
    bytes: usize,
}

impl GpuBuffer {
    fn new(vendor: &Arc<dyn Vendor>, bytes: usize) -> Result<Self> {
        Ok(GpuBuffer {
            ptr: vendor.alloc(bytes)?,
            vendor: Arc::clone(vendor),
            bytes,
        })
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from this vendor's alloc and this is its only owner; free waits
        // for the stream first. A failure here has no caller to report to.
        let _ = unsafe { self.vendor.free(self.ptr) };
    }
}

/// The tokens and positions of a pass of one sequence's rows as its decode steps, on the
/// device (`Backend::StepsInput`): `rows` i32 ids (the embedding's), then, 8-byte aligned, one
/// record a row, `(token, pos)` i32s: the first two words of a step block, of which the
/// decode-attention kernels read the position.
pub struct StepsInput {
    buf: GpuBuffer,
    rows: usize,
}

impl StepsInput {
    fn new(vendor: &Arc<dyn Vendor>, rows: usize) -> Result<Self> {
        Ok(StepsInput {
            buf: GpuBuffer::new(vendor, Self::records_at(rows) + 8 * rows.max(1))?,
            rows,
        })
    }

    fn records_at(rows: usize) -> usize {
        (4 * rows).next_multiple_of(8)
    }

    /// The most rows it holds.
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn ids_ptr(&self) -> DevicePtr {
        self.buf.ptr
    }

    /// Row `r`'s record (a step block's token and position words).
    pub(crate) fn record_ptr(&self, r: usize) -> DevicePtr {
        self.buf.ptr + (Self::records_at(self.rows) + 8 * r) as DevicePtr
    }

    /// The bytes that write `tokens` at positions `pos0 ..`.
    fn bytes(&self, tokens: &[u32], pos0: usize) -> Result<Vec<u8>> {
        let mut b = vec![0u8; Self::records_at(self.rows) + 8 * tokens.len()];
        for (i, &t) in tokens.iter().enumerate() {
            let pos = i32::try_from(pos0 + i)
                .map_err(|_| bad("steps_input", format!("position {} past i32", pos0 + i)))?;
            b[4 * i..4 * i + 4].copy_from_slice(&(t as i32).to_le_bytes());
            let r = Self::records_at(self.rows) + 8 * i;
            b[r..r + 4].copy_from_slice(&(t as i32).to_le_bytes());
            b[r + 4..r + 8].copy_from_slice(&pos.to_le_bytes());
        }
        Ok(b)
    }
}

/// A device tensor: `len` elements of `dtype` in one allocation. A GGUF block type is held in
/// the split layout of `kernels/qgemv.hip` ([`quant`]), one segment per run of stacked parts of
/// one type (a mixed stack's runs have their own types; `dtype` is the first part's).
pub struct GpuTensor {
    buf: GpuBuffer,
    dtype: DType,
    len: usize,
    segs: Vec<quant::QuantSeg>,
}

impl GpuTensor {
    /// The device address of element `i` (no bounds check: callers check lengths first; for a
    /// block type, the block holding `i`, so callers pass block starts).
    pub fn ptr_at(&self, i: usize) -> DevicePtr {
        self.buf.ptr + (i / self.dtype.block_elems() * self.dtype.block_bytes()) as u64
    }

    pub fn ptr(&self) -> DevicePtr {
        self.buf.ptr
    }

    pub fn bytes(&self) -> usize {
        self.buf.bytes
    }

    /// The segments of a block-quantized tensor (empty for any other).
    pub fn quant_segs(&self) -> &[quant::QuantSeg] {
        &self.segs
    }
}

impl TensorInfo for GpuTensor {
    fn dtype(&self) -> DType {
        self.dtype
    }

    fn len(&self) -> usize {
        self.len
    }
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuTensor({} × {} at {:#x})",
            self.len, self.dtype, self.buf.ptr
        )
    }
}

/// How the GPU backend holds a model's weights ([`Backend::native_weight_dtypes`] and
/// friends, known without opening a device: `wavefront info`).
pub const WEIGHT_STORAGE: crate::model::WeightStorage = crate::model::WeightStorage {
    dtype: DType::BF16,
    native: &DType::WEIGHT_BLOCKS,
    mixed_stacks: true,
};

/// Grow-only device scratch reused by ops (stream order makes reuse safe).
#[derive(Default)]
struct Scratch {
    /// x converted to bf16 for the GEMM.
    bf16: Option<GpuBuffer>,
    /// Token ids for the embedding.
    tokens: Option<GpuBuffer>,
    /// The argmax result (one i32).
    argmax: Option<GpuBuffer>,
    /// `Backend::sample`'s step block (32 bytes) and history (i32 ids).
    sample_step: Option<GpuBuffer>,
    /// Block-quantized weights dequantized to f16 for the prefill GEMM (`ops::qgemv`).
    dequant: Option<GpuBuffer>,
    /// `sample_step`'s workspace, for the largest vocabulary sampled so far.
    sampler: Option<ops::sampling::SamplerWorkspace>,
}

/// A device pointer to at least `bytes` bytes of `slot`, reallocating when too small.
fn scratch_ptr(
    vendor: &Arc<dyn Vendor>,
    slot: &mut Option<GpuBuffer>,
    bytes: usize,
) -> Result<DevicePtr> {
    if slot.as_ref().is_none_or(|b| b.bytes < bytes) {
        *slot = None; // free the old one (after the stream is done with it) before allocating
        *slot = Some(GpuBuffer::new(vendor, bytes.next_power_of_two().max(256))?);
    }
    Ok(slot.as_ref().map_or(0, |b| b.ptr))
}

/// Every kernel of the ABI; the backend refuses to start unless each resolves.
pub const ABI_KERNELS: [&str; 106] = [
    "embedding_f32",
    "embedding_f16",
    "embedding_bf16",
    "rms_norm",
    "rope_kv_write_f32",
    "rope_kv_write_f16",
    "rope_kv_write_bf16",
    "rope_kv_write_q8_0",
    "attention_f32",
    "attention_f16",
    "attention_bf16",
    "attention_q8_0",
    "attention_decode_f32",
    "attention_decode_f16",
    "attention_decode_bf16",
    "attention_decode_q8_0",
    "decode_attention_f16",
    "decode_attention_bf16",
    "decode_attention_q8_0",
    "decode_attention_rows_f16",
    "decode_attention_rows_bf16",
    "decode_attention_rows_q8_0",
    "decode_attention_mma_64_f16",
    "decode_attention_mma_64_bf16",
    "decode_attention_mma_128_f16",
    "decode_attention_mma_128_bf16",
    "decode_attention_mma_rows_64_f16",
    "decode_attention_mma_rows_64_bf16",
    "decode_attention_mma_rows_128_f16",
    "decode_attention_mma_rows_128_bf16",
    "flash_attention_64_f16",
    "flash_attention_64_bf16",
    "flash_attention_128_f16",
    "flash_attention_128_bf16",
    "flash_attention_64_q8_0",
    "flash_attention_128_q8_0",
    "flash_attention_256_f16",
    "flash_attention_256_bf16",
    "flash_attention_256_q8_0",
    "swiglu",
    "add",
    "bias_add",
    "softcap",
    "convert_f32_to_f16",
    "convert_f32_to_bf16",
    "sync_barrier_probe",
    "sync_chain_probe",
    "gemv_chain_bf16",
    "argmax",
    "gemv_f16",
    "gemv_bf16",
    "gemv_swiglu_f16",
    "gemv_swiglu_bf16",
    "gemv_stage_f16",
    "gemv_stage_bf16",
    "gemv_rows_f16",
    "gemv_rows_bf16",
    "gemv_swiglu_rows_f16",
    "gemv_swiglu_rows_bf16",
    "gemv_mma_f16",
    "gemv_mma_bf16",
    "gemv_swiglu_mma_f16",
    "gemv_swiglu_mma_bf16",
    "qgemv_q8_0",
    "qgemv_q4_0",
    "qgemv_q4_1",
    "qgemv_q5_0",
    "qgemv_q5_1",
    "qgemv_q4_k",
    "qgemv_q5_k",
    "qgemv_q6_k",
    "qgemv_swiglu_q8_0",
    "qgemv_swiglu_q4_0",
    "qgemv_swiglu_q4_1",
    "qgemv_swiglu_q5_0",
    "qgemv_swiglu_q5_1",
    "qgemv_swiglu_q4_k",
    "qgemv_swiglu_q5_k",
    "qgemv_swiglu_q6_k",
    "qgemv_q8a_q8_0",
    "qgemv_q8a_q4_0",
    "qgemv_q8a_q4_1",
    "qgemv_q8a_q5_0",
    "qgemv_q8a_q5_1",
    "qgemv_q8a_q4_k",
    "qgemv_q8a_q5_k",
    "qgemv_q8a_q6_k",
    "qgemv_swiglu_q8a_q8_0",
    "qgemv_swiglu_q8a_q4_0",
    "qgemv_swiglu_q8a_q4_1",
    "qgemv_swiglu_q8a_q5_0",
    "qgemv_swiglu_q8a_q5_1",
    "qgemv_swiglu_q8a_q4_k",
    "qgemv_swiglu_q8a_q5_k",
    "qgemv_swiglu_q8a_q6_k",
    "dequant_q8_0",
    "dequant_q4_0",
    "dequant_q4_1",
    "dequant_q5_0",
    "dequant_q5_1",
    "dequant_q4_k",
    "dequant_q5_k",
    "dequant_q6_k",
    "sample_prep",
    "sample_topk",
    "sample_pick",
];

/// Whether a GEMV over `weight` blocks takes 8-bit activations unless `WAVEFRONT_QGEMV_Q8` says
/// otherwise: every block type but Q8_0, Q4_1 and Q5_0, where the integer dot products beat the
/// f32 form's per-weight conversions (H100, tg32 of the 8B shape with the fused stacks,
/// `bench/results/2026-12-07-qgemv-stacks-h100/`: 8-bit against f32 activations, Q4_0 455.8
/// against 431.4 tok/s, Q5_1 368.6 / 345.7, Q4_K 382.5 / 321.2). Q8_0 keeps f32 activations,
/// faster there (301.7 against 288.8: no nibbles to unpack, so little arithmetic to save) and
/// exact to f32. Q4_1 keeps them too: its 8-bit form is faster on the 8B shape (tg32 424.8 /
/// 393.0; each GEMV 9–19%, `bench/results/2026-12-07-qgemv-threads-h100/`) but not on the file
/// that has it, SmolLM2 (tg128 1,804–1,809 against 1,815–1,822 tok/s, three alternating rounds
/// on one H100; why is not measured: a 135M model's GEMVs are short, K = 576), and it moves
/// SmolLM2's GPU streams (within the divergence rule). Q5_0 (Gemma 3's Q4_K_M file is mostly
/// Q5_0) keeps them until its 8-bit form is measured on that file (383.8 / 331.0 on the 8B
/// shape) and its GPU goldens are reviewed in it.
pub fn q8_activations_by_default(weight: DType) -> bool {
    quant::quant_range(weight).is_some()
        && !matches!(weight, DType::Q8_0 | DType::Q4_1 | DType::Q5_0)
}

pub struct GpuBackend {
    vendor: Arc<dyn Vendor>,
    wave: u32,
    /// The kernels define common.h's `WF_CP_ASYNC` (ops::cp_async_build): the rings of the
    /// matrix-core GEMVs and of the decode attention are in their launches' shared memory.
    cp_async: bool,
    kernels: HashMap<&'static str, FunctionHandle>,
    scratch: Mutex<Scratch>,
    /// How each kernel file's code object was obtained (for `info --devices` and tests).
    origins: Vec<(String, Origin)>,
    /// The sources the kernels were built from, with their hashes (for reports).
    sources: Vec<crate::backend::KernelSource>,
    /// Whether the kernels were built with `-DWF_COVERAGE`.
    coverage: bool,
    /// `(kernel file, its loaded module)`, in build order (for the coverage globals).
    modules: Vec<(String, vendor::ModuleHandle)>,
    /// The fused decode attention's counters and split partials (ops::decode_attention),
    /// allocated once and zeroed: captured steps point into it, so it never moves.
    attn_ws: GpuBuffer,
    /// The several-row GEMVs' staged inputs (ops::gemv::GEMV_STAGE_BYTES), allocated once:
    /// captured batched passes point into it.
    gemv_stage: GpuBuffer,
    /// `WAVEFRONT_NO_GEMV_ROWS=1`: a batched pass's GEMVs as n_in times the one-row grid
    /// instead of the several-row kernels (for A/B measurements).
    gemv_rows: bool,
    /// `WAVEFRONT_NO_FUSED_ATTENTION=1`: decode attention as the separate RoPE and attention
    /// ops (for A/B measurements).
    fuse_attention: bool,
    /// `WAVEFRONT_NO_FLASH_ATTENTION=1`: prefill rows through the simple attention kernel
    /// instead of the flash kernel (for A/B measurements).
    flash_attention: bool,
    /// `WAVEFRONT_NO_ATTENTION_ROWS=1`: a batched pass's or a verification's decode rows as
    /// one fused-attention launch a row instead of the rows kernel (for A/B measurements; the
    /// same bits).
    attention_rows: bool,
    /// `WAVEFRONT_NO_MMA_DECODE=1`: decode attention of the head dims the matrix-instruction
    /// kernel takes (`decode_attention_mma_{HD}_{T}`) on the vector kernel instead (for A/B
    /// measurements).
    mma_decode: bool,
    /// `WAVEFRONT_NO_OVERLAPPED_ATTENTION=1`: the decode attention kernels launched plainly
    /// instead of overlapped (they wait for the kernels ahead either way; for A/B
    /// measurements: overlapped, the GEMV after them starts its weight loads during them).
    overlap_attention: bool,
    /// Inside [`Backend::simple_attention`]: prefill rows through the simple attention kernel,
    /// decode rows through the vector decode kernel (no matrix instructions).
    simple_attention: std::sync::atomic::AtomicBool,
    /// `WAVEFRONT_GEMV_MMA=1`: every GEMV of a shape the matrix-core kernels take
    /// (`gemv_mma_{T}`, ops::gemv::takes_mma_kernels) runs on them, one input row or several.
    gemv_mma: bool,
    /// Inside [`Backend::mma_products`]: as `gemv_mma`, for the work queued there.
    mma_products: std::sync::atomic::AtomicBool,
    /// `WAVEFRONT_GEMV_MMA_NO_LDS=1`: the matrix-core GEMVs' inputs always staged by
    /// `gemv_stage_{T}`, never in the kernel's LDS (for A/B measurements; the same bits).
    gemv_mma_lds: bool,
    /// `WAVEFRONT_QGEMV_Q8=1` / `=0`: the GEMVs over block-quantized weights of every type
    /// take 8-bit activations and integer dot products (`qgemv_q8a_{T}`,
    /// `qgemv_swiglu_q8a_{T}`) / f32 ones; unset (`None`), every type but Q8_0, Q4_1 and Q5_0
    /// takes the 8-bit form, those three the f32 one ([`q8_activations_by_default`]).
    /// [`Backend::matmul_input_dtype`] says which (Q8_0: a block of 32 rounded with one scale).
    qgemv_q8: Option<bool>,
    /// `WAVEFRONT_QGEMV_BLOCKS=N`: the most blocks a quantized GEMV launches (shared by its
    /// input rows), instead of what the device holds at once (for A/B measurements and
    /// conformance; the same bits).
    qgemv_blocks: Option<u32>,
    /// `WAVEFRONT_QGEMV_THREADS=N` (256, 512 or 1024): the threads a block of every quantized
    /// one-row GEMV launch takes (at most its kernel's bound), instead of its kernel's bound
    /// (for A/B measurements and conformance; the same bits).
    qgemv_threads: Option<u32>,
    /// `WAVEFRONT_GEMV_BLOCKS=N`: the most blocks a 16-bit one-row GEMV (`gemv_{T}`,
    /// `gemv_swiglu_{T}`) launches, shared by its input rows, instead of what the device holds
    /// at once (for A/B measurements and conformance; the same bits).
    gemv_blocks: Option<u32>,
    /// `WAVEFRONT_ATTN_BLOCKS=N`: the decode attention's split count aims at N blocks a
    /// multiprocessor at long contexts (ops::decode_attention::max_splits; default
    /// `BLOCKS_PER_MP`), for A/B measurements.
    attn_blocks: Option<u32>,
    /// Blocks a multiprocessor holds at once, by (function, block threads, dynamic shared
    /// bytes), as the runtime's occupancy calculator said (`None`: it could not say).
    resident: Mutex<HashMap<(usize, u32, u32), Option<u32>>>,
    /// Inside [`Backend::invariant_rows`]: products of up to `GEMV_MAX_ROWS` rows take the
    /// GEMVs (each row as alone), not BLAS.
    invariant: std::sync::atomic::AtomicBool,
    /// Page-locked memory the large f32 downloads (a verification's rows of logits) come
    /// through, grown as needed.
    pinned: Mutex<Pinned>,
}

/// Page-locked host memory of `bytes` bytes (none yet while `ptr` is null).
struct Pinned {
    vendor: Arc<dyn Vendor>,
    ptr: *mut u8,
    bytes: usize,
}

// SAFETY: `ptr` is owned page-locked memory used only under the backend's lock (a copy into
// it is waited for before the lock is released) and freed once, on drop.
unsafe impl Send for Pinned {}
unsafe impl Sync for Pinned {}

impl Pinned {
    /// At least `bytes` of it (reallocated, larger, when it holds less).
    fn at_least(&mut self, bytes: usize) -> Result<*mut u8> {
        if self.bytes < bytes {
            self.free();
            let want = bytes.next_power_of_two();
            self.ptr = self.vendor.host_alloc(want)?;
            self.bytes = want;
        }
        Ok(self.ptr)
    }

    fn free(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: from host_alloc; every copy into it was waited for; host_free waits for
            // the stream too.
            let _ = unsafe { self.vendor.host_free(self.ptr) };
            self.ptr = std::ptr::null_mut();
            self.bytes = 0;
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.free();
    }
}

/// f32 downloads of at least this many bytes go through page-locked memory.
const PINNED_MIN_BYTES: usize = 1 << 18;

impl GpuBackend {
    /// Whether a product of `rows` rows of `w_dtype` weights takes the GEMV kernels
    /// ([`ops::gemv::uses_gemv`]; more than one row only inside [`Backend::invariant_rows`]).
    pub(crate) fn uses_gemv(&self, rows: usize, w_dtype: DType) -> bool {
        let invariant = self.invariant.load(std::sync::atomic::Ordering::Relaxed);
        ops::gemv::uses_gemv(rows, w_dtype, invariant)
    }

    /// Builds the backend on an opened vendor: picks the wave, compiles (or loads from the
    /// cache) every kernel file of `opts.kernels`, resolves every ABI kernel.
    pub fn with_vendor(
        vendor: Arc<dyn Vendor>,
        opts: &GpuOptions,
        cache: &ModuleCache,
    ) -> Result<Self> {
        let set = opts.kernels.load()?;
        let refs: Vec<(&str, &str)> = set
            .files
            .iter()
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .collect();
        Self::with_sources(vendor, opts, cache, &refs, &set.common_h)
    }

    /// [`GpuBackend::with_vendor`] over explicit `(file, text)` sources and `common.h`
    /// (`opts.kernels` is not read).
    pub fn with_sources(
        vendor: Arc<dyn Vendor>,
        opts: &GpuOptions,
        cache: &ModuleCache,
        sources: &[(&str, &str)],
        common: &str,
    ) -> Result<Self> {
        let info = vendor.info().clone();
        let wave = choose_wave(&info, opts.wave)?;
        let mut options = CompileRequest::wave_options(wave);
        if opts.coverage {
            options.push("-DWF_COVERAGE".into());
        }
        let provenance = module::SourceSet {
            files: sources
                .iter()
                .map(|(f, t)| (f.to_string(), t.to_string()))
                .collect(),
            common_h: common.to_string(),
        }
        .provenance();
        let compile = |r: &CompileRequest| {
            let headers = [("common.h", r.common_h.as_str())];
            vendor.compile(&vendor::CompileInput {
                name: &r.file,
                source: &r.source,
                headers: &headers,
                options: &r.options,
            })
        };
        let mut modules = Vec::new();
        let mut origins = Vec::new();
        for (file, source) in sources {
            let req = CompileRequest {
                file: file.to_string(),
                source: source.to_string(),
                common_h: common.to_string(),
                options: options.clone(),
                arch: info.arch.clone(),
                runtime_version: info.runtime_version.clone(),
                wave,
            };
            let (code, origin) = cache.load_or_compile(&req, &compile)?;
            let m = match vendor.load_module(&code) {
                Ok(m) => m,
                // A cached object the runtime rejects is rebuilt once, never trusted again.
                Err(_) if origin == Origin::Cache => {
                    let code = cache.recompile(&req, &compile)?;
                    origins.push((file.to_string(), Origin::Recompiled));
                    modules.push((file.to_string(), vendor.load_module(&code)?));
                    continue;
                }
                Err(e) => return Err(e),
            };
            origins.push((file.to_string(), origin));
            modules.push((file.to_string(), m));
        }
        let mut kernels = HashMap::new();
        let mut missing = Vec::new();
        for name in ABI_KERNELS {
            let mut found = None;
            for (_, m) in &modules {
                if let Some(f) = vendor.get_function(*m, name)? {
                    found = Some(f);
                    break;
                }
            }
            match found {
                Some(f) => {
                    kernels.insert(name, f);
                }
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            return Err(Error::Backend {
                backend: "gpu",
                op: "kernel lookup".into(),
                detail: format!("kernels/ lacks the ABI kernels {}", missing.join(", ")),
            });
        }
        // The matrix-core GEMVs' launches past the runtime's default dynamic shared memory.
        let cp_async = ops::cp_async_build(vendor.info(), wave);
        let mma_shared = ops::gemv::mma_max_shared_bytes(wave, cp_async);
        if mma_shared > 48 * 1024 {
            for name in ops::gemv::MMA_KERNELS {
                vendor.allow_dynamic_shared(kernels[name], mma_shared)?;
            }
        }
        // The decode attention's ring (past the default with its static shared memory), and
        // the matrix-instruction decode kernels' tiles.
        let attn_ring = ops::decode_attention::ring_bytes(cp_async, DType::BF16);
        if attn_ring > 0 {
            for name in ops::decode_attention::RING_KERNELS {
                vendor.allow_dynamic_shared(kernels[name], attn_ring)?;
            }
        }
        for (name, bytes) in ops::decode_attention::mma_kernels_shared(cp_async) {
            if bytes > 48 * 1024 {
                vendor.allow_dynamic_shared(kernels[name.as_str()], bytes)?;
            }
        }
        let attn_ws = GpuBuffer::new(&vendor, ops::decode_attention::WS_BYTES)?;
        vendor.memset(attn_ws.ptr, 0, attn_ws.bytes)?;
        let gemv_stage = GpuBuffer::new(&vendor, ops::gemv::GEMV_STAGE_BYTES)?;
        // A switch is on when its variable is "1".
        let switch = |name: &str| std::env::var(name).is_ok_and(|v| v.trim() == "1");
        let gemv_rows = !switch("WAVEFRONT_NO_GEMV_ROWS");
        let gemv_mma = switch("WAVEFRONT_GEMV_MMA");
        let gemv_mma_lds = !switch("WAVEFRONT_GEMV_MMA_NO_LDS");
        let qgemv_q8 = match std::env::var("WAVEFRONT_QGEMV_Q8")
            .as_deref()
            .map(str::trim)
        {
            Ok("1") => Some(true),
            Ok("0") => Some(false),
            _ => None,
        };
        let qgemv_blocks = blocks_env("WAVEFRONT_QGEMV_BLOCKS")?;
        let qgemv_threads = threads_env("WAVEFRONT_QGEMV_THREADS")?;
        let gemv_blocks = blocks_env("WAVEFRONT_GEMV_BLOCKS")?;
        let attn_blocks = blocks_env("WAVEFRONT_ATTN_BLOCKS")?;
        let fuse_attention = !switch("WAVEFRONT_NO_FUSED_ATTENTION");
        let flash_attention = !switch("WAVEFRONT_NO_FLASH_ATTENTION");
        let attention_rows = !switch("WAVEFRONT_NO_ATTENTION_ROWS");
        let mma_decode = !switch("WAVEFRONT_NO_MMA_DECODE");
        let overlap_attention = !switch("WAVEFRONT_NO_OVERLAPPED_ATTENTION");
        let pinned = Mutex::new(Pinned {
            vendor: Arc::clone(&vendor),
            ptr: std::ptr::null_mut(),
            bytes: 0,
        });
        Ok(GpuBackend {
            vendor,
            wave,
            cp_async,
            kernels,
            scratch: Mutex::new(Scratch::default()),
            origins,
            sources: provenance,
            coverage: opts.coverage,
            modules,
            attn_ws,
            gemv_stage,
            gemv_rows,
            fuse_attention,
            flash_attention,
            attention_rows,
            mma_decode,
            overlap_attention,
            simple_attention: std::sync::atomic::AtomicBool::new(false),
            gemv_mma,
            gemv_mma_lds,
            qgemv_q8,
            qgemv_blocks,
            qgemv_threads,
            gemv_blocks,
            attn_blocks,
            resident: Mutex::new(HashMap::new()),
            mma_products: std::sync::atomic::AtomicBool::new(false),
            invariant: std::sync::atomic::AtomicBool::new(false),
            pinned,
        })
    }

    /// Opens device `opts.device` of `runtime`: `Unavailable` when the runtime or a device is
    /// missing, `Failed` when one is there but opening it (or building its kernels) failed.
    pub fn open(runtime: Runtime, opts: &GpuOptions) -> std::result::Result<Self, OpenError> {
        let vendor: Arc<dyn Vendor> = match runtime {
            Runtime::Cuda => Arc::new(vendor::cuda::CudaVendor::open(opts.device)?),
            Runtime::Hip => Arc::new(vendor::hip::HipVendor::open(opts.device)?),
        };
        Ok(Self::with_vendor(
            vendor,
            opts,
            &ModuleCache::default_location(),
        )?)
    }

    pub fn info(&self) -> &DeviceInfo {
        self.vendor.info()
    }

    /// `(partials, counters)` of the fused decode attention's workspace.
    fn attention_workspace(&self) -> (DevicePtr, DevicePtr) {
        let counters = self.attn_ws.ptr;
        (
            counters + (ops::decode_attention::WS_COUNTERS * 4) as DevicePtr,
            counters,
        )
    }

    /// The several-row GEMVs' staging buffer (ops::gemv::GEMV_STAGE_BYTES).
    fn gemv_stage_buffer(&self) -> DevicePtr {
        self.gemv_stage.ptr
    }

    /// Whether a batched pass's GEMVs may take the several-row kernels
    /// (`WAVEFRONT_NO_GEMV_ROWS`).
    fn gemv_rows(&self) -> bool {
        self.gemv_rows
    }

    /// Lets a batched pass's GEMVs take the several-row kernels, or not (n_in times the one-row
    /// grid), whatever `WAVEFRONT_NO_GEMV_ROWS` said: for A/B measurements and tests.
    pub fn set_gemv_rows(&mut self, on: bool) {
        self.gemv_rows = on;
    }

    /// Lets a batched pass's or a verification's decode rows take the rows attention kernel,
    /// or not (a launch a row), whatever `WAVEFRONT_NO_ATTENTION_ROWS` said: for A/B
    /// measurements and tests.
    pub fn set_attention_rows(&mut self, on: bool) {
        self.attention_rows = on;
    }

    /// Whether the 16-bit GEMVs take the matrix-core kernels where the shape allows
    /// (`WAVEFRONT_GEMV_MMA`, [`Backend::mma_products`]).
    fn gemv_mma(&self) -> bool {
        self.gemv_mma || self.mma_products.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the matrix-core GEMVs may stage their inputs in LDS (`WAVEFRONT_GEMV_MMA_NO_LDS`).
    fn gemv_mma_lds(&self) -> bool {
        self.gemv_mma_lds
    }

    /// Every GEMV of a shape the matrix-core kernels take runs on them, or none, whatever
    /// `WAVEFRONT_GEMV_MMA` said: for A/B measurements and tests.
    pub fn set_gemv_mma(&mut self, on: bool) {
        self.gemv_mma = on;
    }

    /// Whether the quantized GEMVs over `weight` blocks take 8-bit activations
    /// (`WAVEFRONT_QGEMV_Q8`, else [`q8_activations_by_default`]).
    pub(in crate::backend::gpu) fn qgemv_q8(&self, weight: DType) -> bool {
        self.qgemv_q8
            .unwrap_or_else(|| q8_activations_by_default(weight))
    }

    /// The quantized GEMVs of every type take 8-bit activations and integer dot products
    /// (`Some(true)`), or f32 ones (`Some(false)`), or each type its default (`None`), whatever
    /// `WAVEFRONT_QGEMV_Q8` said: for A/B measurements and tests.
    pub fn set_qgemv_q8(&mut self, on: Option<bool>) {
        self.qgemv_q8 = on;
    }

    /// The most blocks a quantized GEMV launches, if set (`WAVEFRONT_QGEMV_BLOCKS`,
    /// [`GpuBackend::set_qgemv_blocks`]); else what the device holds at once.
    pub(in crate::backend::gpu) fn qgemv_blocks(&self) -> Option<u32> {
        self.qgemv_blocks
    }

    /// Caps the blocks of a quantized GEMV launch (`None`: the default), whatever
    /// `WAVEFRONT_QGEMV_BLOCKS` said: for A/B measurements and tests. Rows' sums do not depend
    /// on it.
    pub fn set_qgemv_blocks(&mut self, blocks: Option<u32>) {
        self.qgemv_blocks = blocks.map(|n| n.max(1));
    }

    /// The threads a block of a quantized one-row GEMV takes, if set (`WAVEFRONT_QGEMV_THREADS`,
    /// [`GpuBackend::set_qgemv_threads`]; at most the kernel's bound); else the kernel's bound.
    pub(in crate::backend::gpu) fn qgemv_threads(&self) -> Option<u32> {
        self.qgemv_threads
    }

    /// Sets the threads a block of a quantized one-row GEMV takes (`None`: the default; else
    /// 256, 512 or 1024, each launch at most its kernel's bound), whatever
    /// `WAVEFRONT_QGEMV_THREADS` said: for A/B measurements and tests. Rows' sums do not depend
    /// on it.
    pub fn set_qgemv_threads(&mut self, threads: Option<u32>) -> Result<()> {
        if let Some(n) = threads {
            check_qgemv_threads("set_qgemv_threads", n)?;
        }
        self.qgemv_threads = threads;
        Ok(())
    }

    /// The most blocks a 16-bit one-row GEMV launches, if set (`WAVEFRONT_GEMV_BLOCKS`,
    /// [`GpuBackend::set_gemv_blocks`]); else what the device holds at once.
    pub(in crate::backend::gpu) fn gemv_blocks(&self) -> Option<u32> {
        self.gemv_blocks
    }

    /// Caps the blocks of a 16-bit one-row GEMV launch (`None`: the default), whatever
    /// `WAVEFRONT_GEMV_BLOCKS` said: for A/B measurements and tests. Rows' sums do not depend
    /// on it.
    pub fn set_gemv_blocks(&mut self, blocks: Option<u32>) {
        self.gemv_blocks = blocks.map(|n| n.max(1));
    }

    /// Whether prefill attention may take the flash kernel (`WAVEFRONT_NO_FLASH_ATTENTION`,
    /// [`Backend::simple_attention`]).
    fn flash_attention(&self) -> bool {
        self.flash_attention
            && !self
                .simple_attention
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Lets prefill attention take the flash kernel, or not (the simple kernel), whatever
    /// `WAVEFRONT_NO_FLASH_ATTENTION` said: for A/B measurements and tests.
    pub fn set_flash_attention(&mut self, on: bool) {
        self.flash_attention = on;
    }

    /// The blocks a multiprocessor the decode attention's split count aims at, if set
    /// (`WAVEFRONT_ATTN_BLOCKS`); else the kernel's default.
    pub(in crate::backend::gpu) fn attn_blocks(&self) -> Option<u32> {
        self.attn_blocks
    }

    /// Whether decode attention may take the matrix-instruction kernel
    /// (`WAVEFRONT_NO_MMA_DECODE`, [`Backend::simple_attention`]).
    pub(in crate::backend::gpu) fn mma_decode(&self) -> bool {
        self.mma_decode
            && !self
                .simple_attention
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Lets decode attention take the matrix-instruction kernel where the shape allows, or not
    /// (the vector kernel), whatever `WAVEFRONT_NO_MMA_DECODE` said: for A/B measurements and
    /// tests.
    pub fn set_mma_decode(&mut self, on: bool) {
        self.mma_decode = on;
    }

    /// Whether the kernels have their cp.async rings (ops::cp_async_build, decided once).
    pub(in crate::backend::gpu) fn cp_async(&self) -> bool {
        self.cp_async
    }

    /// The WAVE the kernels were built with.
    pub fn wave(&self) -> u32 {
        self.wave
    }

    /// `(kernel file, where its code object came from)`, in build order.
    pub fn module_origins(&self) -> &[(String, Origin)] {
        &self.origins
    }

    /// How many blocks of `name` (`block` threads, `shared_bytes` of dynamic shared memory) a
    /// multiprocessor holds at once, asked of the runtime once per configuration; `None` where
    /// it cannot say.
    fn resident_blocks(&self, name: &str, block: u32, shared_bytes: u32) -> Result<Option<u32>> {
        let f = self.kernel(name)?;
        let key = (f.0, block, shared_bytes);
        let mut cache = self.resident.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&n) = cache.get(&key) {
            return Ok(n);
        }
        let n = self
            .vendor
            .resident_blocks(f, block, shared_bytes)?
            .filter(|&n| n >= 1);
        cache.insert(key, n);
        Ok(n)
    }

    fn kernel(&self, name: &str) -> Result<FunctionHandle> {
        self.kernels
            .get(name)
            .copied()
            .ok_or_else(|| Error::Backend {
                backend: "gpu",
                op: name.to_string(),
                detail: "kernel not loaded".into(),
            })
    }

    /// Queues `name` with `cfg` and `args`.
    ///
    /// # Safety
    /// `args` follow the ABI table's parameter list for `name`, and every pointer covers what
    /// the kernel touches under `cfg` (the ops check lengths before calling this).
    unsafe fn launch(&self, name: &str, cfg: LaunchConfig, args: &[KernelArg]) -> Result<()> {
        let f = self.kernel(name)?;
        self.vendor.launch(f, cfg, args)
    }

    /// [`GpuBackend::launch`] through [`Vendor::launch_overlapped`]: for kernels that wait
    /// (`wf_dependency_wait`) before touching what earlier kernels write.
    unsafe fn launch_overlapped(
        &self,
        name: &str,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<()> {
        let f = self.kernel(name)?;
        self.vendor.launch_overlapped(f, cfg, args)
    }

    fn new_tensor(&self, dtype: DType, len: usize) -> Result<GpuTensor> {
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16 | DType::Q8_0Kv) {
            return Err(Error::Backend {
                backend: "gpu",
                op: "alloc".into(),
                detail: format!("no GPU tensors of dtype {dtype}"),
            });
        }
        let bytes = len
            .div_ceil(dtype.block_elems())
            .checked_mul(dtype.block_bytes())
            .ok_or_else(|| Error::Backend {
                backend: "gpu",
                op: "alloc".into(),
                detail: format!("{len} elements of {dtype} overflow"),
            })?;
        Ok(GpuTensor {
            buf: GpuBuffer::new(&self.vendor, bytes)?,
            dtype,
            len,
            segs: Vec::new(),
        })
    }

    /// A block-quantized tensor from split-layout bytes and their segments.
    fn quant_tensor(&self, bytes: &[u8], segs: Vec<quant::QuantSeg>) -> Result<GpuTensor> {
        let t = GpuTensor {
            buf: GpuBuffer::new(&self.vendor, bytes.len().max(1))?,
            dtype: segs.first().map_or(DType::Q8_0, |s| s.dtype),
            len: segs.iter().map(|s| s.elems).sum(),
            segs,
        };
        if !bytes.is_empty() {
            self.vendor.htod(t.ptr(), bytes)?;
        }
        Ok(t)
    }

    /// Records the work `f` queues into a graph instead of running it (`f` must not wait for
    /// the device: no downloads, no sampling). The capture is always ended, also when `f` fails.
    pub fn capture(&self, f: impl FnOnce(&Self) -> Result<()>) -> Result<Graph> {
        self.vendor.begin_capture()?;
        let queued = f(self);
        let ended = self.vendor.end_capture();
        queued?;
        Ok(Graph {
            vendor: Arc::clone(&self.vendor),
            handle: ended?,
        })
    }

    /// Queues a captured graph: the same kernels with the same arguments, in one launch.
    pub fn replay(&self, g: &Graph) -> Result<()> {
        self.vendor.graph_launch(g.handle)
    }

    /// Device time of the work `f` queues, in milliseconds (events around it).
    pub fn time_ms(&self, f: impl FnOnce(&Self) -> Result<()>) -> Result<f32> {
        let (a, b) = (self.vendor.event_create()?, self.vendor.event_create()?);
        let r = (|| {
            self.vendor.event_record(a)?;
            f(self)?;
            self.vendor.event_record(b)?;
            self.vendor.event_elapsed_ms(a, b)
        })();
        let _ = self.vendor.event_destroy(a);
        let _ = self.vendor.event_destroy(b);
        r
    }
}

/// The BLAS side of the GEMV microbenchmark (`bench --gemv`): the stacked projections through
/// convert + GEMM at every row count, rows = 1 included (what the engine ran before the GEMV
/// kernels). Same contract as the `Backend` methods.
impl GpuBackend {
    #[allow(clippy::too_many_arguments)]
    pub fn linear_stacked_blas(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        outs: &mut [&mut GpuTensor],
        parts: &[usize],
        rows: usize,
        in_features: usize,
    ) -> Result<()> {
        let route = ops::linear::Route::Blas;
        ops::linear::linear_stacked(self, route, x, w, bias, outs, parts, rows, in_features)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn gate_up_swiglu_blas(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        tmp: &mut GpuTensor,
        out: &mut GpuTensor,
        rows: usize,
        in_features: usize,
        inter: usize,
        act: Activation,
    ) -> Result<()> {
        let route = ops::linear::Route::Blas;
        ops::linear::gate_up_swiglu(self, route, x, w, tmp, out, rows, in_features, inter, act)
    }
}

/// The wave sizes conformance checks on a device whose own wave is `native`: that one, and on
/// a wave32 device also the emulated 64 (DESIGN.md "Wave64 without AMD hardware").
pub fn wave_variants(native: u32) -> Vec<u32> {
    if native == 32 {
        vec![32, 64]
    } else {
        vec![native]
    }
}

/// The wave the kernels are built for: the device's, or 64 emulated on a wave32 NVIDIA device.
pub fn choose_wave(info: &DeviceInfo, requested: Option<u32>) -> Result<u32> {
    let native = info.wave;
    match requested {
        None => Ok(native),
        Some(w) if w == native => Ok(w),
        Some(64) if info.runtime == Runtime::Cuda && native == 32 => Ok(64),
        Some(w) => Err(Error::Backend {
            backend: "gpu",
            op: "wave".into(),
            detail: format!(
                "WAVE={w} is not available on {} (native wave {native}; only NVIDIA also runs \
                 WAVE=64, emulated)",
                info.arch
            ),
        }),
    }
}

/// A whole number from the environment variable `name`: unset or empty, `None`; else the
/// number if `valid` accepts it, or an error naming the variable and `expected`.
fn u32_env(name: &str, expected: &str, valid: impl Fn(u32) -> bool) -> Result<Option<u32>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&n| valid(n))
            .map(Some)
            .ok_or_else(|| Error::InvalidRequest(format!("{name}={v}: {expected}"))),
        _ => Ok(None),
    }
}

/// A block cap from the environment (`WAVEFRONT_QGEMV_BLOCKS`, `WAVEFRONT_GEMV_BLOCKS`,
/// `WAVEFRONT_ATTN_BLOCKS`): a whole number of blocks, at least 1.
fn blocks_env(name: &str) -> Result<Option<u32>> {
    u32_env(name, "a whole number of blocks, at least 1", |n| n >= 1)
}

/// A quantized GEMV's block from the environment (`WAVEFRONT_QGEMV_THREADS`): 256, 512 or
/// 1024 threads ([`check_qgemv_threads`]'s rule).
fn threads_env(name: &str) -> Result<Option<u32>> {
    u32_env(name, "256, 512 or 1024 threads", |n| {
        check_qgemv_threads(name, n).is_ok()
    })
}

/// The blocks a quantized GEMV may take: whole multiples of the norm prologue's 256 threads
/// (`QGEMV_NORM_BLOCK`), at most 1024.
fn check_qgemv_threads(what: &str, n: u32) -> Result<()> {
    if matches!(n, 256 | 512 | 1024) {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "{what}: {n} threads; a quantized GEMV's block is 256, 512 or 1024"
        )))
    }
}

fn bad(op: &str, detail: String) -> Error {
    Error::Backend {
        backend: "gpu",
        op: op.into(),
        detail,
    }
}

/// `v` as a kernel `int`, or an error naming the op and the quantity.
fn int(op: &str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| bad(op, format!("{what} = {v} does not fit a kernel int")))
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;
    type Step = step::GpuStep;
    type Graph = Graph;
    type StepsInput = StepsInput;

    fn name(&self) -> &'static str {
        "gpu"
    }

    fn device(&self) -> String {
        let i = self.info();
        let emulated = if self.wave != i.wave { " emulated" } else { "" };
        format!(
            "{} ({}, WAVE={}{emulated}, {})",
            i.name, i.arch, self.wave, i.runtime_version
        )
    }

    fn weight_dtype(&self) -> DType {
        WEIGHT_STORAGE.dtype
    }

    /// Every GGUF weight block type, in the split layout of `kernels/qgemv.hip`.
    fn native_weight_dtypes(&self) -> &'static [DType] {
        WEIGHT_STORAGE.native
    }

    fn mixed_stacks(&self) -> bool {
        WEIGHT_STORAGE.mixed_stacks
    }

    fn upload_stack(&self, parts: &[&crate::tensor::HostTensor]) -> Result<GpuTensor> {
        let views: Vec<(DType, &[u8])> = parts.iter().map(|t| (t.dtype, t.bytes())).collect();
        let (bytes, segs) = quant::stack(&views).ok_or_else(|| {
            let names: Vec<String> = parts
                .iter()
                .map(|t| format!("{} ({}, {} bytes)", t.name, t.dtype, t.bytes().len()))
                .collect();
            bad(
                "upload_stack",
                format!(
                    "{} are not whole blocks of GGUF block types",
                    names.join(", ")
                ),
            )
        })?;
        self.quant_tensor(&bytes, segs)
    }

    fn kernel_sources(&self) -> Vec<crate::backend::KernelSource> {
        self.sources.clone()
    }

    /// Activations are converted to the weights' type for the BLAS GEMM (e.g. bf16 × bf16 → f32).
    /// Over block-quantized weights the GEMV keeps them f32, and the GEMM (rows > 1) takes x
    /// and the dequantized weights both rounded to f16: each product then carries at most two
    /// f16 roundings, relative 2u_f16, the bound `Matmul { input: F16 }` states. With the
    /// 8-bit form (every type but Q8_0, Q4_1 and Q5_0 by default, every type with
    /// `WAVEFRONT_QGEMV_Q8=1`) the GEMV rounds x to 8 bits a block of 32 (`Q8_0Kv`'s bound,
    /// about 500 times the f16 one, so the GEMM's rows stay within it too).
    fn matmul_input_dtype(&self, weight: DType) -> DType {
        match quant::quant_range(weight) {
            Some(_) if self.qgemv_q8(weight) => DType::Q8_0Kv,
            Some(_) => DType::F16,
            None => weight,
        }
    }

    fn alloc(&self, dtype: DType, n: usize) -> Result<GpuTensor> {
        let t = self.new_tensor(dtype, n)?;
        self.vendor.memset(t.ptr(), 0, t.bytes())?;
        Ok(t)
    }

    fn upload(&self, dtype: DType, bytes: &[u8]) -> Result<GpuTensor> {
        if quant::quant_range(dtype).is_some() {
            let (split, seg) = quant::split(dtype, bytes, 0).ok_or_else(|| {
                bad(
                    "upload",
                    format!(
                        "{} bytes is not a whole number of {dtype} blocks",
                        bytes.len()
                    ),
                )
            })?;
            return self.quant_tensor(&split, vec![seg]);
        }
        let size = dtype.block_bytes();
        if (dtype.is_quantized() && dtype != DType::Q8_0Kv) || !bytes.len().is_multiple_of(size) {
            return Err(bad(
                "upload",
                format!(
                    "{} bytes is not a whole number of {dtype} elements",
                    bytes.len()
                ),
            ));
        }
        let t = self.new_tensor(dtype, bytes.len() / size * dtype.block_elems())?;
        self.vendor.htod(t.ptr(), bytes)?;
        Ok(t)
    }

    fn download_f32(&self, t: &GpuTensor) -> Result<Vec<f32>> {
        self.download_range_f32(t, 0, t.len)
    }

    fn download_range_f32(&self, t: &GpuTensor, start: usize, n: usize) -> Result<Vec<f32>> {
        if start.checked_add(n).is_none_or(|end| end > t.len) {
            return Err(bad(
                "download",
                format!("elements {start}..+{n} of a tensor of {}", t.len),
            ));
        }
        if !t.segs.is_empty() {
            // Every segment back in the file's layout, decoded (tests and reports only).
            let mut all = vec![0u8; t.buf.bytes];
            self.vendor.dtoh(&mut all, t.ptr())?;
            let mut out = Vec::with_capacity(t.len);
            for seg in &t.segs {
                let nbytes = seg.dtype.bytes_for(seg.elems);
                let at = seg.qa as usize;
                let file = quant::join(seg.dtype, &all[at..at + nbytes])
                    .ok_or_else(|| bad("download", format!("a {} segment", seg.dtype)))?;
                let v = crate::formats::quants::dequantize(seg.dtype, &file, seg.elems)
                    .map_err(|e| bad("download", e))?;
                out.extend_from_slice(&v);
            }
            return Ok(out[start..start + n].to_vec());
        }
        if t.dtype == DType::Q8_0Kv {
            // Whole superblocks around the range, decoded.
            let (first, last) = (
                start / kv_quant::SUPER,
                (start + n).div_ceil(kv_quant::SUPER),
            );
            let mut bytes = vec![0u8; (last - first) * kv_quant::SUPER_BYTES];
            if !bytes.is_empty() {
                let at = t.buf.ptr + (first * kv_quant::SUPER_BYTES) as u64;
                self.vendor.dtoh(&mut bytes, at)?;
            }
            let mut out = vec![0.0; n];
            kv_quant::read(&bytes, start - first * kv_quant::SUPER, &mut out);
            return Ok(out);
        }
        if t.dtype == DType::F32 && 4 * n >= PINNED_MIN_BYTES {
            let mut pinned = self
                .pinned
                .lock()
                .map_err(|_| bad("download", "pinned memory lock poisoned".into()))?;
            let host = pinned.at_least(4 * n)?;
            // SAFETY: `host` holds ≥ 4n bytes, read only after the stream is synchronized
            // below, under the lock; the range was checked against the tensor.
            unsafe { self.vendor.dtoh_async(host, t.ptr_at(start), 4 * n)? };
            self.vendor.synchronize()?;
            // SAFETY: the copy above is complete and wrote these 4n bytes.
            let bytes = unsafe { std::slice::from_raw_parts(host, 4 * n) };
            return Ok(bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect());
        }
        let mut bytes = vec![0u8; n * t.dtype.block_bytes()];
        self.vendor.dtoh(&mut bytes, t.ptr_at(start))?;
        Ok(match t.dtype {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => return Err(bad("download_f32", format!("no GPU tensors of {other}"))),
        })
    }

    fn synchronize(&self) -> Result<()> {
        self.vendor.synchronize()
    }

    /// The device's free memory (cuMemGetInfo / hipMemGetInfo).
    fn free_memory(&self) -> Result<Option<usize>> {
        Ok(Some(self.vendor.memory_info()?.0))
    }

    fn copy_into(&self, src: &GpuTensor, dst: &mut GpuTensor, offset: usize) -> Result<()> {
        // In whole blocks for a block type (a tensor's last block is whole in memory).
        let be = src.dtype().block_elems();
        let fits = offset.is_multiple_of(be)
            && offset
                .checked_add(src.len())
                .is_some_and(|end| end.div_ceil(be) <= dst.len().div_ceil(be));
        if src.dtype() != dst.dtype() || !fits || !src.segs.is_empty() || !dst.segs.is_empty() {
            return Err(bad(
                "copy",
                format!(
                    "{} {} elements into {} {} at {offset}",
                    src.len(),
                    src.dtype(),
                    dst.len(),
                    dst.dtype()
                ),
            ));
        }
        // (a partial last block of a block type copies its padding too: dst has room for it,
        // its own blocks being whole)
        let bytes = src.dtype().bytes_for(src.len());
        self.vendor.dtod(dst.ptr_at(offset), src.ptr(), bytes)
    }

    fn copy_range(
        &self,
        src: &GpuTensor,
        src_offset: usize,
        dst: &mut GpuTensor,
        dst_offset: usize,
        n: usize,
    ) -> Result<()> {
        crate::backend::check_copy_range("gpu", src, src_offset, dst, dst_offset, n)?;
        if n == 0 {
            return Ok(());
        }
        let bytes = src.dtype().bytes_for(n);
        self.vendor
            .dtod(dst.ptr_at(dst_offset), src.ptr_at(src_offset), bytes)
    }

    /// [`ops::gemv::GEMV_MAX_ROWS`]: products of more rows take BLAS's GEMM, whose reduction
    /// order depends on the number of rows.
    fn batch_invariant_rows(&self) -> usize {
        ops::gemv::GEMV_MAX_ROWS
    }

    /// Products of 2 to `GEMV_MAX_ROWS` rows take the GEMVs inside `f` (outside, BLAS: a
    /// prompt chunk of a few rows is faster on the matrix cores than one GEMV per row).
    fn invariant_rows(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let was = self.invariant.swap(true, Relaxed);
        let r = f();
        self.invariant.store(was, Relaxed);
        r
    }

    fn simple_attention(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let was = self.simple_attention.swap(true, Relaxed);
        let r = f();
        self.simple_attention.store(was, Relaxed);
        r
    }

    fn mma_products(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let was = self.mma_products.swap(true, Relaxed);
        let r = f();
        self.mma_products.store(was, Relaxed);
        r
    }

    /// Device events around the queued work.
    fn time_ms(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        GpuBackend::time_ms(self, |_| f()).map(f64::from)
    }

    fn embedding(
        &self,
        table: &GpuTensor,
        tokens: &[u32],
        out: &mut GpuTensor,
        p: EmbeddingParams,
    ) -> Result<()> {
        ops::embedding::embedding(self, table, tokens, out, p)
    }

    fn rms_norm(
        &self,
        x: &mut GpuTensor,
        residual: Option<&GpuTensor>,
        w: &GpuTensor,
        out: &mut GpuTensor,
        p: RmsNormParams,
    ) -> Result<()> {
        ops::rms_norm::rms_norm(self, x, residual, w, out, p)
    }

    fn rms_norm_add(
        &self,
        y: &mut GpuTensor,
        w: &GpuTensor,
        x: &mut GpuTensor,
        _tmp: &mut GpuTensor,
        p: RmsNormParams,
    ) -> Result<()> {
        ops::rms_norm::rms_norm_add(self, y, w, x, p)
    }

    fn rms_norm_in_place(&self, x: &mut GpuTensor, w: &GpuTensor, p: RmsNormParams) -> Result<()> {
        ops::rms_norm::rms_norm_in_place(self, x, w, p)
    }

    fn linear(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        out: &mut GpuTensor,
        p: LinearParams,
    ) -> Result<()> {
        ops::linear::linear(self, x, w, bias, out, p)
    }

    fn rope_kv_write(
        &self,
        q: &mut GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        inv_freq: &GpuTensor,
        cache: &mut KvCache<Self::Tensor>,
        p: RopeKvParams,
        step: Option<&step::GpuStep>,
    ) -> Result<()> {
        let step = step.map(step::GpuStep::block_ptr);
        ops::rope::rope_kv_write(self, q, k, v, inv_freq, cache, p, step)
    }

    fn attention(
        &self,
        q: &GpuTensor,
        cache: &KvCache<Self::Tensor>,
        out: &mut GpuTensor,
        p: AttentionParams,
        step: Option<&step::GpuStep>,
    ) -> Result<()> {
        let step = step.map(step::GpuStep::block_ptr);
        ops::attention::attention(self, q, cache, out, p, step)
    }

    fn rope_attention(
        &self,
        q: &mut GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        inv_freq: &GpuTensor,
        cache: &mut KvCache<Self::Tensor>,
        out: &mut GpuTensor,
        p: AttentionParams,
        step: Option<&step::GpuStep>,
    ) -> Result<()> {
        if !self.fuse_attention || !ops::decode_attention::fusable(&p, cache.layout().dtype) {
            return crate::backend::unfused::rope_attention(
                self, q, k, v, inv_freq, cache, out, p, step,
            );
        }
        let step = step.map(step::GpuStep::block_ptr);
        ops::decode_attention::rope_attention(self, q, k, v, inv_freq, cache, out, p, step)
    }

    /// The fused decode kernel on the row where it is (no copies); shapes it does not take go
    /// through the sequence's one-row tensors.
    fn rope_attention_row(
        &self,
        row: usize,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        out: &mut GpuTensor,
        one: crate::backend::RowScratch<'_, GpuTensor>,
        inv_freq: &GpuTensor,
        cache: &mut KvCache<Self::Tensor>,
        p: AttentionParams,
        step: Option<&step::GpuStep>,
    ) -> Result<()> {
        if !self.fuse_attention || !ops::decode_attention::fusable(&p, cache.layout().dtype) {
            return crate::backend::unfused::rope_attention_row(
                self, row, q, k, v, out, one, inv_freq, cache, p, step,
            );
        }
        let step = step.map(step::GpuStep::block_ptr);
        ops::decode_attention::rope_attention_row(self, row, q, k, v, inv_freq, cache, out, p, step)
    }

    fn rope_attention_batch(
        &self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        out: &mut GpuTensor,
        rows: &mut [crate::backend::BatchRow<'_, Self>],
    ) -> Result<()> {
        if !self.fuse_attention
            || !self.attention_rows
            || !ops::decode_attention::batch_fusable(rows)
        {
            return crate::backend::row_by_row::batch(self, q, k, v, out, rows);
        }
        ops::decode_attention::rope_attention_batch(self, q, k, v, out, rows)
    }

    fn rope_attention_steps(
        &self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        out: &mut GpuTensor,
        one: crate::backend::RowScratch<'_, GpuTensor>,
        inv_freq: &GpuTensor,
        cache: &mut KvCache<Self::Tensor>,
        p: AttentionParams,
    ) -> Result<()> {
        let row = AttentionParams { rows: 1, ..p };
        let fused = ops::decode_attention::fusable(&row, cache.layout().dtype);
        if !self.fuse_attention || !self.attention_rows || !fused || p.rows < 2 {
            return crate::backend::row_by_row::steps(self, q, k, v, out, one, inv_freq, cache, p);
        }
        ops::decode_attention::rope_attention_steps(self, q, k, v, out, inv_freq, cache, p, None)
    }

    fn steps_input(&self, rows: usize) -> Result<Option<StepsInput>> {
        if rows == 0 {
            return Err(bad("steps_input", "a steps input of 0 rows".into()));
        }
        StepsInput::new(&self.vendor, rows).map(Some)
    }

    fn set_steps_input(
        &self,
        input: &StepsInput,
        tokens: &[u32],
        pos0: usize,
        vocab: usize,
    ) -> Result<()> {
        const OP: &str = "steps_input";
        if tokens.is_empty() || tokens.len() > input.rows {
            return Err(bad(
                OP,
                format!(
                    "{} tokens into a steps input of {} rows",
                    tokens.len(),
                    input.rows
                ),
            ));
        }
        if let Some((i, t)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= vocab)
        {
            return Err(bad(
                OP,
                format!("token id {t} at index {i} is outside the vocabulary ({vocab})"),
            ));
        }
        // The ids and as many records as tokens: one copy, in stream order.
        self.vendor
            .htod(input.ids_ptr(), &input.bytes(tokens, pos0)?)
    }

    fn steps_input_takes(&self, p: &AttentionParams, kv: DType) -> bool {
        let row = AttentionParams { rows: 1, ..*p };
        self.fuse_attention
            && self.attention_rows
            && p.rows >= 2
            && ops::decode_attention::fusable(&row, kv)
    }

    fn embedding_steps_input(
        &self,
        table: &GpuTensor,
        input: &StepsInput,
        n: usize,
        out: &mut GpuTensor,
        p: EmbeddingParams,
    ) -> Result<()> {
        ops::embedding::embedding_steps_input(self, table, input, n, out, p)
    }

    fn rope_attention_steps_input(
        &self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        out: &mut GpuTensor,
        inv_freq: &GpuTensor,
        cache: &mut KvCache<Self::Tensor>,
        p: AttentionParams,
        input: &StepsInput,
    ) -> Result<()> {
        if !self.steps_input_takes(&p, cache.layout().dtype) {
            return Err(bad(
                "rope_attention",
                format!("rows of {p:?} do not read their positions from a steps input"),
            ));
        }
        ops::decode_attention::rope_attention_steps(
            self,
            q,
            k,
            v,
            out,
            inv_freq,
            cache,
            p,
            Some(input),
        )
    }

    fn swiglu(
        &self,
        gate: &GpuTensor,
        up: &GpuTensor,
        out: &mut GpuTensor,
        n: usize,
        act: Activation,
    ) -> Result<()> {
        ops::elementwise::swiglu(self, gate, up, out, n, act)
    }

    fn add(&self, x: &mut GpuTensor, y: &GpuTensor, n: usize) -> Result<()> {
        ops::elementwise::add(self, x, y, n)
    }

    fn logits(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        out: &mut GpuTensor,
        p: LogitsParams,
    ) -> Result<()> {
        ops::linear::logits(self, x, w, out, p)
    }

    fn new_step(&self, vocab: usize, capacity: usize) -> Result<step::GpuStep> {
        step::GpuStep::new(self, vocab, capacity)
    }

    fn reset_step(&self, step: &mut step::GpuStep, context: &[u32], seed: u64) -> Result<()> {
        step.reset(self, context, seed)
    }

    fn sample_step(
        &self,
        logits: &GpuTensor,
        row: usize,
        vocab: usize,
        params: &SamplingParams,
        window: usize,
        step: &mut step::GpuStep,
    ) -> Result<()> {
        step.sample(self, logits, row, vocab, params, window)
    }

    fn post_token(&self, step: &mut step::GpuStep) -> Result<()> {
        step.post()
    }

    fn take_token(&self, step: &mut step::GpuStep) -> Result<u32> {
        step.take()
    }

    fn embedding_step(
        &self,
        table: &GpuTensor,
        step: &step::GpuStep,
        out: &mut GpuTensor,
        p: EmbeddingParams,
    ) -> Result<()> {
        step.embedding(self, table, out, p)
    }

    /// A CUDA graph / hipGraph of the stream work `f` queues.
    fn capture_graph(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<Option<Graph>> {
        self.capture(|_| f()).map(Some)
    }

    fn replay_graph(&self, g: &Graph) -> Result<()> {
        self.replay(g)
    }

    fn linear_stacked(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        outs: &mut [&mut GpuTensor],
        parts: &[usize],
        rows: usize,
        in_features: usize,
    ) -> Result<()> {
        let route = ops::linear::Route::Auto;
        ops::linear::linear_stacked(self, route, x, w, bias, outs, parts, rows, in_features)
    }

    fn gate_up_swiglu(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        tmp: &mut GpuTensor,
        out: &mut GpuTensor,
        rows: usize,
        in_features: usize,
        inter: usize,
        act: Activation,
    ) -> Result<()> {
        let route = ops::linear::Route::Auto;
        ops::linear::gate_up_swiglu(self, route, x, w, tmp, out, rows, in_features, inter, act)
    }

    fn norm_linear_stacked(
        &self,
        x: &mut GpuTensor,
        norm: PreNorm<'_, GpuTensor>,
        h: &mut GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        outs: &mut [&mut GpuTensor],
        parts: &[usize],
        rows: usize,
        in_features: usize,
    ) -> Result<()> {
        ops::linear::norm_linear_stacked(self, x, norm, h, w, bias, outs, parts, rows, in_features)
    }

    fn norm_gate_up_swiglu(
        &self,
        x: &mut GpuTensor,
        norm: PreNorm<'_, GpuTensor>,
        h: &mut GpuTensor,
        w: &GpuTensor,
        tmp: &mut GpuTensor,
        out: &mut GpuTensor,
        rows: usize,
        in_features: usize,
        inter: usize,
        act: Activation,
    ) -> Result<()> {
        ops::linear::norm_gate_up_swiglu(
            self,
            x,
            norm,
            h,
            w,
            tmp,
            out,
            rows,
            in_features,
            inter,
            act,
        )
    }

    fn linear_residual(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        acc: &mut GpuTensor,
        tmp: &mut GpuTensor,
        p: LinearParams,
    ) -> Result<()> {
        ops::linear::linear_residual(self, x, w, bias, acc, tmp, p)
    }

    fn sample(
        &self,
        logits: &GpuTensor,
        row: usize,
        vocab: usize,
        params: &SamplingParams,
        history: &[u32],
        coin: f32,
    ) -> Result<u32> {
        ops::sampling::sample(self, logits, row, vocab, params, history, coin)
    }
}
