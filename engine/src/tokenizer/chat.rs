//! Chat templates: the Jinja templates Hugging Face models ship, rendered with minijinja the
//! way transformers renders them (`messages`, `add_generation_prompt`, `bos_token`,
//! `eos_token`, `raise_exception`, Python string methods).

use serde::Serialize;

use super::SpecialTokens;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
}

pub fn render(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    special: &SpecialTokens,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    // transformers renders with trim_blocks and lstrip_blocks.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_template("chat", template)
        .map_err(|e| Error::ChatTemplate(format!("template does not parse: {e}")))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| Error::ChatTemplate(e.to_string()))?;
    tmpl.render(minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => special.bos_token.clone().unwrap_or_default(),
        eos_token => special.eos_token.clone().unwrap_or_default(),
    })
    .map_err(|e| Error::ChatTemplate(format!("rendering failed: {e}")))
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
    fn malformed_template_is_a_typed_error() {
        let err = render("{% for %}", &[], false, &SpecialTokens::default()).unwrap_err();
        assert!(matches!(err, Error::ChatTemplate(_)), "{err}");
    }
}
