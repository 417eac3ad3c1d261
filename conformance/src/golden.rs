//! Golden token streams: an engine's greedy tokens against transformers' goldens (f32, the
//! dequantized GGUF) under the top-5 divergence rule. The engine's weights are rounded to 16
//! bits where transformers' are f32, so the logits bound with weight rounding
//! (`ModelTolerances::against_unrounded_weights`) sets the allowed logit gap.

use std::path::Path;

use serde::Serialize;
use wavefront::backend::Backend;
use wavefront::{Engine, Error, Result};

use crate::cases::Check;
use crate::model::{check_greedy, engine_greedy, ModelTolerances, Stream};
use crate::models::greedy_gap;

/// One prompt of `fixtures/smollm2/greedy_goldens.json`.
#[derive(Debug, Clone)]
pub struct GreedyGolden {
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub stream: Stream,
}

pub fn read_greedy_goldens(path: &Path) -> Result<Vec<GreedyGolden>> {
    let bad = |d: String| Error::corrupt(path, d);
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let j: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let prompts = j["prompts"]
        .as_array()
        .ok_or_else(|| bad("no `prompts` array".into()))?;
    fn field<T: serde::de::DeserializeOwned>(
        p: &serde_json::Value,
        k: &str,
    ) -> std::result::Result<T, String> {
        serde_json::from_value(p[k].clone()).map_err(|e| format!("`{k}`: {e}"))
    }
    prompts
        .iter()
        .map(|p| {
            Ok(GreedyGolden {
                prompt: field(p, "prompt").map_err(bad)?,
                prompt_ids: field(p, "prompt_ids").map_err(bad)?,
                stream: Stream {
                    tokens: field(p, "tokens").map_err(bad)?,
                    top: field(p, "top").map_err(bad)?,
                },
            })
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamRecord {
    pub prompt: String,
    pub tokens: Vec<u32>,
}

/// Greedy streams of `engine` for every golden, each judged by the divergence rule.
pub fn check_golden_streams<B: Backend>(
    engine: &Engine<B>,
    goldens: &[GreedyGolden],
) -> Result<(Vec<Check>, Vec<StreamRecord>)> {
    // transformers keeps the f32 weights the engine rounded to its weight dtype.
    let tol = ModelTolerances::against_unrounded_weights(engine)
        .logits()
        .nmse;
    let mut checks = Vec::new();
    let mut streams = Vec::new();
    for (i, g) in goldens.iter().enumerate() {
        let got = engine_greedy(engine, &g.prompt_ids, g.stream.tokens.len())?;
        let cmp = check_greedy(&g.stream, &got, greedy_gap(tol, &g.stream));
        checks.push(Check::new(format!("golden greedy {i} {:?}", g.prompt), cmp));
        streams.push(StreamRecord {
            prompt: g.prompt.clone(),
            tokens: got.tokens,
        });
    }
    Ok((checks, streams))
}

/// The snapshot label of a backend: `cpu`, or `gpu_<runtime>_<arch>_wave<N>`.
pub fn stream_label<B: Backend>(b: &B) -> String {
    if b.name() == "cpu" {
        return "cpu".into();
    }
    // "NVIDIA H100 80GB HBM3 (sm_90, WAVE=32, …)" → runtime and arch are in the device string.
    let d = b.device();
    let inner = d.split_once('(').map(|x| x.1).unwrap_or(&d);
    let arch = inner.split(',').next().unwrap_or("unknown").trim();
    let wave = inner
        .split("WAVE=")
        .nth(1)
        .and_then(|w| w.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or("0");
    format!("{}_{}_wave{wave}", b.name(), arch)
        .to_lowercase()
        .replace(['.', ' ', '-'], "_")
}
