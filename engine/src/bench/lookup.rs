//! `wavefront bench --lookup N` / `--draft MODEL`: speculative decoding (issue 13), prompt
//! lookup or a draft model, against plain decode on the same prompts — a fixed set of
//! input-grounded chat prompts (summarise a given text, edit it, change a piece of code), where
//! the answer copies spans of the input. Each prompt is generated greedily `reps` times plain
//! and `reps` times speculatively; a row gives the median decode tok/s of each (the decode's
//! tokens after the first over its time), the ratio, and speculation's counts: accepted tokens
//! per verification step (a verification gives its accepted drafts plus one sampled token) and
//! the acceptance rate (accepted / drafted). The two generations' tokens must be identical
//! (greedy: the row says so; a difference is an error).

use serde::Serialize;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::generate::{GenerationRequest, Generator};
use crate::model::Engine;
use crate::speculative::{DraftParams, LookupParams};
use crate::tokenizer::{ChatMessage, Tokenizer};

const TEXT: &str = "The lighthouse on Gull Point was built in 1871 from granite quarried on the \
island itself. Its first keeper, Ada Brennan, kept the lamp burning through the great storm \
of 1883, when three ships ran aground on the reef to the north. The light was automated in \
1962, and the keeper's cottage now houses a small museum about the island's fishing history.";

const CODE: &str = "fn total(prices: &[f64]) -> f64 {\n    let mut sum = 0.0;\n    for p in \
prices {\n        sum += p;\n    }\n    sum\n}\n\nfn average(prices: &[f64]) -> f64 {\n    \
total(prices) / prices.len() as f64\n}\n";

/// The prompt set: (name, user message).
pub fn prompts() -> Vec<(&'static str, String)> {
    vec![
        (
            "summarise",
            format!("Summarise the following text in two sentences.\n\n{TEXT}"),
        ),
        (
            "edit",
            format!(
                "Rewrite the following text with every year written out in words. Keep \
                 everything else exactly as it is.\n\n{TEXT}"
            ),
        ),
        (
            "code edit",
            format!(
                "Rename the function `total` to `sum_prices` in this Rust code and return the \
                 whole code.\n\n```rust\n{CODE}```"
            ),
        ),
    ]
}

#[derive(Debug, Clone, Serialize)]
pub struct LookupRow {
    pub prompt: String,
    pub prompt_tokens: usize,
    /// Tokens generated (the same with and without lookup).
    pub tokens: usize,
    pub plain_tok_s: Option<f64>,
    /// With speculation.
    pub spec_tok_s: Option<f64>,
    /// `spec_tok_s / plain_tok_s`.
    pub speedup: Option<f64>,
    pub verifications: usize,
    pub drafted: usize,
    pub accepted: usize,
    /// Accepted drafts per verification step.
    pub accepted_per_step: Option<f64>,
    /// Accepted / drafted.
    pub acceptance: Option<f64>,
    pub switched_off: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LookupReport {
    pub model: String,
    pub backend: String,
    pub device: String,
    /// The drafter, as its flags: `--lookup 8 --lookup-ngram 3`, `--draft NAME --draft-k 5`.
    pub drafter: String,
    pub max_draft: usize,
    pub max_tokens: usize,
    pub reps: usize,
    pub rows: Vec<LookupRow>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |x| format!("{x:.digits$}"))
}

impl LookupReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "speculative decoding | model: {} | backend: {} ({}) | {} | greedy chat prompts, up \
             to {} tokens, median of {} rep(s) | the tokens are the plain decode's in every row\n\n\
             | prompt | prompt tokens | tokens | plain tok/s | speculative tok/s | speedup | \
             verifications | accepted / step | acceptance |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.model, self.backend, self.device, self.drafter, self.max_tokens, self.reps
        );
        for r in &self.rows {
            let acceptance = r.acceptance.map(|a| 100.0 * a);
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {}%{} |\n",
                r.prompt,
                r.prompt_tokens,
                r.tokens,
                opt(r.plain_tok_s, 1),
                opt(r.spec_tok_s, 1),
                opt(r.speedup, 2),
                r.verifications,
                opt(r.accepted_per_step, 2),
                opt(acceptance, 0),
                if r.switched_off {
                    " (switched off)"
                } else {
                    ""
                },
            ));
        }
        s
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// What drafts for the benchmark.
pub enum Drafting<'e, B: Backend> {
    Lookup(LookupParams),
    /// A draft model's engine (its model checked against the target's,
    /// `speculative::check_draft_model`), its name, the settings.
    Draft(&'e Engine<B>, String, DraftParams),
}

impl<B: Backend> Drafting<'_, B> {
    fn flags(&self) -> String {
        match self {
            Drafting::Lookup(l) => format!("--lookup {} --lookup-ngram {}", l.max_draft, l.ngram),
            Drafting::Draft(_, name, d) => format!("--draft {name} --draft-k {}", d.max_draft),
        }
    }
}

/// The benchmark on `engine` with `tokenizer` (the model's own: the prompts are chats).
pub fn run<B: Backend>(
    engine: &Engine<B>,
    tokenizer: &Tokenizer,
    model: &str,
    drafting: Drafting<'_, B>,
    max_tokens: usize,
    reps: usize,
) -> Result<LookupReport> {
    let max_draft = match &drafting {
        Drafting::Lookup(l) => l.validate().map(|_| l.max_draft)?,
        Drafting::Draft(_, _, d) => d.validate().map(|_| d.max_draft)?,
    };
    if reps == 0 || max_tokens == 0 {
        return Err(Error::InvalidRequest(
            "bench --lookup / --draft needs --reps and --tg of at least 1".into(),
        ));
    }
    let mut rows = Vec::new();
    for (name, message) in prompts() {
        let prompt = tokenizer.encode_chat(&[ChatMessage::user(message)])?;
        let request = GenerationRequest {
            max_tokens,
            context: Some(prompt.len() + max_tokens + 1),
            ..GenerationRequest::new(prompt.clone())
        };
        let (mut plain_rates, mut lookup_rates) = (Vec::new(), Vec::new());
        let (mut tokens, mut stats) = (Vec::new(), None);
        // One warm-up of each, then the timed reps.
        for rep in 0..=reps {
            let mut plain = Generator::new(engine, Some(tokenizer), request.clone())?;
            while plain.step()?.is_some() {}
            let spec = Generator::new(engine, Some(tokenizer), request.clone())?;
            let mut spec = match &drafting {
                Drafting::Lookup(l) => spec.with_lookup(*l)?,
                Drafting::Draft(d, _, p) => spec.with_draft(d, *p)?,
            };
            while spec.step()?.is_some() {}
            if spec.generated() != plain.generated() {
                return Err(Error::InvalidRequest(format!(
                    "bench {}, {name}: the speculative tokens differ from the plain ones",
                    drafting.flags()
                )));
            }
            if rep > 0 {
                plain_rates.extend(plain.timings().decode_tok_s());
                lookup_rates.extend(spec.timings().decode_tok_s());
            }
            tokens = plain.generated().to_vec();
            stats = spec.spec_stats();
        }
        let s = stats.unwrap_or_default();
        let (plain_tok_s, spec_tok_s) = (median(plain_rates), median(lookup_rates));
        rows.push(LookupRow {
            prompt: name.into(),
            prompt_tokens: prompt.len(),
            tokens: tokens.len(),
            plain_tok_s,
            spec_tok_s,
            speedup: plain_tok_s.zip(spec_tok_s).map(|(p, l)| l / p),
            verifications: s.verifications,
            drafted: s.drafted,
            accepted: s.accepted,
            accepted_per_step: (s.verifications > 0)
                .then(|| s.accepted as f64 / s.verifications as f64),
            acceptance: s.acceptance(),
            switched_off: s.switched_off,
        });
    }
    Ok(LookupReport {
        model: model.into(),
        backend: engine.backend().name().into(),
        device: engine.backend().device(),
        drafter: drafting.flags(),
        max_draft,
        max_tokens,
        reps,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompts_hold_the_text_they_ask_about() {
        let p = prompts();
        assert_eq!(p.len(), 3);
        assert!(p[0].1.ends_with(TEXT) && p[1].1.ends_with(TEXT));
        assert!(p[2].1.contains(CODE));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
    }
}
