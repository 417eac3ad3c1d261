//! Causal GQA attention over a filled KV arena: prefill (many query rows) and decode (one),
//! awkward lengths, every head dim and GQA ratio of DESIGN.md, and large-magnitude scores that
//! overflow a softmax without max subtraction. Positions past the last key are NaN-poisoned,
//! so reading beyond the causal limit fails.

use ndarray::Array3;
use proptest::prelude::*;
use wavefront::backend::{AttentionParams, Backend};
use wavefront::kv_cache::KvLayout;
use wavefront::{DType, Result};
use wavefront_reference::ops;

use super::{Check, Op};
use crate::compare::compare;
use crate::harness::{fill_cache, guarded, read_guarded, rounded, upload, Rng};
use crate::tolerance::{tolerance, Kind, Tolerance};

#[derive(Debug, Clone, PartialEq)]
pub struct AttentionCase {
    pub rows: usize,
    pub pos0: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub kv: DType,
    /// Magnitude of q and k entries (1 = ordinary; 16 = scores in the hundreds).
    pub magnitude: f32,
    /// Read the position from a decode step's state (`Backend::Step`) instead of the params
    /// (one row: a decode step).
    pub via_step: bool,
    pub seed: u64,
}

impl AttentionCase {
    pub fn op(&self) -> Op {
        if self.rows == 1 {
            Op::AttentionDecode
        } else {
            Op::AttentionPrefill
        }
    }

    pub fn name(&self) -> String {
        format!(
            "rows={},pos0={},heads={}/{},hd={},kv={}{}",
            self.rows,
            self.pos0,
            self.n_heads,
            self.n_kv_heads,
            self.head_dim,
            self.kv,
            if self.magnitude > 1.0 {
                format!(",magnitude={}", self.magnitude)
            } else {
                String::new()
            }
        ) + if self.via_step { ",step" } else { "" }
    }

    fn kv_len(&self) -> usize {
        self.pos0 + self.rows
    }

    /// |score| ≤ ‖q‖·‖k‖·scale ≤ magnitude²·head_dim·scale (Cauchy–Schwarz).
    fn max_score(&self) -> f64 {
        let m = self.magnitude as f64;
        m * m * self.head_dim as f64 / (self.head_dim as f64).sqrt()
    }

    pub fn tolerance(&self) -> Tolerance {
        tolerance(Kind::Attention {
            head_dim: self.head_dim,
            kv_len: self.kv_len(),
            max_score: self.max_score(),
        })
    }

    pub fn run<B: Backend>(&self, b: &B) -> Result<Vec<Check>> {
        let mut rng = Rng::new(self.seed);
        let hd = self.head_dim;
        let kv_len = self.kv_len();
        let qd = self.n_heads * hd;
        let q = rng.values(self.rows * qd, self.magnitude);
        // (n_kv_heads, kv_len, hd), in the KV storage type
        let k = rounded(
            self.kv,
            rng.values(self.n_kv_heads * kv_len * hd, self.magnitude),
        );
        let v = rounded(self.kv, rng.values(self.n_kv_heads * kv_len * hd, 1.0));
        let layer = 1;
        let layout = KvLayout {
            n_layers: 2,
            n_kv_heads: self.n_kv_heads,
            head_dim: hd,
            capacity: kv_len + 5,
            dtype: self.kv,
        };
        let cache = fill_cache(b, layout, layer, &k, &v, kv_len)?;
        let qt = upload(b, DType::F32, &q)?;
        let n = self.rows * qd;
        let mut out = guarded(b, DType::F32, n)?;
        let p = AttentionParams {
            layer,
            pos0: self.pos0,
            rows: self.rows,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: hd,
        };
        let step = super::step_at(b, self.via_step, self.pos0, self.rows, layout.capacity)?;
        b.attention(&qt, &cache, &mut out, p, step.as_ref())?;
        let got = match read_guarded(b, &out, n)? {
            Ok(v) => v,
            Err(fail) => return Ok(vec![Check::new("out", fail)]),
        };
        // Reference in (heads, seq, hd) layout.
        let q3 = Array3::from_shape_vec((self.rows, self.n_heads, hd), q)
            .expect("sized")
            .permuted_axes([1, 0, 2]);
        let k3 = Array3::from_shape_vec((self.n_kv_heads, kv_len, hd), k).expect("sized");
        let v3 = Array3::from_shape_vec((self.n_kv_heads, kv_len, hd), v).expect("sized");
        let want = ops::attention(q3.view(), k3.view(), v3.view(), self.pos0);
        let want: Vec<f32> = want
            .permuted_axes([1, 0, 2])
            .as_standard_layout()
            .iter()
            .copied()
            .collect();
        Ok(vec![Check::new(
            "out",
            compare(&want, &got, self.tolerance().nmse),
        )])
    }
}

pub fn grid() -> Vec<AttentionCase> {
    let mut g = Vec::new();
    let case = |rows, pos0, (n_heads, n_kv_heads): (usize, usize), head_dim, kv| AttentionCase {
        rows,
        pos0,
        n_heads,
        n_kv_heads,
        head_dim,
        kv,
        magnitude: 1.0,
        via_step: false,
        seed: 61,
    };
    let gqa = [(4, 4), (9, 3), (8, 2), (32, 4)]; // ratios 1, 3, 4, 8
    for kv in [DType::F32, DType::F16, DType::BF16] {
        // decode at awkward cache lengths
        for (i, kv_len) in [1usize, 3, 127, 513, 8191].into_iter().enumerate() {
            let hd = [64, 80, 96, 128, 128][i];
            g.push(case(1, kv_len - 1, gqa[i % 4], hd, kv));
        }
        // prefill from an empty cache and after a prefix
        for (i, (rows, pos0)) in [(3, 0), (113, 0), (127, 5), (3, 510)]
            .into_iter()
            .enumerate()
        {
            let hd = [64, 96, 80, 128][i];
            g.push(case(rows, pos0, gqa[(i + 1) % 4], hd, kv));
        }
        // a head dim that fills no wave and no vector
        g.push(case(3, 2, (4, 2), 6, kv));
    }
    // scores in the hundreds (std ≈ 0.37·m²·√hd·scale ≈ 95 at m = 16): exp overflows without max subtraction
    for rows in [1, 7] {
        g.push(AttentionCase {
            magnitude: 16.0,
            ..case(rows, 20, (8, 2), 64, DType::F32)
        });
    }
    // the decode step's length read on the device
    for kv in [DType::F32, DType::F16, DType::BF16] {
        for (kv_len, hd) in [(1, 64), (513, 128)] {
            g.push(AttentionCase {
                via_step: true,
                ..case(1, kv_len - 1, (8, 2), hd, kv)
            });
        }
    }
    g
}

pub fn strategy() -> impl Strategy<Value = AttentionCase> {
    (
        1usize..10,
        0usize..200,
        1usize..5,
        1usize..4,
        prop_oneof![Just(16usize), Just(64), Just(80), Just(96), Just(128)],
        prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::BF16)],
        any::<u64>(),
    )
        .prop_map(
            |(rows, pos0, group, n_kv_heads, head_dim, kv, seed)| AttentionCase {
                rows,
                pos0,
                n_heads: group * n_kv_heads,
                n_kv_heads,
                head_dim,
                kv,
                magnitude: 1.0,
                via_step: false,
                seed,
            },
        )
}
