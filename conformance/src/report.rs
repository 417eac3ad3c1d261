//! Running cases and printing what happened: the op × case table (max abs err, NMSE,
//! tolerance, pass) and the coverage (ops with no case), as markdown and JSON.

use std::fmt::Write;

use serde::Serialize;
use wavefront::backend::{describe_kernels, Backend, KernelSource};

use crate::cases::{uncovered, Case, CaseResult, Check, Op};
use crate::compare::Comparison;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub backend: String,
    pub device: String,
    /// Free-form label of the variant (e.g. "WAVE=64").
    pub variant: String,
    pub results: Vec<CaseResult>,
    pub uncovered: Vec<Op>,
    /// The kernel sources the backend ran, with their hashes (empty on the CPU).
    pub kernels: Vec<KernelSource>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.pass()).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// `op case: why` for every failing case.
    pub fn failure_lines(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|c| !c.pass())
            .map(|c| format!("{} {}: {}", c.op.name(), c.case, c.failures().join("; ")))
            .collect()
    }

    pub fn all_pass(&self) -> bool {
        self.failed() == 0 && self.uncovered.is_empty()
    }

    /// ` (variant)` or nothing.
    pub fn variant_suffix(&self) -> String {
        if self.variant.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.variant)
        }
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "### {} ({}){}\n",
            self.backend,
            self.device,
            if self.variant.is_empty() {
                String::new()
            } else {
                format!(" — {}", self.variant)
            }
        );
        if let Some(k) = describe_kernels(&self.kernels) {
            let _ = writeln!(s, "Kernels: {k}.\n");
            let _ = writeln!(s, "| kernel source | sha256 | embedded |\n|---|---|:---:|");
            for k in &self.kernels {
                let _ = writeln!(
                    s,
                    "| {} | `{}` | {} |",
                    k.file,
                    k.sha256,
                    if k.embedded { "yes" } else { "**no**" }
                );
            }
            s.push('\n');
        }
        let _ = writeln!(s, "| op | case | max abs err | NMSE | tolerance | pass |");
        let _ = writeln!(s, "|---|---|---:|---:|---:|:---:|");
        for r in &self.results {
            let _ = writeln!(
                s,
                "| {} | {} | {:.2e} | {:.2e} | {:.1e} | {} |",
                r.op.name(),
                r.case,
                r.max_abs(),
                r.nmse(),
                r.tolerance,
                if r.pass() { "✓" } else { "✗" }
            );
        }
        for r in self.results.iter().filter(|r| !r.pass()) {
            let _ = writeln!(
                s,
                "\n**FAIL** {} {}: {}",
                r.op.name(),
                r.case,
                r.failures().join("; ")
            );
        }
        let _ = writeln!(
            s,
            "\n{} cases: {} passed, {} failed. Uncovered ops: {}.",
            self.results.len(),
            self.passed(),
            self.failed(),
            if self.uncovered.is_empty() {
                "none".to_string()
            } else {
                self.uncovered
                    .iter()
                    .map(|o| o.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        s
    }
}

/// Runs `cases` on `b`. A case whose op returns an error fails with that error (the run goes on).
pub fn run<B: Backend>(b: &B, cases: &[Case], variant: &str) -> Report {
    let results = cases
        .iter()
        .map(|c| match c.run(b) {
            Ok(r) => r,
            Err(e) => CaseResult {
                op: c.op(),
                case: c.name(),
                tolerance: f64::NAN,
                reason: String::new(),
                checks: vec![Check::new(
                    "op",
                    Comparison::fail(format!("the op returned an error: {e}")),
                )],
            },
        })
        .collect();
    Report {
        backend: b.name().to_string(),
        device: b.device(),
        variant: variant.to_string(),
        results,
        uncovered: uncovered(cases),
        kernels: b.kernel_sources(),
    }
}
