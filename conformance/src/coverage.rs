//! Which case reaches which kernel path (`wavefront::backend::gpu::coverage`): every case run
//! once more on a backend whose kernels carry the `WF_PATH` marks, the marks read after each.
//! A path no case reaches is a branch the suite never checked: the report fails.

use std::fmt::Write;

use serde::Serialize;
use wavefront::backend::gpu::{coverage, GpuBackend};
use wavefront::Result;

use crate::cases::{Case, Op};

#[derive(Debug, Clone, Serialize)]
pub struct PathCoverage {
    pub kernel: &'static str,
    pub path: &'static str,
    /// The op and name of the first case that reached it.
    pub first: Option<(Op, String)>,
    /// How many cases reached it.
    pub cases: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CoverageReport {
    pub variant: String,
    pub paths: Vec<PathCoverage>,
}

impl CoverageReport {
    pub fn unreached(&self) -> Vec<String> {
        self.paths
            .iter()
            .filter(|p| p.first.is_none())
            .map(|p| format!("{}.{}", p.kernel, p.path))
            .collect()
    }

    pub fn all_reached(&self) -> bool {
        !self.paths.is_empty() && self.unreached().is_empty()
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "### kernel paths{} — {} of {} reached\n",
            if self.variant.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.variant)
            },
            self.paths.len() - self.unreached().len(),
            self.paths.len()
        );
        let _ = writeln!(s, "| op | kernel | path | first case reaching it | cases |");
        let _ = writeln!(s, "|---|---|---|---|---:|");
        for p in &self.paths {
            let (op, case) = match &p.first {
                Some((op, case)) => (op.name().to_string(), case.clone()),
                None => ("—".into(), "**UNREACHED**".into()),
            };
            let _ = writeln!(
                s,
                "| {op} | {} | {} | {case} | {} |",
                p.kernel, p.path, p.cases
            );
        }
        s
    }
}

/// Runs every case on `b` (built with `GpuOptions::coverage`) and records the paths each
/// reaches. A case whose op fails still counts what it reached; its failure is the numeric
/// report's business.
pub fn run(b: &GpuBackend, cases: &[Case], variant: &str) -> Result<CoverageReport> {
    let mut paths: Vec<PathCoverage> = coverage::all_paths()
        .into_iter()
        .map(|(kernel, path)| PathCoverage {
            kernel,
            path,
            first: None,
            cases: 0,
        })
        .collect();
    for case in cases {
        b.coverage_reset()?;
        let _ = case.run(b);
        for hit in b.coverage_hits()? {
            if let Some(p) = paths.iter_mut().find(|p| (p.kernel, p.path) == hit) {
                p.cases += 1;
                p.first.get_or_insert_with(|| (case.op(), case.name()));
            }
        }
    }
    Ok(CoverageReport {
        variant: variant.to_string(),
        paths,
    })
}
