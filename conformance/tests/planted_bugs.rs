//! The suite proves its power: each planted bug is caught by named cases of the op it breaks,
//! and by no case of an unrelated op.

mod common;

use std::collections::BTreeSet;

use wavefront_conformance::cases::{self, Op};
use wavefront_conformance::planted::{Bug, Planted};
use wavefront_conformance::report;

/// The ops a bug may fail: its own, and `rope_attention`, which runs RoPE, the KV write and
/// attention in one op (on the CPU as the two separate ops).
fn expected_ops(bug: Bug) -> &'static [Op] {
    match bug {
        Bug::RopeSignFlipped | Bug::KvWrittenAtWrongPosition => {
            &[Op::RopeKvWrite, Op::RopeAttention]
        }
        Bug::CausalMaskOffByOne
        | Bug::WrongGqaHeadMapping
        | Bug::SoftmaxWithoutMaxSubtraction
        | Bug::SoftcapBeforeScale
        | Bug::SlidingWindowOneKeyTooMany => {
            &[Op::AttentionPrefill, Op::AttentionDecode, Op::RopeAttention]
        }
        Bug::TopPKeepsOneTooMany | Bug::SamplerSumReordered | Bug::FrequencyCountedOnce => {
            &[Op::Sample]
        }
        // Not in Bug::ALL: no op case can see it (`a_batch_dependent_reduction_is_caught…`).
        Bug::BatchRowsReordered => &[],
    }
}

#[test]
fn every_planted_bug_is_caught_by_named_cases() {
    let grid = cases::host_grid();
    let mut table = String::from("| bug | failing cases | first caught by |\n|---|---:|---|\n");
    for bug in Bug::ALL {
        let r = report::run(&Planted::new(bug), &grid, &format!("{bug:?}"));
        let failing: Vec<_> = r.results.iter().filter(|c| !c.pass()).collect();
        let ops: BTreeSet<Op> = failing.iter().map(|c| c.op).collect();
        let expected = expected_ops(bug);
        assert!(!failing.is_empty(), "{bug:?} went unnoticed");
        assert!(
            ops.iter().all(|op| expected.contains(op)),
            "{bug:?} failed cases of unrelated ops: {ops:?}"
        );
        let first = format!(
            "{} {}: {}",
            failing[0].op.name(),
            failing[0].case,
            failing[0].failures().join("; ")
        );
        table.push_str(&format!("| {bug:?} | {} | {first} |\n", failing.len()));
    }
    println!("{table}");
}

#[test]
fn softmax_overflow_is_caught_by_the_large_score_cases_specifically() {
    let grid = cases::host_grid();
    let r = report::run(&Planted::new(Bug::SoftmaxWithoutMaxSubtraction), &grid, "");
    let failing: Vec<&str> = r
        .results
        .iter()
        .filter(|c| !c.pass())
        .map(|c| c.case.as_str())
        .collect();
    assert!(!failing.is_empty());
    assert!(
        failing.iter().all(|c| c.contains("magnitude=16")),
        "{failing:?}"
    );
}

#[test]
fn the_planted_code_paths_pass_everything_with_no_bug_switched_on() {
    // Otherwise a "caught" bug could be an artefact of the copies.
    let r = report::run(&Planted::clean(), &cases::host_grid(), "");
    let failures: Vec<String> = r
        .results
        .iter()
        .filter(|c| !c.pass())
        .map(|c| format!("{}: {:?}", c.case, c.failures()))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A row reduced in an order that depends on the batch passes every op case (same math, other
/// bits) and is caught by the batch-invariance check; the planted code paths without the bug
/// pass it (so what is caught is the bug).
#[test]
fn a_batch_dependent_reduction_is_caught_by_the_batch_invariance_check() {
    use wavefront_conformance::batch::check_batch_invariance;
    let path = common::fixture_models()[0].0.clone();
    // The op it changes (the other ops are the clean code paths, passing as above).
    let logits: Vec<_> = cases::host_grid()
        .into_iter()
        .filter(|c| c.op() == Op::Logits)
        .collect();
    assert!(!logits.is_empty());
    let bug = Bug::BatchRowsReordered;
    let r = report::run(&Planted::new(bug), &logits, "batch rows reordered");
    assert!(
        r.results.iter().all(|c| c.pass()),
        "a logits case saw {bug:?}"
    );
    let caught =
        check_batch_invariance(&|| Ok(Planted::new(bug)), &path, "planted", &[3], 4).unwrap();
    println!("{}", caught.markdown());
    assert!(!caught.all_pass(), "{bug:?} went unnoticed");
    assert!(caught.runs[0].passes > 0);
    let clean = check_batch_invariance(&|| Ok(Planted::clean()), &path, "clean", &[3], 4).unwrap();
    println!("{}", clean.markdown());
    assert!(clean.all_pass(), "{}", clean.markdown());
}
