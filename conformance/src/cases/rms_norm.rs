//! `rms_norm` with the fused residual add: `x += residual; out = x / √(mean(x²) + eps) · w`;
//! and its in-place form `rms_norm_in_place` (`x = x / √(mean(x²) + eps) · w`), Qwen3's QK-norm
//! over rows of head_dim (the GPU runs the same kernel with `out` = `x`); and Gemma's post-norm
//! residual add `rms_norm_add` (`x += y / √(mean(y²) + eps) · w`, the GPU's kernel adding into
//! `out` = `x` in its second pass).

use ndarray::{Array1, Array2};
use proptest::prelude::*;
use wavefront::backend::{Backend, RmsNormParams};
use wavefront::{DType, Result};
use wavefront_reference::ops;

use super::Check;
use crate::compare::compare;
use crate::harness::{guarded, read_guarded, upload, with_guard, Rng};
use crate::tolerance::{tolerance, Kind, Tolerance};

#[derive(Debug, Clone, PartialEq)]
pub struct RmsNormCase {
    pub rows: usize,
    pub dim: usize,
    pub eps: f32,
    pub residual: bool,
    /// `rms_norm_in_place` (no residual): the result is read back from `x` itself.
    pub in_place: bool,
    /// `rms_norm_add` (no residual, not in place): the normalised rows added into a second
    /// tensor, read back from it.
    pub add: bool,
    /// Magnitude of x: small values make eps matter, large ones test the squares' range.
    pub scale: f32,
    pub seed: u64,
}

impl RmsNormCase {
    pub fn name(&self) -> String {
        format!(
            "rows={},dim={},eps={:e},residual={},scale={:e}{}",
            self.rows,
            self.dim,
            self.eps,
            self.residual,
            self.scale,
            if self.in_place { ",in_place" } else { "" }
        ) + if self.add { ",add" } else { "" }
    }

    pub fn tolerance(&self) -> Tolerance {
        tolerance(Kind::Reduction { n: self.dim })
    }

    pub fn run<B: Backend>(&self, b: &B) -> Result<Vec<Check>> {
        let mut rng = Rng::new(self.seed);
        let n = self.rows * self.dim;
        let x = rng.values(n, self.scale);
        let r = rng.values(n, self.scale);
        let w: Vec<f32> = rng.values(self.dim, 0.2).iter().map(|v| 1.0 + v).collect();
        let mut xt = upload(b, DType::F32, &x)?;
        let rt = upload(b, DType::F32, &r)?;
        let wt = upload(b, DType::F32, &w)?;
        let p = RmsNormParams {
            rows: self.rows,
            dim: self.dim,
            eps: self.eps,
        };
        if self.in_place {
            return self.run_in_place(b, x, w, p);
        }
        if self.add {
            return self.run_add(b, x, r, w, p);
        }
        let mut out = guarded(b, DType::F32, n)?;
        b.rms_norm(&mut xt, self.residual.then_some(&rt), &wt, &mut out, p)?;
        let got = match read_guarded(b, &out, n)? {
            Ok(v) => v,
            Err(fail) => return Ok(vec![Check::new("out", fail)]),
        };
        let got_x = b.download_f32(&xt)?;

        // (rows, dim): the residual stream after the add, then its norm
        let mut sum = Array2::from_shape_vec((self.rows, self.dim), x).expect("sized");
        if self.residual {
            sum = sum + Array2::from_shape_vec((self.rows, self.dim), r).expect("sized");
        }
        let want = ops::rms_norm(sum.view(), Array1::from(w).view(), self.eps);
        let tol = self.tolerance().nmse;
        Ok(vec![
            Check::new(
                "out",
                compare(want.as_slice().expect("standard"), &got, tol),
            ),
            // The add is a single f32 rounding: exact on both sides.
            Check::new(
                "x",
                compare(sum.as_slice().expect("standard"), &got_x[..n], 0.0),
            ),
        ])
    }
}

impl RmsNormCase {
    /// `acc += norm(y) · w` with `y` = the case's `x` and `acc` = its residual values, `acc` in a
    /// guarded buffer; `y` must come back unchanged.
    fn run_add<B: Backend>(
        &self,
        b: &B,
        y: Vec<f32>,
        acc: Vec<f32>,
        w: Vec<f32>,
        p: RmsNormParams,
    ) -> Result<Vec<Check>> {
        let n = self.rows * self.dim;
        let mut yt = upload(b, DType::F32, &y)?;
        let mut acct = upload(b, DType::F32, &with_guard(acc.clone()))?;
        let wt = upload(b, DType::F32, &w)?;
        let mut tmp = b.alloc(DType::F32, n)?;
        b.rms_norm_add(&mut yt, &wt, &mut acct, &mut tmp, p)?;
        let got = match read_guarded(b, &acct, n)? {
            Ok(v) => v,
            Err(fail) => return Ok(vec![Check::new("x", fail)]),
        };
        let got_y = b.download_f32(&yt)?;
        let ya = Array2::from_shape_vec((self.rows, self.dim), y.clone()).expect("sized");
        let normed = ops::rms_norm(ya.view(), Array1::from(w).view(), self.eps);
        let want = Array2::from_shape_vec((self.rows, self.dim), acc).expect("sized") + normed;
        let tol = self.tolerance().nmse;
        Ok(vec![
            Check::new("x", compare(want.as_slice().expect("standard"), &got, tol)),
            Check::new("y", compare(&y, &got_y[..n], 0.0)),
        ])
    }

    /// `x` normalised in place, in a guarded buffer (the elements past `rows·dim` must stay).
    fn run_in_place<B: Backend>(
        &self,
        b: &B,
        x: Vec<f32>,
        w: Vec<f32>,
        p: RmsNormParams,
    ) -> Result<Vec<Check>> {
        let n = self.rows * self.dim;
        let mut xt = upload(b, DType::F32, &with_guard(x.clone()))?;
        let wt = upload(b, DType::F32, &w)?;
        b.rms_norm_in_place(&mut xt, &wt, p)?;
        let got = match read_guarded(b, &xt, n)? {
            Ok(v) => v,
            Err(fail) => return Ok(vec![Check::new("x", fail)]),
        };
        let x = Array2::from_shape_vec((self.rows, self.dim), x).expect("sized");
        let want = ops::rms_norm(x.view(), Array1::from(w).view(), self.eps);
        let tol = self.tolerance().nmse;
        Ok(vec![Check::new(
            "x",
            compare(want.as_slice().expect("standard"), &got, tol),
        )])
    }
}

pub fn grid() -> Vec<RmsNormCase> {
    let mut g = Vec::new();
    // dim 5: row 0 aligned with a scalar tail, rows 1.. off 16 bytes (scalar); dim 1: a tail
    // only.
    for (rows, dim) in [
        (1, 64),
        (3, 576),
        (113, 96),
        (1, 4096),
        (7, 8192),
        (3, 5),
        (2, 1),
    ] {
        for residual in [false, true] {
            g.push(RmsNormCase {
                rows,
                dim,
                eps: 1e-5,
                residual,
                in_place: false,
                add: false,
                scale: 1.0,
                seed: 21,
            });
        }
    }
    // In place, rows of head_dim (QK-norm: tokens × heads): 128 and 64 (Qwen3's), 80, 16 and
    // an odd 6 (rows 1.. off 16 bytes: the scalar path), one row (a decode step's one head).
    for (rows, dim) in [(48, 128), (3 * 17, 64), (5, 80), (9, 16), (7, 6), (1, 128)] {
        g.push(RmsNormCase {
            rows,
            dim,
            eps: 1e-6,
            residual: false,
            in_place: true,
            add: false,
            scale: 1.0,
            seed: 24,
        });
    }
    // Gemma's post-norm residual add: 640 (Gemma 3 270M's hidden size), 1152, an aligned row
    // with a tail, rows off 16 bytes (dim 5), many rows.
    for (rows, dim) in [(1, 640), (1, 1152), (3, 578), (3, 5), (33, 96)] {
        g.push(RmsNormCase {
            rows,
            dim,
            eps: 1e-6,
            residual: false,
            in_place: false,
            add: true,
            scale: 1.0,
            seed: 25,
        });
    }
    // eps comparable to mean(x²), and large activations.
    g.push(RmsNormCase {
        rows: 2,
        dim: 128,
        eps: 1e-2,
        residual: true,
        in_place: false,
        add: false,
        scale: 0.05,
        seed: 22,
    });
    g.push(RmsNormCase {
        rows: 2,
        dim: 128,
        eps: 1e-6,
        residual: false,
        in_place: false,
        add: false,
        scale: 300.0,
        seed: 23,
    });
    g
}

pub fn strategy() -> impl Strategy<Value = RmsNormCase> {
    (
        1usize..20,
        1usize..700,
        prop_oneof![
            Just((false, false, false)),
            Just((true, false, false)),
            Just((false, true, false)),
            Just((false, false, true))
        ],
        prop_oneof![Just(1e-5f32), Just(1e-6)],
        any::<u64>(),
    )
        .prop_map(
            |(rows, dim, (residual, in_place, add), eps, seed)| RmsNormCase {
                rows,
                dim,
                eps,
                residual,
                in_place,
                add,
                scale: 1.0,
                seed,
            },
        )
}
