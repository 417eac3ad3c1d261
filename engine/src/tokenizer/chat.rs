//! Chat templates: the Jinja templates Hugging Face models ship, rendered with minijinja the
//! way transformers renders them: `messages`, `tools` (OpenAI's function tools, as sent),
//! `documents` (none), `add_generation_prompt`, `bos_token`, `eos_token`; the globals
//! `raise_exception` and `strftime_now` (UTC), transformers' `tojson` (Python's `json.dumps`),
//! Python string methods, and `None`/`True`/`False` printed as Python prints them.
//!
//! Not transformers': the `{% generation %}` block (assistant masks), `strftime_now` in local
//! time, and Python's `repr` of a whole list or dict printed with `{{ }}`.

mod strftime;
pub mod tojson;

pub use strftime::strftime;

use minijinja::value::ValueKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SpecialTokens;
use crate::error::{Error, Result};

/// One turn of a chat, as OpenAI's API and transformers' templates know it. A field that is
/// `None` is left out of what the template sees, as transformers drops a message's keys whose
/// value is `None` before rendering: `message.tool_calls is defined` holds exactly when a turn
/// has calls, and a turn of calls alone has no `content` (`undefined`, not `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    /// `None`: an assistant turn that only calls tools (OpenAI's `"content": null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// An assistant turn's calls, as OpenAI sends them back:
    /// `[{"id", "type": "function", "function": {"name", "arguments": STRING}}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    /// A `tool` turn: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A `tool` turn: the function's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: Some(content.into()),
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An assistant turn that only calls tools (no `content`).
    pub fn tool_calls(calls: Vec<Value>) -> Self {
        ChatMessage {
            content: None,
            tool_calls: Some(calls),
            ..Self::new("assistant", "")
        }
    }

    /// A `tool` turn: the result of the call `tool_call_id`.
    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            tool_call_id: Some(tool_call_id.into()),
            ..Self::new("tool", content)
        }
    }
}

/// What a template renders: the arguments of transformers' `apply_chat_template(messages,
/// tools=..., add_generation_prompt=...)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatInput<'a> {
    pub messages: &'a [ChatMessage],
    /// The tools as sent, e.g. OpenAI's `[{"type": "function", "function": {"name",
    /// "description", "parameters"}}]`; `None` is Python's `tools=None`.
    pub tools: Option<&'a [Value]>,
    pub add_generation_prompt: bool,
}

/// Renders `template` over `messages` without tools.
pub fn render(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    special: &SpecialTokens,
) -> Result<String> {
    let input = ChatInput {
        messages,
        tools: None,
        add_generation_prompt,
    };
    render_input(template, &input, special)
}

/// Renders `template` over `input`, as transformers' `apply_chat_template(..., tokenize=False)`.
pub fn render_input(template: &str, input: &ChatInput, special: &SpecialTokens) -> Result<String> {
    let env = environment(template)?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| Error::ChatTemplate(e.to_string()))?;
    tmpl.render(minijinja::context! {
        messages => input.messages,
        tools => input.tools,
        documents => (),
        add_generation_prompt => input.add_generation_prompt,
        bos_token => special.bos_token.clone().unwrap_or_default(),
        eos_token => special.eos_token.clone().unwrap_or_default(),
    })
    .map_err(|e| Error::ChatTemplate(format!("rendering failed: {e}")))
}

/// Whether `template` reads `tools` (names it as a variable it does not set itself): a
/// template that does not would drop the tools of a request without a word.
pub fn takes_tools(template: &str) -> Result<bool> {
    let env = environment(template)?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| Error::ChatTemplate(e.to_string()))?;
    Ok(tmpl.undeclared_variables(false).contains("tools"))
}

/// transformers' Jinja environment, in minijinja, holding `template` as `chat`.
fn environment(template: &str) -> Result<minijinja::Environment<'_>> {
    let mut env = minijinja::Environment::new();
    // transformers renders with trim_blocks and lstrip_blocks.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(python_formatter);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_function("strftime_now", strftime::strftime_now);
    env.add_filter("tojson", tojson::filter);
    env.add_template("chat", template)
        .map_err(|e| Error::ChatTemplate(format!("template does not parse: {e}")))?;
    Ok(env)
}

/// `{{ x }}` as Jinja2 prints it: `None`, `True`, `False` for Python's singletons (minijinja
/// would print `none`, `true`); everything else minijinja's way (no autoescape here).
fn python_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &minijinja::Value,
) -> std::result::Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::None => out.write_str("None")?,
        ValueKind::Bool => out.write_str(if value.is_true() { "True" } else { "False" })?,
        _ => minijinja::escape_formatter(out, state, value)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_simple_template_with_generation_prompt() {
        let t = "{% for m in messages %}<|{{ m.role }}|>{{ m.content.strip() }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
        let out = render(
            t,
            &[ChatMessage::user("  hi ")],
            true,
            &SpecialTokens::default(),
        )
        .unwrap();
        assert_eq!(out, "<|user|>hi\n<|assistant|>");
    }

    #[test]
    fn raise_exception_is_a_typed_error() {
        let t = "{{ raise_exception('only user messages') }}";
        let err = render(t, &[], false, &SpecialTokens::default()).unwrap_err();
        assert!(
            matches!(err, Error::ChatTemplate(ref m) if m.contains("only user messages")),
            "{err}"
        );
    }

    #[test]
    fn strftime_now_is_the_clock_in_utc() {
        let before = strftime("%Y-%m-%d", now_secs()).unwrap();
        let out = render(
            "{{ strftime_now('%Y-%m-%d') }}",
            &[],
            false,
            &SpecialTokens::default(),
        )
        .unwrap();
        let after = strftime("%Y-%m-%d", now_secs()).unwrap();
        assert!(out == before || out == after, "{out}");
    }

    fn now_secs() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn malformed_template_is_a_typed_error() {
        let err = render("{% for %}", &[], false, &SpecialTokens::default()).unwrap_err();
        assert!(matches!(err, Error::ChatTemplate(_)), "{err}");
    }
}
