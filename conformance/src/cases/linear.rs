//! `linear` (x·Wᵀ + b, weights in each storage dtype) and `logits` (the same on selected rows).

use ndarray::{Array1, Array2};
use proptest::prelude::*;
use wavefront::backend::{Backend, LinearParams, LogitsParams};
use wavefront::model::WeightStorage;
use wavefront::{DType, Result};
use wavefront_reference::ops;

use super::{Check, Op};
use crate::compare::compare;
use crate::harness::{block_values, guarded, read_guarded, rounded, upload, Rng};
use crate::tolerance::{tolerance, Kind, Tolerance, U_F32};

#[derive(Debug, Clone, PartialEq)]
pub struct LinearCase {
    pub rows: usize,
    pub in_features: usize,
    pub out_features: usize,
    pub weight: DType,
    pub bias: bool,
    /// `Some(row0)`: the logits op over rows `row0..` of a taller input (`rows` of them).
    pub logits_row0: Option<usize>,
    /// The logits op's final soft-cap `c` (Gemma 2): each logit becomes `c · tanh(l / c)`.
    /// Plain weight dtypes only (the cap follows the product, whatever computed it).
    pub softcap: Option<f32>,
    pub seed: u64,
}

impl LinearCase {
    pub fn op(&self) -> Op {
        if self.logits_row0.is_some() {
            Op::Logits
        } else {
            Op::Linear
        }
    }

    pub fn name(&self) -> String {
        let mut s = format!(
            "rows={},in={},out={},w={}",
            self.rows, self.in_features, self.out_features, self.weight
        );
        if self.bias {
            s.push_str(",bias");
        }
        if let Some(r) = self.logits_row0 {
            s.push_str(&format!(",row0={r}"));
        }
        if let Some(c) = self.softcap {
            s.push_str(&format!(",softcap={c}"));
        }
        s
    }

    /// The weights are the same on both sides (the reference gets the rounded values); what
    /// remains is accumulation order and the backend's rounding of activations.
    pub fn tolerance_for(&self, matmul_input: DType) -> Tolerance {
        tolerance(Kind::Matmul {
            k: self.in_features,
            input: matmul_input,
        })
    }

    pub fn tolerance<B: Backend>(&self, b: &B) -> Tolerance {
        let t = self.tolerance_for(b.matmul_input_dtype(self.stored(b)));
        match self.softcap {
            Some(c) => self.capped(t, c),
            None => t,
        }
    }

    /// The soft-capped logits' bound: the cap's slope is at most 1, so the product's absolute
    /// errors pass through no larger while the values shrink: the product's NMSE times
    /// Σl²/Σcap(l)² (`ratio`, of this draw's logits l); plus the cap's own evaluation (the
    /// GPU's wf_softcap: ≤ 6u·c absolute an element, common.h), over Σcap(l)²; each doubled
    /// for the sum of the two errors ((a + b)² ≤ 2a² + 2b²).
    fn capped(&self, t: Tolerance, c: f32) -> Tolerance {
        let l = self.reference_logits();
        let sq = |x: f64| x * x;
        let plain: f64 = l.iter().map(|&x| sq(x as f64)).sum();
        let capped: f64 = l.iter().map(|&x| sq(ops::softcap(x, c) as f64)).sum();
        let ratio = plain / capped;
        let eval = l.len() as f64 * sq(6.0 * U_F32 * c as f64) / capped;
        Tolerance {
            nmse: 2.0 * (ratio * t.nmse + eval),
            reason: format!(
                "{}; soft-capped at {c}: × Σl²/Σcap(l)² = {ratio:.2} (slope ≤ 1), + the cap's \
                 6u·c an element, doubled for the sum",
                t.reason
            ),
        }
    }

    /// This case's uncapped logits as the reference computes them (plain weight dtypes: the
    /// draw replayed without a backend).
    fn reference_logits(&self) -> Vec<f32> {
        let mut rng = Rng::new(self.seed);
        let (k, m) = (self.in_features, self.out_features);
        let row0 = self.logits_row0.unwrap_or(0);
        let x = rng.values((row0 + self.rows) * k, 1.0);
        assert!(
            !self.weight.is_quantized(),
            "soft-capped cases take plain weights"
        );
        let w = rounded(self.weight, rng.values(m * k, 1.0 / (k as f32).sqrt()));
        let x = Array2::from_shape_vec((row0 + self.rows, k), x).expect("sized");
        let w = Array2::from_shape_vec((m, k), w).expect("sized");
        ops::linear(x.slice(ndarray::s![row0.., ..]), w.view(), None)
            .iter()
            .copied()
            .collect()
    }

    /// The dtype the backend holds the weights in: a plain dtype as given; a GGUF block type
    /// as the backend holds a model file's matrices of that type (`WeightStorage`): its own
    /// blocks where the backend computes with them, else converted to its weight dtype.
    pub fn stored<B: Backend>(&self, b: &B) -> DType {
        if self.weight.is_quantized() {
            WeightStorage::of(b).stored("w", self.weight)
        } else {
            self.weight
        }
    }

    /// The weights as both sides see them, and the tensor the backend gets.
    fn weights<B: Backend>(&self, b: &B, rng: &mut Rng) -> Result<(Vec<f32>, B::Tensor)> {
        let (k, m) = (self.in_features, self.out_features);
        let scale = 1.0 / (k as f32).sqrt();
        if !self.weight.is_quantized() {
            let w = rounded(self.weight, rng.values(m * k, scale));
            let t = upload(b, self.weight, &w)?;
            return Ok((w, t));
        }
        let (bytes, w) = block_values(self.weight, m * k, scale, rng);
        let stored = self.stored(b);
        if stored == self.weight {
            let t = b.upload(stored, &bytes)?;
            Ok((w, t))
        } else {
            let w = rounded(stored, w);
            let t = upload(b, stored, &w)?;
            Ok((w, t))
        }
    }

    pub fn run<B: Backend>(&self, b: &B) -> Result<Vec<Check>> {
        let mut rng = Rng::new(self.seed);
        let (k, m) = (self.in_features, self.out_features);
        let row0 = self.logits_row0.unwrap_or(0);
        let total_rows = row0 + self.rows;
        let x = rng.values(total_rows * k, 1.0);
        let (w, wt) = self.weights(b, &mut rng)?;
        let bias = rng.values(m, 0.5);
        let xt = upload(b, DType::F32, &x)?;
        let bt = upload(b, DType::F32, &bias)?;
        let n = self.rows * m;
        let mut out = guarded(b, DType::F32, n)?;
        match self.logits_row0 {
            Some(row0) => b.logits(
                &xt,
                &wt,
                &mut out,
                LogitsParams {
                    row0,
                    rows: self.rows,
                    hidden: k,
                    vocab: m,
                    softcap: self.softcap,
                },
            )?,
            None => b.linear(
                &xt,
                &wt,
                self.bias.then_some(&bt),
                &mut out,
                LinearParams {
                    rows: self.rows,
                    in_features: k,
                    out_features: m,
                },
            )?,
        }
        let got = match read_guarded(b, &out, n)? {
            Ok(v) => v,
            Err(fail) => return Ok(vec![Check::new("out", fail)]),
        };
        let x = Array2::from_shape_vec((total_rows, k), x).expect("sized");
        let x = x.slice(ndarray::s![row0.., ..]);
        let w = Array2::from_shape_vec((m, k), w).expect("sized");
        let bias = Array1::from(bias);
        let mut want = ops::linear(
            x,
            w.view(),
            (self.bias && self.logits_row0.is_none()).then(|| bias.view()),
        );
        if let Some(c) = self.softcap {
            want.mapv_inplace(|l| ops::softcap(l, c)); // Gemma 2's final_logit_softcapping
        }
        let want = want.as_standard_layout();
        Ok(vec![Check::new(
            "out",
            compare(
                want.as_slice().expect("standard"),
                &got,
                self.tolerance(b).nmse,
            ),
        )])
    }
}

pub fn grid() -> Vec<LinearCase> {
    let mut g = Vec::new();
    let base = |rows, in_features, out_features, weight, bias| LinearCase {
        rows,
        in_features,
        out_features,
        weight,
        bias,
        logits_row0: None,
        softcap: None,
        seed: 31,
    };
    for weight in [DType::F32, DType::F16, DType::BF16] {
        for (rows, k, m) in [
            (1, 64, 64),
            (1, 576, 1536),
            (3, 80, 96),
            (113, 576, 192),
            (1, 4096, 33),
        ] {
            g.push(base(rows, k, m, weight, false));
        }
        g.push(base(5, 96, 80, weight, true));
        g.push(base(1, 127, 513, weight, true));
    }
    for (row0, rows) in [(0, 1), (112, 1), (3, 4)] {
        g.push(LinearCase {
            logits_row0: Some(row0),
            ..base(rows, 576, 1000, DType::BF16, false)
        });
    }
    // Gemma 2's final soft-cap on the logits rows: caps near the logits' spread (std ≈ 0.37
    // here, |l| up to ~1.2: 0.5 and 1 bend them) and far above it (30: nearly the identity),
    // one row (the GEMV) and several (BLAS), a vocabulary that leaves the softcap kernel's
    // last block partial (1000 = 3·256 + 232).
    for (row0, rows, weight, c) in [
        (0, 1, DType::BF16, 0.5f32),
        (2, 3, DType::F32, 1.0),
        (1, 20, DType::F16, 30.0),
    ] {
        g.push(LinearCase {
            logits_row0: Some(row0),
            softcap: Some(c),
            ..base(rows, 576, 1000, weight, false)
        });
    }
    // GGUF block types: one block per row, a few, the real shapes' reductions; odd numbers of
    // output features (rows of blocks that end mid-tile); the batched path; a bias; the LM head
    // over a quantized (tied) embedding table.
    for weight in DType::WEIGHT_BLOCKS {
        let be = weight.block_elems();
        for (rows, k, m) in [
            (1, be, 33),
            (1, 576usize.next_multiple_of(be), 1536),
            (1, 1536, 577),
            (1, 4096, 65),
            (3, 2 * be, 96),
            (113, 576usize.next_multiple_of(be), 192),
        ] {
            g.push(base(rows, k, m, weight, false));
        }
        g.push(base(5, 3 * be, 80, weight, true));
        g.push(LinearCase {
            logits_row0: Some(3),
            ..base(2, 576usize.next_multiple_of(be), 1000, weight, false)
        });
    }
    g
}

pub fn strategy() -> impl Strategy<Value = LinearCase> {
    let weight = prop_oneof![
        3 => prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::BF16)],
        2 => proptest::sample::select(DType::WEIGHT_BLOCKS.to_vec()),
    ];
    (
        1usize..16,
        1usize..300,
        1usize..300,
        weight,
        any::<bool>(),
        prop_oneof![Just(None), (0usize..5).prop_map(Some)],
        any::<u64>(),
    )
        .prop_map(
            |(rows, in_features, out_features, weight, bias, logits_row0, seed)| LinearCase {
                rows,
                // Block types: whole blocks per row (1 to 4 K-quant super-blocks, 1 to 10
                // blocks of 32).
                in_features: match weight.block_elems() {
                    1 => in_features,
                    256 => 256 * (1 + in_features % 4),
                    be => be * (1 + in_features % 10),
                },
                out_features,
                weight,
                bias: bias && logits_row0.is_none(),
                logits_row0,
                softcap: None,
                seed,
            },
        )
}
