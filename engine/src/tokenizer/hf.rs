//! Tokenizer from a Hugging Face directory: `tokenizer.json` (the `tokenizers` pipeline,
//! post-processor included), `tokenizer_config.json` (special tokens, chat template) and
//! `chat_template.jinja`, loaded the way transformers 5 loads a fast tokenizer
//! (`TokenizersBackend.from_pretrained`), so that `encode(text, true)` equals
//! `AutoTokenizer.from_pretrained(dir)(text).input_ids`:
//!
//! - the post-processor is the one in `tokenizer.json`, as is. transformers 5 drops
//!   `add_bos_token` / `add_eos_token` from `tokenizer_config.json` whenever `tokenizer.json`
//!   exists (`_from_pretrained`), so they change nothing here either;
//! - named special tokens (`bos_token`, `eos_token`, `unk_token`, `pad_token`, ...) and
//!   `extra_special_tokens` / `additional_special_tokens` that `tokenizer.json` does not
//!   already list as added tokens are added as special tokens, as transformers' `__init__` does;
//! - the chat template is `chat_template.jinja` when present, else `chat_template` from
//!   `tokenizer_config.json` (a string, or a list of named templates: the one named "default").
//!
//! Not reproduced: model-specific tokenizer classes whose `__init__` rebuilds the pipeline
//! instead of using `tokenizer.json` (e.g. transformers 5's `LlamaTokenizer` with a Metaspace
//! `tokenizer.json`), and `clean_up_tokenization_spaces` (transformers ignores it for BPE).

use std::path::Path;

use serde_json::{Map, Value};
use tokenizers::AddedToken;

use super::{SpecialTokens, Tokenizer};
use crate::error::{Error, Result};

pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// transformers' `SPECIAL_TOKENS_ATTRIBUTES`.
const NAMED_SPECIAL_TOKENS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// The tokenizer in `dir`, or `None` when there is no `tokenizer.json`.
pub fn from_dir(dir: &Path) -> Result<Option<Tokenizer>> {
    let path = dir.join(TOKENIZER_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let mut inner = read_tokenizer_json(&path)?;

    let config_path = dir.join(TOKENIZER_CONFIG_FILE);
    let config = if config_path.is_file() {
        let text = std::fs::read(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let v: Value = serde_json::from_slice(&text)
            .map_err(|e| Error::corrupt(&config_path, format!("not valid JSON: {e}")))?;
        match v {
            Value::Object(m) => m,
            _ => return Err(Error::corrupt(&config_path, "expected a JSON object")),
        }
    } else {
        Map::new()
    };
    let cfg = ConfigFile {
        path: &config_path,
        obj: &config,
    };

    add_missing_special_tokens(&mut inner, &cfg)?;

    let bos_token = cfg.token("bos_token")?.map(|t| t.content);
    let eos_token = cfg.token("eos_token")?.map(|t| t.content);
    let special = SpecialTokens {
        bos_token_id: bos_token.as_deref().and_then(|t| inner.token_to_id(t)),
        eos_token_ids: eos_token
            .as_deref()
            .and_then(|t| inner.token_to_id(t))
            .into_iter()
            .collect(),
        bos_token,
        eos_token,
    };
    let chat_template = chat_template(dir, &cfg)?;
    Ok(Some(Tokenizer::new(inner, special, chat_template)))
}

/// `tokenizer.json`, built by `tokenizers` after the checks that keep its panics out
/// (tokenizers 0.22): the text must be JSON (its decoder deserializer `expect`s on a broken
/// stream, e.g. a truncated file or a number out of range), a BPE model's merges must be
/// sliceable by its `continuing_subword_prefix` (it slices each right token at the prefix's
/// length), and a template post-processor must be one its encoder can apply
/// ([`check_post_processor`]).
fn read_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::corrupt(path, format!("not valid JSON: {e}")))?;
    let bad = |detail: String| Error::TokenizerFile {
        path: path.into(),
        detail,
    };
    let model = &v["model"];
    let prefix = model["continuing_subword_prefix"].as_str().unwrap_or("");
    if let (false, Some(merges)) = (prefix.is_empty(), model["merges"].as_array()) {
        for (i, m) in merges.iter().enumerate() {
            let right = match m {
                Value::String(s) => s.split(' ').nth(1),
                Value::Array(pair) => pair.get(1).and_then(Value::as_str),
                _ => None,
            };
            if let Some(r) = right.filter(|r| !r.is_char_boundary(prefix.len())) {
                return Err(bad(format!(
                    "merge #{i}: its right token `{r}` does not begin with the continuing_subword_prefix `{prefix}`"
                )));
            }
        }
    }
    check_post_processor(&v["post_processor"]).map_err(|e| bad(format!("post_processor: {e}")))?;
    text.parse::<tokenizers::Tokenizer>()
        .map_err(|e| bad(e.to_string()))
}

/// `tokenizers` deserializes a `TemplateProcessing` without the checks its builder makes, and
/// its encoder then indexes by them: every special token a template names must be in
/// `special_tokens` (else a map lookup panics), and the single-sequence template cannot use
/// sequence B (else an index panics). Checked here, inside `Sequence` processors too.
fn check_post_processor(pp: &Value) -> std::result::Result<(), String> {
    match pp["type"].as_str() {
        Some("TemplateProcessing") => {
            let specials = pp["special_tokens"].as_object();
            for (template, sequences) in [("single", &["A"][..]), ("pair", &["A", "B"][..])] {
                for piece in pp[template].as_array().into_iter().flatten() {
                    if let Some(id) = piece["SpecialToken"]["id"].as_str() {
                        if !specials.is_some_and(|m| m.contains_key(id)) {
                            return Err(format!(
                                "the {template} template names special token `{id}`, which special_tokens lacks"
                            ));
                        }
                    }
                    if let Some(seq) = piece["Sequence"]["id"].as_str() {
                        if !sequences.contains(&seq) {
                            return Err(format!("the {template} template names sequence {seq}"));
                        }
                    }
                }
            }
            Ok(())
        }
        Some("Sequence") => pp["processors"]
            .as_array()
            .into_iter()
            .flatten()
            .try_for_each(check_post_processor),
        _ => Ok(()),
    }
}

/// Special tokens the config names that `tokenizer.json` lacks as added tokens.
fn add_missing_special_tokens(inner: &mut tokenizers::Tokenizer, cfg: &ConfigFile) -> Result<()> {
    let mut wanted = Vec::new();
    for key in NAMED_SPECIAL_TOKENS {
        wanted.extend(cfg.token(key)?);
    }
    for key in ["extra_special_tokens", "additional_special_tokens"] {
        match cfg.obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    wanted.push(cfg.token_value(&format!("{key}[{i}]"), item)?);
                }
            }
            // transformers 5 treats a dict as model-specific named tokens.
            Some(Value::Object(m)) => {
                for (name, item) in m {
                    wanted.push(cfg.token_value(&format!("{key}.{name}"), item)?);
                }
            }
            Some(v) => return Err(cfg.err(key, format!("expected a list of tokens, found {v}"))),
        }
    }
    let present: Vec<String> = inner
        .get_added_tokens_decoder()
        .into_values()
        .map(|t| t.content)
        .collect();
    let missing: Vec<AddedToken> = wanted
        .into_iter()
        .filter(|t| !present.contains(&t.content))
        .map(|t| {
            AddedToken::from(t.content, true)
                .lstrip(t.lstrip)
                .rstrip(t.rstrip)
                .single_word(t.single_word)
                .normalized(t.normalized)
        })
        .collect();
    if !missing.is_empty() {
        inner.add_special_tokens(&missing);
    }
    Ok(())
}

/// `chat_template.jinja` wins over `tokenizer_config.json`'s `chat_template`.
fn chat_template(dir: &Path, cfg: &ConfigFile) -> Result<Option<String>> {
    let file = dir.join(CHAT_TEMPLATE_FILE);
    if file.is_file() {
        return std::fs::read_to_string(&file)
            .map(Some)
            .map_err(|e| Error::io(&file, e));
    }
    match cfg.obj.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => Ok(Some(t.clone())),
        Some(Value::Array(named)) => {
            for entry in named {
                let name = entry.get("name").and_then(Value::as_str);
                let template = entry.get("template").and_then(Value::as_str);
                match (name, template) {
                    (Some("default"), Some(t)) => return Ok(Some(t.to_string())),
                    (Some(_), Some(_)) => {}
                    _ => {
                        return Err(cfg.err(
                            "chat_template",
                            format!("expected {{\"name\", \"template\"}} entries, found {entry}"),
                        ))
                    }
                }
            }
            Ok(None)
        }
        Some(v) => Err(cfg.err(
            "chat_template",
            format!("expected a string or a list of named templates, found {v}"),
        )),
    }
}

/// A special token as `tokenizer_config.json` writes it.
struct TokenSpec {
    content: String,
    lstrip: bool,
    rstrip: bool,
    single_word: bool,
    normalized: bool,
}

struct ConfigFile<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
}

impl ConfigFile<'_> {
    fn err(&self, field: &str, detail: impl Into<String>) -> Error {
        Error::config(self.path, field, detail)
    }

    /// The token under `key`: absent or `null` is `None`.
    fn token(&self, key: &str) -> Result<Option<TokenSpec>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => self.token_value(key, v).map(Some),
        }
    }

    /// A string, or an AddedToken object (`{"content": .., "lstrip": .., ..}`).
    fn token_value(&self, key: &str, v: &Value) -> Result<TokenSpec> {
        let flag = |m: &Map<String, Value>, name: &str, default: bool| -> Result<bool> {
            match m.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(x) => Err(self.err(key, format!("`{name}` is not a boolean: {x}"))),
            }
        };
        match v {
            // transformers turns plain strings into AddedToken(special=True, normalized=False).
            Value::String(s) => Ok(TokenSpec {
                content: s.clone(),
                lstrip: false,
                rstrip: false,
                single_word: false,
                normalized: false,
            }),
            Value::Object(m) => {
                let content = m.get("content").and_then(Value::as_str).ok_or_else(|| {
                    self.err(key, format!("token object without a `content` string: {v}"))
                })?;
                Ok(TokenSpec {
                    content: content.to_string(),
                    lstrip: flag(m, "lstrip", false)?,
                    rstrip: flag(m, "rstrip", false)?,
                    single_word: flag(m, "single_word", false)?,
                    normalized: flag(m, "normalized", false)?,
                })
            }
            _ => Err(self.err(key, format!("expected a token string or object, found {v}"))),
        }
    }
}
