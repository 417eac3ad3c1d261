//! The model-level checks of `model`, gathered for one model file on one backend: what
//! `wavefront-conformance --model` and the tests run.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use wavefront::backend::Backend;
use wavefront::{Engine, EngineOptions, LoadedModel, Result, SamplingParams};

use crate::cases::Check;
use crate::compare::Comparison;
use crate::harness::Rng;
use crate::model::{
    check_greedy, check_trace, engine_greedy, kv_lifecycle, reference_greedy, sample_rule,
    sampled_tokens, ModelTolerances,
};

#[derive(Debug, Clone)]
pub struct ModelCheckOptions {
    /// Tokens sampled per sampling setting.
    pub sample_steps: usize,
    pub settings: Vec<SamplingParams>,
    /// Greedy tokens compared under the divergence rule.
    pub greedy_tokens: usize,
    /// The engine's KV cache type (`None`: the backend's preference).
    pub kv_dtype: Option<wavefront::DType>,
}

impl Default for ModelCheckOptions {
    fn default() -> Self {
        ModelCheckOptions {
            sample_steps: 200,
            settings: sampling_settings(),
            greedy_tokens: 32,
            kv_dtype: None,
        }
    }
}

/// Several temperature / top-k / top-p / min-p / penalty settings, each filter on its own and
/// all together, and OpenAI's presence and frequency penalties.
pub fn sampling_settings() -> Vec<SamplingParams> {
    let d = SamplingParams::default();
    vec![
        SamplingParams {
            temperature: 0.7,
            ..d
        },
        SamplingParams {
            temperature: 1.0,
            top_k: 20,
            ..d
        },
        SamplingParams { top_p: 0.8, ..d },
        SamplingParams {
            min_p: 0.05,
            repeat_penalty: 1.3,
            ..d
        },
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.1,
            ..d
        },
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            presence_penalty: 0.5,
            frequency_penalty: 0.8,
            ..d
        },
    ]
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub model: String,
    pub backend: String,
    pub variant: String,
    /// The logits bound (each check carries its own, printed beside its measured value).
    pub tolerance: f64,
    /// How the bounds are derived.
    pub reason: String,
    pub checks: Vec<Check>,
}

impl ModelReport {
    pub fn all_pass(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.cmp.pass())
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "### model {} on {}{} (logits NMSE bound {:.1e}: {})\n",
            self.model,
            self.backend,
            if self.variant.is_empty() {
                String::new()
            } else {
                format!(" {}", self.variant)
            },
            self.tolerance,
            self.reason
        );
        let _ = writeln!(s, "| check | max abs err | NMSE | bound | pass | note |");
        let _ = writeln!(s, "|---|---:|---:|---:|:---:|---|");
        for c in &self.checks {
            let bound = if c.cmp.tolerance.is_nan() {
                "—".to_string()
            } else {
                format!("{:.1e}", c.cmp.tolerance)
            };
            let _ = writeln!(
                s,
                "| {} | {:.2e} | {:.2e} | {bound} | {} | {} |",
                c.what,
                c.cmp.max_abs,
                c.cmp.nmse,
                if c.cmp.pass() { "✓" } else { "✗" },
                c.cmp
                    .failure
                    .as_deref()
                    .or(c.cmp.note.as_deref())
                    .unwrap_or("")
            );
        }
        s
    }
}

/// Model directories (with config.json) and GGUF files directly under `dir`, and the GGUF
/// copies inside such a model directory (`fixtures/models/qwen3_tied/model.f16.gguf`).
pub fn fixture_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let sorted = |d: &Path| -> std::io::Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        Ok(v)
    };
    let is_gguf = |p: &Path| p.extension().is_some_and(|e| e == "gguf");
    let mut out = Vec::new();
    for p in sorted(dir)? {
        if p.join("config.json").is_file() {
            out.push(p.clone());
            out.extend(sorted(&p)?.into_iter().filter(|f| is_gguf(f)));
        } else if is_gguf(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// The tokens a model is checked on: the fixture's golden input ids when there are some, else
/// a seeded sequence of 24 ids.
pub fn check_tokens(model: &LoadedModel) -> Vec<u32> {
    let golden = model
        .path
        .parent()
        .map(|d| d.join("golden.json"))
        .filter(|p| p.is_file());
    let golden = golden.or_else(|| Some(model.path.join("golden.json")).filter(|p| p.is_file()));
    if let Some(ids) = golden
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| serde_json::from_value::<Vec<u32>>(v["input_ids"].clone()).ok())
    {
        return ids;
    }
    let mut rng = Rng::new(7);
    (0..24)
        .map(|_| rng.below(model.config.vocab_size) as u32)
        .collect()
}

/// Runs every model-level check of `path` on a backend made by `make` (an engine owns its
/// backend, so each model gets a fresh one).
pub fn check_model<B: Backend>(
    make: &dyn Fn() -> Result<B>,
    path: &Path,
    variant: &str,
) -> ModelReport {
    check_model_with(make, path, variant, &ModelCheckOptions::default())
}

pub fn check_model_with<B: Backend>(
    make: &dyn Fn() -> Result<B>,
    path: &Path,
    variant: &str,
    opts: &ModelCheckOptions,
) -> ModelReport {
    let mut report = ModelReport {
        model: path.display().to_string(),
        backend: String::new(),
        variant: variant.to_string(),
        tolerance: f64::NAN,
        reason: String::new(),
        checks: vec![],
    };
    if let Err(e) = make().and_then(|b| run_checks(b, path, opts, &mut report)) {
        report.checks.push(Check::new(
            "model",
            Comparison::fail(format!("could not run: {e}")),
        ));
    }
    report
}

fn run_checks<B: Backend>(
    b: B,
    path: &Path,
    opts: &ModelCheckOptions,
    report: &mut ModelReport,
) -> Result<()> {
    report.backend = b.name().to_string();
    let model = wavefront::load(path)?;
    let reference =
        crate::bridge::reference_model(&model, wavefront::model::WeightStorage::of(&b))?;
    let engine_opts = EngineOptions {
        kv_dtype: opts.kv_dtype,
        ..EngineOptions::default()
    };
    let engine = Engine::new(b, &model, engine_opts)?;
    let tol = ModelTolerances::for_engine(&engine);
    let logits = tol.logits();
    report.tolerance = logits.nmse;
    report.reason = logits.reason;
    let tokens = check_tokens(&model);
    report
        .checks
        .extend(check_trace(&engine, &reference, &tokens, &tol)?);
    report.checks.extend(kv_lifecycle(
        &engine,
        &reference,
        &tokens,
        tokens.len() / 2,
        &tol,
    )?);
    report.checks.extend(crate::model::prefill_chunks(
        &engine, &reference, &tokens, &tol,
    )?);
    let prompt = &tokens[..tokens.len().min(8)];
    for (i, params) in opts.settings.iter().enumerate() {
        report.checks.push(
            sampled_tokens(
                &engine,
                &reference,
                prompt,
                params,
                opts.sample_steps,
                1000 + i as u64,
                sample_rule(&tol),
            )?
            .check,
        );
    }
    if opts.greedy_tokens > 0 {
        let want = reference_greedy(&reference, prompt, opts.greedy_tokens)?;
        let got = engine_greedy(&engine, prompt, opts.greedy_tokens)?;
        report.checks.push(Check::new(
            format!("greedy {} (divergence rule)", opts.greedy_tokens),
            check_greedy(&want, &got, greedy_gap(logits.nmse, &want)),
        ));
    }
    Ok(())
}

/// The logit gap allowed at a divergence: twice the RMS logit error the tolerance admits,
/// `2·√NMSE·rms(logits)`, estimated from the reference's top logits of the first step.
pub fn greedy_gap(nmse_tol: f64, reference: &crate::model::Stream) -> f32 {
    let top = &reference.top[0];
    let rms = (top.iter().map(|(_, l)| (*l as f64).powi(2)).sum::<f64>() / top.len() as f64).sqrt();
    (2.0 * nmse_tol.sqrt() * rms) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_dirs_lists_model_dirs_and_the_ggufs_inside_them() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models");
        let got = fixture_dirs(&root).unwrap();
        for want in ["llama_mha", "qwen3_tied", "qwen3_tied/model.f16.gguf"] {
            assert!(got.contains(&root.join(want)), "{want} not in {got:?}");
        }
        // Only models: no golden files, no README.
        assert!(
            got.iter()
                .all(|p| p.join("config.json").is_file()
                    || p.extension().is_some_and(|e| e == "gguf"))
        );
    }
}
