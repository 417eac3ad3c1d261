//! Causal GQA attention over a filled KV arena: prefill (many query rows) and decode (one),
//! awkward lengths, every head dim and GQA ratio of DESIGN.md, and large-magnitude scores that
//! overflow a softmax without max subtraction. Positions past the last key are NaN-poisoned,
//! so reading beyond the causal limit fails; with a sliding window (Mistral) so are the keys
//! before the first row's window, so reading a key outside it fails. Gemma's score scale
//! (`query_pre_attn_scalar^-0.5` ≠ `head_dim^-0.5`) and Gemma 2's attention logit soft-cap run
//! through every kernel against the reference's `attention_with`.

use ndarray::Array3;
use proptest::prelude::*;
use wavefront::backend::{row_by_row, AttentionParams, Backend, BatchRow, RowScratch};
use wavefront::kv_cache::KvLayout;
use wavefront::{DType, Result};
use wavefront_reference::config::{RopeConfig, RopeScaling};
use wavefront_reference::ops;
use wavefront_reference::ops::rope;

use super::{Check, Op};
use crate::compare::compare;
use crate::compare::Comparison;
use crate::harness::{fill_cache, guarded, read_arena, read_guarded, rounded, upload, Rng};
use crate::q8;
use crate::tolerance::{tolerance, Kind, Tolerance, U_F32};

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
    /// `rope_attention`: q and the rows' own k, v arrive unrotated and the op rotates them,
    /// writes K/V at `pos0 ..` and attends (the GPU's fused decode kernel for one row).
    pub rope: bool,
    /// A sliding window of this many keys: row p sees keys `p − w < j ≤ p`.
    pub window: Option<usize>,
    /// The factor on `q·k` where it is not `head_dim^-0.5` (Gemma's `query_pre_attn_scalar`).
    pub score_scale: Option<f32>,
    /// Gemma 2's attention logit soft-cap: scores become `c · tanh(s / c)` before the softmax.
    pub softcap: Option<f32>,
    /// Inside [`Backend::simple_attention`]: prefill rows through the simple kernel where the
    /// flash kernel would take them (as under `WAVEFRONT_NO_FLASH_ATTENTION=1`).
    pub simple: bool,
    /// `rope_attention` rows through the several-row routes (the GPU's rows kernel): as one
    /// sequence's decode steps, or as a batched pass's rows of separate sequences.
    pub route: RowsRoute,
    pub seed: u64,
}

/// How a `rope_attention` case's rows are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsRoute {
    /// `Backend::rope_attention` (rows > 1: a prefill).
    Plain,
    /// `Backend::rope_attention_steps`: the rows as the sequence's decode steps at pos0 ..,
    /// checked against the reference and, bit for bit, against the rows one at a time
    /// (`rope_attention_row`, the decode step's kernel).
    Steps,
    /// `Backend::rope_attention_batch`: row i a separate sequence with a cache of pos0 + i
    /// keys and a step at that position, bit for bit what `rope_attention` gives it alone.
    Batch,
}

impl AttentionCase {
    pub fn op(&self) -> Op {
        if self.rope || self.route != RowsRoute::Plain {
            Op::RopeAttention
        } else if self.rows == 1 {
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
            + if self.rope { ",rope" } else { "" }
            + &self
                .window
                .map_or(String::new(), |w| format!(",window={w}"))
            + &self
                .score_scale
                .map_or(String::new(), |x| format!(",scale={x}"))
            + &self
                .softcap
                .map_or(String::new(), |c| format!(",softcap={c}"))
            + if self.simple { ",simple" } else { "" }
            + match self.route {
                RowsRoute::Plain => "",
                RowsRoute::Steps => ",steps",
                RowsRoute::Batch => ",batch",
            }
    }

    /// The factor on `q·k`: the case's, else `head_dim^-0.5` (as the engine computes it).
    fn scale(&self) -> f32 {
        self.score_scale
            .unwrap_or((self.head_dim as f64).powf(-0.5) as f32)
    }

    /// How the reference forms the scores.
    fn scores(&self) -> ops::Scores {
        ops::Scores {
            scale: self.scale(),
            softcap: self.softcap,
            window: self.window,
        }
    }

    fn params(&self, layer: usize) -> AttentionParams {
        AttentionParams {
            layer,
            pos0: self.pos0,
            rows: self.rows,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            window: self.window,
            score_scale: self.score_scale,
            softcap: self.softcap,
        }
    }

    fn kv_len(&self) -> usize {
        self.pos0 + self.rows
    }

    /// The most keys a row sees: the window, or every cached key.
    fn visible(&self) -> usize {
        self.window.map_or(self.kv_len(), |w| w.min(self.kv_len()))
    }

    /// The positions no row sees (before the first row's window): NaN in the cache.
    fn hidden(&self) -> usize {
        self.window.map_or(0, |w| (self.pos0 + 1).saturating_sub(w))
    }

    /// `x` (n_kv_heads, len, hd) with positions `..hidden()` of each head set to NaN.
    fn poison(&self, mut x: Vec<f32>, len: usize) -> Vec<f32> {
        let hd = self.head_dim;
        for h in 0..self.n_kv_heads {
            x[h * len * hd..(h * len + self.hidden()) * hd].fill(f32::NAN);
        }
        x
    }

    /// What q and the softmax weights may be rounded to: the KV type for prefill rows over 16-bit
    /// KV (the GPU's flash kernel feeds them to matrix instructions) and for the fused decode
    /// rows of the head dims the GPU's matrix-instruction decode kernel takes
    /// (`wavefront::backend::gpu::MMA_DECODE_HEAD_DIMS`), f16 over Q8_0 K/V (the flash kernel's matrix type there),
    /// else nothing (f32; the simple and vector kernels round neither).
    fn matrix_input(&self) -> DType {
        let mma_decode =
            self.rope && wavefront::backend::gpu::MMA_DECODE_HEAD_DIMS.contains(&self.head_dim);
        match self.kv {
            _ if self.simple => DType::F32,
            DType::F16 | DType::BF16 if self.rows > 1 || mma_decode => self.kv,
            DType::Q8_0Kv if self.rows > 1 => DType::F16,
            _ => DType::F32,
        }
    }

    /// What the stored K and V may be rounded to on their way into the matrix products: f16
    /// where Q8_0 K/V feed the flash kernel, else nothing.
    fn kv_input(&self) -> DType {
        if self.kv == DType::Q8_0Kv {
            self.matrix_input()
        } else {
            DType::F32
        }
    }

    /// |score| ≤ ‖q‖·‖k‖·scale ≤ magnitude²·head_dim·scale (Cauchy–Schwarz), before any cap:
    /// the errors of the dot products and of the rounded inputs scale with it, and the cap's
    /// slope (≤ 1) passes them on no larger.
    fn max_score(&self) -> f64 {
        let m = self.magnitude as f64;
        m * m * self.head_dim as f64 * self.scale() as f64
    }

    pub fn tolerance(&self) -> Tolerance {
        let att = tolerance(Kind::Attention {
            head_dim: self.head_dim,
            kv_len: self.visible(),
            max_score: self.max_score(),
            input: self.matrix_input(),
            kv_input: self.kv_input(),
        });
        let att = match self.softcap {
            // The cap's own evaluation (common.h wf_softcap ≤ 6u·c absolute a score, the
            // flash kernel's fa_softcap ≤ 8u·c) moves the softmax weights, and so the output,
            // by a relative 2·8u·c at most.
            Some(c) => Tolerance {
                nmse: att.nmse + (16.0 * U_F32 * c as f64).powi(2),
                reason: format!(
                    "{}; soft-capped at {c}: the cap's evaluation, ≤ 8u·c a score (16u·c)",
                    att.reason
                ),
            },
            None => att,
        };
        if !self.rope || self.kv == DType::Q8_0Kv {
            // Q8_0: the stored rows are judged on the Q8_0 grid (crate::q8) and the output
            // against attention over those rows.
            return att;
        }
        // The rows' keys and values enter through the rotation and the store's rounding (a
        // rotated value one f32 ulp off the reference's may round to the neighbouring 16-bit
        // value): that error on top of the attention's own.
        let rot = tolerance(Kind::Rotation { store: self.kv });
        Tolerance {
            nmse: att.nmse + rot.nmse,
            reason: format!(
                "{}; plus the new rows' rotation and store: {}",
                att.reason, rot.reason
            ),
        }
    }

    pub fn run<B: Backend>(&self, b: &B) -> Result<Vec<Check>> {
        if self.route == RowsRoute::Batch {
            return self.run_batch(b);
        }
        if self.rope {
            return self.run_rope(b);
        }
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
        let (k, v) = (self.poison(k, kv_len), self.poison(v, kv_len));
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
        let p = self.params(layer);
        let step = super::step_at(b, self.via_step, self.pos0, self.rows, layout.capacity)?;
        let mut attend = || b.attention(&qt, &cache, &mut out, p, step.as_ref());
        if self.simple {
            b.simple_attention(&mut attend)?;
        } else {
            attend()?;
        }
        if super::skip_reference() {
            return Ok(vec![]);
        }
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
        let want = ops::attention_with(q3.view(), k3.view(), v3.view(), self.pos0, self.scores());
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

impl AttentionCase {
    /// `rope_attention`: a cache holding positions `0 .. pos0` (NaN past them), the query rows'
    /// q, k, v unrotated; checks the output, the K/V rows written at `pos0 ..`, and that nothing
    /// else in the arena changed.
    fn run_rope<B: Backend>(&self, b: &B) -> Result<Vec<Check>> {
        let mut rng = Rng::new(self.seed);
        let hd = self.head_dim;
        let kv_len = self.kv_len();
        let (qd, kvd) = (self.n_heads * hd, self.n_kv_heads * hd);
        let q = rng.values(self.rows * qd, self.magnitude);
        // The prefix (n_kv_heads, pos0, hd), in the KV storage type, and the rows' own k, v.
        let nkv = self.n_kv_heads;
        let k_pre = rounded(self.kv, rng.values(nkv * self.pos0 * hd, self.magnitude));
        let v_pre = rounded(self.kv, rng.values(nkv * self.pos0 * hd, 1.0));
        let (k_pre, v_pre) = (self.poison(k_pre, self.pos0), self.poison(v_pre, self.pos0));
        let k_new = rng.values(self.rows * kvd, self.magnitude);
        let v_new = rng.values(self.rows * kvd, 1.0);
        let rope_cfg = RopeConfig {
            theta: 500000.0,
            scaling: RopeScaling::None,
        };
        let inv_freq = rope::inv_freq(hd, &rope_cfg);
        let layer = 1;
        let layout = KvLayout {
            n_layers: 2,
            n_kv_heads: nkv,
            head_dim: hd,
            capacity: kv_len + 5,
            dtype: self.kv,
        };
        let mut cache = fill_cache(b, layout, layer, &k_pre, &v_pre, self.pos0)?;
        let mut qt = upload(b, DType::F32, &q)?;
        let (kt, vt) = (
            upload(b, DType::F32, &k_new)?,
            upload(b, DType::F32, &v_new)?,
        );
        // The rotary table: the frequencies, then an attention factor of 1 (LongRoPE's factor
        // is covered by the rope cases and the phi3 fixture's decode steps).
        let table: Vec<f32> = inv_freq.iter().copied().chain([1.0]).collect();
        let ft = upload(b, DType::F32, &table)?;
        let mut out = guarded(b, DType::F32, self.rows * qd)?;
        let p = self.params(layer);
        let step = super::step_at(b, self.via_step, self.pos0, self.rows, layout.capacity)?;
        // As steps: the same rows one at a time on a second cache, to compare by bits.
        let mut as_steps = Vec::new();
        let mut attend = || -> Result<()> {
            if self.route == RowsRoute::Steps {
                let mut one = OneRow::new(b, qd, kvd)?;
                let mut cache1 = fill_cache(b, layout, layer, &k_pre, &v_pre, self.pos0)?;
                let mut out1 = guarded(b, DType::F32, self.rows * qd)?;
                let (c, o) = (&mut cache1, &mut out1);
                row_by_row::steps(b, &qt, &kt, &vt, o, one.scratch(), &ft, c, p)?;
                let (o, c) = (&mut out, &mut cache);
                b.rope_attention_steps(&qt, &kt, &vt, o, one.scratch(), &ft, c, p)?;
                as_steps.push(same_bits(b, &out1, &out, self.rows * qd, "out")?);
                as_steps.push(same_bits(
                    b,
                    cache1.arena(),
                    cache.arena(),
                    layout.elems(),
                    "arena",
                )?);
                Ok(())
            } else {
                let (o, c) = (&mut out, &mut cache);
                b.rope_attention(&mut qt, &kt, &vt, &ft, c, o, p, step.as_ref())
            }
        };
        if self.simple {
            b.simple_attention(&mut attend)?;
        } else {
            attend()?;
        }
        if super::skip_reference() {
            return Ok(vec![]);
        }
        let got = match read_guarded(b, &out, self.rows * qd)? {
            Ok(v) => v,
            Err(fail) => return Ok(vec![Check::new("out", fail)]),
        };
        let arena = match read_arena(b, &cache)? {
            Ok(v) => v,
            Err(fail) => return Ok(vec![Check::new("arena", fail)]),
        };

        // Reference: rotate q and the rows' k at their positions, round k and v to the store,
        // append them to the prefix, attend.
        let positions: Vec<usize> = (self.pos0..kv_len).collect();
        let heads_first = |x: &[f32], heads: usize| -> Array3<f32> {
            let a = Array3::from_shape_vec((self.rows, heads, hd), x.to_vec()).expect("sized");
            a.permuted_axes([1, 0, 2]).as_standard_layout().to_owned()
        };
        let q_rot = rope::apply(
            heads_first(&q, self.n_heads).view(),
            &positions,
            inv_freq.view(),
        );
        let k_rot = rope::apply(heads_first(&k_new, nkv).view(), &positions, inv_freq.view());
        let k_rows = rounded(self.kv, k_rot.iter().copied().collect()); // (nkv, rows, hd)
        let v_rows = rounded(self.kv, heads_first(&v_new, nkv).iter().copied().collect());
        let join = |pre: &[f32], rows: &[f32]| -> Vec<f32> {
            let mut all = Vec::with_capacity(nkv * kv_len * hd);
            for h in 0..nkv {
                all.extend_from_slice(&pre[h * self.pos0 * hd..(h + 1) * self.pos0 * hd]);
                all.extend_from_slice(&rows[h * self.rows * hd..(h + 1) * self.rows * hd]);
            }
            all
        };
        // The arena: the rows written at pos0 .., the prefix as it was, the rest still NaN.
        let (mut got_k, mut got_v, mut untouched) = (vec![], vec![], Comparison::exact());
        for (o, x) in arena.iter().enumerate() {
            let (l, rest) = (
                o / (2 * nkv * layout.capacity * hd),
                o % (2 * nkv * layout.capacity * hd),
            );
            let (kvi, rest) = (
                rest / (nkv * layout.capacity * hd),
                rest % (nkv * layout.capacity * hd),
            );
            let (h, rest) = (rest / (layout.capacity * hd), rest % (layout.capacity * hd));
            let (pos, d) = (rest / hd, rest % hd);
            let mine = l == layer && pos < kv_len;
            if mine && pos >= self.pos0 {
                let i = (h * self.rows + pos - self.pos0) * hd + d;
                if kvi == 0 {
                    got_k.push((i, *x));
                } else {
                    got_v.push((i, *x));
                }
            } else if mine {
                let pre = if kvi == 0 { &k_pre } else { &v_pre };
                let want = pre[(h * self.pos0 + pos) * hd + d];
                let same = x.to_bits() == want.to_bits() || (x.is_nan() && want.is_nan());
                if !same && untouched.pass() {
                    untouched = Comparison::fail(format!("prefix element {o} changed"));
                }
            } else if !x.is_nan() && untouched.pass() {
                untouched = Comparison::fail(format!(
                    "arena element {o} outside positions {:?} was written",
                    positions
                ));
            }
        }
        let order = |mut v: Vec<(usize, f32)>| -> Vec<f32> {
            v.sort_by_key(|&(i, _)| i);
            v.into_iter().map(|(_, x)| x).collect()
        };
        let (got_k, got_v) = (order(got_k), order(got_v));
        let (check_k, check_v, att_k, att_v) = if self.kv == DType::Q8_0Kv {
            // The rows on the Q8_0 grid (V bit-exact, K up to ties within the rotation's
            // slack), then the output over the rows the engine stored.
            let k_unrounded: Vec<f32> = k_rot.iter().copied().collect();
            let slack = q8::rotation_slack(
                heads_first(&k_new, nkv)
                    .as_slice()
                    .expect("standard layout"),
                hd,
            );
            let v_plain: Vec<f32> = heads_first(&v_new, nkv).iter().copied().collect();
            (
                q8::q8_rows(&k_unrounded, &slack, &got_k),
                q8::q8_rows(&v_plain, &vec![0.0; v_plain.len()], &got_v),
                got_k.clone(),
                got_v.clone(),
            )
        } else {
            let tol_kv = tolerance(Kind::Rotation { store: self.kv }).nmse;
            (
                compare(&k_rows, &got_k, tol_kv),
                compare(&v_rows, &got_v, tol_kv),
                k_rows,
                v_rows,
            )
        };
        let k3 = Array3::from_shape_vec((nkv, kv_len, hd), join(&k_pre, &att_k)).expect("sized");
        let v3 = Array3::from_shape_vec((nkv, kv_len, hd), join(&v_pre, &att_v)).expect("sized");
        let want =
            ops::attention_with(q_rot.view(), k3.view(), v3.view(), self.pos0, self.scores());
        let want: Vec<f32> = want
            .permuted_axes([1, 0, 2])
            .as_standard_layout()
            .iter()
            .copied()
            .collect();
        let mut checks = vec![
            Check::new("out", compare(&want, &got, self.tolerance().nmse)),
            Check::new("k", check_k),
            Check::new("v", check_v),
            Check::new("rest of arena", untouched),
        ];
        checks.extend(as_steps);
        Ok(checks)
    }

    /// A batched pass's rows: row i a sequence of its own, its cache holding pos0 + i keys
    /// (NaN past them), its step at that position; `rope_attention_batch` over all of them
    /// against `rope_attention` of each row alone (a fresh copy of its cache and step), by bits:
    /// the output row and the whole arena.
    fn run_batch<B: Backend>(&self, b: &B) -> Result<Vec<Check>> {
        let mut rng = Rng::new(self.seed);
        let hd = self.head_dim;
        let (qd, kvd, nkv) = (self.n_heads * hd, self.n_kv_heads * hd, self.n_kv_heads);
        let n = self.rows;
        let q = rng.values(n * qd, self.magnitude);
        let k_new = rng.values(n * kvd, self.magnitude);
        let v_new = rng.values(n * kvd, 1.0);
        let layer = 1;
        let layout = KvLayout {
            n_layers: 2,
            n_kv_heads: nkv,
            head_dim: hd,
            capacity: self.pos0 + n + 5,
            dtype: self.kv,
        };
        let inv_freq = rope::inv_freq(
            hd,
            &RopeConfig {
                theta: 500000.0,
                scaling: RopeScaling::None,
            },
        );
        let table: Vec<f32> = inv_freq.iter().copied().chain([1.0]).collect();
        let ft = upload(b, DType::F32, &table)?;
        // Each row's prefix (pos0 + i keys) and its step.
        let mut prefixes = Vec::with_capacity(n);
        for i in 0..n {
            let len = self.pos0 + i;
            let kp = rounded(self.kv, rng.values(nkv * len * hd, self.magnitude));
            let vp = rounded(self.kv, rng.values(nkv * len * hd, 1.0));
            prefixes.push((len, self.poison(kp, len), self.poison(vp, len)));
        }
        let step_at = |len: usize| -> Result<B::Step> {
            let mut st = b.new_step(1, layout.capacity)?;
            b.reset_step(&mut st, &vec![0; len + 1], 0)?;
            Ok(st)
        };
        let mut caches = Vec::with_capacity(n);
        let mut steps = Vec::with_capacity(n);
        let mut ones = Vec::with_capacity(n);
        for (len, kp, vp) in &prefixes {
            caches.push(fill_cache(b, layout, layer, kp, vp, *len)?);
            steps.push(step_at(*len)?);
            ones.push(OneRow::new(b, qd, kvd)?);
        }
        let (qt, kt, vt) = (
            upload(b, DType::F32, &q)?,
            upload(b, DType::F32, &k_new)?,
            upload(b, DType::F32, &v_new)?,
        );
        let mut out = guarded(b, DType::F32, n * qd)?;
        let mut rows: Vec<BatchRow<'_, B>> = caches
            .iter_mut()
            .zip(&steps)
            .zip(ones.iter_mut())
            .zip(&prefixes)
            .map(|(((cache, step), one), (len, _, _))| BatchRow {
                cache,
                one: one.scratch(),
                inv_freq: &ft,
                p: AttentionParams {
                    pos0: *len,
                    rows: 1,
                    ..self.params(layer)
                },
                step: Some(step),
            })
            .collect();
        b.rope_attention_batch(&qt, &kt, &vt, &mut out, &mut rows)?;
        if super::skip_reference() {
            return Ok(vec![]);
        }
        drop(rows);
        let got = match read_guarded(b, &out, n * qd)? {
            Ok(v) => v,
            Err(fail) => return Ok(vec![Check::new("out", fail)]),
        };
        let mut checks = Vec::new();
        for (i, (len, kp, vp)) in prefixes.iter().enumerate() {
            let mut alone = fill_cache(b, layout, layer, kp, vp, *len)?;
            let step = step_at(*len)?;
            let mut q1 = upload(b, DType::F32, &q[i * qd..(i + 1) * qd])?;
            let k1 = upload(b, DType::F32, &k_new[i * kvd..(i + 1) * kvd])?;
            let v1 = upload(b, DType::F32, &v_new[i * kvd..(i + 1) * kvd])?;
            let mut out1 = guarded(b, DType::F32, qd)?;
            let p = AttentionParams {
                pos0: *len,
                rows: 1,
                ..self.params(layer)
            };
            let st = Some(&step);
            b.rope_attention(&mut q1, &k1, &v1, &ft, &mut alone, &mut out1, p, st)?;
            let want = match read_guarded(b, &out1, qd)? {
                Ok(v) => v,
                Err(fail) => return Ok(vec![Check::new("out alone", fail)]),
            };
            let row = &got[i * qd..(i + 1) * qd];
            checks.push(Check::new(
                format!("row {i} as alone"),
                bits_equal(&want, row),
            ));
            let arena = same_bits(b, alone.arena(), caches[i].arena(), layout.elems(), "")?;
            checks.push(Check::new(format!("row {i} arena as alone"), arena.cmp));
        }
        Ok(checks)
    }
}

/// A sequence's one-row attention tensors (`RowScratch`'s owners).
struct OneRow<T> {
    q: T,
    k: T,
    v: T,
    out: T,
}

impl<T> OneRow<T> {
    fn new<B: Backend<Tensor = T>>(b: &B, qd: usize, kvd: usize) -> Result<Self> {
        Ok(OneRow {
            q: b.alloc(DType::F32, qd)?,
            k: b.alloc(DType::F32, kvd)?,
            v: b.alloc(DType::F32, kvd)?,
            out: b.alloc(DType::F32, qd)?,
        })
    }

    fn scratch(&mut self) -> RowScratch<'_, T> {
        RowScratch {
            q: &mut self.q,
            k: &mut self.k,
            v: &mut self.v,
            out: &mut self.out,
        }
    }
}

/// Whether two results are the same bits (NaN payloads aside: a NaN equals a NaN).
fn bits_equal(want: &[f32], got: &[f32]) -> Comparison {
    if want.len() != got.len() {
        return Comparison::fail(format!("{} values, not {}", got.len(), want.len()));
    }
    let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    match want.iter().zip(got).position(|(&a, &b)| !same(a, b)) {
        None => Comparison::exact(),
        Some(i) => Comparison::fail(format!(
            "element {i}: {} (bits {:#x}), not {} ({:#x})",
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        )),
    }
}

/// The first `n` values of two tensors compared by bits (`want` the one-at-a-time route's).
fn same_bits<B: Backend>(
    b: &B,
    want: &B::Tensor,
    got: &B::Tensor,
    n: usize,
    what: &str,
) -> Result<Check> {
    let (w, g) = (b.download_f32(want)?, b.download_f32(got)?);
    Ok(Check::new(
        format!("{what} as one row at a time"),
        bits_equal(&w[..n], &g[..n]),
    ))
}

/// The grid's plain case: `rows` query rows after `pos0` cached keys.
fn base_case(
    rows: usize,
    pos0: usize,
    (n_heads, n_kv_heads): (usize, usize),
    head_dim: usize,
    kv: DType,
) -> AttentionCase {
    AttentionCase {
        rows,
        pos0,
        n_heads,
        n_kv_heads,
        head_dim,
        kv,
        magnitude: 1.0,
        via_step: false,
        rope: false,
        window: None,
        score_scale: None,
        softcap: None,
        simple: false,
        route: RowsRoute::Plain,
        seed: 61,
    }
}

pub fn grid() -> Vec<AttentionCase> {
    let mut g = Vec::new();
    let case = base_case;
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
    // the flash prefill kernel (16-bit KV, head_dim a multiple of 16 up to 256): Llama-3.1-8B's
    // and 3.2-1B's shapes over several row tiles, a chunk after a long prefix, GQA 1/3/8, head
    // dims 16–256 (80, 96 in the 128-wide entry point), a single partial tile, two rows
    for kv in [DType::F16, DType::BF16] {
        g.push(case(513, 0, (32, 8), 128, kv));
        g.push(case(300, 0, (32, 4), 64, kv));
        g.push(case(200, 7991, (9, 3), 64, kv));
        g.push(case(45, 3, (4, 4), 80, kv));
        g.push(case(2, 0, (16, 2), 96, kv));
        g.push(case(33, 100, (8, 2), 16, kv));
        g.push(case(5, 11, (4, 2), 256, kv));
        // the simple kernel from an empty cache: row 0 has one key, so a wave64 block's second
        // wave sees none (its empty_wave path)
        g.push(case(3, 0, (4, 2), 6, kv));
    }
    g.extend(flash_256_grid(&case));
    // larger scores through the flash kernel's online softmax (max subtraction across tiles)
    g.push(AttentionCase {
        magnitude: 4.0,
        ..case(150, 40, (8, 2), 64, DType::F16)
    });
    // scores in the hundreds (std ≈ 0.37·m²·√hd·scale ≈ 95 at m = 16): exp overflows without max subtraction
    for rows in [1, 7] {
        g.push(AttentionCase {
            magnitude: 16.0,
            ..case(rows, 20, (8, 2), 64, DType::F32)
        });
    }
    // Q8_0 K/V (head dims multiples of 32; the phase-1 decode kernel, and prefill rows):
    // awkward lengths, GQA 1/3/4/8, head dim 96 whose rows cross superblocks
    for (i, (rows, pos0)) in [
        (1, 0),
        (1, 2),
        (1, 126),
        (1, 512),
        (1, 8190),
        (3, 0),
        (113, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let hd = [64, 96, 128, 256, 128, 96, 64][i];
        g.push(case(rows, pos0, gqa[i % 4], hd, DType::Q8_0Kv));
    }
    g.push(case(127, 5, (8, 2), 32, DType::Q8_0Kv));
    // Q8_0 through the flash kernel (its K/V widened to f16): the 8B shape over several row
    // tiles, a chunk after a long prefix, two rows at head dim 96 (the 128-wide entry point),
    // head dim 256 (the 256-wide one)
    g.push(case(513, 0, (32, 8), 128, DType::Q8_0Kv));
    g.push(case(200, 7991, (9, 3), 64, DType::Q8_0Kv));
    g.push(case(2, 0, (16, 2), 96, DType::Q8_0Kv));
    g.push(case(5, 11, (4, 2), 256, DType::Q8_0Kv));
    // the simple kernel (which the flash kernel leaves no Q8_0 prefill shape) from an empty
    // cache: row 0's one key leaves waves empty (empty_wave)
    g.push(AttentionCase {
        simple: true,
        ..case(3, 0, (4, 2), 256, DType::Q8_0Kv)
    });
    // the decode step's length read on the device
    for kv in [DType::F32, DType::F16, DType::BF16, DType::Q8_0Kv] {
        for (kv_len, hd) in [(1, 64), (513, 128)] {
            g.push(AttentionCase {
                via_step: true,
                ..case(1, kv_len - 1, (8, 2), hd, kv)
            });
        }
    }
    g.extend(rope_grid(&case));
    g.extend(window_grid(&case));
    g.extend(softcap_grid(&case));
    g.extend(routed_grid(&case, true));
    g
}

/// `flash_attention_256_{T}` (head dims 144–256: a row tile's dims split over a pair of waves,
/// their partial scores summed through shared memory; keys in tiles of 16): Gemma 3 270M's
/// shape (4 query heads on 1 KV head) at pp512 and off-tile lengths, GQA 1/3/8, a chunk after
/// a prefix, a head dim short of 256 (the second wave of a pair past head_dim for part of its
/// dims), one partial tile; with Gemma's scale, a sliding window (inside a key tile and over
/// many), soft-caps (Gemma 2's 50 and ones that bend the scores), larger scores; every KV type.
fn flash_256_grid(
    case: &impl Fn(usize, usize, (usize, usize), usize, DType) -> AttentionCase,
) -> Vec<AttentionCase> {
    let mut g = Vec::new();
    let gemma = |cap: Option<f32>, window: Option<usize>, c: AttentionCase| AttentionCase {
        magnitude: 2.0,
        score_scale: Some(224.0f64.powf(-0.5) as f32),
        softcap: cap,
        window,
        ..c
    };
    for kv in [DType::F16, DType::BF16, DType::Q8_0Kv] {
        g.push(case(512, 0, (4, 1), 256, kv));
        g.push(case(113, 0, (9, 3), 256, kv));
        g.push(case(127, 300, (32, 4), 256, kv));
        g.push(case(37, 5, (4, 4), 160, kv));
        g.push(case(3, 0, (8, 2), 256, kv));
        g.push(gemma(None, Some(512), case(513, 0, (4, 1), 256, kv)));
        g.push(gemma(
            Some(50.0),
            Some(512),
            case(200, 700, (4, 1), 256, kv),
        ));
        g.push(gemma(Some(3.0), Some(7), case(70, 3, (4, 1), 256, kv)));
        g.push(gemma(Some(2.0), None, case(45, 30, (8, 2), 256, kv)));
        g.push(AttentionCase {
            magnitude: 4.0,
            ..case(150, 40, (8, 2), 256, kv)
        });
    }
    g
}

/// Gemma's score scale and Gemma 2's attention soft-cap through every attention kernel and
/// KV type: decode rows (`attention_decode_{T}`), prefill rows on the simple kernel (f32 KV,
/// head_dim 256) and on the flash kernel (both widths), and the fused decode kernel
/// (`rope_attention` rows), some with a sliding window too (Gemma 2 slides every other layer:
/// the cap comes before the mask, so a masked key stays out). Caps of 1 to 5 over scores
/// that reach past them (magnitude 2: std ≈ 0.37·4·√hd·scale ≈ 1–2, tails to 5+), so the cap
/// bends many scores; the scale is query_pre_attn_scalar^-0.5 for a scalar ≠ head_dim (Gemma 2
/// 9B/27B style: 144 over head_dim 64, 192 over 128, 224 over 256); one large cap (50, Gemma
/// 2's) where it barely bites; and scale-only cases (no cap).
fn softcap_grid(
    case: &impl Fn(usize, usize, (usize, usize), usize, DType) -> AttentionCase,
) -> Vec<AttentionCase> {
    let mut g = Vec::new();
    let gemma = |cap: Option<f32>, c: AttentionCase| AttentionCase {
        magnitude: 2.0,
        score_scale: Some(
            (match c.head_dim {
                64 => 144.0f64,
                128 => 192.0,
                _ => 224.0,
            })
            .powf(-0.5) as f32,
        ),
        softcap: cap,
        ..c
    };
    let windowed = |w: usize, c: AttentionCase| AttentionCase {
        window: Some(w),
        ..c
    };
    let rope = |c: AttentionCase, via_step| AttentionCase {
        rope: true,
        via_step,
        ..c
    };
    for kv in [DType::F32, DType::F16, DType::BF16, DType::Q8_0Kv] {
        // attention_decode_{T}: one row, the position from the params and from the step
        g.push(gemma(Some(2.0), case(1, 100, (8, 2), 64, kv)));
        g.push(gemma(
            Some(3.0),
            windowed(
                9,
                AttentionCase {
                    via_step: true,
                    ..case(1, 40, (4, 4), 128, kv)
                },
            ),
        ));
        // attention_{T}: prefill rows on the simple kernel (head_dim 256, where the flash
        // kernel would take them but for the case's `simple`; f32 KV at 64)
        let simple = |c: AttentionCase| AttentionCase { simple: true, ..c };
        g.push(gemma(Some(2.0), simple(case(5, 11, (4, 2), 256, kv))));
        g.push(gemma(
            Some(5.0),
            simple(windowed(6, case(20, 3, (4, 1), 256, kv))),
        ));
        // rope_attention through the separate ops (two rows)
        g.push(gemma(Some(2.0), rope(case(2, 30, (8, 2), 64, kv), false)));
    }
    g.push(gemma(Some(2.0), case(7, 20, (8, 2), 64, DType::F32)));
    for kv in [DType::F16, DType::BF16, DType::Q8_0Kv] {
        // flash_attention_{64,128}_{T}: several row tiles, a chunk after a prefix, GQA 1 and
        // 4, a window over several key tiles (masked keys after the cap)
        g.push(gemma(Some(2.0), case(70, 3, (4, 4), 64, kv)));
        g.push(gemma(Some(1.0), windowed(20, case(65, 40, (4, 1), 64, kv))));
        g.push(gemma(Some(5.0), case(45, 30, (8, 2), 128, kv)));
        g.push(gemma(
            Some(3.0),
            windowed(40, case(150, 100, (8, 4), 128, kv)),
        ));
        // decode_attention_{T} (the fused kernel): one split and several, a window, head dims
        // 256 and 64, the position from the step
        g.push(gemma(Some(2.0), rope(case(1, 300, (4, 1), 256, kv), false)));
        g.push(gemma(
            Some(3.0),
            windowed(512, rope(case(1, 2000, (4, 1), 256, kv), true)),
        ));
        g.push(gemma(Some(1.0), rope(case(1, 4000, (8, 2), 64, kv), true)));
        // the scale alone, and Gemma 2's own cap (50), through the flash and fused kernels
        g.push(gemma(None, case(70, 3, (4, 4), 64, kv)));
        g.push(gemma(None, rope(case(1, 700, (4, 4), 128, kv), false)));
        g.push(gemma(Some(50.0), case(45, 30, (8, 2), 128, kv)));
    }
    g.push(gemma(None, case(1, 100, (8, 2), 64, DType::F32)));
    g.push(gemma(None, case(7, 20, (8, 2), 64, DType::F32)));
    g
}

/// Sliding windows (Mistral): decode rows far past the window (position from the params and
/// from the step), prefill rows that start inside the window and run past it, a chunk after a
/// long prefix, and `rope_attention` decode rows, over every KV type; plus a window that masks
/// nothing (the flash kernel may take those rows). Keys before the first row's window are NaN.
fn window_grid(
    case: &impl Fn(usize, usize, (usize, usize), usize, DType) -> AttentionCase,
) -> Vec<AttentionCase> {
    let mut g = Vec::new();
    let windowed = |w: usize, c: AttentionCase| AttentionCase {
        window: Some(w),
        ..c
    };
    for kv in [DType::F32, DType::F16, DType::BF16, DType::Q8_0Kv] {
        g.push(windowed(17, case(1, 100, (8, 2), 64, kv)));
        g.push(windowed(
            9,
            AttentionCase {
                via_step: true,
                ..case(1, 40, (4, 4), 128, kv)
            },
        ));
        g.push(windowed(7, case(20, 0, (8, 2), 64, kv)));
        g.push(windowed(16, case(40, 30, (9, 3), 64, kv)));
        g.push(windowed(
            8,
            AttentionCase {
                rope: true,
                via_step: true,
                ..case(1, 50, (8, 2), 64, kv)
            },
        ));
    }
    g.push(windowed(64, case(33, 0, (8, 2), 64, DType::F16)));
    // The flash kernel's window (16-bit and Q8_0 KV): rows straddling the window's edge over
    // many key tiles (the later row tiles skip the tiles before their first key), windows
    // smaller than a key tile (32), a chunk far past the window (the keys before it NaN), GQA
    // 1 and 4 (Gemma 3: 4 query heads on 1 KV head), head_dim 256 (Gemma 3's local layers).
    for kv in [DType::F16, DType::BF16, DType::Q8_0Kv] {
        g.push(windowed(100, case(300, 0, (32, 4), 128, kv)));
        g.push(windowed(5, case(70, 3, (4, 4), 64, kv)));
        g.push(windowed(20, case(65, 40, (4, 1), 64, kv)));
        g.push(windowed(512, case(200, 700, (4, 1), 128, kv)));
        g.push(windowed(600, case(150, 100, (4, 1), 64, kv)));
        g.push(windowed(512, case(40, 600, (4, 1), 256, kv)));
    }
    // The fused decode kernel's window (`rope_attention` rows; the keys before the window NaN):
    // before the window fills and long after (the splits cover only the window's keys), GQA 4
    // (Gemma 3 270M: head_dim 256, window 512) and 1, head_dim 64, the position from the step.
    let rope = |c: AttentionCase, via_step| AttentionCase {
        rope: true,
        via_step,
        ..c
    };
    for kv in [DType::F16, DType::BF16, DType::Q8_0Kv] {
        g.push(windowed(512, rope(case(1, 300, (4, 1), 256, kv), false)));
        g.push(windowed(512, rope(case(1, 2000, (4, 1), 256, kv), true)));
        g.push(windowed(64, rope(case(1, 700, (4, 4), 64, kv), false)));
        g.push(windowed(1000, rope(case(1, 5000, (4, 1), 64, kv), true)));
        g.push(windowed(3, rope(case(1, 40, (4, 4), 64, kv), true)));
    }
    g
}

/// `rope_attention`: the fused decode kernel's lengths (one split, several, several sub-chunks
/// of 1024 keys per split, the model's long contexts), head dims 64–256, GQA groups 1–16 (more
/// than 4: several slabs), both 16-bit KV types, the position from the step; and f32 KV and
/// prefill rows, which take the separate ops.
fn rope_grid(
    case: &impl Fn(usize, usize, (usize, usize), usize, DType) -> AttentionCase,
) -> Vec<AttentionCase> {
    let mut g = Vec::new();
    let rope = |rows, kv_len: usize, heads, hd, kv| AttentionCase {
        rope: true,
        ..case(rows, kv_len - rows, heads, hd, kv)
    };
    let gqa = [(4, 4), (9, 3), (32, 8), (14, 2), (16, 2), (32, 2)]; // 1, 3, 4, 7, 8, 16
    for kv in [DType::F16, DType::BF16] {
        for (i, kv_len) in [1usize, 3, 64, 65, 113, 127, 513, 8191, 32768]
            .into_iter()
            .enumerate()
        {
            let hd = [64, 80, 96, 128, 256][i % 5];
            let mut c = rope(1, kv_len, gqa[i % gqa.len()], hd, kv);
            c.via_step = i % 2 == 1;
            g.push(c);
        }
    }
    // the longest context of Llama 3 (131072) on its shape, one KV head pair to keep it small
    g.push(rope(1, 131072, (8, 2), 128, DType::BF16));
    // more KV heads than any device has multiprocessors: one split, whose 2100 keys take three
    // sub-chunks (the online rescale between them); head_dim 32 (4 lanes a key)
    for kv in [DType::F16, DType::BF16] {
        g.push(rope(1, 2100, (512, 512), 32, kv));
    }
    // head_dim 48: 6 pieces in 8 lanes (two lanes of each key idle)
    g.push(rope(1, 700, (12, 3), 48, DType::BF16));
    // large scores across splits (the combine's max subtraction)
    g.push(AttentionCase {
        magnitude: 16.0,
        ..rope(1, 4000, (8, 2), 64, DType::F16)
    });
    // Q8_0 K/V through the fused kernel (quantized in groups of 4 lanes): one split, several,
    // sub-chunks, long contexts, head dims 32–256 (96: rows that cross superblocks), GQA 1–16;
    // large scores; and prefill rows through the separate ops
    for (i, kv_len) in [1usize, 3, 65, 127, 513, 2100, 8191, 32768]
        .into_iter()
        .enumerate()
    {
        let hd = [64, 96, 128, 256, 32, 96, 128, 64][i];
        let mut c = rope(1, kv_len, gqa[i % gqa.len()], hd, DType::Q8_0Kv);
        c.via_step = i % 2 == 0;
        g.push(c);
    }
    g.push(AttentionCase {
        magnitude: 16.0,
        ..rope(1, 4000, (8, 2), 64, DType::Q8_0Kv)
    });
    // one split of 2100 keys: three sub-chunks
    g.push(rope(1, 2100, (512, 512), 32, DType::Q8_0Kv));
    g.push(rope(5, 40, (8, 2), 64, DType::Q8_0Kv));
    g.push(rope(3, 700, (12, 3), 96, DType::Q8_0Kv));
    // the matrix-instruction decode kernels (16-bit KV, head dims 64 and 128): a whole m-tile of
    // 16 query heads in one split of a few keys (waves past the split's tiles: whole tiles
    // masked), two slabs of 16 over several splits, a sliding window with a soft-cap and the
    // position from the step; and the vector kernel (`simple`) at the same shapes
    for kv in [DType::F16, DType::BF16] {
        for hd in [64, 128] {
            g.push(rope(1, 40, (16, 1), hd, kv));
            g.push(rope(1, 3000, (32, 1), hd, kv));
            g.push(AttentionCase {
                window: Some(700),
                softcap: Some(20.0),
                via_step: true,
                ..rope(1, 2500, (8, 2), hd, kv)
            });
            g.push(AttentionCase {
                simple: true,
                ..rope(1, 3000, (32, 1), hd, kv)
            });
        }
    }
    g.extend(routed_grid(case, false));
    // the separate ops: f32 KV, a head dim off 16, prefill rows
    g.push(rope(1, 300, (8, 2), 64, DType::F32));
    g.push(rope(1, 300, (8, 2), 72, DType::F16));
    g.push(rope(5, 40, (8, 2), 64, DType::BF16));
    g
}

/// Several decode rows a launch (the GPU's rows kernel), each KV type, each case by bits
/// against the rows one at a time: a verification's rows as decode steps and a batched pass's
/// rows of separate sequences, at one split, with a window and a soft-cap; with `long`, also
/// the lengths that take the kernel's other paths on a GPU (several splits combined; one split
/// of three sub-chunks; the rows kernels' several splits at head dims 64 and 96 for 16-bit KV).
/// A host backend runs the rows one at a time (the trait's defaults), so
/// the long cases add nothing there but minutes ([`host_grid`]).
fn routed_grid(
    case: &impl Fn(usize, usize, (usize, usize), usize, DType) -> AttentionCase,
    long: bool,
) -> Vec<AttentionCase> {
    let mut g = Vec::new();
    let rope = |rows, kv_len: usize, heads, hd, kv| AttentionCase {
        rope: true,
        ..case(rows, kv_len - rows, heads, hd, kv)
    };
    let routed = |route, c: AttentionCase| AttentionCase { route, ..c };
    let gemma = |c: AttentionCase| AttentionCase {
        window: Some(64),
        softcap: Some(30.0),
        score_scale: Some(0.0625),
        ..c
    };
    let (steps, batch) = (RowsRoute::Steps, RowsRoute::Batch);
    for kv in [DType::F16, DType::BF16, DType::Q8_0Kv] {
        if long {
            g.push(routed(steps, rope(3, 8191, (32, 8), 128, kv)));
            g.push(routed(steps, rope(3, 2100, (512, 512), 32, kv)));
            g.push(routed(batch, case(3, 8191, (32, 8), 128, kv)));
            if kv != DType::Q8_0Kv {
                // several splits on the matrix-instruction rows kernel at head dim 64, and on
                // the vector rows kernel, which takes 16-bit KV at head dims other than 64
                // and 128
                g.push(routed(steps, rope(3, 3000, (8, 2), 64, kv)));
                g.push(routed(steps, rope(3, 3000, (8, 2), 96, kv)));
            }
        } else {
            // head dims 64 and 128: the GPU's matrix-instruction rows kernels over 16-bit KV
            for hd in [64, 128] {
                g.push(routed(steps, rope(5, 40, (8, 2), hd, kv)));
                g.push(routed(steps, gemma(rope(4, 300, (8, 2), hd, kv))));
                g.push(routed(batch, case(4, 40, (8, 2), hd, kv)));
                g.push(routed(batch, gemma(case(4, 300, (8, 2), hd, kv))));
            }
            if kv != DType::Q8_0Kv {
                // the vector rows kernel over 16-bit KV (head dim 96): the position from the
                // step, a window and a soft-cap
                g.push(routed(batch, gemma(case(4, 300, (8, 2), 96, kv))));
            }
        }
    }
    g
}

/// [`grid`] without the long several-row cases: what a host backend (the CPU's, the planted
/// one) is run on in CI.
pub fn host_grid() -> Vec<AttentionCase> {
    let long: Vec<AttentionCase> = routed_grid(&base_case, true);
    grid().into_iter().filter(|c| !long.contains(c)).collect()
}

/// A drawn case: (rows, pos0, group, n_kv_heads, head_dim, kv, seed).
type Drawn = (usize, usize, usize, usize, usize, DType, u64);

fn drawn_case(
    rope: bool,
    (rows, pos0, group, n_kv_heads, head_dim, kv, seed): Drawn,
) -> AttentionCase {
    // Q8_0 rows are whole blocks of 32
    let head_dim = if kv == DType::Q8_0Kv {
        head_dim.next_multiple_of(32)
    } else {
        head_dim
    };
    AttentionCase {
        rows,
        pos0,
        n_heads: group * n_kv_heads,
        n_kv_heads,
        head_dim,
        kv,
        magnitude: 1.0,
        via_step: false,
        rope,
        window: None,
        score_scale: None,
        softcap: None,
        simple: false,
        route: RowsRoute::Plain,
        seed,
    }
}

pub fn strategy() -> impl Strategy<Value = AttentionCase> {
    (
        (
            1usize..10,
            0usize..200,
            1usize..5,
            1usize..4,
            prop_oneof![
                Just(16usize),
                Just(64),
                Just(80),
                Just(96),
                Just(128),
                Just(160),
                Just(256)
            ],
            prop_oneof![
                Just(DType::F32),
                Just(DType::F16),
                Just(DType::BF16),
                Just(DType::Q8_0Kv)
            ],
            any::<u64>(),
        ),
        // a sliding window in one case of four, a soft-cap (and Gemma's scale) in one of four
        prop_oneof![3 => Just(None), 1 => (1usize..64).prop_map(Some)],
        prop_oneof![3 => Just(None), 1 => (0.5f32..60.0).prop_map(Some)],
    )
        .prop_map(|(d, window, softcap)| AttentionCase {
            window,
            softcap,
            score_scale: softcap.map(|_| (d.4 as f32 * 1.5).powf(-0.5)),
            ..drawn_case(false, d)
        })
}

/// `rope_attention` at random decode lengths and shapes (rows 1, 16-bit KV: the fused kernel;
/// otherwise the separate ops).
pub fn rope_strategy() -> impl Strategy<Value = AttentionCase> {
    (
        prop_oneof![3 => Just(1usize), 1 => 2usize..4],
        0usize..3000,
        1usize..9,
        1usize..4,
        prop_oneof![Just(64usize), Just(80), Just(96), Just(128), Just(256)],
        prop_oneof![
            Just(DType::F32),
            Just(DType::F16),
            Just(DType::BF16),
            Just(DType::Q8_0Kv)
        ],
        any::<u64>(),
        prop_oneof![3 => Just(None), 1 => (0.5f32..60.0).prop_map(Some)],
    )
        .prop_map(
            |(rows, pos0, group, n_kv, hd, kv, seed, softcap)| AttentionCase {
                softcap,
                ..drawn_case(true, (rows, pos0, group, n_kv, hd, kv, seed))
            },
        )
}
