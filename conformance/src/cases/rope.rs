//! `rope_kv_write`: q rotated in place; rotated k and plain v stored at positions
//! `pos0..pos0+rows` of one layer of a NaN-poisoned, guarded KV arena. Everything else in the
//! arena must stay untouched (a KV write at the wrong position fails here).

use ndarray::{Array3, Axis};
use proptest::prelude::*;
use wavefront::backend::{Backend, RopeKvParams};
use wavefront::kv_cache::KvLayout;
use wavefront::{DType, Result};
use wavefront_reference::config::{RopeConfig, RopeScaling};
use wavefront_reference::ops::rope;

use super::Check;
use crate::compare::{compare, Comparison};
use crate::harness::{poisoned_cache, read_arena, read_guarded, rounded, upload, with_guard, Rng};
use crate::q8;
use crate::tolerance::{tolerance, Kind, Tolerance};

#[derive(Debug, Clone, PartialEq)]
pub struct RopeCase {
    pub rows: usize,
    pub pos0: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub capacity: usize,
    pub kv: DType,
    pub theta: f32,
    pub llama3: bool,
    /// LongRoPE's attention factor (cos and sin multiplied by it): the last entry of the
    /// rotary table; 1 (a no-op) for every other model.
    pub attention_factor: f32,
    /// Read the position from a decode step's state (`Backend::Step`) instead of the params
    /// (one row: a decode step).
    pub via_step: bool,
    pub seed: u64,
}

impl RopeCase {
    pub fn name(&self) -> String {
        format!(
            "rows={},pos0={},heads={}/{},hd={},cap={},kv={},theta={}{}",
            self.rows,
            self.pos0,
            self.n_heads,
            self.n_kv_heads,
            self.head_dim,
            self.capacity,
            self.kv,
            self.theta,
            if self.llama3 { ",llama3" } else { "" },
        ) + &if self.attention_factor != 1.0 {
            format!(",af={}", self.attention_factor)
        } else {
            String::new()
        } + if self.via_step { ",step" } else { "" }
    }

    pub fn tolerance(&self) -> Tolerance {
        tolerance(Kind::Rotation { store: self.kv })
    }

    fn rope_config(&self) -> RopeConfig {
        let scaling = if self.llama3 {
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 128,
            }
        } else {
            RopeScaling::None
        };
        RopeConfig {
            theta: self.theta,
            scaling,
        }
    }

    pub fn run<B: Backend>(&self, b: &B) -> Result<Vec<Check>> {
        let mut rng = Rng::new(self.seed);
        let hd = self.head_dim;
        let (qd, kvd) = (self.n_heads * hd, self.n_kv_heads * hd);
        let q = rng.values(self.rows * qd, 1.0);
        let k = rng.values(self.rows * kvd, 1.0);
        let v = rng.values(self.rows * kvd, 1.0);
        let inv_freq = rope::inv_freq(hd, &self.rope_config());
        let layer = 1;
        let layout = KvLayout {
            n_layers: 2,
            n_kv_heads: self.n_kv_heads,
            head_dim: hd,
            capacity: self.capacity,
            dtype: self.kv,
        };
        let mut qt = upload(b, DType::F32, &with_guard(q.clone()))?;
        let (kt, vt) = (upload(b, DType::F32, &k)?, upload(b, DType::F32, &v)?);
        // The rotary table: the frequencies, then the attention factor.
        let table: Vec<f32> = inv_freq
            .iter()
            .copied()
            .chain([self.attention_factor])
            .collect();
        let ft = upload(b, DType::F32, &table)?;
        let mut cache = poisoned_cache(b, layout)?;
        let p = RopeKvParams {
            layer,
            pos0: self.pos0,
            rows: self.rows,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: hd,
        };
        let step = super::step_at(b, self.via_step, self.pos0, self.rows, layout.capacity)?;
        b.rope_kv_write(&mut qt, &kt, &vt, &ft, &mut cache, p, step.as_ref())?;
        let got_q = match read_guarded(b, &qt, q.len())? {
            Ok(v) => v,
            Err(fail) => return Ok(vec![Check::new("q", fail)]),
        };
        let arena = match read_arena(b, &cache)? {
            Ok(v) => v,
            Err(fail) => return Ok(vec![Check::new("arena", fail)]),
        };

        // Reference: (rows, heads·hd) → (heads, rows, hd), rotate at the absolute positions.
        let positions: Vec<usize> = (self.pos0..self.pos0 + self.rows).collect();
        let heads_first = |x: &[f32], heads: usize| -> Array3<f32> {
            let a = Array3::from_shape_vec((self.rows, heads, hd), x.to_vec()).expect("sized");
            a.permuted_axes([1, 0, 2]).as_standard_layout().to_owned()
        };
        let want_q = rope::apply_scaled(
            heads_first(&q, self.n_heads).view(),
            &positions,
            inv_freq.view(),
            self.attention_factor,
        );
        let want_k = rope::apply_scaled(
            heads_first(&k, self.n_kv_heads).view(),
            &positions,
            inv_freq.view(),
            self.attention_factor,
        );
        let want_v = heads_first(&v, self.n_kv_heads);
        let rows_first = |a: &Array3<f32>| -> Vec<f32> {
            a.view()
                .permuted_axes([1, 0, 2])
                .as_standard_layout()
                .iter()
                .copied()
                .collect()
        };

        // The arena region this call owns, and a check that nothing else was written.
        let (mut got_k, mut got_v, mut exp_k, mut exp_v) = (vec![], vec![], vec![], vec![]);
        let mut owned = vec![false; arena.len()];
        for h in 0..self.n_kv_heads {
            for (i, &pos) in positions.iter().enumerate() {
                for (kv, got, exp, src) in [
                    (0, &mut got_k, &mut exp_k, &want_k),
                    (1, &mut got_v, &mut exp_v, &want_v),
                ] {
                    let o = layout.offset(layer, kv, h, pos);
                    got.extend_from_slice(&arena[o..o + hd]);
                    exp.extend(
                        src.index_axis(Axis(0), h)
                            .index_axis(Axis(0), i)
                            .iter()
                            .copied(),
                    );
                    owned[o..o + hd].iter_mut().for_each(|x| *x = true);
                }
            }
        }
        let stray = arena
            .iter()
            .zip(&owned)
            .position(|(x, &own)| !own && !x.is_nan());
        let untouched = match stray {
            None => Comparison::exact(),
            Some(i) => Comparison::fail(format!(
                "arena element {i} outside positions {:?} was written",
                positions
            )),
        };
        let tol_q = tolerance(Kind::Rotation { store: DType::F32 }).nmse;
        let tol_kv = self.tolerance().nmse;
        let (check_k, check_v) = if self.kv == DType::Q8_0Kv {
            // On the Q8_0 grid (crate::q8): V bit-exact, K up to ties within the rotation's
            // slack (the unrotated pairs in exp_k's (head, row, dim) order).
            let k_heads = heads_first(&k, self.n_kv_heads);
            let slack = q8::rotation_slack(k_heads.as_slice().expect("standard layout"), hd);
            let zero = vec![0.0; exp_v.len()];
            (
                q8::q8_rows(&exp_k, &slack, &got_k),
                q8::q8_rows(&exp_v, &zero, &got_v),
            )
        } else {
            (
                compare(&rounded(self.kv, exp_k), &got_k, tol_kv),
                compare(&rounded(self.kv, exp_v), &got_v, tol_kv),
            )
        };
        Ok(vec![
            Check::new("q", compare(&rows_first(&want_q), &got_q, tol_q)),
            Check::new("k", check_k),
            Check::new("v", check_v),
            Check::new("rest of arena", untouched),
        ])
    }
}

pub fn grid() -> Vec<RopeCase> {
    let mut g = Vec::new();
    let base = |rows, pos0, n_heads, n_kv_heads, head_dim, kv| RopeCase {
        rows,
        pos0,
        n_heads,
        n_kv_heads,
        head_dim,
        // A little room past the write, so a write beyond it lands in poisoned memory.
        capacity: (pos0 + rows + 8).min(8192),
        kv,
        theta: 10000.0,
        llama3: false,
        attention_factor: 1.0,
        via_step: false,
        seed: 51,
    };
    for kv in [DType::F32, DType::F16, DType::BF16] {
        for (rows, pos0, h, kvh, hd) in [
            (1, 0, 4, 4, 64),
            (3, 0, 9, 3, 64),
            (1, 127, 8, 2, 128),
            (113, 5, 6, 2, 80),
            (7, 506, 12, 4, 96),
            (1, 8191, 32, 8, 128),
            // half = 3 and 5: not a multiple of 4, the scalar (G = 1) path
            (3, 7, 4, 2, 6),
            (2, 40, 3, 3, 10),
        ] {
            g.push(base(rows, pos0, h, kvh, hd, kv));
        }
    }
    // Q8_0 K/V: whole blocks of 32, a thread a block; head dim 96 crosses superblocks
    for (rows, pos0, h, kvh, hd) in [
        (1, 0, 4, 4, 64),
        (3, 0, 9, 3, 96),
        (1, 8191, 32, 8, 128),
        (113, 5, 6, 2, 32),
        (7, 506, 12, 4, 256),
    ] {
        g.push(base(rows, pos0, h, kvh, hd, DType::Q8_0Kv));
    }
    g.push(RopeCase {
        theta: 500000.0,
        llama3: true,
        ..base(5, 300, 8, 2, 128, DType::F16)
    });
    g.push(RopeCase {
        theta: 100000.0,
        ..base(8, 512, 9, 3, 64, DType::F32)
    });
    // the decode step's position read on the device, both vector widths
    for kv in [DType::F32, DType::F16, DType::BF16] {
        for (pos0, hd) in [(127, 128), (40, 10)] {
            g.push(RopeCase {
                via_step: true,
                ..base(1, pos0, 8, 2, hd, kv)
            });
        }
    }
    g.push(RopeCase {
        via_step: true,
        ..base(1, 127, 8, 2, 128, DType::Q8_0Kv)
    });
    // LongRoPE's attention factor (Phi-3.5 mini's, 1.19): both vector widths, every KV type,
    // and from a decode step
    for kv in [DType::F32, DType::F16, DType::BF16, DType::Q8_0Kv] {
        for (rows, pos0, hd, via_step) in [(5, 3, 96, false), (1, 300, 96, true), (3, 7, 6, false)]
        {
            if kv == DType::Q8_0Kv && hd % 32 != 0 {
                continue;
            }
            g.push(RopeCase {
                attention_factor: 1.190_239,
                via_step,
                ..base(rows, pos0, 8, 2, hd, kv)
            });
        }
    }
    g
}

pub fn strategy() -> impl Strategy<Value = RopeCase> {
    (
        1usize..12,
        0usize..600,
        1usize..5,
        1usize..4,
        prop_oneof![Just(16usize), Just(64), Just(80), Just(96), Just(128)],
        prop_oneof![
            Just(DType::F32),
            Just(DType::F16),
            Just(DType::BF16),
            Just(DType::Q8_0Kv)
        ],
        any::<bool>(),
        prop_oneof![Just(1.0f32), 0.5f32..2.0],
        any::<u64>(),
    )
        .prop_map(
            |(rows, pos0, group, n_kv_heads, head_dim, kv, llama3, attention_factor, seed)| {
                RopeCase {
                    rows,
                    pos0,
                    n_heads: group * n_kv_heads,
                    n_kv_heads,
                    // Q8_0 rows are whole blocks of 32
                    head_dim: if kv == DType::Q8_0Kv {
                        head_dim.next_multiple_of(32)
                    } else {
                        head_dim
                    },
                    capacity: pos0 + rows + 3,
                    kv,
                    theta: if llama3 { 500000.0 } else { 10000.0 },
                    llama3,
                    attention_factor,
                    via_step: false,
                    seed,
                }
            },
        )
}
