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

    /// The report restricted to the kernels some case reached (each with all its paths): for a
    /// run of selected ops (`--op sample`), whose cases cannot reach the other ops' kernels.
    /// A kernel the selection reaches at all must still have every path reached.
    pub fn scoped_to_reached_kernels(mut self) -> CoverageReport {
        let reached: Vec<&'static str> = self
            .paths
            .iter()
            .filter(|p| p.first.is_some())
            .map(|p| p.kernel)
            .collect();
        self.paths.retain(|p| reached.contains(&p.kernel));
        self
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
    let mut paths: Vec<PathCoverage> = coverage::reachable_paths(b)
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
        let _ = crate::cases::engine_only(|| case.run(b));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn path(kernel: &'static str, path: &'static str, reached: bool) -> PathCoverage {
        PathCoverage {
            kernel,
            path,
            first: reached.then(|| (Op::Sample, "case".to_string())),
            cases: usize::from(reached),
        }
    }

    #[test]
    fn a_scoped_report_keeps_every_path_of_each_reached_kernel() {
        let report = CoverageReport {
            variant: "WAVE=32".into(),
            paths: vec![
                path("sample_pick", "greedy", true),
                path("sample_pick", "top_p_rank", false),
                path("rms_norm", "vec", false),
                path("rms_norm", "tail", false),
            ],
        };
        let scoped = report.scoped_to_reached_kernels();
        assert_eq!(scoped.paths.len(), 2);
        assert_eq!(
            scoped.unreached(),
            vec!["sample_pick.top_p_rank".to_string()]
        );
        assert!(!scoped.all_reached());
        let none = CoverageReport {
            variant: String::new(),
            paths: vec![path("rms_norm", "vec", false)],
        }
        .scoped_to_reached_kernels();
        assert!(
            !none.all_reached(),
            "a selection reaching no kernel covers nothing"
        );
    }
}
