//! `rms_norm` with the fused residual add: `x += residual; out = x / √(mean(x²) + eps) · w`.

use ndarray::{Array1, Array2};
use proptest::prelude::*;
use wavefront::backend::{Backend, RmsNormParams};
use wavefront::{DType, Result};
use wavefront_reference::ops;

use super::Check;
use crate::compare::compare;
use crate::harness::{guarded, read_guarded, upload, Rng};
use crate::tolerance::{tolerance, Kind, Tolerance};

#[derive(Debug, Clone, PartialEq)]
pub struct RmsNormCase {
    pub rows: usize,
    pub dim: usize,
    pub eps: f32,
    pub residual: bool,
    /// Magnitude of x: small values make eps matter, large ones test the squares' range.
    pub scale: f32,
    pub seed: u64,
}

impl RmsNormCase {
    pub fn name(&self) -> String {
        format!(
            "rows={},dim={},eps={:e},residual={},scale={:e}",
            self.rows, self.dim, self.eps, self.residual, self.scale
        )
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
        let mut out = guarded(b, DType::F32, n)?;
        let p = RmsNormParams {
            rows: self.rows,
            dim: self.dim,
            eps: self.eps,
        };
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
                scale: 1.0,
                seed: 21,
            });
        }
    }
    // eps comparable to mean(x²), and large activations.
    g.push(RmsNormCase {
        rows: 2,
        dim: 128,
        eps: 1e-2,
        residual: true,
        scale: 0.05,
        seed: 22,
    });
    g.push(RmsNormCase {
        rows: 2,
        dim: 128,
        eps: 1e-6,
        residual: false,
        scale: 300.0,
        seed: 23,
    });
    g
}

pub fn strategy() -> impl Strategy<Value = RmsNormCase> {
    (
        1usize..20,
        1usize..700,
        any::<bool>(),
        prop_oneof![Just(1e-5f32), Just(1e-6)],
        any::<u64>(),
    )
        .prop_map(|(rows, dim, residual, eps, seed)| RmsNormCase {
            rows,
            dim,
            eps,
            residual,
            scale: 1.0,
            seed,
        })
}
