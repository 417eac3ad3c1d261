//! Elementwise ops: `swiglu` (silu(gate)·up) and the residual `add`.

use ndarray::Array2;
use proptest::prelude::*;
use wavefront::backend::{Activation, Backend};
use wavefront::{DType, Result};
use wavefront_reference::ops;

use super::{Check, Op};
use crate::compare::compare;
use crate::harness::{guarded, read_guarded, upload, with_guard, Rng};
use crate::tolerance::{tolerance, Kind, Tolerance};

#[derive(Debug, Clone, PartialEq)]
pub struct ElementwiseCase {
    pub swiglu: bool,
    pub n: usize,
    /// Magnitude of the inputs: large gates exercise exp's range (silu → 0 and → x).
    pub scale: f32,
    pub seed: u64,
}

impl ElementwiseCase {
    pub fn op(&self) -> Op {
        if self.swiglu {
            Op::Swiglu
        } else {
            Op::Add
        }
    }

    pub fn name(&self) -> String {
        format!("n={},scale={}", self.n, self.scale)
    }

    pub fn tolerance(&self) -> Tolerance {
        tolerance(Kind::Elementwise)
    }

    pub fn run<B: Backend>(&self, b: &B) -> Result<Vec<Check>> {
        let mut rng = Rng::new(self.seed);
        let a = rng.values(self.n, self.scale);
        let c = rng.values(self.n, self.scale);
        let at = upload(b, DType::F32, &a)?;
        let ct = upload(b, DType::F32, &c)?;
        let tol = self.tolerance().nmse;
        if self.swiglu {
            let mut out = guarded(b, DType::F32, self.n)?;
            b.swiglu(&at, &ct, &mut out, self.n, Activation::Silu)?;
            let got = match read_guarded(b, &out, self.n)? {
                Ok(v) => v,
                Err(fail) => return Ok(vec![Check::new("out", fail)]),
            };
            let g = Array2::from_shape_vec((1, self.n), a).expect("sized");
            let u = Array2::from_shape_vec((1, self.n), c).expect("sized");
            let want = ops::swiglu(g.view(), u.view());
            Ok(vec![Check::new(
                "out",
                compare(want.as_slice().expect("standard"), &got, tol),
            )])
        } else {
            // x += y in place; the guard sits after x.
            let mut xt = upload(b, DType::F32, &with_guard(a.clone()))?;
            b.add(&mut xt, &ct, self.n)?;
            let got = match read_guarded(b, &xt, self.n)? {
                Ok(v) => v,
                Err(fail) => return Ok(vec![Check::new("x", fail)]),
            };
            let want: Vec<f32> = a.iter().zip(&c).map(|(x, y)| x + y).collect();
            Ok(vec![Check::new("x", compare(&want, &got, tol))])
        }
    }
}

pub fn grid() -> Vec<ElementwiseCase> {
    let mut g = Vec::new();
    for swiglu in [true, false] {
        for n in [1, 3, 127, 513, 1536 * 3, 8191] {
            g.push(ElementwiseCase {
                swiglu,
                n,
                scale: 4.0,
                seed: 41,
            });
        }
    }
    g.push(ElementwiseCase {
        swiglu: true,
        n: 1000,
        scale: 80.0,
        seed: 42,
    });
    g
}

pub fn strategy() -> impl Strategy<Value = ElementwiseCase> {
    (
        any::<bool>(),
        1usize..5000,
        prop_oneof![Just(1.0f32), Just(10.0), Just(90.0)],
        any::<u64>(),
    )
        .prop_map(|(swiglu, n, scale, seed)| ElementwiseCase {
            swiglu,
            n,
            scale,
            seed,
        })
}
