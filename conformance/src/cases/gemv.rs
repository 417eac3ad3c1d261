//! The batch-1 projections (the GPU's GEMV kernels, `kernels/gemv.hip`) and their stacked forms:
//! `linear` at rows = 1, `linear_stacked` (fused QKV: 1–3 matrices in one weight, with and
//! without a stacked bias) and `gate_up_swiglu` (the fused MLP input), over f16 and bf16
//! weights. The grid reaches every kernel path at either wave: K a multiple of 8 (the vector
//! body, with and without the unrolled steps), K mod 8 ≠ 0 (rows on 16 bytes end in the scalar
//! tail, the others are scalar throughout), K odd, tiny and large M, and K up to 14336. Rows > 1
//! check the BLAS path of the stacked forms (pointer offsets into the stacked weight and bias).
//! The fused forms: `norm_linear_stacked` and `norm_gate_up_swiglu` (the RMSNorm of x as the
//! GEMV's prologue) against `rms_norm` then the product, and `linear_residual` (the residual add
//! as the epilogue) against the product added to a prior value; K up to 16384 stages x in LDS,
//! K past it reads x (and the norm weights) through the cache. Batched (a decode pass of up to
//! 16 rows), 4 rows or more with K a multiple of 8 take the several-row kernels (inputs staged
//! once, up to 8 input rows a block), fewer rows or any other K n_in times the one-row grid.
//! Inside `Backend::mma_products` every GEMV of K a multiple of 32, one row or up to 16, takes
//! the matrix-core kernels (`gemv_mma_{T}`, `gemv_swiglu_mma_{T}`).

use ndarray::{s, Array1, Array2};
use proptest::prelude::*;
use wavefront::backend::{Activation, Backend, LinearParams, PreNorm};
use wavefront::tensor::{HostTensor, Storage};
use wavefront::{DType, Result};
use wavefront_reference::ops;

use super::{Check, Op};
use crate::compare::compare;
use crate::harness::{block_values, guarded, read_guarded, rounded, upload, with_guard, Rng};
use crate::tolerance::{tolerance, Kind, Tolerance};

/// Which op a case calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemvOp {
    /// `linear` with one matrix (`parts` has one entry).
    Linear,
    /// `linear_stacked` over `parts`.
    Stacked,
    /// `gate_up_swiglu`, `parts = [inter]` (W is `[W_g; W_u]`, 2·inter rows).
    GateUp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GemvCase {
    pub op: GemvOp,
    pub rows: usize,
    pub in_features: usize,
    /// Output features of each stacked matrix (`[inter]` for the gate/up form).
    pub parts: Vec<usize>,
    pub weight: DType,
    /// The last stacked matrix's type when it differs from `weight` (GGUF block types: a mixed
    /// stack, as a Q4_K_M file's Q4_K query and key with its Q6_K value).
    pub last: Option<DType>,
    pub bias: bool,
    /// The RMSNorm prologue (`norm_linear_stacked`, `norm_gate_up_swiglu`; not with `Linear`).
    pub norm: bool,
    /// The residual epilogue (`linear_residual`; `Linear` only).
    pub residual: bool,
    /// Run inside `Backend::invariant_rows` (a batched decode pass: on the GPU up to 16 rows
    /// take the GEMVs over several input rows instead of BLAS).
    pub batched: bool,
    /// Run inside `Backend::mma_products` (on the GPU the matrix-core GEMVs for K a multiple
    /// of 32, one row or a batched pass).
    pub mma: bool,
    /// The gate/up form's activation (`GateUp` only).
    pub act: Activation,
    pub seed: u64,
}

impl GemvCase {
    pub fn op(&self) -> Op {
        match (self.op, self.norm, self.residual) {
            (GemvOp::Linear, _, true) => Op::LinearResidual,
            (GemvOp::Linear, ..) => Op::Linear,
            (GemvOp::Stacked, true, _) => Op::NormLinearStacked,
            (GemvOp::Stacked, ..) => Op::LinearStacked,
            (GemvOp::GateUp, true, _) => Op::NormGateUpSwiglu,
            (GemvOp::GateUp, ..) => Op::GateUpSwiglu,
        }
    }

    pub fn name(&self) -> String {
        let parts: Vec<String> = self.parts.iter().map(usize::to_string).collect();
        let what = match self.op {
            GemvOp::Linear => "out",
            GemvOp::Stacked => "parts",
            GemvOp::GateUp => "inter",
        };
        let mut s = format!(
            "rows={},in={},{what}={},w={}",
            self.rows,
            self.in_features,
            parts.join("+"),
            self.weight
        );
        if self.batched {
            s.push_str(",batched");
        }
        if self.mma {
            s.push_str(",mma");
        }
        if let Some(last) = self.last {
            s.push_str(&format!(",last={last}"));
        }
        if self.bias {
            s.push_str(",bias");
        }
        if self.norm {
            s.push_str(",norm");
        }
        if self.residual {
            s.push_str(",residual");
        }
        if self.act == Activation::GeluTanh {
            s.push_str(",gelu");
        }
        s
    }

    /// The matmul bound of `linear` (the same input rounding, dot products of length K); for
    /// the gate/up form the product silu(g)·u on top of it: its relative error is
    /// e_u + κ·e_g with κ = |1 + g(1 − σ(g))| ≤ 2 for g ≥ −3 (the cases' unit-scale inputs keep
    /// |g| ≲ 1), at most 3 matmul errors (9× in energy, also when the two are correlated
    /// through the shared rounding of x), plus the elementwise op's own roundings.
    pub fn tolerance_for(&self, matmul_input: DType) -> Tolerance {
        let mm = tolerance(Kind::Matmul {
            k: self.in_features,
            input: matmul_input,
        });
        let ew = tolerance(Kind::Elementwise);
        let base = match self.op {
            GemvOp::GateUp if self.act == Activation::GeluTanh => {
                // κ = |g·gelu'(g) / gelu(g)| ≤ 2 for g ≥ −1.5 (1.91 there, 1.29 at 1), as
                // silu's for g ≥ −3; the same |g| ≲ 1 keeps Σ(g·u)² ≤ (1.5 / |gelu(−1.5)|)²
                // = 15² times Σ(gelu(g)·u)² (|g / gelu(g)| grows as g falls below 0).
                let act = tolerance(Kind::GatedGelu { ratio: 225.0 });
                Tolerance {
                    nmse: 9.0 * mm.nmse + act.nmse,
                    reason: format!(
                        "gelu_tanh(g)·u of two products, relative e_u + κ·e_g with κ ≤ 2 for \
                         g ≥ −1.5 (9× in energy) of: {}; plus {}",
                        mm.reason, act.reason
                    ),
                }
            }
            GemvOp::GateUp => Tolerance {
                nmse: 9.0 * mm.nmse + ew.nmse,
                reason: format!(
                    "silu(g)·u of two products, relative e_u + κ·e_g with κ ≤ 2 (9× in \
                     energy) of: {}; plus {}",
                    mm.reason, ew.reason
                ),
            },
            _ => mm,
        };
        if self.norm {
            // The engine's h differs from the reference's by f32 roundings of the norm (its
            // sum of squares in another order, the scale, two products): elementwise-sized,
            // before the input's rounding to the weight type that the matmul bound covers.
            Tolerance {
                nmse: base.nmse + ew.nmse,
                reason: format!(
                    "{}; plus the RMSNorm's f32 roundings of the input: {}",
                    base.reason, ew.reason
                ),
            }
        } else if self.residual {
            // prior + y with prior drawn independently of y: the energies add, so the error of
            // y (the only one: the f32 add rounds at the elementwise level) is no larger a
            // fraction of the sum than of y.
            Tolerance {
                nmse: base.nmse + ew.nmse,
                reason: format!(
                    "the product's error over an independent prior plus it (energies add): \
                     {}; plus the f32 add: {}",
                    base.reason, ew.reason
                ),
            }
        } else {
            base
        }
    }

    /// The bound of the coarser input rounding of the stack's types (a mixed stack's parts
    /// may take different forms: on the GPU the K-quants round the input to 8 bits).
    pub fn tolerance<B: Backend>(&self, b: &B) -> Tolerance {
        let inputs = [Some(self.weight), self.last]
            .into_iter()
            .flatten()
            .map(|w| b.matmul_input_dtype(w));
        self.tolerance_for(crate::tolerance::coarsest_rounding(inputs))
    }

    /// The stacked weight (`mats` rows of K) as the reference sees it and the backend's tensor:
    /// 16/32-bit values rounded to `weight`; GGUF blocks as the file holds them (one upload, or
    /// with `last` a stack of two types through `upload_stack`), the reference getting their
    /// exact dequantized values.
    fn weights<B: Backend>(
        &self,
        b: &B,
        mats: &[usize],
        rng: &mut Rng,
    ) -> Result<(Vec<f32>, B::Tensor)> {
        let k = self.in_features;
        let total: usize = mats.iter().sum();
        let scale = 1.0 / (k as f32).sqrt();
        if !self.weight.is_quantized() {
            let w = rounded(self.weight, rng.values(total * k, scale));
            let t = upload(b, self.weight, &w)?;
            return Ok((w, t));
        }
        let Some(last) = self.last else {
            let (bytes, w) = block_values(self.weight, total * k, scale, rng);
            return Ok((w, b.upload(self.weight, &bytes)?));
        };
        let mut values = Vec::new();
        let mut parts = Vec::new();
        for (i, &m) in mats.iter().enumerate() {
            let dtype = if i + 1 == mats.len() {
                last
            } else {
                self.weight
            };
            let (bytes, w) = block_values(dtype, m * k, scale, rng);
            values.extend_from_slice(&w);
            parts.push(HostTensor {
                name: format!("part{i}"),
                dtype,
                shape: vec![m, k],
                storage: Storage::Owned(std::sync::Arc::new(bytes)),
            });
        }
        let refs: Vec<&HostTensor> = parts.iter().collect();
        Ok((values, b.upload_stack(&refs)?))
    }

    pub fn run<B: Backend>(&self, b: &B) -> Result<Vec<Check>> {
        let mut rng = Rng::new(self.seed);
        let (n, k) = (self.rows, self.in_features);
        // Rows of the stacked weight: the parts, or gate and up.
        let mats: Vec<usize> = match self.op {
            GemvOp::GateUp => vec![self.parts[0], self.parts[0]],
            _ => self.parts.clone(),
        };
        let total: usize = mats.iter().sum();
        let x = rng.values(n * k, 1.0);
        let (w, wt) = self.weights(b, &mats, &mut rng)?;
        let bias = rng.values(total, 0.5);
        // The norm's weights (around 1, as trained models' are) and eps.
        let g: Vec<f32> = rng.values(k, 0.5).iter().map(|v| 1.0 + v).collect();
        let eps = 1e-5;
        // The values the residual form adds into.
        let prior = rng.values(n * self.parts[0], 1.0);
        let mut xt = upload(b, DType::F32, &x)?;
        let bt = upload(b, DType::F32, &bias)?;
        let bias_t = self.bias.then_some(&bt);

        // The reference: the norm (if fused), one `linear` per matrix of the stack, then SwiGLU
        // for gate/up (or the prior added for the residual form).
        let xa = Array2::from_shape_vec((n, k), x).expect("sized");
        let xa = if self.norm {
            ops::rms_norm(xa.view(), Array1::from(g.clone()).view(), eps)
        } else {
            xa
        };
        let wa = Array2::from_shape_vec((total, k), w).expect("sized");
        let ba = Array1::from(bias);
        let mut want = Vec::new(); // (rows, mats[i]) per matrix
        let mut row0 = 0;
        for &m in &mats {
            let wi = wa.slice(s![row0..row0 + m, ..]);
            let bi = ba.slice(s![row0..row0 + m]);
            want.push(ops::linear(xa.view(), wi, self.bias.then_some(bi)));
            row0 += m;
        }

        let lens: Vec<usize> = self.parts.iter().map(|&m| n * m).collect();
        let mut outs = lens
            .iter()
            .map(|&len| guarded(b, DType::F32, len))
            .collect::<Result<Vec<_>>>()?;
        let gt = upload(b, DType::F32, &g)?;
        let norm = PreNorm { weight: &gt, eps };
        let mut h = guarded(b, DType::F32, n * k)?;
        let mut run_op = || -> Result<Vec<Vec<f32>>> {
            Ok(match self.op {
                GemvOp::Linear => {
                    let p = LinearParams {
                        rows: n,
                        in_features: k,
                        out_features: self.parts[0],
                    };
                    if self.residual {
                        // outs[0] holds the prior (then its guard) and is added into.
                        outs[0] = upload(b, DType::F32, &with_guard(prior.clone()))?;
                        let mut tmp = guarded(b, DType::F32, n * self.parts[0])?;
                        b.linear_residual(&xt, &wt, bias_t, &mut outs[0], &mut tmp, p)?;
                        let w0 = flat(&want[0]);
                        vec![prior.iter().zip(w0).map(|(a, y)| a + y).collect()]
                    } else {
                        b.linear(&xt, &wt, bias_t, &mut outs[0], p)?;
                        want.iter().map(flat).collect()
                    }
                }
                GemvOp::Stacked => {
                    let mut refs: Vec<&mut B::Tensor> = outs.iter_mut().collect();
                    if self.norm {
                        let parts = &self.parts;
                        b.norm_linear_stacked(
                            &mut xt, norm, &mut h, &wt, bias_t, &mut refs, parts, n, k,
                        )?;
                    } else {
                        b.linear_stacked(&xt, &wt, bias_t, &mut refs, &self.parts, n, k)?;
                    }
                    want.iter().map(flat).collect()
                }
                GemvOp::GateUp => {
                    let inter = self.parts[0];
                    let mut tmp = guarded(b, DType::F32, 2 * n * inter)?;
                    if self.norm {
                        let out = &mut outs[0];
                        b.norm_gate_up_swiglu(
                            &mut xt, norm, &mut h, &wt, &mut tmp, out, n, k, inter, self.act,
                        )?;
                    } else {
                        b.gate_up_swiglu(&xt, &wt, &mut tmp, &mut outs[0], n, k, inter, self.act)?;
                    }
                    vec![flat(&match self.act {
                        Activation::Silu => ops::swiglu(want[0].view(), want[1].view()),
                        Activation::GeluTanh => ops::geglu(want[0].view(), want[1].view()),
                    })]
                }
            })
        };
        let mut got = None;
        let mut run = || -> Result<()> {
            if self.batched {
                b.invariant_rows(&mut || {
                    got = Some(run_op()?);
                    Ok(())
                })
            } else {
                got = Some(run_op()?);
                Ok(())
            }
        };
        if self.mma {
            b.mma_products(&mut run)?;
        } else {
            run()?;
        }
        let wants = got.ok_or_else(|| {
            wavefront::Error::InvalidRequest("the backend did not run the op".into())
        })?;
        let tol = self.tolerance(b).nmse;
        let mut checks = Vec::new();
        for (i, ((o, &len), want)) in outs.iter().zip(&lens).zip(&wants).enumerate() {
            let what = if outs.len() == 1 {
                "out".to_string()
            } else {
                format!("outs[{i}]")
            };
            let cmp = match read_guarded(b, o, len)? {
                Ok(got) => compare(want, &got, tol),
                Err(fail) => fail,
            };
            checks.push(Check::new(what, cmp));
        }
        Ok(checks)
    }
}

fn flat(a: &Array2<f32>) -> Vec<f32> {
    a.as_standard_layout().iter().copied().collect()
}

pub fn grid() -> Vec<GemvCase> {
    let mut g = Vec::new();
    let case = |op, rows, in_features, parts: &[usize], weight, bias| GemvCase {
        op,
        rows,
        in_features,
        parts: parts.to_vec(),
        weight,
        last: None,
        bias,
        norm: false,
        residual: false,
        batched: false,
        mma: false,
        act: Activation::Silu,
        seed: 47,
    };
    let gelu = |c: GemvCase| GemvCase {
        act: Activation::GeluTanh,
        ..c
    };
    let batched = |c: GemvCase| GemvCase { batched: true, ..c };
    let normed = |c: GemvCase| GemvCase { norm: true, ..c };
    let residual = |c: GemvCase| GemvCase {
        residual: true,
        ..c
    };
    for weight in [DType::BF16, DType::F16] {
        // K: a multiple of 8 (vectors only; 576 = 72 vectors: unrolled steps at WAVE=32 and 64
        // plus single vectors), K mod 8 = 4 (aligned rows end in a tail, odd rows are
        // scalar), K odd (one row in 8 on 16 bytes), K below one vector, K = 14336 (the 8B
        // model's down projection: many unrolled steps).
        for (k, m) in [
            (576, 1),
            (576, 3),
            (100, 5000),
            (77, 3),
            (5, 33),
            (14336, 40),
        ] {
            g.push(case(GemvOp::Linear, 1, k, &[m], weight, false));
        }
        g.push(case(GemvOp::Linear, 1, 133, &[257], weight, true));
        // Many rows: more row groups than a launch takes blocks (multiprocessors × the blocks
        // one holds), so each block loops over several with its prologue once (40000 rows are
        // 5000 groups of 8 waves at WAVE=32, 10000 of 4 at WAVE=64; 20000 SwiGLU outputs 2500
        // and 5000), normed and plain, one input row and three.
        g.push(case(GemvOp::Linear, 1, 64, &[40000], weight, true));
        g.push(normed(case(GemvOp::GateUp, 1, 64, &[20000], weight, false)));
        g.push(batched(normed(case(
            GemvOp::Stacked,
            3,
            64,
            &[30000, 8000, 2000],
            weight,
            false,
        ))));
        // Stacked QKV: 3 parts with and without bias, 2 parts, odd K, a large stack.
        for (k, parts, bias) in [
            (64, &[24, 8, 8][..], false),
            (64, &[24, 8, 8][..], true),
            (100, &[3, 1][..], true),
            (77, &[9, 3, 3][..], false),
            (2048, &[2048, 512, 512][..], true),
            (12, &[1, 0, 2][..], false),
        ] {
            g.push(case(GemvOp::Stacked, 1, k, parts, weight, bias));
        }
        // Gate/up + SwiGLU: aligned, tail (K = 100, inter even: even rows of both halves on 16
        // bytes, odd rows scalar), odd K (the gate and up rows' alignments differ),
        // tiny and large intermediate sizes, K = 14336.
        for (k, inter) in [
            (576, 1536),
            (100, 6),
            (77, 5),
            (1, 1),
            (14336, 24),
            (256, 5000),
        ] {
            g.push(case(GemvOp::GateUp, 1, k, &[inter], weight, false));
        }
        // The fused forms. The norm prologue: QKV shapes (aligned, odd K: the norm's scalar
        // partition; K = 16384, the most staged in LDS; K = 16392 read through the cache,
        // vectors and scalar), and gate/up. The residual epilogue: aligned, tail, odd, with a
        // bias, and K past the LDS (the 8B-and-up down projections are staged: 14336 ≤ 16384).
        for (k, parts, bias) in [
            (576, &[576, 192, 192][..], false),
            (64, &[24, 8, 8][..], true),
            (77, &[9, 3, 3][..], false),
            (16384, &[16, 4, 4][..], false),
            (16392, &[8, 4][..], true),
            (16391, &[5][..], false),
        ] {
            g.push(normed(case(GemvOp::Stacked, 1, k, parts, weight, bias)));
        }
        for (k, inter) in [(576, 1536), (77, 5), (16392, 6), (100, 6)] {
            g.push(normed(case(GemvOp::GateUp, 1, k, &[inter], weight, false)));
        }
        // GELU-tanh (Gemma 3 270M: hidden 640, intermediate 2048): the fused GEMV's epilogue
        // with and without the norm, a batched pass, and rows past the GEMV (the BLAS products,
        // then the swiglu kernel).
        g.push(gelu(case(GemvOp::GateUp, 1, 640, &[2048], weight, false)));
        g.push(gelu(normed(case(
            GemvOp::GateUp,
            1,
            640,
            &[2048],
            weight,
            false,
        ))));
        g.push(gelu(batched(case(
            GemvOp::GateUp,
            4,
            96,
            &[40],
            weight,
            false,
        ))));
        g.push(gelu(case(GemvOp::GateUp, 17, 96, &[40], weight, false)));
        for (k, m, bias) in [
            (576, 576, false),
            (1536, 576, true),
            (100, 33, false),
            (77, 9, false),
            (20000, 8, false),
            (20001, 5, true),
        ] {
            g.push(residual(case(GemvOp::Linear, 1, k, &[m], weight, bias)));
        }
    }
    // Rows > 1: in a batched decode pass (`batched`) on 16-bit weights up to 16 rows the GEMV
    // over several input rows (the fused forms in one launch); otherwise, past 16 and on f32
    // weights the fused forms' separate ops (rms_norm then BLAS, BLAS then add). 3 rows of an
    // odd K: rows 1 and 2 of x off 16 bytes (the scalar paths of the norm and the input).
    for weight in [DType::F32, DType::BF16] {
        for (rows, pass) in [(3, false), (3, true), (17, true)] {
            let b = |c: GemvCase| if pass { batched(c) } else { c };
            g.push(b(normed(case(
                GemvOp::Stacked,
                rows,
                80,
                &[48, 16, 16],
                weight,
                true,
            ))));
            g.push(b(normed(case(
                GemvOp::GateUp,
                rows - 1,
                96,
                &[40],
                weight,
                false,
            ))));
            g.push(b(residual(case(
                GemvOp::Linear,
                rows,
                96,
                &[40],
                weight,
                true,
            ))));
        }
        g.push(batched(normed(case(
            GemvOp::Stacked,
            3,
            77,
            &[9, 3, 3],
            weight,
            false,
        ))));
        g.push(batched(residual(case(
            GemvOp::Linear,
            16,
            16392,
            &[8],
            weight,
            true,
        ))));
    }
    // The batched GEMVs (four input rows a block) on every path at both 16-bit types: two groups
    // (5 rows) of an odd K staged in LDS (vector rows with a tail, rows off 16 bytes scalar) with
    // the norm, a bias and three outputs; the residual with a tail; gate/up with the norm and an
    // odd K; K = 16388 past the staging (x read per wave, a tail), with and without the norm.
    for weight in [DType::F16, DType::BF16] {
        g.push(batched(normed(case(
            GemvOp::Stacked,
            5,
            77,
            &[9, 3, 3],
            weight,
            true,
        ))));
        g.push(batched(residual(case(
            GemvOp::Linear,
            3,
            100,
            &[33],
            weight,
            false,
        ))));
        g.push(batched(normed(case(
            GemvOp::GateUp,
            3,
            77,
            &[5],
            weight,
            false,
        ))));
        g.push(batched(case(GemvOp::GateUp, 6, 16388, &[6], weight, false)));
        g.push(batched(normed(case(
            GemvOp::Stacked,
            2,
            16388,
            &[8, 4],
            weight,
            false,
        ))));
    }
    // The several-row kernels (a batched pass with K a multiple of 8 on 16 bytes: the inputs
    // staged, then up to 8 input rows a block) at both 16-bit types: 11 rows (a full group of 8
    // and a partial one of 3) through the norm, a bias and three parts of an odd total (a
    // wave's second row past the last); the residual over 9 rows; gate/up with the norm over
    // 10 rows and 5 outputs (dead waves).
    for weight in [DType::F16, DType::BF16] {
        g.push(batched(normed(case(
            GemvOp::Stacked,
            11,
            64,
            &[24, 8, 7],
            weight,
            true,
        ))));
        g.push(batched(residual(case(
            GemvOp::Linear,
            9,
            128,
            &[33],
            weight,
            false,
        ))));
        g.push(batched(normed(case(
            GemvOp::GateUp,
            10,
            64,
            &[5],
            weight,
            false,
        ))));
    }
    // The matrix-core GEMVs (Backend::mma_products: K a multiple of 32, one row or a batched
    // pass of up to 16) at both 16-bit types: one slab (K = 32: most waves have none), one row
    // through the norm, a bias and three parts of a partial tile; the residual; a long K
    // (14336: many slabs a wave); gate/up with the norm, with GELU, and batched with a partial
    // and a full group of input rows; the inputs staged in the kernel's LDS (up to 16384
    // elements over the rows) and past it by gemv_stage (5 × 4096, 16 × 14336); K = 72 (a
    // multiple of 8, not 32) keeps the FMA kernels.
    let mma = |c: GemvCase| GemvCase { mma: true, ..c };
    for weight in [DType::F16, DType::BF16] {
        g.push(mma(case(GemvOp::Linear, 1, 32, &[5], weight, true)));
        g.push(mma(normed(case(
            GemvOp::Stacked,
            1,
            64,
            &[24, 8, 7],
            weight,
            true,
        ))));
        g.push(mma(batched(normed(case(
            GemvOp::Stacked,
            11,
            64,
            &[24, 8, 7],
            weight,
            true,
        )))));
        g.push(mma(residual(case(
            GemvOp::Linear,
            1,
            1536,
            &[576],
            weight,
            true,
        ))));
        g.push(mma(batched(residual(case(
            GemvOp::Linear,
            9,
            128,
            &[33],
            weight,
            false,
        )))));
        g.push(mma(case(GemvOp::Linear, 1, 14336, &[40], weight, false)));
        g.push(mma(batched(residual(case(
            GemvOp::Linear,
            5,
            4096,
            &[40],
            weight,
            true,
        )))));
        g.push(mma(normed(case(
            GemvOp::GateUp,
            1,
            576,
            &[1536],
            weight,
            false,
        ))));
        g.push(mma(gelu(case(
            GemvOp::GateUp,
            1,
            640,
            &[2048],
            weight,
            false,
        ))));
        g.push(mma(batched(normed(case(
            GemvOp::GateUp,
            10,
            64,
            &[5],
            weight,
            false,
        )))));
        g.push(mma(batched(case(
            GemvOp::GateUp,
            16,
            14336,
            &[24],
            weight,
            false,
        ))));
        g.push(mma(batched(normed(case(
            GemvOp::Stacked,
            4,
            72,
            &[9, 3, 3],
            weight,
            false,
        )))));
    }
    // Rows > 1 without the fusions: the BLAS path of the stacked forms (offsets into W and the
    // bias) and, batched, the multi-row GEMV, every weight type.
    for weight in [DType::F32, DType::F16, DType::BF16] {
        for rows in [1, 3, 17] {
            g.push(case(GemvOp::Stacked, rows, 80, &[48, 16, 16], weight, true));
            g.push(case(GemvOp::GateUp, rows + 1, 96, &[40], weight, false));
        }
        g.push(batched(case(
            GemvOp::Stacked,
            3,
            80,
            &[48, 16, 16],
            weight,
            true,
        )));
        g.push(batched(case(GemvOp::GateUp, 4, 96, &[40], weight, false)));
    }
    // GGUF block types (qgemv.hip at one row or a batched pass of up to 16, dequantize + f16
    // GEMM otherwise), K whole
    // K-quant super-blocks: one row of an odd M (a wave with one live row of its two); QKV
    // with the norm prologue and a bias (every output part); the residual epilogue and the
    // gate/up form with K = 16640: past one LDS tile of 7168 f32 inputs (two more stagings)
    // and one of 16384 in the 8-bit-activation form (WAVEFRONT_QGEMV_Q8); gate/up with
    // the norm; rows > 1 through the dequantized GEMM and, batched, qgemv.hip's input rows,
    // stacked with a bias and gate/up.
    let mixed = |c: GemvCase, last| GemvCase {
        last: Some(last),
        ..c
    };
    for weight in DType::WEIGHT_BLOCKS {
        g.push(case(GemvOp::Linear, 1, 512, &[37], weight, false));
        g.push(normed(case(
            GemvOp::Stacked,
            1,
            512,
            &[24, 8, 8],
            weight,
            true,
        )));
        g.push(residual(case(GemvOp::Linear, 1, 16640, &[9], weight, true)));
        g.push(case(GemvOp::GateUp, 1, 16640, &[5], weight, false));
        g.push(normed(case(GemvOp::GateUp, 1, 512, &[24], weight, false)));
        g.push(case(GemvOp::Stacked, 3, 256, &[48, 16, 16], weight, true));
        g.push(case(GemvOp::GateUp, 2, 256, &[40], weight, false));
        g.push(batched(case(
            GemvOp::Stacked,
            3,
            256,
            &[48, 16, 16],
            weight,
            true,
        )));
        g.push(batched(case(GemvOp::GateUp, 2, 256, &[40], weight, false)));
        g.push(batched(residual(case(
            GemvOp::Linear,
            5,
            512,
            &[37],
            weight,
            true,
        ))));
        // Many rows: more row groups than a launch takes blocks (multiprocessors · 2), so each
        // block loops over several with the input staged once (10000 row pairs are 1250 groups
        // of 8 waves at WAVE=32, 2500 of 4 at WAVE=64; 9000 SwiGLU outputs 1125 and 2250).
        g.push(case(GemvOp::Linear, 1, 256, &[20000], weight, true));
        g.push(normed(case(GemvOp::GateUp, 1, 256, &[9000], weight, false)));
        // GELU-tanh: qgemv_swiglu's epilogue (norm fused), batched, and the dequantized GEMM
        // route followed by the swiglu kernel.
        g.push(gelu(normed(case(
            GemvOp::GateUp,
            1,
            512,
            &[24],
            weight,
            false,
        ))));
        g.push(gelu(batched(case(
            GemvOp::GateUp,
            2,
            256,
            &[40],
            weight,
            false,
        ))));
        g.push(gelu(case(GemvOp::GateUp, 2, 256, &[40], weight, false)));
    }
    // Mixed stacks (a Q4_K_M file's types): one launch per segment, the norm in each; gate and
    // up of two types through two products and the swiglu kernel; the GEMM route per part.
    let (q4k, q6k) = (DType::Q4_K, DType::Q6_K);
    g.push(mixed(
        normed(case(GemvOp::Stacked, 1, 512, &[24, 8, 8], q4k, true)),
        q6k,
    ));
    g.push(mixed(
        case(GemvOp::Stacked, 1, 256, &[16, 16], q4k, false),
        q6k,
    ));
    g.push(mixed(
        normed(case(GemvOp::GateUp, 1, 512, &[24], q4k, false)),
        q6k,
    ));
    for pass in [false, true] {
        let b = |c: GemvCase| if pass { batched(c) } else { c };
        g.push(b(mixed(
            case(GemvOp::Stacked, 3, 256, &[48, 16, 16], q4k, true),
            q6k,
        )));
        g.push(b(mixed(
            case(GemvOp::GateUp, 2, 256, &[40], q4k, false),
            q6k,
        )));
    }
    g.push(batched(mixed(
        normed(case(GemvOp::GateUp, 4, 512, &[24], q4k, false)),
        q6k,
    )));
    // Gate and up of two types with GELU-tanh: two products, then the swiglu kernel.
    g.push(gelu(mixed(
        normed(case(GemvOp::GateUp, 1, 512, &[24], q4k, false)),
        q6k,
    )));
    g
}

pub fn strategy() -> impl Strategy<Value = GemvCase> {
    (
        prop_oneof![
            Just(GemvOp::Linear),
            Just(GemvOp::Stacked),
            Just(GemvOp::GateUp)
        ],
        prop_oneof![3 => Just(1usize), 1 => 2usize..6],
        1usize..300,
        proptest::collection::vec(0usize..100, 1..=3),
        prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::BF16)],
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(op, rows, in_features, mut parts, weight, bias, fused, seed)| {
                if op != GemvOp::Stacked {
                    parts.truncate(1);
                    parts[0] = parts[0].max(1);
                }
                GemvCase {
                    op,
                    rows,
                    in_features,
                    parts,
                    weight,
                    last: None,
                    bias: bias && op != GemvOp::GateUp,
                    norm: fused && op != GemvOp::Linear,
                    residual: fused && op == GemvOp::Linear,
                    batched: rows > 1 && seed % 2 == 0,
                    mma: seed % 5 == 0,
                    act: if seed % 3 == 0 {
                        Activation::GeluTanh
                    } else {
                        Activation::Silu
                    },
                    seed,
                }
            },
        )
}
