//! `wavefront-conformance`: run every op case (and, with models, the model-level checks) on a
//! backend against the reference; print the op × case table and the coverage; exit non-zero on
//! any failure. The command a kernel author runs before merging.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use wavefront::backend::cpu::CpuBackend;
use wavefront::backend::Backend;
use wavefront_conformance::cases::{self, Op};
use wavefront_conformance::models::{self, ModelReport};
use wavefront_conformance::report::{self, Report};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Cpu,
    Gpu,
}

#[derive(Parser)]
#[command(
    name = "wavefront-conformance",
    version,
    about = "Check a backend against the reference"
)]
struct Args {
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    backend: BackendChoice,
    /// Only this op (see the report for names; repeatable).
    #[arg(long = "op")]
    ops: Vec<String>,
    /// Also run the model-level checks on this model (GGUF file or HF directory; repeatable).
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// Run the model-level checks on every fixture under this directory.
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Write the report (markdown) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the results (JSON) here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run() -> Result<bool> {
    let args = Args::parse();
    let mut selected = cases::grid();
    if !args.ops.is_empty() {
        for name in &args.ops {
            if Op::from_name(name).is_none() {
                let known: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
                bail!("unknown op `{name}`; known ops: {}", known.join(", "));
            }
        }
        selected.retain(|c| args.ops.iter().any(|n| n == c.op().name()));
    }
    let mut models_to_check = args.models.clone();
    if let Some(dir) = &args.fixtures {
        models_to_check.extend(
            models::fixture_dirs(dir).with_context(|| format!("listing {}", dir.display()))?,
        );
    }
    match args.backend {
        BackendChoice::Cpu => check(
            &[("", CpuBackend::default())],
            &selected,
            &models_to_check,
            &args,
        ),
        BackendChoice::Gpu => bail!("the GPU backend is not part of this build yet"),
    }
}

fn check<B: Backend + Clone>(
    backends: &[(&str, B)],
    selected: &[cases::Case],
    models_to_check: &[PathBuf],
    args: &Args,
) -> Result<bool> {
    let mut reports: Vec<Report> = Vec::new();
    let mut model_reports: Vec<ModelReport> = Vec::new();
    let mut md = String::new();
    for (variant, b) in backends {
        let mut r = report::run(b, selected, variant);
        if !args.ops.is_empty() {
            // A filtered run covers what it was asked to cover.
            r.uncovered.clear();
        }
        md.push_str(&r.markdown());
        md.push('\n');
        for path in models_to_check {
            let mr = models::check_model(b, path, variant);
            md.push_str(&mr.markdown());
            md.push('\n');
            model_reports.push(mr);
        }
        reports.push(r);
    }
    print!("{md}");
    let ok = reports.iter().all(|r| r.all_pass()) && model_reports.iter().all(|m| m.all_pass());
    let summary: Vec<String> = reports
        .iter()
        .map(|r| {
            format!(
                "{}{}: {}/{} cases pass",
                r.backend,
                r.variant_suffix(),
                r.passed(),
                r.results.len()
            )
        })
        .chain(model_reports.iter().map(|m| {
            format!(
                "{}: {}",
                m.model,
                if m.all_pass() { "pass" } else { "FAIL" }
            )
        }))
        .collect();
    println!(
        "{}\n{}",
        summary.join("\n"),
        if ok { "ALL PASS" } else { "FAILURES" }
    );
    if let Some(p) = &args.report {
        std::fs::write(p, &md).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.json {
        let json = serde_json::json!({ "ops": reports, "models": model_reports });
        std::fs::write(p, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(ok)
}
