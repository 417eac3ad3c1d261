//! The conformance suite: every op of every backend, every KV-cache state and every sampled
//! token, compared against the reference transformer (itself checked against Hugging Face
//! transformers). This is what a kernel author runs before merging a kernel
//! (`wavefront-conformance`), and what golden-token CI runs on ROCm machines.
//!
//! - `compare`: the comparison policy (NaN → inf → NMSE);
//! - `tolerance`: the one tolerance table, each entry derived and explained;
//! - `harness`: seeded never-zero inputs, guard regions, NaN poisoning;
//! - `cases`: one module per backend op — cases as data, with grids and proptest strategies;
//! - `report`: the op × case table and the coverage (ops with no case);
//! - `coverage`: which case reaches which kernel path (GPU);
//! - `bridge`: the reference model built from exactly the weights an engine uses;
//! - `model`: model-level checks (logits, hidden states, KV state, sampled and greedy tokens);
//! - `models`: those checks gathered per model file, as the CLI and tests run them;
//! - `golden`: greedy token streams against transformers' SmolLM2 goldens;
//! - `planted`: a CPU backend with planted bugs, to prove the suite catches them;
//! - `rounded`: the GPU's 16-bit arithmetic on the CPU, with planted end-to-end bugs.
//! - `speculative`, `draft_rule`: speculative decoding's identity checks and the χ² test of the
//!   draft-model rule.

/// Inside `impl Backend for W` where `W` wraps a `CpuBackend` in its field `inner`: the
/// methods every CPU wrapper of this crate (`planted::Planted`, `rounded::Rounded`) passes on
/// unchanged, so each one writes only the ops it changes. The stacked projections pass x
/// through the wrapper's `matmul_input(x)` first (its rounding of matmul inputs, if any, as its
/// `linear` does), so a stacked or fused product computes what separate `linear` calls do.
macro_rules! forward_to_cpu {
    () => {
        type Step = wavefront::backend::cpu::CpuStep;
        type Graph = ();
        type StepsInput = ();

        fn new_step(&self, vocab: usize, capacity: usize) -> wavefront::Result<Self::Step> {
            self.inner.new_step(vocab, capacity)
        }

        fn reset_step(
            &self,
            step: &mut Self::Step,
            context: &[u32],
            seed: u64,
        ) -> wavefront::Result<()> {
            self.inner.reset_step(step, context, seed)
        }

        fn sample_step(
            &self,
            logits: &CpuTensor,
            row: usize,
            vocab: usize,
            params: &wavefront::SamplingParams,
            window: usize,
            step: &mut Self::Step,
        ) -> wavefront::Result<()> {
            // The wrapper's own sampler (a planted bug in it reaches the decode path).
            step.sample(vocab, window, |history, coin| {
                wavefront::backend::Backend::sample(self, logits, row, vocab, params, history, coin)
            })
        }

        fn post_token(&self, step: &mut Self::Step) -> wavefront::Result<()> {
            self.inner.post_token(step)
        }

        fn take_token(&self, step: &mut Self::Step) -> wavefront::Result<u32> {
            self.inner.take_token(step)
        }

        fn embedding_step(
            &self,
            table: &CpuTensor,
            step: &Self::Step,
            out: &mut CpuTensor,
            p: wavefront::backend::EmbeddingParams,
        ) -> wavefront::Result<()> {
            self.inner.embedding_step(table, step, out, p)
        }

        fn capture_graph(
            &self,
            _f: &mut dyn FnMut() -> wavefront::Result<()>,
        ) -> wavefront::Result<Option<()>> {
            Ok(None)
        }

        fn replay_graph(&self, _g: &()) -> wavefront::Result<()> {
            Ok(())
        }

        fn rms_norm_in_place(
            &self,
            x: &mut CpuTensor,
            w: &CpuTensor,
            p: wavefront::backend::RmsNormParams,
        ) -> wavefront::Result<()> {
            self.inner.rms_norm_in_place(x, w, p)
        }

        fn weight_dtype(&self) -> wavefront::DType {
            self.inner.weight_dtype()
        }

        fn native_weight_dtypes(&self) -> &'static [wavefront::DType] {
            self.inner.native_weight_dtypes()
        }

        fn mixed_stacks(&self) -> bool {
            self.inner.mixed_stacks()
        }

        fn upload_stack(
            &self,
            parts: &[&wavefront::tensor::HostTensor],
        ) -> wavefront::Result<CpuTensor> {
            self.inner.upload_stack(parts)
        }

        fn upload_native(&self, t: &wavefront::tensor::HostTensor) -> wavefront::Result<CpuTensor> {
            self.inner.upload_native(t)
        }

        fn alloc(&self, dtype: wavefront::DType, n: usize) -> wavefront::Result<CpuTensor> {
            self.inner.alloc(dtype, n)
        }

        fn upload(&self, dtype: wavefront::DType, bytes: &[u8]) -> wavefront::Result<CpuTensor> {
            self.inner.upload(dtype, bytes)
        }

        fn download_f32(&self, t: &CpuTensor) -> wavefront::Result<Vec<f32>> {
            self.inner.download_f32(t)
        }

        fn synchronize(&self) -> wavefront::Result<()> {
            self.inner.synchronize()
        }

        fn copy_into(
            &self,
            src: &CpuTensor,
            dst: &mut CpuTensor,
            offset: usize,
        ) -> wavefront::Result<()> {
            self.inner.copy_into(src, dst, offset)
        }

        fn copy_range(
            &self,
            src: &CpuTensor,
            src_offset: usize,
            dst: &mut CpuTensor,
            dst_offset: usize,
            n: usize,
        ) -> wavefront::Result<()> {
            self.inner.copy_range(src, src_offset, dst, dst_offset, n)
        }

        fn batch_invariant_rows(&self) -> usize {
            self.inner.batch_invariant_rows()
        }

        fn embedding(
            &self,
            table: &CpuTensor,
            tokens: &[u32],
            out: &mut CpuTensor,
            p: wavefront::backend::EmbeddingParams,
        ) -> wavefront::Result<()> {
            self.inner.embedding(table, tokens, out, p)
        }

        fn swiglu(
            &self,
            gate: &CpuTensor,
            up: &CpuTensor,
            out: &mut CpuTensor,
            n: usize,
            act: wavefront::backend::Activation,
        ) -> wavefront::Result<()> {
            self.inner.swiglu(gate, up, out, n, act)
        }

        fn add(&self, x: &mut CpuTensor, y: &CpuTensor, n: usize) -> wavefront::Result<()> {
            self.inner.add(x, y, n)
        }

        fn linear_stacked(
            &self,
            x: &CpuTensor,
            w: &CpuTensor,
            bias: Option<&CpuTensor>,
            outs: &mut [&mut CpuTensor],
            parts: &[usize],
            rows: usize,
            in_features: usize,
        ) -> wavefront::Result<()> {
            let xr = self.matmul_input(x)?;
            let x = xr.as_ref().unwrap_or(x);
            self.inner
                .linear_stacked(x, w, bias, outs, parts, rows, in_features)
        }

        fn gate_up_swiglu(
            &self,
            x: &CpuTensor,
            w: &CpuTensor,
            tmp: &mut CpuTensor,
            out: &mut CpuTensor,
            rows: usize,
            in_features: usize,
            inter: usize,
            act: wavefront::backend::Activation,
        ) -> wavefront::Result<()> {
            let xr = self.matmul_input(x)?;
            let x = xr.as_ref().unwrap_or(x);
            self.inner
                .gate_up_swiglu(x, w, tmp, out, rows, in_features, inter, act)
        }
    };
}

pub mod batch;
pub mod bridge;
pub mod cases;
pub mod compare;
pub mod coverage;
pub mod draft_rule;
pub mod golden;
pub mod harness;
pub mod model;
pub mod models;
pub mod planted;
pub mod q8;
pub mod report;
pub mod rounded;
pub mod speculative;
pub mod tolerance;
