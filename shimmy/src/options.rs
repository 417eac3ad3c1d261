//! Shimmy's `GenOptions` and `ModelSpec` in Wavefront's terms: the sampling settings of a
//! [`GenerationRequest`], the prompt template, and the options refused.

use shimmy::engine::{GenOptions, ModelSpec};
use shimmy::prompt_render::{render_completion_prompt_with_extras, JinjaExtras, RenderSource};
use shimmy::templates::TemplateFamily;
use wavefront::tokenizer::{chat, ChatMessage};
use wavefront::{GenerationRequest, SamplingParams, Tokenizer};

use crate::error::{Error, Result};

/// Tokens the repetition penalty looks back over: `wavefront run`'s and the server's default
/// (shimmy has no such option).
pub const REPEAT_LAST_N: usize = 64;

/// `opts` as a request without its prompt (the caller sets `prompt` and `context`), every
/// setting checked by the engine's own ranges. Mapping: `temperature` (0 = greedy), `top_p`,
/// `top_k` (≤ 0 = off, as llama.cpp), `repeat_penalty` over the last [`REPEAT_LAST_N`] tokens,
/// `seed` (none: from the clock, as `wavefront serve`), `stop_tokens` as stop strings,
/// `max_tokens`; min-p off (shimmy has none). `stream` changes nothing (the tokens go to
/// `on_token` whenever one is given), nor does `session_id` (a label). Refused, naming the
/// field: `grammar_mode` other than `none`, `fse_reject_patterns`, `math_bypass`,
/// `trace_path` — shimmy's hooks into its own engine's sampler, which Wavefront's (on the
/// device) does not have.
pub fn request_settings(opts: &GenOptions) -> Result<GenerationRequest> {
    refuse_unsupported(opts)?;
    let request = GenerationRequest {
        prompt: Vec::new(),
        max_tokens: opts.max_tokens,
        sampling: SamplingParams {
            temperature: opts.temperature,
            top_k: usize::try_from(opts.top_k).unwrap_or(0),
            top_p: opts.top_p,
            min_p: 0.0,
            repeat_penalty: opts.repeat_penalty,
            ..SamplingParams::default() // shimmy has no presence/frequency penalties
        },
        seed: opts
            .seed
            .map_or_else(wavefront::sampler::clock_seed, u64::from),
        stop: opts.stop_tokens.clone(),
        repeat_last_n: REPEAT_LAST_N,
        context: None,
        logprobs: None,
    };
    request.check_settings()?;
    Ok(request)
}

fn refuse_unsupported(opts: &GenOptions) -> Result<()> {
    let refuse = |option, value: String, why| Err(Error::Unsupported { option, value, why });
    let grammar = opts.grammar_mode.trim();
    if !(grammar.is_empty() || grammar.eq_ignore_ascii_case("none")) {
        return refuse(
            "grammar_mode",
            opts.grammar_mode.clone(),
            "constrained decoding is not implemented; only \"none\"",
        );
    }
    if !opts.fse_reject_patterns.trim().is_empty() {
        return refuse(
            "fse_reject_patterns",
            opts.fse_reject_patterns.clone(),
            "rejection patterns are not implemented",
        );
    }
    if opts.math_bypass {
        return refuse(
            "math_bypass",
            "true".into(),
            "the math bypass is not implemented",
        );
    }
    if !opts.trace_path.trim().is_empty() {
        return refuse(
            "trace_path",
            opts.trace_path.clone(),
            "per-step logit traces are not implemented",
        );
    }
    Ok(())
}

/// How a prompt that shimmy did not render (`raw_prompt: false`) becomes the model's input:
/// `ModelSpec.chat_template` (Jinja) where given, else `ModelSpec.template` (one of shimmy's
/// families), else the model's own chat template; a model without one takes it as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// A Jinja chat template, rendered by the engine's renderer (transformers' semantics).
    Jinja(String),
    /// One of shimmy's template families, rendered by shimmy.
    Family(TemplateFamily),
    /// The model's own chat template (as `wavefront run --chat`).
    Model,
}

impl Template {
    pub fn of(spec: &ModelSpec) -> Result<Template> {
        if let Some(t) = spec.chat_template.as_ref().filter(|t| !t.trim().is_empty()) {
            return Ok(Template::Jinja(t.clone()));
        }
        match &spec.template {
            Some(name) => family(name).map(Template::Family),
            None => Ok(Template::Model),
        }
    }
}

/// One of shimmy's family names (`ModelSpec.template`; case-insensitive).
pub fn family(name: &str) -> Result<TemplateFamily> {
    match name.trim().to_ascii_lowercase().as_str() {
        "chatml" => Ok(TemplateFamily::ChatML),
        "llama3" | "llama-3" => Ok(TemplateFamily::Llama3),
        "openchat" => Ok(TemplateFamily::OpenChat),
        "gemma" => Ok(TemplateFamily::Gemma),
        _ => Err(Error::Unsupported {
            option: "template",
            value: name.to_string(),
            why: "shimmy's template families are chatml, llama3, openchat and gemma",
        }),
    }
}

/// The shimmy family whose turn markers the model's own chat template uses, for a registry
/// entry (shimmy's routes render chats with a family: without its `airframe` feature they never
/// see the model's Jinja template); `None` when it uses none of them.
pub fn family_of(tokenizer: &Tokenizer) -> Option<&'static str> {
    let t = tokenizer.chat_template.as_deref()?;
    [
        ("<|im_start|>", "chatml"),
        ("<|start_header_id|>", "llama3"),
        ("<start_of_turn>", "gemma"),
    ]
    .into_iter()
    .find(|(marker, _)| t.contains(marker))
    .map(|(_, name)| name)
}

/// The token ids of `prompt`. Raw (`raw_prompt`, which is how shimmy's routes pass the chats
/// they rendered, or a model without a template): encoded as `wavefront run PROMPT` encodes
/// it, the model's tokenizer adding what a plain prompt needs (BOS). Otherwise wrapped as one
/// user message by `template`: a Jinja template writes its own special tokens, so its text is
/// encoded without (as `wavefront run --chat`); a shimmy family's text is encoded as a plain
/// prompt.
pub fn encode(
    tokenizer: &Tokenizer,
    template: &Template,
    raw_prompt: bool,
    prompt: &str,
) -> Result<Vec<u32>> {
    let messages = [ChatMessage::user(prompt)];
    let ids = match template {
        _ if raw_prompt => tokenizer.encode(prompt, true)?,
        Template::Jinja(t) => {
            let text = chat::render(t, &messages, true, &tokenizer.special)?;
            tokenizer.encode(&text, false)?
        }
        Template::Family(f) => {
            let r = render_completion_prompt_with_extras(
                prompt,
                None,
                *f,
                false,
                &JinjaExtras::default(),
            );
            debug_assert!(r.source != RenderSource::GgufJinja);
            tokenizer.encode(&r.text, true)?
        }
        Template::Model if tokenizer.chat_template.is_some() => tokenizer.encode_chat(&messages)?,
        Template::Model => tokenizer.encode(prompt, true)?,
    };
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_map_onto_the_request() {
        let opts = GenOptions {
            max_tokens: 17,
            temperature: 0.3,
            top_p: 0.8,
            top_k: 12,
            repeat_penalty: 1.2,
            seed: Some(99),
            stop_tokens: vec!["\n\n".into()],
            session_id: "a label".into(),
            ..GenOptions::default()
        };
        let r = request_settings(&opts).unwrap();
        assert_eq!(r.max_tokens, 17);
        assert_eq!(
            r.sampling,
            SamplingParams {
                temperature: 0.3,
                top_k: 12,
                top_p: 0.8,
                min_p: 0.0,
                repeat_penalty: 1.2,
                presence_penalty: 0.0,
                frequency_penalty: 0.0,
            }
        );
        assert_eq!(r.seed, 99);
        assert_eq!(r.stop, ["\n\n"]);
        assert_eq!(r.repeat_last_n, REPEAT_LAST_N);
        assert!(r.prompt.is_empty() && r.context.is_none() && r.logprobs.is_none());
        // top_k ≤ 0 is off (0), as llama.cpp reads it.
        for k in [0, -1, i32::MIN] {
            let r = request_settings(&GenOptions {
                top_k: k,
                ..opts.clone()
            });
            assert_eq!(r.unwrap().sampling.top_k, 0, "top_k {k}");
        }
    }

    #[test]
    fn out_of_range_settings_get_the_engines_message() {
        for (opts, message) in [
            (
                GenOptions {
                    temperature: -1.0,
                    ..GenOptions::default()
                },
                "temperature must be",
            ),
            (
                GenOptions {
                    top_p: 0.0,
                    ..GenOptions::default()
                },
                "top_p must be in (0, 1]",
            ),
            (
                GenOptions {
                    max_tokens: 0,
                    ..GenOptions::default()
                },
                "max_tokens must be at least 1",
            ),
            (
                GenOptions {
                    stop_tokens: vec![String::new()],
                    ..GenOptions::default()
                },
                "stop must be a non-empty string",
            ),
        ] {
            let e = request_settings(&opts).unwrap_err();
            assert!(matches!(e, Error::Engine(_)), "{e:?}");
            assert!(e.to_string().starts_with(message), "{e}");
        }
    }

    #[test]
    fn unsupported_options_are_refused_by_name() {
        let base = GenOptions::default();
        assert_eq!(base.grammar_mode, "none");
        assert!(request_settings(&base).is_ok());
        assert!(request_settings(&GenOptions {
            grammar_mode: String::new(),
            ..base.clone()
        })
        .is_ok());
        for (opts, option) in [
            (
                GenOptions {
                    grammar_mode: "json".into(),
                    ..base.clone()
                },
                "grammar_mode",
            ),
            (
                GenOptions {
                    fse_reject_patterns: "foo|bar".into(),
                    ..base.clone()
                },
                "fse_reject_patterns",
            ),
            (
                GenOptions {
                    math_bypass: true,
                    ..base.clone()
                },
                "math_bypass",
            ),
            (
                GenOptions {
                    trace_path: "/tmp/trace.jsonl".into(),
                    ..base.clone()
                },
                "trace_path",
            ),
        ] {
            let e = request_settings(&opts).unwrap_err();
            assert!(
                matches!(e, Error::Unsupported { option: o, .. } if o == option),
                "{e:?}"
            );
            assert!(e.to_string().starts_with(&format!("{option} = ")), "{e}");
        }
    }

    fn spec(template: Option<&str>, chat_template: Option<&str>) -> ModelSpec {
        ModelSpec {
            name: "m".into(),
            base_path: "m.gguf".into(),
            lora_path: None,
            template: template.map(str::to_string),
            chat_template: chat_template.map(str::to_string),
            ctx_len: 2048,
            n_threads: None,
        }
    }

    #[test]
    fn the_template_is_the_specs_jinja_then_its_family_then_the_models() {
        let jinja = "{{ messages[0].content }}";
        assert_eq!(
            Template::of(&spec(Some("chatml"), Some(jinja))).unwrap(),
            Template::Jinja(jinja.into())
        );
        assert_eq!(
            Template::of(&spec(Some("ChatML"), Some("  "))).unwrap(),
            Template::Family(TemplateFamily::ChatML)
        );
        assert_eq!(
            Template::of(&spec(Some("llama-3"), None)).unwrap(),
            Template::Family(TemplateFamily::Llama3)
        );
        assert_eq!(Template::of(&spec(None, None)).unwrap(), Template::Model);
        let e = Template::of(&spec(Some("alpaca"), None)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Unsupported {
                    option: "template",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("chatml, llama3"), "{e}");
    }
}
