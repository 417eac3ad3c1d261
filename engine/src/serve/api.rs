//! OpenAI's request bodies → a checked [`GenerationRequest`], and the response bodies and
//! stream chunks back. Every refusal is an [`ApiError`] naming the field.
//!
//! A body is read in three passes so that each kind of fault gets its own answer: JSON that
//! does not parse (no field to name), a field this server does not know (named), a field of
//! the wrong type (named by its path, `messages[1].content`); then the values are checked.
//!
//! Tools: `tools` (OpenAI's function tools, checked and given to the chat template as sent;
//! refused when the model's template never reads `tools`), assistant messages with
//! `tool_calls` and `tool` messages with `tool_call_id` go into the prompt. Unless
//! `tool_choice` is `"none"`, the reply is read for calls in the format of the model's template
//! ([`super::tools`]): `message.tool_calls` (or `delta.tool_calls` chunks) and `finish_reason`
//! `tool_calls`. Every `tool_choice` renders the same prompt (the tools, as OpenAI's models
//! see them with `"none"` too); `"required"` and a named function are not enforced while
//! decoding (no grammar): a named function limits the calls read to it.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::tools::{
    self, check_tool_choice, check_tools, is_name, shape_error, ToolChoice, ToolFormat, ToolParsing,
};
use crate::generate::{FinishReason, GenerationRequest, TokenLogprobs, MAX_TOP_LOGPROBS};
use crate::sampler::SamplingParams;
use crate::tokenizer::{ChatInput, ChatMessage, Tokenizer};

/// What a request is checked against: the served model and each slot's context.
pub struct ApiContext<'a> {
    pub model_id: &'a str,
    pub tokenizer: &'a Tokenizer,
    /// The model's vocabulary (token ids of a prompt are below it).
    pub vocab_size: usize,
    /// KV capacity of a slot: prompt + max_tokens must fit.
    pub capacity: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`
    Chat,
    /// `/v1/completions`
    Completion,
}

impl Endpoint {
    /// The field the prompt comes from.
    pub fn prompt_param(self) -> &'static str {
        match self {
            Endpoint::Chat => "messages",
            Endpoint::Completion => "prompt",
        }
    }
}

/// A request ready for the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub endpoint: Endpoint,
    pub request: GenerationRequest,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with `usage` and no choices.
    pub include_usage: bool,
    /// How the reply is read for tool calls (`None`: it is text).
    pub tools: Option<ToolParsing>,
}

/// The stop strings OpenAI allows at most.
pub const MAX_STOP: usize = 4;

const COMMON_FIELDS: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "user",
];
const CHAT_FIELDS: &[&str] = &[
    "messages",
    "max_completion_tokens",
    "tools",
    "tool_choice",
    "response_format",
    "parallel_tool_calls",
];
const COMPLETION_FIELDS: &[&str] = &["prompt", "echo", "suffix", "best_of"];

/// The fields both endpoints take. `Option` throughout: absent and `null` mean the default.
#[derive(Deserialize)]
struct Common {
    model: Option<String>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u64>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    repeat_last_n: Option<u64>,
    seed: Option<u64>,
    stop: Option<Value>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    n: Option<u64>,
    logprobs: Option<Value>,
    top_logprobs: Option<Value>,
    logit_bias: Option<Map<String, Value>>,
    /// An end-user identifier OpenAI uses for abuse monitoring; it changes no output.
    #[allow(dead_code)]
    user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ChatFields {
    messages: Vec<WireMessage>,
    max_completion_tokens: Option<u64>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    response_format: Option<Value>,
    /// Nothing limits the calls a reply may make while decoding, so all that are read are
    /// returned, whatever this says.
    #[allow(dead_code)]
    parallel_tool_calls: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMessage {
    role: String,
    /// Absent or null only in an assistant turn of tool calls.
    content: Option<Value>,
    tool_calls: Option<Vec<Value>>,
    tool_call_id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct CompletionFields {
    prompt: Value,
    echo: Option<bool>,
    suffix: Option<String>,
    best_of: Option<u64>,
}

/// Parses and checks a `/v1/chat/completions` body.
pub fn parse_chat(body: &[u8], ctx: &ApiContext) -> Result<Prepared, ApiError> {
    let value = object(body, CHAT_FIELDS)?;
    let common: Common = typed(&value)?;
    let chat: ChatFields = typed(&value)?;
    check_common(&common, ctx)?;
    // An empty list is no tools (Python's `tools=None` to the template).
    let tools = chat.tools.as_deref().filter(|t| !t.is_empty());
    if let Some(tools) = tools {
        check_tools(tools)?;
        // A template that never reads `tools` would drop them without a word. (One that does
        // not parse, or no template, is answered when the messages are rendered.)
        if let Ok(false) = ctx.tokenizer.chat_template_takes_tools() {
            return Err(ApiError::unsupported(
                "tools",
                "this model's chat template does not take tools (it never reads `tools`)",
            ));
        }
    }
    let choice = check_tool_choice(chat.tool_choice.as_ref(), tools.unwrap_or(&[]))?;
    let tool_parsing = tool_parsing(tools, &choice, ctx)?;
    if let Some(f) = chat.response_format.as_ref().filter(|f| !f.is_null()) {
        if f.get("type").and_then(Value::as_str) != Some("text") {
            return Err(ApiError::unsupported(
                "response_format",
                "response_format must be {\"type\": \"text\"} (structured output is not supported yet)",
            ));
        }
    }
    let messages = messages(&chat.messages)?;
    let input = ChatInput {
        messages: &messages,
        tools,
        add_generation_prompt: true,
    };
    let prompt = ctx
        .tokenizer
        .encode_chat_input(&input)
        .map_err(|e| ApiError::from_engine(&e, "messages"))?;
    let max_tokens = match (common.max_tokens, chat.max_completion_tokens) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid(
                "max_completion_tokens",
                format!("max_completion_tokens ({b}) and max_tokens ({a}) disagree; give one"),
            ))
        }
        (_, Some(b)) => Some(("max_completion_tokens", b)),
        (Some(a), None) => Some(("max_tokens", a)),
        (None, None) => None,
    };
    let mut prepared = prepare(Endpoint::Chat, common, prompt, max_tokens, ctx)?;
    prepared.tools = tool_parsing;
    Ok(prepared)
}

/// How a reply is read for calls: not at all without tools or with `tool_choice` `"none"`, or
/// when the model's template shows no format this server reads (then `"required"` and a named
/// function are refused: no call could ever be returned).
fn tool_parsing(
    tools: Option<&[Value]>,
    choice: &ToolChoice,
    ctx: &ApiContext,
) -> Result<Option<ToolParsing>, ApiError> {
    let Some(tools) = tools else {
        return Ok(None);
    };
    if *choice == ToolChoice::None {
        return Ok(None);
    }
    let format = ctx
        .tokenizer
        .chat_template
        .as_deref()
        .and_then(ToolFormat::detect);
    match (format, choice) {
        (Some(format), ToolChoice::Function(name)) => Ok(Some(ToolParsing {
            format,
            names: vec![name.clone()],
        })),
        (Some(format), _) => Ok(Some(ToolParsing {
            format,
            names: tools::tool_names(tools),
        })),
        (None, ToolChoice::Auto) => Ok(None),
        (None, _) => Err(ApiError::unsupported(
            "tool_choice",
            "this model's chat template writes tool calls in no format this server reads \
             (Hermes/Qwen tags, Mistral's [TOOL_CALLS], Llama's JSON), so no call could be \
             returned: use \"auto\" or \"none\"",
        )),
    }
}

/// Parses and checks a `/v1/completions` body.
pub fn parse_completion(body: &[u8], ctx: &ApiContext) -> Result<Prepared, ApiError> {
    let value = object(body, COMPLETION_FIELDS)?;
    let common: Common = typed(&value)?;
    let fields: CompletionFields = typed(&value)?;
    check_common(&common, ctx)?;
    if fields.echo == Some(true) {
        return Err(ApiError::unsupported("echo", "echo is not supported yet"));
    }
    if fields.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::unsupported("suffix", "suffix is not supported"));
    }
    if fields.best_of.is_some_and(|b| b != 1) {
        return Err(ApiError::unsupported("best_of", "best_of must be 1"));
    }
    let prompt = completion_prompt(&fields.prompt, ctx)?;
    let max_tokens = common.max_tokens.map(|n| ("max_tokens", n));
    prepare(Endpoint::Completion, common, prompt, max_tokens, ctx)
}

/// The body as a JSON object whose every key this endpoint knows.
fn object(body: &[u8], endpoint_fields: &[&str]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_body(format!("the body is not valid JSON: {e}")))?;
    let Some(map) = value.as_object() else {
        return Err(ApiError::bad_body("the body must be a JSON object"));
    };
    if let Some(k) = map
        .keys()
        .find(|k| !COMMON_FIELDS.contains(&k.as_str()) && !endpoint_fields.contains(&k.as_str()))
    {
        return Err(
            ApiError::invalid(k.as_str(), format!("unrecognized request argument: {k}"))
                .with_code("unknown_parameter"),
        );
    }
    Ok(value)
}

/// `value` as `T`, a type fault naming its path (`messages[0].content`, `temperature`).
fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // A missing field's path is its container's: serde names the field in the message.
        let param = match (inner.strip_prefix("missing field `"), path.as_str()) {
            (Some(rest), ".") => rest.trim_end_matches('`').to_string(),
            (Some(rest), p) => format!("{p}.{}", rest.trim_end_matches('`')),
            (None, ".") => String::new(),
            (None, p) => p.to_string(),
        };
        if param.is_empty() {
            ApiError::bad_body(inner)
        } else {
            ApiError::invalid(param.clone(), format!("{param}: {inner}"))
        }
    })
}

/// The checks of fields that both endpoints share and that need no prompt.
fn check_common(c: &Common, ctx: &ApiContext) -> Result<(), ApiError> {
    if let Some(m) = c.model.as_deref() {
        if m != ctx.model_id {
            return Err(ApiError::not_found(format!(
                "the model `{m}` does not exist; this server serves `{}`",
                ctx.model_id
            ))
            .with_code("model_not_found")
            .with_param("model"));
        }
    }
    if let Some(n) = c.n.filter(|&n| n != 1) {
        return Err(ApiError::unsupported(
            "n",
            format!("n must be 1 (one choice per request), got {n}"),
        ));
    }
    if c.logit_bias.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(ApiError::unsupported(
            "logit_bias",
            "logit_bias is not supported yet",
        ));
    }
    if c.stream_options.is_some() && c.stream != Some(true) {
        return Err(ApiError::invalid(
            "stream_options",
            "stream_options is only allowed with \"stream\": true",
        ));
    }
    Ok(())
}

/// Chat messages for the template: roles system, user, assistant and tool; content a string or
/// an array of text parts (joined with newlines). An assistant turn may carry `tool_calls`
/// (then its content may be null or absent); a tool turn answers one by `tool_call_id`.
fn messages(wire: &[WireMessage]) -> Result<Vec<ChatMessage>, ApiError> {
    if wire.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "messages must hold at least one message",
        ));
    }
    let mut out = Vec::with_capacity(wire.len());
    for (i, m) in wire.iter().enumerate() {
        let role = m.role.as_str();
        if !matches!(role, "system" | "user" | "assistant" | "tool") {
            return Err(ApiError::invalid(
                format!("messages[{i}].role"),
                format!(
                    "messages[{i}].role must be \"system\", \"user\", \"assistant\" or \"tool\", got {:?}",
                    m.role
                ),
            ));
        }
        let tool_calls = match &m.tool_calls {
            Some(_) if role != "assistant" => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].tool_calls"),
                    format!(
                        "messages[{i}].tool_calls: only an assistant message carries tool calls"
                    ),
                ))
            }
            Some(calls) => {
                check_tool_calls(i, calls)?;
                Some(calls.clone())
            }
            None => None,
        };
        match (role, &m.tool_call_id) {
            ("tool", None) => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].tool_call_id"),
                    format!("messages[{i}].tool_call_id: a tool message names the call it answers"),
                ))
            }
            ("tool", Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].tool_call_id"),
                    format!("messages[{i}].tool_call_id: only a tool message answers a call"),
                ))
            }
        }
        let calls_only = tool_calls.as_ref().is_some_and(|c| !c.is_empty());
        let content = match (&m.content, calls_only) {
            (None | Some(Value::Null), true) => None,
            (Some(c), _) => Some(content_text(i, c)?),
            (None, false) => None,
        };
        if content.is_none() && !calls_only {
            return Err(ApiError::invalid(
                format!("messages[{i}].content"),
                format!(
                    "messages[{i}].content must be a string or an array of text parts (only an \
                     assistant message with tool_calls may leave it out)"
                ),
            ));
        }
        out.push(ChatMessage {
            role: m.role.clone(),
            content,
            tool_calls,
            tool_call_id: m.tool_call_id.clone(),
            name: m.name.clone(),
        });
    }
    Ok(out)
}

/// A message's content: a string, or an array of text parts joined with newlines.
fn content_text(i: usize, content: &Value) -> Result<String, ApiError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => texts.push(t.as_str()),
                    _ => {
                        return Err(ApiError::invalid(
                            format!("messages[{i}].content[{j}]"),
                            format!(
                                "messages[{i}].content[{j}] must be {{\"type\": \"text\", \"text\": STRING}} (only text is supported)"
                            ),
                        ))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        _ => Err(ApiError::invalid(
            format!("messages[{i}].content"),
            format!("messages[{i}].content must be a string or an array of text parts"),
        )),
    }
}

/// An assistant turn's calls, as OpenAI sends them back: `{"id": STRING, "type": "function",
/// "function": {"name": STRING, "arguments": STRING}}` (the arguments may also be an object,
/// as transformers' examples write them).
fn check_tool_calls(i: usize, calls: &[Value]) -> Result<(), ApiError> {
    for (j, call) in calls.iter().enumerate() {
        let at = format!("messages[{i}].tool_calls[{j}]");
        let bad = |field: &str, what: &str| Err(shape_error(&at, field, what));
        let Some(call) = call.as_object() else {
            return bad(
                "",
                "an object {\"id\", \"type\": \"function\", \"function\"}",
            );
        };
        if call.get("id").is_some_and(|id| !id.is_string()) {
            return bad("id", "a string");
        }
        if call.get("type").and_then(Value::as_str) != Some("function") {
            return bad("type", "\"function\"");
        }
        let Some(function) = call.get("function").and_then(Value::as_object) else {
            return bad("function", "an object {\"name\", \"arguments\"}");
        };
        if !is_name(function.get("name")) {
            return bad("function.name", "a non-empty string");
        }
        if !function
            .get("arguments")
            .is_some_and(|a| a.is_string() || a.is_object())
        {
            return bad("function.arguments", "a string of JSON (or an object)");
        }
    }
    Ok(())
}

/// A completion's prompt: a string, an array of one string, or an array of token ids; the
/// string encoded as `wavefront run` encodes its prompt (with the model's special tokens).
fn completion_prompt(prompt: &Value, ctx: &ApiContext) -> Result<Vec<u32>, ApiError> {
    let encode = |s: &str| {
        ctx.tokenizer
            .encode(s, true)
            .map_err(|e| ApiError::from_engine(&e, "prompt"))
    };
    let shape = || {
        ApiError::invalid(
            "prompt",
            "prompt must be a string, an array of one string, or an array of token ids",
        )
    };
    match prompt {
        Value::String(s) => encode(s),
        Value::Array(items) => match items.as_slice() {
            [Value::String(s)] => encode(s),
            [Value::String(_), ..] => Err(ApiError::unsupported(
                "prompt",
                "one prompt per request (an array of several strings asks for several completions)",
            )),
            _ => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .filter(|&t| (t as usize) < ctx.vocab_size)
                        .map(|t| t as u32)
                        .ok_or_else(|| {
                            ApiError::invalid(
                                "prompt",
                                format!(
                                    "prompt token {v} is not an id of the vocabulary (0 to {})",
                                    ctx.vocab_size - 1
                                ),
                            )
                        })
                })
                .collect::<Result<_, _>>(),
        },
        _ => Err(shape()),
    }
}

/// The stop field: a string or an array of at most [`MAX_STOP`] strings.
fn stop_strings(stop: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "stop",
            format!("stop must be a string or an array of at most {MAX_STOP} strings"),
        )
    };
    match stop {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if items.len() <= MAX_STOP => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// The request for the scheduler: sampling (OpenAI's defaults: temperature 1, top-p 1, no
/// other filter), the context checks, the seed (from the clock when absent).
/// How many alternatives a request's log-probabilities ask for (`None`: none asked). Chat:
/// `logprobs: true` with `top_logprobs` 0 to 20 (which needs `logprobs`); completions:
/// `logprobs` an integer 0 to 20 (OpenAI's legacy form).
fn logprobs_asked(endpoint: Endpoint, c: &Common) -> Result<Option<usize>, ApiError> {
    let count = |field: &'static str, v: &Value| match v.as_u64() {
        Some(n) if n as usize <= MAX_TOP_LOGPROBS => Ok(n as usize),
        _ => Err(ApiError::invalid(
            field,
            format!("{field} must be an integer from 0 to {MAX_TOP_LOGPROBS}, got {v}"),
        )),
    };
    let top = match c.top_logprobs.as_ref().filter(|v| !v.is_null()) {
        Some(v) => Some(count("top_logprobs", v)?),
        None => None,
    };
    let logprobs = c.logprobs.as_ref().filter(|v| !v.is_null());
    match endpoint {
        Endpoint::Chat => {
            let asked = match logprobs {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => {
                    return Err(ApiError::invalid(
                        "logprobs",
                        format!("logprobs must be a boolean here, got {v}"),
                    ))
                }
            };
            match (asked, top) {
                (false, Some(_)) => Err(ApiError::invalid(
                    "top_logprobs",
                    "top_logprobs needs logprobs: true",
                )),
                (false, None) => Ok(None),
                (true, top) => Ok(Some(top.unwrap_or(0))),
            }
        }
        Endpoint::Completion => {
            if top.is_some() {
                return Err(ApiError::invalid(
                    "top_logprobs",
                    "/v1/completions takes logprobs as the number of alternatives",
                ));
            }
            logprobs.map(|v| count("logprobs", v)).transpose()
        }
    }
}

fn prepare(
    endpoint: Endpoint,
    c: Common,
    prompt: Vec<u32>,
    max_tokens: Option<(&'static str, u64)>,
    ctx: &ApiContext,
) -> Result<Prepared, ApiError> {
    let param = endpoint.prompt_param();
    if prompt.is_empty() {
        return Err(ApiError::invalid(param, format!("{param} has no tokens")));
    }
    let capacity = ctx.capacity;
    if prompt.len() >= capacity {
        return Err(ApiError::invalid(
            param,
            format!(
                "the prompt ({param}) has {} tokens; a slot's context holds {capacity} (the \
                 prompt and at least one generated token must fit)",
                prompt.len()
            ),
        )
        .with_code("context_length_exceeded"));
    }
    let room = capacity - prompt.len();
    let max_tokens = match max_tokens {
        Some((field, 0)) => {
            return Err(ApiError::invalid(
                field,
                format!("{field} must be at least 1, got 0"),
            ))
        }
        Some((field, n)) if n > room as u64 => {
            return Err(ApiError::invalid(
                field,
                format!(
                    "a slot's context holds {capacity} tokens; the prompt has {} and {field} asks \
                     for {n} more ({} in all)",
                    prompt.len(),
                    prompt.len() as u64 + n
                ),
            )
            .with_code("context_length_exceeded"))
        }
        Some((_, n)) => n as usize,
        None => room,
    };
    let defaults = SamplingParams::default();
    let sampling = SamplingParams {
        temperature: c.temperature.unwrap_or(defaults.temperature),
        top_k: c.top_k.map_or(0, |k| k.min(usize::MAX as u64) as usize),
        top_p: c.top_p.unwrap_or(defaults.top_p),
        min_p: c.min_p.unwrap_or(defaults.min_p),
        repeat_penalty: c.repeat_penalty.unwrap_or(defaults.repeat_penalty),
        presence_penalty: c.presence_penalty.unwrap_or(defaults.presence_penalty),
        frequency_penalty: c.frequency_penalty.unwrap_or(defaults.frequency_penalty),
    };
    let logprobs = logprobs_asked(endpoint, &c)?;
    let request = GenerationRequest {
        prompt,
        max_tokens,
        sampling,
        seed: c.seed.unwrap_or_else(crate::sampler::clock_seed),
        stop: stop_strings(c.stop.as_ref())?,
        repeat_last_n: c
            .repeat_last_n
            .map_or(64, |n| n.min(usize::MAX as u64) as usize),
        context: Some(capacity),
        logprobs,
    };
    request
        .check_settings()
        .map_err(|e| ApiError::from_engine(&e, param))?;
    Ok(Prepared {
        endpoint,
        request,
        stream: c.stream == Some(true),
        include_usage: c
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        tools: None,
    })
}

/// OpenAI's `finish_reason`: `stop` for an end-of-sequence token or a stop string, `length` for
/// `max_tokens` or a full context.
pub fn finish_reason(f: &FinishReason) -> &'static str {
    match f {
        FinishReason::Eos | FinishReason::Stop(_) => "stop",
        FinishReason::MaxTokens | FinishReason::ContextFull => "length",
    }
}

/// The `finish_reason` of a reply that `called` tools or not: `tool_calls` when it has calls and
/// ended by itself (a reply cut at `max_tokens` stays `length`).
pub fn finish_reason_with_calls(f: &FinishReason, called: bool) -> &'static str {
    match finish_reason(f) {
        "stop" if called => "tool_calls",
        r => r,
    }
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl Usage {
    pub fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        })
    }
}

/// One generated token's log-probabilities as the API shows them: the token's text and the
/// alternatives' (each decoded alone: a token inside a multi-byte character shows as U+FFFD).
#[derive(Debug, Clone, PartialEq)]
pub struct LogprobEntry {
    pub token: String,
    pub logprob: f32,
    pub top: Vec<(String, f32)>,
}

impl LogprobEntry {
    pub fn new(tok: &Tokenizer, lp: &TokenLogprobs) -> LogprobEntry {
        let text = |id: u32| tok.decode(&[id], false).unwrap_or_default();
        LogprobEntry {
            token: text(lp.token),
            logprob: lp.logprob,
            top: lp.top.iter().map(|&(id, l)| (text(id), l)).collect(),
        }
    }
}

/// A choice's `logprobs` for `entries`: chat's `{"content": [{token, logprob, bytes,
/// top_logprobs}]}`, or completions' `{tokens, token_logprobs, top_logprobs, text_offset}` with
/// the offsets in characters of the generated text, the first at `offset`.
pub fn logprobs_json(endpoint: Endpoint, entries: &[LogprobEntry], offset: usize) -> Value {
    match endpoint {
        Endpoint::Chat => {
            let one = |t: &str, l: f32| json!({"token": t, "logprob": l, "bytes": t.as_bytes()});
            let content: Vec<Value> = entries
                .iter()
                .map(|e| {
                    let mut v = one(&e.token, e.logprob);
                    let top: Vec<Value> = e.top.iter().map(|(t, l)| one(t, *l)).collect();
                    v["top_logprobs"] = top.into();
                    v
                })
                .collect();
            json!({ "content": content })
        }
        Endpoint::Completion => {
            let mut at = offset;
            let mut text_offset = Vec::with_capacity(entries.len());
            for e in entries {
                text_offset.push(at);
                at += e.token.chars().count();
            }
            let top: Vec<Value> = entries
                .iter()
                .map(|e| {
                    let m: Map<String, Value> =
                        e.top.iter().map(|(t, l)| (t.clone(), json!(l))).collect();
                    Value::Object(m)
                })
                .collect();
            json!({
                "tokens": entries.iter().map(|e| e.token.as_str()).collect::<Vec<_>>(),
                "token_logprobs": entries.iter().map(|e| e.logprob).collect::<Vec<_>>(),
                "top_logprobs": top,
                "text_offset": text_offset,
            })
        }
    }
}

/// What every response and chunk of one request carries: its id, creation time and model, and
/// whether it reports log-probabilities.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub endpoint: Endpoint,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub logprobs: bool,
    /// How a chat reply is read for tool calls (`None`: it is text).
    pub tools: Option<ToolParsing>,
}

impl ResponseMeta {
    /// `logprobs` of a choice holding `entries`: null unless the request asked.
    fn logprobs_of(&self, entries: &[LogprobEntry], offset: usize) -> Value {
        if self.logprobs {
            logprobs_json(self.endpoint, entries, offset)
        } else {
            Value::Null
        }
    }

    /// The whole (non-streamed) response.
    pub fn response(
        &self,
        text: &str,
        finish: &FinishReason,
        usage: Usage,
        entries: &[LogprobEntry],
    ) -> Value {
        let logprobs = self.logprobs_of(entries, 0);
        let (object, choice) = match self.endpoint {
            Endpoint::Chat => {
                let mut message = json!({"role": "assistant", "content": text});
                let mut reason = finish_reason(finish);
                if let Some(p) = &self.tools {
                    let (content, calls) = tools::parse(p, text);
                    message["content"] = content.into();
                    if !calls.is_empty() {
                        let calls: Vec<Value> = calls
                            .iter()
                            .enumerate()
                            .map(|(i, c)| {
                                tools::call_json(&tools::call_id(&p.format, &self.id, i, c), c)
                            })
                            .collect();
                        message["tool_calls"] = calls.into();
                        reason = finish_reason_with_calls(finish, true);
                    }
                }
                (
                    "chat.completion",
                    json!({
                        "index": 0,
                        "message": message,
                        "logprobs": logprobs,
                        "finish_reason": reason,
                    }),
                )
            }
            Endpoint::Completion => (
                "text_completion",
                json!({
                    "index": 0,
                    "text": text,
                    "logprobs": logprobs,
                    "finish_reason": finish_reason(finish),
                }),
            ),
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage.json(),
        })
    }

    /// A chat stream chunk whose delta is one piece of a tool call ([`tools::call_deltas`]),
    /// with the log-probabilities of the tokens it reports.
    pub fn tool_call_chunk(
        &self,
        delta: Value,
        include_usage: bool,
        entries: &[LogprobEntry],
    ) -> Value {
        let mut chunk = self.chunk(false, None, None, include_usage, entries, 0);
        chunk["choices"][0]["delta"]["tool_calls"] = json!([delta]);
        chunk
    }

    /// A stream chunk with one choice: `text` (and, for chat, the role in the first chunk),
    /// the log-probabilities of the tokens it reports (`entries`, the first at character
    /// `offset` of the generated text) and `finish` (a `finish_reason`) in the last. `usage:
    /// null` on every chunk when the last carries usage.
    pub fn chunk(
        &self,
        role: bool,
        text: Option<&str>,
        finish: Option<&'static str>,
        include_usage: bool,
        entries: &[LogprobEntry],
        offset: usize,
    ) -> Value {
        let logprobs = if entries.is_empty() {
            Value::Null
        } else {
            self.logprobs_of(entries, offset)
        };
        let (object, choice) = match self.endpoint {
            Endpoint::Chat => {
                let mut delta = Map::new();
                if role {
                    delta.insert("role".into(), "assistant".into());
                }
                if let Some(t) = text {
                    delta.insert("content".into(), t.into());
                }
                (
                    "chat.completion.chunk",
                    json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}),
                )
            }
            Endpoint::Completion => (
                "text_completion",
                json!({"index": 0, "text": text.unwrap_or(""), "logprobs": logprobs, "finish_reason": finish}),
            ),
        };
        let mut chunk = json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    /// The last chunk of `stream_options.include_usage`: no choices, the usage.
    pub fn usage_chunk(&self, usage: Usage) -> Value {
        let object = match self.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completion => "text_completion",
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage.json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_takes_a_string_or_up_to_four() {
        assert_eq!(stop_strings(None).unwrap(), Vec::<String>::new());
        assert_eq!(stop_strings(Some(&json!("x"))).unwrap(), vec!["x"]);
        assert_eq!(
            stop_strings(Some(&json!(["a", "b"]))).unwrap(),
            vec!["a", "b"]
        );
        for bad in [json!(["a", 1]), json!(5), json!(["a", "b", "c", "d", "e"])] {
            let e = stop_strings(Some(&bad)).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("stop"), "{bad}");
        }
    }

    fn wire(v: Value) -> Vec<WireMessage> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn tool_turns_become_template_messages() {
        let call =
            json!({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}});
        let m = messages(&wire(json!([
            {"role": "user", "content": "hi", "name": "ann"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "42"}]},
        ])))
        .unwrap();
        assert_eq!(m[0].name.as_deref(), Some("ann"));
        assert_eq!(m[1], ChatMessage::tool_calls(vec![call.clone()]));
        assert_eq!(m[2], m[1]);
        assert_eq!(m[3], ChatMessage::tool_result("c1", "42"));
    }

    #[test]
    fn malformed_tool_turns_name_the_field() {
        let call =
            json!({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}});
        for (msgs, param) in [
            (
                json!([{"role": "user", "tool_calls": [call]}]),
                "messages[0].tool_calls",
            ),
            (
                json!([{"role": "assistant", "content": null}]),
                "messages[0].content",
            ),
            (
                json!([{"role": "assistant", "tool_calls": []}]),
                "messages[0].content",
            ),
            (
                json!([{"role": "user", "content": null}]),
                "messages[0].content",
            ),
            (
                json!([{"role": "tool", "content": "x"}]),
                "messages[0].tool_call_id",
            ),
            (
                json!([{"role": "user", "content": "x", "tool_call_id": "c1"}]),
                "messages[0].tool_call_id",
            ),
            (
                json!([{"role": "assistant", "tool_calls": [5]}]),
                "messages[0].tool_calls[0]",
            ),
            (
                json!([{"role": "assistant", "tool_calls": [{"id": 1, "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]),
                "messages[0].tool_calls[0].id",
            ),
            (
                json!([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]),
                "messages[0].tool_calls[0].type",
            ),
            (
                json!([{"role": "assistant", "tool_calls": [{"type": "function"}]}]),
                "messages[0].tool_calls[0].function",
            ),
            (
                json!([{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "", "arguments": "{}"}}]}]),
                "messages[0].tool_calls[0].function.name",
            ),
            (
                json!([{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]),
                "messages[0].tool_calls[0].function.arguments",
            ),
        ] {
            let e = messages(&wire(msgs.clone())).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{msgs}: {e}");
            assert!(e.message.contains(param), "{e}");
        }
    }

    #[test]
    fn finish_reasons_are_openais() {
        assert_eq!(finish_reason(&FinishReason::Eos), "stop");
        assert_eq!(finish_reason(&FinishReason::Stop("x".into())), "stop");
        assert_eq!(finish_reason(&FinishReason::MaxTokens), "length");
        assert_eq!(finish_reason(&FinishReason::ContextFull), "length");
    }

    #[test]
    fn type_faults_name_their_path() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct T {
            messages: Vec<WireMessage>,
            temperature: Option<f32>,
        }
        let e = typed::<T>(&json!({"messages": [], "temperature": "hot"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = typed::<T>(&json!({"messages": [{"role": "user", "content": "x", "x": 1}]}))
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].x"), "{e}");
        // A missing content is the messages' check to name (an assistant turn of calls has none).
        let t = typed::<T>(&json!({"messages": [{"role": "user"}]})).unwrap();
        let e = messages(&t.messages).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content"), "{e}");
        let e = typed::<T>(&json!({"temperature": 1})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"), "{e}");
    }
}
