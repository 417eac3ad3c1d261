//! The one tolerance table (STYLE 12): every NMSE bound is derived from the unit roundoff of the
//! types involved and the length of the reductions, with the reason written beside it. Never
//! loosen an entry to turn a red case green: find the bug.
//!
//! Notation: `u` = unit roundoff (f32 2⁻²⁴, f16 2⁻¹¹, bf16 2⁻⁸). A sum of `n` f32 terms computed
//! in another order differs by a relative `≲ n·u` (Higham's γₙ); with one rounding for each
//! product and each addition we use `2·n·u`. NMSE is the square of a relative error.

use wavefront::DType;

pub const U_F32: f64 = 1.0 / (1u64 << 24) as f64;
pub const U_F16: f64 = 1.0 / (1u64 << 11) as f64;
pub const U_BF16: f64 = 1.0 / (1u64 << 8) as f64;

/// Unit roundoff of a storage type (0 for f32-exact paths is never used: f32 has its own u).
pub fn unit_roundoff(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => U_F16,
        DType::BF16 => U_BF16,
        _ => U_F32,
    }
}

/// What a case computes, as far as rounding is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A copy with an exact widening conversion (embedding rows).
    Copy,
    /// A few f32 operations per element, at most one libm call (swiglu, add).
    Elementwise,
    /// A per-row f32 reduction of `n` terms, then a few operations (rms_norm).
    Reduction { n: usize },
    /// Dot products of length `k`; activations rounded to `input` first (F32 = not rounded).
    Matmul { k: usize, input: DType },
    /// RoPE in f32, results stored in `store` (the KV dtype for K and V; F32 for q).
    Rotation { store: DType },
    /// Attention: scores of length `head_dim`, a softmax over `kv_len` keys whose scores reach
    /// `max_score` in magnitude, a weighted sum of `kv_len` values.
    Attention {
        head_dim: usize,
        kv_len: usize,
        max_score: f64,
    },
    /// Whole-model hidden states and logits with every matmul input in f32 and the same weights
    /// on both sides: `layers` residual blocks, the longest reduction `k`.
    ModelF32 { layers: usize, k: usize },
    /// Whole-model hidden states and logits when the backend rounds activations or KV to 16 bits.
    Model16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tolerance {
    pub nmse: f64,
    pub reason: String,
}

pub fn tolerance(kind: Kind) -> Tolerance {
    let u = U_F32;
    let sq = |x: f64| x * x;
    let (nmse, reason) = match kind {
        Kind::Copy => (0.0, "a row copy with an exact widening conversion: bit-exact".to_string()),
        Kind::Elementwise => (
            sq(4.0 * u),
            "≤ 2 f32 roundings and ≤ 2 ulp of libm per element: relative 4u".into(),
        ),
        Kind::Reduction { n } => (
            sq(2.0 * n as f64 * u + 4.0 * u),
            format!("sum of {n} squares in another order (2nu) + sqrt, division, scale (4u)"),
        ),
        Kind::Matmul { k, input } => {
            let rounding = if input == DType::F32 { 0.0 } else { sq(2.0 * unit_roundoff(input)) };
            (
                rounding + sq(2.0 * k as f64 * u),
                format!(
                    "dot products of length {k} in another order (2ku){}",
                    if input == DType::F32 {
                        String::new()
                    } else {
                        format!(" + activations rounded to {input} (relative 2u_{input}, squared)")
                    }
                ),
            )
        }
        Kind::Rotation { store } => {
            let stored = if store == DType::F32 { 0.0 } else { sq(unit_roundoff(store)) };
            (
                sq(8.0 * u) + stored,
                format!(
                    "x·cos ∓ y·sin: 3 roundings + 2 ulp of sin/cos (8u){}",
                    if store == DType::F32 {
                        String::new()
                    } else {
                        format!(" + a 1-ulp {store} rounding flip where the f32 values differ (u_{store})")
                    }
                ),
            )
        }
        Kind::Attention {
            head_dim,
            kv_len,
            max_score,
        } => (
            sq(2.0 * head_dim as f64 * u * max_score.max(1.0)) + sq(2.0 * kv_len as f64 * u) + sq(8.0 * u),
            format!(
                "scores: dots of {head_dim} (2·hd·u), amplified by exp at |score| ≤ {max_score:.0}; \
                 softmax sum and weighted sum over {kv_len} keys (2·n·u); exp and division (8u)"
            ),
        ),
        Kind::ModelF32 { layers, k } => (
            sq(2.0 * (layers * k) as f64 * u),
            format!("{layers} residual blocks, each with reductions up to {k} in another order: 2·L·k·u"),
        ),
        Kind::Model16 => (
            2e-3,
            "whole-model logits with 16-bit activations/KV: the DESIGN.md anchor (vLLM, test-backend-ops)".into(),
        ),
    };
    Tolerance { nmse, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_grow_with_reduction_length_and_input_rounding() {
        let small = tolerance(Kind::Matmul {
            k: 64,
            input: DType::F32,
        })
        .nmse;
        let large = tolerance(Kind::Matmul {
            k: 8192,
            input: DType::F32,
        })
        .nmse;
        let rounded = tolerance(Kind::Matmul {
            k: 64,
            input: DType::BF16,
        })
        .nmse;
        assert!(small < large && large < rounded);
        assert_eq!(tolerance(Kind::Copy).nmse, 0.0);
        // Every f32-path bound stays far below what a real bug produces (≥ 1e-4 in practice).
        assert!(
            tolerance(Kind::Attention {
                head_dim: 128,
                kv_len: 8191,
                max_score: 1.0
            })
            .nmse
                < 1e-5
        );
    }
}
