//! Elementwise ops: `swiglu` (act(gate)·up: silu, or GELU-tanh with `act`) and the residual `add`.

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
    /// The activation of `swiglu` (unused by `add`).
    pub act: Activation,
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
        let act = if self.swiglu && self.act == Activation::GeluTanh {
            ",gelu"
        } else {
            ""
        };
        format!("n={},scale={}{act}", self.n, self.scale)
    }

    /// The inputs: gate (or x) and up (or y).
    fn inputs(&self) -> (Vec<f32>, Vec<f32>) {
        let mut rng = Rng::new(self.seed);
        let a = rng.values(self.n, self.scale);
        let c = rng.values(self.n, self.scale);
        (a, c)
    }

    pub fn tolerance(&self) -> Tolerance {
        if self.swiglu && self.act == Activation::GeluTanh {
            // Σ(g·u)² over Σ(gelu_tanh(g)·u)² of this case's draw (the bound is per element
            // relative to |g·u|).
            let (g, u) = self.inputs();
            let sq = |x: f32| f64::from(x) * f64::from(x);
            let num: f64 = g.iter().zip(&u).map(|(&g, &u)| sq(g * u)).sum();
            let den: f64 = g
                .iter()
                .zip(&u)
                .map(|(&g, &u)| sq(ops::gated::gelu_tanh(g) * u))
                .sum();
            tolerance(Kind::GatedGelu {
                ratio: if den > 0.0 { num / den } else { f64::INFINITY },
            })
        } else {
            tolerance(Kind::Elementwise)
        }
    }

    pub fn run<B: Backend>(&self, b: &B) -> Result<Vec<Check>> {
        let (a, c) = self.inputs();
        let at = upload(b, DType::F32, &a)?;
        let ct = upload(b, DType::F32, &c)?;
        let tol = self.tolerance().nmse;
        if self.swiglu {
            let mut out = guarded(b, DType::F32, self.n)?;
            b.swiglu(&at, &ct, &mut out, self.n, self.act)?;
            let got = match read_guarded(b, &out, self.n)? {
                Ok(v) => v,
                Err(fail) => return Ok(vec![Check::new("out", fail)]),
            };
            let g = Array2::from_shape_vec((1, self.n), a).expect("sized");
            let u = Array2::from_shape_vec((1, self.n), c).expect("sized");
            let want = match self.act {
                Activation::Silu => ops::swiglu(g.view(), u.view()),
                Activation::GeluTanh => ops::geglu(g.view(), u.view()),
            };
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
                act: Activation::Silu,
                n,
                scale: 4.0,
                seed: 41,
            });
        }
    }
    g.push(ElementwiseCase {
        swiglu: true,
        act: Activation::Silu,
        n: 1000,
        scale: 80.0,
        seed: 42,
    });
    // GELU-tanh: unit-scale gates (the curved part), Gemma's intermediate size, and large ones
    // (tanh saturated: → g and → −0).
    for (n, scale) in [(1, 1.0), (127, 4.0), (2048, 4.0), (8191, 1.0), (1000, 80.0)] {
        g.push(ElementwiseCase {
            swiglu: true,
            act: Activation::GeluTanh,
            n,
            scale,
            seed: 43,
        });
    }
    g
}

pub fn strategy() -> impl Strategy<Value = ElementwiseCase> {
    (
        any::<bool>(),
        prop_oneof![Just(Activation::Silu), Just(Activation::GeluTanh)],
        1usize..5000,
        prop_oneof![Just(1.0f32), Just(10.0), Just(90.0)],
        any::<u64>(),
    )
        .prop_map(|(swiglu, act, n, scale, seed)| ElementwiseCase {
            swiglu,
            act,
            n,
            scale,
            seed,
        })
}
