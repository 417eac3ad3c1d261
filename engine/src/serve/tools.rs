//! Tool calls: the request's `tools` and `tool_choice` checked, and the calls a reply holds
//! parsed out of its text in the format the model's chat template asks for.
//!
//! Formats, detected from the template's source ([`ToolFormat::detect`]):
//! - [`ToolFormat::Tagged`]: each call a JSON object `{"name", "arguments"}` between a pair of
//!   tags whose name says "call" (Hermes / Qwen2.5 / Qwen3 `<tool_call>…</tool_call>`), text
//!   around the calls kept as content;
//! - [`ToolFormat::MistralList`]: `[TOOL_CALLS]` then a JSON list of `{"name", "arguments"}`
//!   (Mistral's v3 templates); text before the marker is content. `[TOOL_CALLS]` is a special
//!   token in Mistral's tokenizers, which the detokenizer skips, so a reply that *starts* with
//!   the JSON list is read as the same calls;
//! - [`ToolFormat::LlamaJson`]: the whole reply is one or more JSON objects `{"name",
//!   "parameters"}` (also `"arguments"`, `"type": "function"`), separated by `;` (Llama 3.1 /
//!   3.2's JSON tool calling; `<|python_tag|>` in front is allowed). Text before or after makes
//!   the reply plain content.
//!
//! A call that names a tool not offered (or not the one `tool_choice` names), or whose
//! arguments are not a JSON object, stays text: the reply is never an error because of what the
//! model wrote. The same recogniser ([`ToolStream`]) reads a streamed reply piece by piece and
//! a whole one at once, so both give the same calls and the same content.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// How the model's chat template writes a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolFormat {
    /// `{open}{"name": …, "arguments": …}{close}`, e.g. `<tool_call>` … `</tool_call>`.
    Tagged { open: String, close: String },
    /// `[TOOL_CALLS][{"name": …, "arguments": …}, …]`.
    MistralList,
    /// `{"name": …, "parameters": …}; {…}`, the whole reply.
    LlamaJson,
}

/// Mistral's marker before the list of calls.
pub const MISTRAL_MARKER: &str = "[TOOL_CALLS]";
/// Llama 3.1's marker before a call (a special token, so usually skipped by the detokenizer).
pub const PYTHON_TAG: &str = "<|python_tag|>";

impl ToolFormat {
    /// The format `template` writes calls in, or `None` when it shows none of the known ones.
    /// Checked in order: Mistral's marker; a tag pair named like a call (`<tool_call>` and
    /// `</tool_call>`, `<call>` and `</call>`); a JSON call with `"name"` and `"parameters"`.
    pub fn detect(template: &str) -> Option<ToolFormat> {
        if template.contains(MISTRAL_MARKER) {
            return Some(ToolFormat::MistralList);
        }
        let mut rest = template;
        while let Some(i) = rest.find("</") {
            let after = &rest[i + 2..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..name_len];
            if !name.is_empty()
                && after[name_len..].starts_with('>')
                && name.to_ascii_lowercase().contains("call")
                && template.contains(&format!("<{name}>"))
            {
                return Some(ToolFormat::Tagged {
                    open: format!("<{name}>"),
                    close: format!("</{name}>"),
                });
            }
            rest = after;
        }
        // The template's own JSON, in Jinja strings with either quoting.
        let has = |key: &str| {
            template.contains(&format!("\"{key}\"")) || template.contains(&format!("\\\"{key}\\\""))
        };
        if has("name") && has("parameters") {
            return Some(ToolFormat::LlamaJson);
        }
        None
    }
}

/// What one request parses: the format and the names a call may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolParsing {
    pub format: ToolFormat,
    /// The tools offered, or the one `tool_choice` names.
    pub names: Vec<String>,
}

/// One call the model made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as a JSON object's text (OpenAI's `function.arguments`).
    pub arguments: String,
    /// The id the model wrote with the call (Mistral's), if any.
    pub id: Option<String>,
}

/// What a reply's text becomes: content and calls, in the order they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Call(ToolCall),
}

/// `tool_choice`, checked against the tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// No calls are parsed (the template still gets the tools).
    None,
    Auto,
    /// Calls are parsed; nothing forces the model to make one.
    Required,
    /// Only calls of this function are parsed; nothing forces the model to make one.
    Function(String),
}

/// OpenAI's function tools: `{"type": "function", "function": {"name": STRING, "description":
/// STRING, "parameters": OBJECT}}`, description and parameters optional. The template gets
/// them as sent.
pub fn check_tools(tools: &[Value]) -> Result<(), ApiError> {
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let bad = |field: &str, what: &str| Err(shape_error(&at, field, what));
        let Some(tool) = tool.as_object() else {
            return bad(
                "",
                "an object {\"type\": \"function\", \"function\": {...}}",
            );
        };
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return bad("type", "\"function\" (the only kind of tool)");
        }
        let Some(function) = tool.get("function").and_then(Value::as_object) else {
            return bad(
                "function",
                "an object {\"name\", \"description\", \"parameters\"}",
            );
        };
        if !is_name(function.get("name")) {
            return bad("function.name", "a non-empty string");
        }
        if function.get("description").is_some_and(|d| !d.is_string()) {
            return bad("function.description", "a string");
        }
        if function.get("parameters").is_some_and(|p| !p.is_object()) {
            return bad("function.parameters", "an object (a JSON Schema)");
        }
    }
    Ok(())
}

/// The names of checked `tools`.
pub fn tool_names(tools: &[Value]) -> Vec<String> {
    tools
        .iter()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
        .collect()
}

/// `tool_choice` (absent: `auto`): `"none"`, `"auto"`, `"required"` or `{"type": "function",
/// "function": {"name": NAME}}` naming one of `tools`; all but `"none"`/`"auto"` need tools.
pub fn check_tool_choice(choice: Option<&Value>, tools: &[Value]) -> Result<ToolChoice, ApiError> {
    let choice = match choice {
        None | Some(Value::Null) => return Ok(ToolChoice::Auto),
        Some(c) if c == "none" => return Ok(ToolChoice::None),
        Some(c) if c == "auto" => return Ok(ToolChoice::Auto),
        Some(c) if (c == "required" || c.is_object()) && tools.is_empty() => {
            return Err(ApiError::invalid(
                "tool_choice",
                "tool_choice \"required\" or a named function needs tools",
            ))
        }
        Some(c) if c == "required" => ToolChoice::Required,
        Some(Value::Object(o)) => {
            if o.get("type").and_then(Value::as_str) != Some("function") {
                return Err(shape_error("tool_choice", "type", "\"function\""));
            }
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty());
            let Some(name) = name else {
                return Err(shape_error(
                    "tool_choice",
                    "function.name",
                    "the name of one of the tools",
                ));
            };
            if !tool_names(tools).iter().any(|n| n == name) {
                return Err(ApiError::invalid(
                    "tool_choice.function.name",
                    format!(
                        "tool_choice.function.name {name:?} is not the name of any of the tools"
                    ),
                ));
            }
            ToolChoice::Function(name.to_string())
        }
        Some(c) => {
            return Err(ApiError::invalid(
                "tool_choice",
                format!(
                    "tool_choice must be \"none\", \"auto\", \"required\" or {{\"type\": \
                     \"function\", \"function\": {{\"name\": NAME}}}}, got {c}"
                ),
            ))
        }
    };
    Ok(choice)
}

/// `{at}.{field} must be {what}` (or `{at} …` for the whole), naming `{at}.{field}`.
pub(super) fn shape_error(at: &str, field: &str, what: &str) -> ApiError {
    let param = if field.is_empty() {
        at.to_string()
    } else {
        format!("{at}.{field}")
    };
    ApiError::invalid(param.clone(), format!("{param} must be {what}"))
}

/// A function's name: a non-empty string.
pub(super) fn is_name(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|n| !n.is_empty())
}

/// A call from its JSON: `{"name", "arguments" | "parameters"}`, or OpenAI's `{"type":
/// "function", "function": {...}}`; the name one of `names`, the arguments a JSON object (or a
/// string holding one; absent = `{}`).
fn call_of(v: &Value, names: &[String]) -> Option<ToolCall> {
    let o = v.as_object()?;
    if o.get("type").is_some_and(|t| t != "function") {
        return None;
    }
    let f = match o.get("function") {
        Some(Value::Object(f)) => f,
        _ => o,
    };
    let name = f.get("name")?.as_str()?;
    if !names.iter().any(|n| n == name) {
        return None;
    }
    let arguments = match f.get("arguments").or_else(|| f.get("parameters")) {
        None => Value::Object(Default::default()),
        Some(Value::String(s)) => serde_json::from_str(s).ok()?,
        Some(a) => a.clone(),
    };
    if !arguments.is_object() {
        return None;
    }
    let id = o.get("id").and_then(Value::as_str).map(str::to_string);
    Some(ToolCall {
        name: name.to_string(),
        arguments: arguments.to_string(),
        id,
    })
}

/// The calls of a JSON list (or one object); `None` unless every one is a call.
fn calls_of(v: &Value, names: &[String]) -> Option<Vec<ToolCall>> {
    match v {
        Value::Array(items) if !items.is_empty() => {
            items.iter().map(|c| call_of(c, names)).collect()
        }
        Value::Object(_) => Some(vec![call_of(v, names)?]),
        _ => None,
    }
}

/// Llama's reply: JSON objects separated by `;` or whitespace and nothing else.
fn llama_calls(text: &str, names: &[String]) -> Option<Vec<ToolCall>> {
    let text = text.trim_start();
    let text = text.strip_prefix(PYTHON_TAG).unwrap_or(text);
    let mut calls = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        let v = values.next()?.ok()?;
        calls.push(call_of(&v, names)?);
        rest = rest[values.byte_offset()..].trim_start();
        rest = rest.strip_prefix(';').unwrap_or(rest).trim_start();
    }
    (!calls.is_empty()).then_some(calls)
}

/// Mistral's list after the marker: the calls, and the text after the list.
fn mistral_calls<'t>(text: &'t str, names: &[String]) -> Option<(Vec<ToolCall>, &'t str)> {
    let text = text.trim_start();
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let v = values.next()?.ok()?;
    Some((calls_of(&v, names)?, &text[values.byte_offset()..]))
}

/// The length of the longest end of `s` that begins `marker` (a marker that may be arriving).
fn partial_suffix(s: &str, marker: &str) -> usize {
    (1..marker.len().min(s.len() + 1))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && marker.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet (Mistral, Llama: a reply that starts with a call).
    Start,
    /// Text: passed on, but for an end that may begin a marker.
    Text,
    /// Inside a tagged call: held until its closing tag.
    InCall,
    /// A list of calls (Mistral) or a reply of calls (Llama): held to the end. `true` when
    /// Mistral's marker was seen.
    Held { marker: bool },
}

/// Reads a reply as it arrives: text is passed on at once, except what may be (the start of) a
/// call, which is held until the call is complete and checked; then it comes out as a call,
/// or, if it is not a valid call, as the text it was.
///
/// With calls, the content is trimmed at both ends (a reply of calls only has no content); a
/// reply without calls comes out exactly as it was written.
#[derive(Debug, Clone)]
pub struct ToolStream {
    parsing: ToolParsing,
    state: State,
    /// Text not yet passed on.
    buf: String,
    /// Whitespace at the end of the text passed on, held back in case a call follows.
    space: String,
    /// A call has been recognised.
    called: bool,
    /// Text other than whitespace has been passed on.
    emitted: bool,
}

impl ToolStream {
    pub fn new(parsing: ToolParsing) -> ToolStream {
        let state = match parsing.format {
            ToolFormat::Tagged { .. } => State::Text,
            ToolFormat::MistralList | ToolFormat::LlamaJson => State::Start,
        };
        ToolStream {
            parsing,
            state,
            buf: String::new(),
            space: String::new(),
            called: false,
            emitted: false,
        }
    }

    /// Whether any call has been recognised so far.
    pub fn called(&self) -> bool {
        self.called
    }

    /// The parts `piece` completes.
    pub fn push(&mut self, piece: &str) -> Vec<Part> {
        self.buf.push_str(piece);
        let mut out = Vec::new();
        self.advance(&mut out, false);
        out
    }

    /// The parts left at the end of the reply.
    pub fn finish(&mut self) -> Vec<Part> {
        let mut out = Vec::new();
        self.advance(&mut out, true);
        let rest = std::mem::take(&mut self.buf);
        match self.state {
            State::InCall => {
                // A call the reply ended inside of (the model stopped before the closing tag):
                // a call if its JSON is whole.
                let open = match &self.parsing.format {
                    ToolFormat::Tagged { open, .. } => open.clone(),
                    _ => String::new(),
                };
                match self.tagged_call(&rest) {
                    Some(c) => self.call(&mut out, c),
                    None => self.text(&mut out, format!("{open}{rest}")),
                }
            }
            State::Held { marker } => self.held(&mut out, &rest, marker),
            State::Start | State::Text => self.text(&mut out, rest),
        }
        if !self.called && !self.space.is_empty() {
            out.push(Part::Text(std::mem::take(&mut self.space)));
        }
        out
    }

    fn advance(&mut self, out: &mut Vec<Part>, end: bool) {
        let format = self.parsing.format.clone();
        loop {
            match (self.state, &format) {
                (State::Start, _) => {
                    let t = self.buf.trim_start();
                    if t.is_empty() {
                        return;
                    }
                    let marker = match format {
                        ToolFormat::MistralList => MISTRAL_MARKER,
                        _ => PYTHON_TAG,
                    };
                    // A marker that may still be arriving.
                    if !end && t.len() < marker.len() && marker.starts_with(t) {
                        return;
                    }
                    let starts_call = match format {
                        ToolFormat::MistralList => t.starts_with('[') && !t.starts_with(marker),
                        _ => t.starts_with('{') || t.starts_with(marker),
                    };
                    self.state = if starts_call {
                        State::Held { marker: false }
                    } else {
                        State::Text
                    };
                }
                (State::Text, ToolFormat::Tagged { open, .. }) => {
                    if let Some(i) = self.buf.find(open.as_str()) {
                        let rest = self.buf.split_off(i + open.len());
                        self.buf.truncate(i);
                        let before = std::mem::replace(&mut self.buf, rest);
                        self.text(out, before);
                        self.state = State::InCall;
                        continue;
                    }
                    self.pass_text(out, open, end);
                    return;
                }
                (State::Text, ToolFormat::MistralList) => {
                    if let Some(i) = self.buf.find(MISTRAL_MARKER) {
                        let rest = self.buf.split_off(i + MISTRAL_MARKER.len());
                        self.buf.truncate(i);
                        let before = std::mem::replace(&mut self.buf, rest);
                        self.text(out, before);
                        self.state = State::Held { marker: true };
                        continue;
                    }
                    self.pass_text(out, MISTRAL_MARKER, end);
                    return;
                }
                (State::Text, _) => {
                    let t = std::mem::take(&mut self.buf);
                    self.text(out, t);
                    return;
                }
                (State::InCall, ToolFormat::Tagged { open, close }) => {
                    let Some(j) = self.buf.find(close.as_str()) else {
                        return;
                    };
                    let raw = format!("{open}{}{close}", &self.buf[..j]);
                    let call = self.tagged_call(&self.buf[..j]);
                    self.buf.drain(..j + close.len());
                    self.state = State::Text;
                    match call {
                        Some(c) => self.call(out, c),
                        None => self.text(out, raw),
                    }
                }
                (State::InCall, _) | (State::Held { .. }, _) => return,
            }
        }
    }

    /// Passes on the text, but for an end that may begin `marker` (unless the reply ended).
    fn pass_text(&mut self, out: &mut Vec<Part>, marker: &str, end: bool) {
        let keep = if end {
            0
        } else {
            partial_suffix(&self.buf, marker)
        };
        let rest = self.buf.split_off(self.buf.len() - keep);
        let t = std::mem::replace(&mut self.buf, rest);
        self.text(out, t);
    }

    fn tagged_call(&self, body: &str) -> Option<ToolCall> {
        let v: Value = serde_json::from_str(body.trim()).ok()?;
        call_of(&v, &self.parsing.names)
    }

    /// The held list or reply, as calls if it is one.
    fn held(&mut self, out: &mut Vec<Part>, rest: &str, marker: bool) {
        let names = &self.parsing.names;
        match self.parsing.format {
            ToolFormat::MistralList => match mistral_calls(rest, names) {
                Some((calls, after)) => {
                    for c in calls {
                        self.call(out, c);
                    }
                    self.text(out, after.to_string());
                }
                None => {
                    let m = if marker { MISTRAL_MARKER } else { "" };
                    self.text(out, format!("{m}{rest}"));
                }
            },
            _ => match llama_calls(rest, names) {
                Some(calls) => {
                    for c in calls {
                        self.call(out, c);
                    }
                }
                None => self.text(out, rest.to_string()),
            },
        }
    }

    fn call(&mut self, out: &mut Vec<Part>, c: ToolCall) {
        if !self.emitted {
            // Whitespace before the first call, with no text before it, is no content.
            self.space.clear();
        }
        self.called = true;
        out.push(Part::Call(c));
    }

    /// Text passed on, but whitespace at its end is held back (dropped if it ends the reply
    /// after calls), and whitespace at the start of the content is dropped after a call.
    fn text(&mut self, out: &mut Vec<Part>, mut t: String) {
        let body = t.trim_end().len();
        if body == 0 {
            self.space.push_str(&t);
            return;
        }
        let tail = t.split_off(body);
        let mut text = std::mem::replace(&mut self.space, tail);
        text.push_str(&t);
        if self.called && !self.emitted {
            text = text.trim_start().to_string();
        }
        self.emitted = true;
        out.push(Part::Text(text));
    }
}

/// A whole reply's content (`None` when it is only calls, or empty with calls) and calls.
pub fn parse(parsing: &ToolParsing, text: &str) -> (Option<String>, Vec<ToolCall>) {
    let mut s = ToolStream::new(parsing.clone());
    let mut parts = s.push(text);
    parts.extend(s.finish());
    let mut content = String::new();
    let mut calls = Vec::new();
    for p in parts {
        match p {
            Part::Text(t) => content.push_str(&t),
            Part::Call(c) => calls.push(c),
        }
    }
    let content = (!content.is_empty() || calls.is_empty()).then_some(content);
    (content, calls)
}

/// A call's id: the model's own, else derived from the response's id and the call's index —
/// `call_` and 24 hex digits, or 9 alphanumerics for Mistral (whose templates check the
/// length of the ids sent back).
pub fn call_id(format: &ToolFormat, response_id: &str, index: usize, call: &ToolCall) -> String {
    if let Some(id) = &call.id {
        return id.clone();
    }
    let digest = Sha256::digest(format!("{response_id}/{index}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    match format {
        ToolFormat::MistralList => hex[..9].to_string(),
        _ => format!("call_{}", &hex[..24]),
    }
}

/// A call as OpenAI's `message.tool_calls[i]`.
pub fn call_json(id: &str, call: &ToolCall) -> Value {
    json!({
        "id": id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    })
}

/// A call as OpenAI streams it: a delta that opens it (index, id, type, name, empty
/// arguments) and one that carries its arguments.
pub fn call_deltas(index: usize, id: &str, call: &ToolCall) -> [Value; 2] {
    [
        json!({
            "index": index,
            "id": id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }),
        json!({"index": index, "function": {"arguments": call.arguments}}),
    ]
}

#[cfg(test)]
mod tests;
