//! `wavefront-conformance`: run every op case (and, with models, the model-level checks) on a
//! backend against the reference; print the op × case table and the coverage; exit non-zero on
//! any failure. The command a kernel author runs before merging.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use wavefront::backend::cpu::CpuBackend;
use wavefront::backend::gpu::{self, GpuBackend, GpuOptions};
use wavefront::backend::Backend;
use wavefront_conformance::cases::{self, Op};
use wavefront_conformance::coverage::{self, CoverageReport};
use wavefront_conformance::models::{self, ModelReport};
use wavefront_conformance::report::{self, Report};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Cpu,
    Gpu,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KvType {
    F32,
    F16,
    Bf16,
    #[value(name = "q8_0")]
    Q8_0,
}

impl KvType {
    fn dtype(self) -> wavefront::DType {
        match self {
            KvType::F32 => wavefront::DType::F32,
            KvType::F16 => wavefront::DType::F16,
            KvType::Bf16 => wavefront::DType::BF16,
            KvType::Q8_0 => wavefront::DType::Q8_0Kv,
        }
    }
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
    /// GPU wave sizes to build and check: the device's own and, on a wave32 device, the
    /// emulated 64 ("all"), or one of them.
    #[arg(long, default_value = "all")]
    wave: String,
    /// GPU device ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
    /// Compile the kernels from this directory (a copy of kernels/ with your edits) instead of
    /// the ones built into this binary [env: WAVEFRONT_KERNELS_DIR].
    #[arg(long, value_name = "DIR")]
    kernels: Option<PathBuf>,
    /// Skip the kernel path coverage pass (each case run again on kernels built with
    /// -DWF_COVERAGE, which must reach every path of every kernel; with --op, every path of
    /// each kernel the selected cases reach).
    #[arg(long)]
    no_coverage: bool,
    /// Only this op (repeatable).
    #[arg(long = "op")]
    ops: Vec<String>,
    /// Also run the model-level checks on this model (GGUF file or HF directory; repeatable).
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// Run the model-level checks on every model under this directory.
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// The KV cache type of the model-level checks (default: the backend's; q8_0 skips the
    /// models whose head_dim is not a multiple of 32).
    #[arg(long, value_enum)]
    kv_type: Option<KvType>,
    /// Check greedy token streams against these transformers goldens
    /// (fixtures/smollm2/greedy_goldens.json) on the default model.
    #[arg(long)]
    golden: Option<PathBuf>,
    /// Write each variant's golden streams here as `<label>.json` (for snapshots).
    #[arg(long)]
    streams_dir: Option<PathBuf>,
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
    for name in &args.ops {
        if Op::from_name(name).is_none() {
            let known: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
            bail!("unknown op `{name}`; known ops: {}", known.join(", "));
        }
    }
    if !args.ops.is_empty() {
        selected.retain(|c| args.ops.iter().any(|n| n == c.op().name()));
    }
    let mut model_paths = args.models.clone();
    if let Some(dir) = &args.fixtures {
        model_paths.extend(
            models::fixture_dirs(dir).with_context(|| format!("listing {}", dir.display()))?,
        );
    }
    let mut out = Outcome::default();
    match args.backend {
        BackendChoice::Cpu => out.check(
            &|| Ok(CpuBackend::default()),
            "",
            &selected,
            &model_paths,
            &args,
        ),
        BackendChoice::Gpu => {
            let kernels = match &args.kernels {
                Some(d) => gpu::KernelSources::Dir(d.clone()),
                None => gpu::KernelSources::from_env(),
            };
            let native = gpu::detect_with(&GpuOptions {
                device: args.device,
                wave: None,
                kernels: kernels.clone(),
                coverage: false,
            })
            .map_err(|e| match e {
                gpu::OpenError::Unavailable(r) => anyhow::anyhow!("no usable GPU: {r}"),
                gpu::OpenError::Failed(e) => anyhow::anyhow!("the GPU failed to start: {e}"),
            })?;
            let native_wave = native.wave();
            drop(native);
            let waves: Vec<u32> = match args.wave.as_str() {
                "all" => gpu::wave_variants(native_wave),
                w => vec![w
                    .parse()
                    .with_context(|| format!("--wave takes 32, 64 or all, not `{w}`"))?],
            };
            for w in waves {
                let opts = GpuOptions {
                    device: args.device,
                    wave: Some(w),
                    kernels: kernels.clone(),
                    coverage: false,
                };
                let coverage_opts = GpuOptions {
                    coverage: true,
                    ..opts.clone()
                };
                let make = move || -> wavefront::Result<GpuBackend> {
                    gpu::detect_with(&opts).map_err(|e| match e {
                        gpu::OpenError::Failed(e) => e,
                        gpu::OpenError::Unavailable(r) => wavefront::Error::Backend {
                            backend: "gpu",
                            op: "open".into(),
                            detail: r,
                        },
                    })
                };
                out.check(&make, &format!("WAVE={w}"), &selected, &model_paths, &args);
                if !args.no_coverage {
                    out.coverage(&coverage_opts, &selected, !args.ops.is_empty());
                }
            }
        }
    }
    out.finish(&args)
}

/// Greedy streams on the default model against the transformers goldens, as a report section.
fn golden_report<B: Backend>(
    make: &dyn Fn() -> wavefront::Result<B>,
    golden: &std::path::Path,
    variant: &str,
    streams_dir: Option<&std::path::Path>,
) -> ModelReport {
    let mut report = ModelReport {
        model: format!("golden tokens {}", golden.display()),
        backend: String::new(),
        variant: variant.to_string(),
        tolerance: f64::NAN,
        reason: "top-5 divergence rule; logit gap 2·√NMSE·rms(top logits), NMSE the logits \
                 bound with the engine's weight rounding"
            .into(),
        checks: vec![],
    };
    let mut run = || -> anyhow::Result<Vec<wavefront_conformance::cases::Check>> {
        let b = make()?;
        let label = wavefront_conformance::golden::stream_label(&b);
        report.backend = b.name().to_string();
        let model = wavefront::load(&wavefront::fetch::default_model()?)?;
        let engine = wavefront::Engine::new(b, &model, wavefront::EngineOptions::default())?;
        report.tolerance =
            wavefront_conformance::model::ModelTolerances::against_unrounded_weights(&engine)
                .logits()
                .nmse;
        let goldens = wavefront_conformance::golden::read_greedy_goldens(golden)?;
        let (checks, streams) =
            wavefront_conformance::golden::check_golden_streams(&engine, &goldens)?;
        if let Some(dir) = streams_dir {
            std::fs::create_dir_all(dir)?;
            std::fs::write(
                dir.join(format!("{label}.json")),
                serde_json::to_string_pretty(&streams)?,
            )?;
        }
        Ok(checks)
    };
    match run() {
        Ok(checks) => report.checks = checks,
        Err(e) => report.checks.push(wavefront_conformance::cases::Check::new(
            "golden tokens",
            wavefront_conformance::compare::Comparison::fail(format!("could not run: {e:#}")),
        )),
    }
    report
}

#[derive(Default)]
struct Outcome {
    reports: Vec<Report>,
    model_reports: Vec<ModelReport>,
    coverage: Vec<CoverageReport>,
    /// Variants whose coverage pass could not run.
    coverage_errors: Vec<String>,
    md: String,
}

impl Outcome {
    /// Every case once more on kernels built with their path marks.
    /// With `scoped` (ops selected), only the kernels their cases reached are reported.
    fn coverage(&mut self, opts: &GpuOptions, selected: &[cases::Case], scoped: bool) {
        let variant = format!("WAVE={}", opts.wave.unwrap_or(0));
        let run = gpu::detect_with(opts)
            .map_err(|e| e.to_string())
            .and_then(|b| coverage::run(&b, selected, &variant).map_err(|e| e.to_string()))
            .map(|c| {
                if scoped {
                    c.scoped_to_reached_kernels()
                } else {
                    c
                }
            });
        match run {
            Ok(c) => {
                self.md.push_str(&c.markdown());
                self.md.push('\n');
                self.coverage.push(c);
            }
            Err(e) => {
                self.md.push_str(&format!(
                    "### kernel paths ({variant}): could not run: {e}\n\n"
                ));
                self.coverage_errors.push(format!("{variant}: {e}"));
            }
        }
    }

    fn check<B: Backend>(
        &mut self,
        make: &dyn Fn() -> wavefront::Result<B>,
        variant: &str,
        selected: &[cases::Case],
        model_paths: &[PathBuf],
        args: &Args,
    ) {
        match make() {
            Ok(b) => {
                let mut r = report::run(&b, selected, variant);
                if !args.ops.is_empty() {
                    r.uncovered.clear(); // a filtered run covers what it was asked to cover
                }
                self.md.push_str(&r.markdown());
                self.md.push('\n');
                self.reports.push(r);
            }
            Err(e) => self
                .md
                .push_str(&format!("### {variant}: backend failed to start: {e}\n\n")),
        }
        let kv = args.kv_type.map(KvType::dtype);
        let opts = models::ModelCheckOptions {
            kv_dtype: kv,
            ..Default::default()
        };
        let variant = match args.kv_type {
            Some(k) => format!(
                "{variant}{}kv={}",
                if variant.is_empty() { "" } else { "," },
                k.to_possible_value().expect("no skipped values").get_name()
            ),
            None => variant.to_string(),
        };
        for path in model_paths {
            if kv == Some(wavefront::DType::Q8_0Kv)
                && wavefront::load(path).is_ok_and(|m| m.config.head_dim % 32 != 0)
            {
                self.md.push_str(&format!(
                    "### {}: skipped (head_dim not a multiple of 32: no Q8_0 KV)\n\n",
                    path.display()
                ));
                continue;
            }
            let mr = models::check_model_with(make, path, &variant, &opts);
            self.md.push_str(&mr.markdown());
            self.md.push('\n');
            self.model_reports.push(mr);
        }
        if let Some(golden) = &args.golden {
            let mr = golden_report(make, golden, &variant, args.streams_dir.as_deref());
            self.md.push_str(&mr.markdown());
            self.md.push('\n');
            self.model_reports.push(mr);
        }
    }

    fn finish(self, args: &Args) -> Result<bool> {
        print!("{}", self.md);
        let ok = !self.reports.is_empty()
            && self.reports.iter().all(|r| r.all_pass())
            && self.model_reports.iter().all(|m| m.all_pass())
            && self.coverage.iter().all(|c| c.all_reached())
            && self.coverage_errors.is_empty();
        println!("| backend | variant | cases | passed | failed | uncovered ops |\n|---|---|---:|---:|---:|---|");
        for r in &self.reports {
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                r.backend,
                r.variant,
                r.results.len(),
                r.passed(),
                r.failed(),
                r.uncovered.len()
            );
        }
        for c in &self.coverage {
            let unreached = c.unreached();
            println!(
                "| gpu | {} kernel paths | {} | {} reached | {} unreached | {} |",
                c.variant,
                c.paths.len(),
                c.paths.len() - unreached.len(),
                unreached.len(),
                unreached.join(", ")
            );
        }
        for e in &self.coverage_errors {
            println!("| gpu | kernel paths {e} | | | | FAIL |");
        }
        if let Some(k) = self
            .reports
            .first()
            .and_then(|r| wavefront::backend::describe_kernels(&r.kernels))
        {
            println!("kernels: {k}");
        }
        for m in &self.model_reports {
            println!(
                "| {} | {} model {} | {} checks | | | {} |",
                m.backend,
                m.variant,
                m.model,
                m.checks.len(),
                if m.all_pass() { "pass" } else { "FAIL" }
            );
        }
        println!("{}", if ok { "ALL PASS" } else { "FAILURES" });
        if let Some(p) = &args.report {
            std::fs::write(p, &self.md).with_context(|| format!("writing {}", p.display()))?;
        }
        if let Some(p) = &args.json {
            let json = serde_json::json!({
                "ops": self.reports,
                "models": self.model_reports,
                "kernel_paths": self.coverage,
            });
            std::fs::write(p, serde_json::to_string_pretty(&json)?)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(ok)
    }
}
