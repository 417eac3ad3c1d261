//! Cases as data (STYLE 7): one module per backend op, each with a params struct that names
//! itself (`name()` keys the report row and the snapshot), knows its tolerance, runs the op on a
//! backend and the reference op on the same inputs, and offers a fixed grid and a proptest
//! strategy.

pub mod attention;
pub mod elementwise;
pub mod embedding;
pub mod gemv;
pub mod linear;
pub mod rms_norm;
pub mod rope;
pub mod sample;

use serde::Serialize;
use wavefront::backend::Backend;
use wavefront::Result;

use crate::compare::Comparison;
use crate::tolerance::Tolerance;

thread_local! {
    static ENGINE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the reference side of the cases that honour it skipped: the attention cases
/// run the backend's op in full (every kernel launch of a normal run) and return no checks,
/// without reading the output back, scanning the arena or computing the reference. For the
/// kernel path coverage pass, which only counts the paths each case reached: there the
/// reference of the long cases and the arena scan were most of its time.
pub fn engine_only<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ENGINE_ONLY.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(ENGINE_ONLY.with(|c| c.replace(true)));
    f()
}

/// Whether the running case skips its reference side (inside `engine_only`).
pub(crate) fn skip_reference() -> bool {
    ENGINE_ONLY.with(|c| c.get())
}

/// The ops of the `Backend` trait. Keep in step with `wavefront::backend::Backend`: an op
/// without a case shows as uncovered in every report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Op {
    Embedding,
    RmsNorm,
    Linear,
    RopeKvWrite,
    AttentionPrefill,
    AttentionDecode,
    Swiglu,
    Add,
    Logits,
    LinearStacked,
    GateUpSwiglu,
    NormLinearStacked,
    NormGateUpSwiglu,
    LinearResidual,
    RopeAttention,
    Sample,
}

impl Op {
    pub const ALL: [Op; 16] = [
        Op::Embedding,
        Op::RmsNorm,
        Op::Linear,
        Op::RopeKvWrite,
        Op::AttentionPrefill,
        Op::AttentionDecode,
        Op::Swiglu,
        Op::Add,
        Op::Logits,
        Op::LinearStacked,
        Op::GateUpSwiglu,
        Op::NormLinearStacked,
        Op::NormGateUpSwiglu,
        Op::LinearResidual,
        Op::RopeAttention,
        Op::Sample,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Embedding => "embedding",
            Op::RmsNorm => "rms_norm",
            Op::Linear => "linear",
            Op::RopeKvWrite => "rope_kv_write",
            Op::AttentionPrefill => "attention_prefill",
            Op::AttentionDecode => "attention_decode",
            Op::Swiglu => "swiglu",
            Op::Add => "add",
            Op::Logits => "logits",
            Op::LinearStacked => "linear_stacked",
            Op::GateUpSwiglu => "gate_up_swiglu",
            Op::NormLinearStacked => "norm_linear_stacked",
            Op::NormGateUpSwiglu => "norm_gate_up_swiglu",
            Op::LinearResidual => "linear_residual",
            Op::RopeAttention => "rope_attention",
            Op::Sample => "sample",
        }
    }

    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// One named check of a case (a case may check several outputs: q and the KV arena, say).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub cmp: Comparison,
}

impl Check {
    pub fn new(what: impl Into<String>, cmp: Comparison) -> Self {
        Check {
            what: what.into(),
            cmp,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub op: Op,
    pub case: String,
    pub tolerance: f64,
    pub reason: String,
    pub checks: Vec<Check>,
}

impl CaseResult {
    pub fn pass(&self) -> bool {
        self.checks.iter().all(|c| c.cmp.pass())
    }

    pub fn max_abs(&self) -> f64 {
        self.checks
            .iter()
            .map(|c| c.cmp.max_abs)
            .fold(0.0, f64::max)
    }

    pub fn nmse(&self) -> f64 {
        self.checks.iter().map(|c| c.cmp.nmse).fold(0.0, f64::max)
    }

    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter_map(|c| c.cmp.failure.as_ref().map(|f| format!("{}: {f}", c.what)))
            .collect()
    }
}

/// A case of any op.
#[derive(Debug, Clone)]
pub enum Case {
    Embedding(embedding::EmbeddingCase),
    RmsNorm(rms_norm::RmsNormCase),
    Linear(linear::LinearCase),
    Gemv(gemv::GemvCase),
    RopeKvWrite(rope::RopeCase),
    Attention(attention::AttentionCase),
    Elementwise(elementwise::ElementwiseCase),
    Sample(sample::SampleCase),
}

impl Case {
    pub fn op(&self) -> Op {
        match self {
            Case::Embedding(_) => Op::Embedding,
            Case::RmsNorm(_) => Op::RmsNorm,
            Case::Linear(c) => c.op(),
            Case::Gemv(c) => c.op(),
            Case::RopeKvWrite(_) => Op::RopeKvWrite,
            Case::Attention(c) => c.op(),
            Case::Elementwise(c) => c.op(),
            Case::Sample(_) => Op::Sample,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Case::Embedding(c) => c.name(),
            Case::RmsNorm(c) => c.name(),
            Case::Linear(c) => c.name(),
            Case::Gemv(c) => c.name(),
            Case::RopeKvWrite(c) => c.name(),
            Case::Attention(c) => c.name(),
            Case::Elementwise(c) => c.name(),
            Case::Sample(c) => c.name(),
        }
    }

    pub fn run<B: Backend>(&self, b: &B) -> Result<CaseResult> {
        let (tol, checks): (Tolerance, Vec<Check>) = match self {
            Case::Embedding(c) => (c.tolerance(), c.run(b)?),
            Case::RmsNorm(c) => (c.tolerance(), c.run(b)?),
            Case::Linear(c) => (c.tolerance(b), c.run(b)?),
            Case::Gemv(c) => (c.tolerance(b), c.run(b)?),
            Case::RopeKvWrite(c) => (c.tolerance(), c.run(b)?),
            Case::Attention(c) => (c.tolerance(), c.run(b)?),
            Case::Elementwise(c) => (c.tolerance(), c.run(b)?),
            Case::Sample(c) => (c.tolerance(), c.run(b)?),
        };
        Ok(CaseResult {
            op: self.op(),
            case: self.name(),
            tolerance: tol.nmse,
            reason: tol.reason,
            checks,
        })
    }
}

/// The fixed grid of every op (what `wavefront-conformance` runs).
pub fn grid() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(embedding::grid().into_iter().map(Case::Embedding));
    all.extend(rms_norm::grid().into_iter().map(Case::RmsNorm));
    all.extend(linear::grid().into_iter().map(Case::Linear));
    all.extend(gemv::grid().into_iter().map(Case::Gemv));
    all.extend(rope::grid().into_iter().map(Case::RopeKvWrite));
    all.extend(attention::grid().into_iter().map(Case::Attention));
    all.extend(elementwise::grid().into_iter().map(Case::Elementwise));
    all.extend(sample::grid().into_iter().map(Case::Sample));
    all
}

/// [`grid`] as a host backend (the CPU's, the planted one) runs it in CI: the attention
/// grid's long several-row cases left out ([`attention::host_grid`]).
pub fn host_grid() -> Vec<Case> {
    let host = attention::host_grid();
    grid()
        .into_iter()
        .filter(|c| !matches!(c, Case::Attention(a) if !host.contains(a)))
        .collect()
}

/// Ops with no case in `cases`.
pub fn uncovered(cases: &[Case]) -> Vec<Op> {
    Op::ALL
        .into_iter()
        .filter(|op| !cases.iter().any(|c| c.op() == *op))
        .collect()
}

/// For `via_step` cases (one row): a decode step's state at `pos0`, so the op reads its
/// position on the device; `None` otherwise.
pub(crate) fn step_at<B: wavefront::backend::Backend>(
    b: &B,
    via_step: bool,
    pos0: usize,
    rows: usize,
    capacity: usize,
) -> wavefront::Result<Option<B::Step>> {
    if !via_step {
        return Ok(None);
    }
    assert_eq!(rows, 1, "a step-position case is one decode row");
    let mut step = b.new_step(1, capacity)?;
    b.reset_step(&mut step, &vec![0; pos0 + 1], 0)?;
    Ok(Some(step))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host grid leaves out exactly the long several-row attention cases (three a KV type,
    /// two more a 16-bit one) and nothing else; the short ones of both routes stay.
    #[test]
    fn the_host_grid_drops_only_the_long_several_row_cases() {
        let (all, host) = (grid(), host_grid());
        let dropped: Vec<&Case> = all
            .iter()
            .filter(|c| match c {
                Case::Attention(a) => !attention::host_grid().contains(a),
                _ => false,
            })
            .collect();
        assert_eq!(all.len() - host.len(), 13);
        assert_eq!(dropped.len(), 13);
        for c in dropped {
            let Case::Attention(a) = c else {
                unreachable!()
            };
            assert_ne!(a.route, attention::RowsRoute::Plain, "{}", a.name());
            assert!(a.pos0 > 1000, "{}", a.name());
        }
        // two a KV type at head dims 64 and 128; the batch route one more a 16-bit KV type
        // (head dim 96)
        for (route, n) in [
            (attention::RowsRoute::Steps, 12),
            (attention::RowsRoute::Batch, 14),
        ] {
            let kept = host
                .iter()
                .filter(|c| matches!(c, Case::Attention(a) if a.route == route))
                .count();
            assert_eq!(kept, n, "{route:?}");
        }
    }

    /// Inside `engine_only` the attention cases of every form (plain, rope, the steps and batch
    /// routes) return no checks; outside it the same cases check their output, and the flag is
    /// back off after the closure (also when it nests).
    #[test]
    fn engine_only_skips_the_attention_cases_reference_side() {
        let b = wavefront::backend::cpu::CpuBackend::new(wavefront::DType::BF16)
            .expect("BF16 is a CPU weight type");
        let forms = [
            (false, attention::RowsRoute::Plain),
            (true, attention::RowsRoute::Plain),
            (true, attention::RowsRoute::Steps),
            (false, attention::RowsRoute::Batch),
        ];
        for (rope, route) in forms {
            let case = attention::host_grid()
                .into_iter()
                .filter(|c| c.rope == rope && c.route == route)
                .min_by_key(|c| c.pos0 + c.rows)
                .expect("the grid has a case of each form");
            let full = case.run(&b).expect("runs");
            assert!(!full.is_empty(), "{}: checks its output", case.name());
            let quick = engine_only(|| engine_only(|| case.run(&b)).map(|c| (c, skip_reference())));
            let (checks, inside) = quick.expect("runs");
            assert!(
                checks.is_empty(),
                "{}: {} checks",
                case.name(),
                checks.len()
            );
            assert!(inside, "the nested closure restored the outer one's flag");
            assert!(!skip_reference(), "off again after the closure");
        }
    }
}
