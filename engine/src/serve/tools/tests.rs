use super::*;

fn names() -> Vec<String> {
    vec!["get_weather".into(), "add".into()]
}

fn tagged(open: &str, close: &str) -> ToolParsing {
    ToolParsing {
        format: ToolFormat::Tagged {
            open: open.into(),
            close: close.into(),
        },
        names: names(),
    }
}

fn hermes() -> ToolParsing {
    tagged("<tool_call>", "</tool_call>")
}

fn mistral() -> ToolParsing {
    ToolParsing {
        format: ToolFormat::MistralList,
        names: names(),
    }
}

fn llama() -> ToolParsing {
    ToolParsing {
        format: ToolFormat::LlamaJson,
        names: names(),
    }
}

fn call(name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        name: name.into(),
        arguments: arguments.into(),
        id: None,
    }
}

const WEATHER: &str = r#"{"city":"Paris","unit":"c"}"#;

fn fixture_template(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/chat_templates")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn formats_are_detected_from_the_template() {
    let tagged_call = ToolFormat::Tagged {
        open: "<call>".into(),
        close: "</call>".into(),
    };
    for (template, format) in [
        (fixture_template("chatml_tools.jinja"), Some(tagged_call)),
        (
            fixture_template("compact_tools.jinja"),
            Some(ToolFormat::MistralList),
        ),
        (
            fixture_template("last_user_tools.jinja"),
            Some(ToolFormat::LlamaJson),
        ),
        (fixture_template("probe.jinja"), None),
        // Qwen2.5's (an excerpt): the tag pair, not `<tools>`.
        (
            r#"{{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}"#.to_string(),
            Some(hermes().format),
        ),
        // Llama 3.1's (an excerpt).
        (
            r#"{{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}"#.to_string(),
            Some(ToolFormat::LlamaJson),
        ),
        // SmolLM2-135M-Instruct's: no tools at all.
        (
            "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}".to_string(),
            None,
        ),
    ] {
        assert_eq!(ToolFormat::detect(&template), format, "{template}");
    }
}

/// `(reply, content, calls)` for each format.
fn cases() -> Vec<(ToolParsing, String, Option<String>, Vec<ToolCall>)> {
    let w = || call("get_weather", WEATHER);
    let a = || call("add", r#"{"a":1,"b":2}"#);
    let weather_json = r#"{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}"#;
    let add_json = r#"{"name": "add", "arguments": {"a": 1, "b": 2}}"#;
    let s = |x: &str| Some(x.to_string());
    vec![
        // Hermes / Qwen tags.
        (hermes(), format!("<tool_call>\n{weather_json}\n</tool_call>"), None, vec![w()]),
        (
            hermes(),
            format!("<tool_call>\n{weather_json}\n</tool_call>\n<tool_call>\n{add_json}\n</tool_call>\n"),
            None,
            vec![w(), a()],
        ),
        (
            hermes(),
            format!("Let me look.\n<tool_call>{weather_json}</tool_call>\nDone, é."),
            s("Let me look.\n\nDone, é."),
            vec![w()],
        ),
        // Arguments as a string of JSON, as OpenAI sends them back.
        (
            hermes(),
            r#"<tool_call>{"name": "add", "arguments": "{\"a\": 1, \"b\": 2}"}</tool_call>"#.into(),
            None,
            vec![a()],
        ),
        // Ended before the closing tag, the JSON whole.
        (hermes(), format!("<tool_call>\n{weather_json}\n"), None, vec![w()]),
        // Malformed JSON, an unknown tool, arguments not an object, a cut-off call: text.
        (
            hermes(),
            r#"<tool_call>{"name": "add", "arguments": {"a": 1}</tool_call>"#.into(),
            s(r#"<tool_call>{"name": "add", "arguments": {"a": 1}</tool_call>"#),
            vec![],
        ),
        (
            hermes(),
            r#"x <tool_call>{"name": "rm", "arguments": {}}</tool_call> y"#.into(),
            s(r#"x <tool_call>{"name": "rm", "arguments": {}}</tool_call> y"#),
            vec![],
        ),
        (
            hermes(),
            format!(r#"<tool_call>{{"name": "add", "arguments": [1, 2]}}</tool_call><tool_call>{add_json}</tool_call>"#),
            s(r#"<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>"#),
            vec![a()],
        ),
        (
            hermes(),
            r#"<tool_call>{"name": "add", "argu"#.into(),
            s(r#"<tool_call>{"name": "add", "argu"#),
            vec![],
        ),
        // Plain text, a `<` that is no tag, trailing whitespace kept.
        (hermes(), "a < b <tool <x>\n ".into(), s("a < b <tool <x>\n "), vec![]),
        (hermes(), String::new(), s(""), vec![]),
        // The fixture template's `<call>` tags.
        (
            tagged("<call>", "</call>"),
            format!("<call>{weather_json}</call>"),
            None,
            vec![w()],
        ),
        // Mistral: marker and list, a model id kept; the marker skipped by the detokenizer.
        (
            mistral(),
            format!(r#"[TOOL_CALLS][{weather_json}, {{"name": "add", "arguments": {{"a": 1, "b": 2}}, "id": "abc123XYZ"}}]"#),
            None,
            vec![w(), ToolCall { id: Some("abc123XYZ".into()), ..a() }],
        ),
        (mistral(), format!("  [{weather_json}]"), None, vec![w()]),
        (
            mistral(),
            format!("Checking. [TOOL_CALLS] [{weather_json}] ok"),
            s("Checking.  ok"),
            vec![w()],
        ),
        (
            mistral(),
            format!(r#"[TOOL_CALLS][{weather_json}, {{"name": "rm", "arguments": {{}}}}]"#),
            s(&format!(r#"[TOOL_CALLS][{weather_json}, {{"name": "rm", "arguments": {{}}}}]"#)),
            vec![],
        ),
        (
            mistral(),
            r#"[TOOL_CALLS][{"name": "add", "arguments": {"a": 1}"#.into(),
            s(r#"[TOOL_CALLS][{"name": "add", "arguments": {"a": 1}"#),
            vec![],
        ),
        (mistral(), "[1] is a citation [TOOL".into(), s("[1] is a citation [TOOL"), vec![]),
        // Llama: the reply is the calls.
        (
            llama(),
            r#"{"name": "get_weather", "parameters": {"city": "Paris", "unit": "c"}}"#.into(),
            None,
            vec![w()],
        ),
        (
            llama(),
            format!(
                r#"<|python_tag|>{{"type": "function", "name": "get_weather", "parameters": {{"city": "Paris", "unit": "c"}}}}; {add_json}"#
            ),
            None,
            vec![w(), a()],
        ),
        (
            llama(),
            r#" {"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}"#.into(),
            None,
            vec![a()],
        ),
        (
            llama(),
            format!("Sure: {weather_json}"),
            s(&format!("Sure: {weather_json}")),
            vec![],
        ),
        (
            llama(),
            format!("{weather_json} and more"),
            s(&format!("{weather_json} and more")),
            vec![],
        ),
        (
            llama(),
            r#"{"name": "rm", "parameters": {}}"#.into(),
            s(r#"{"name": "rm", "parameters": {}}"#),
            vec![],
        ),
        (
            llama(),
            r#"{"name": "add", "parameters": {"a": 1,}}"#.into(),
            s(r#"{"name": "add", "parameters": {"a": 1,}}"#),
            vec![],
        ),
        (llama(), "<|pyt".into(), s("<|pyt"), vec![]),
        (llama(), " Hello!".into(), s(" Hello!"), vec![]),
    ]
}

#[test]
fn whole_replies_give_their_calls_and_content() {
    for (parsing, reply, content, calls) in cases() {
        let (c, k) = parse(&parsing, &reply);
        assert_eq!(
            (&c, &k),
            (&content, &calls),
            "{:?} {reply:?}",
            parsing.format
        );
    }
}

/// Adjacent text parts joined.
fn joined(parts: Vec<Part>) -> Vec<Part> {
    let mut out: Vec<Part> = Vec::new();
    for p in parts {
        match (out.last_mut(), p) {
            (Some(Part::Text(a)), Part::Text(b)) => a.push_str(&b),
            (_, Part::Text(b)) if b.is_empty() => {}
            (_, p) => out.push(p),
        }
    }
    out
}

fn streamed(parsing: &ToolParsing, pieces: &[&str]) -> Vec<Part> {
    let mut s = ToolStream::new(parsing.clone());
    let mut parts = Vec::new();
    for p in pieces {
        parts.extend(s.push(p));
    }
    parts.extend(s.finish());
    joined(parts)
}

#[test]
fn a_reply_split_anywhere_streams_as_it_parses_whole() {
    for (parsing, reply, _, _) in cases() {
        let whole = streamed(&parsing, &[&reply]);
        let bounds: Vec<usize> = (0..=reply.len())
            .filter(|&i| reply.is_char_boundary(i))
            .collect();
        for &i in &bounds {
            let two = streamed(&parsing, &[&reply[..i], &reply[i..]]);
            assert_eq!(two, whole, "{reply:?} split at {i}");
        }
        let chars: Vec<String> = reply.chars().map(String::from).collect();
        let one_by_one: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(
            streamed(&parsing, &one_by_one),
            whole,
            "{reply:?} char by char"
        );
    }
}

#[test]
fn text_before_a_call_is_passed_on_before_the_call_ends() {
    let mut s = ToolStream::new(hermes());
    assert_eq!(
        s.push("Let me look. "),
        vec![Part::Text("Let me look.".into())]
    );
    assert_eq!(s.push("<tool_c"), vec![]);
    assert_eq!(s.push(r#"all>{"name": "add", "arguments": {}}"#), vec![]);
    assert!(!s.called());
    assert_eq!(s.push("</tool_call>"), vec![Part::Call(call("add", "{}"))]);
    assert!(s.called());
    assert_eq!(s.finish(), vec![]);
}

#[test]
fn ids_are_openais_or_mistrals() {
    let c = call("add", "{}");
    let id = call_id(&hermes().format, "chatcmpl-1", 0, &c);
    assert!(id.starts_with("call_") && id.len() == 29, "{id}");
    assert_ne!(id, call_id(&hermes().format, "chatcmpl-1", 1, &c));
    assert_ne!(id, call_id(&hermes().format, "chatcmpl-2", 0, &c));
    let m = call_id(&ToolFormat::MistralList, "chatcmpl-1", 0, &c);
    assert!(
        m.len() == 9 && m.chars().all(|c| c.is_ascii_alphanumeric()),
        "{m}"
    );
    let own = ToolCall {
        id: Some("abc123XYZ".into()),
        ..c
    };
    assert_eq!(call_id(&ToolFormat::MistralList, "x", 0, &own), "abc123XYZ");
    assert_eq!(
        call_json("call_1", &own),
        json!({"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{}"}})
    );
    let [open, args] = call_deltas(2, "call_1", &own);
    assert_eq!(open["index"], 2);
    assert_eq!(open["function"]["arguments"], "");
    assert_eq!(args, json!({"index": 2, "function": {"arguments": "{}"}}));
}

#[test]
fn malformed_tools_name_the_field() {
    let f = json!({"name": "f", "description": "d", "parameters": {"type": "object"}});
    check_tools(&[json!({"type": "function", "function": f})]).unwrap();
    check_tools(&[json!({"type": "function", "function": {"name": "f"}})]).unwrap();
    for (tool, param) in [
        (json!("f"), "tools[1]"),
        (json!({"function": f}), "tools[1].type"),
        (json!({"type": "retrieval", "function": f}), "tools[1].type"),
        (json!({"type": "function"}), "tools[1].function"),
        (
            json!({"type": "function", "function": []}),
            "tools[1].function",
        ),
        (
            json!({"type": "function", "function": {"description": "d"}}),
            "tools[1].function.name",
        ),
        (
            json!({"type": "function", "function": {"name": 3}}),
            "tools[1].function.name",
        ),
        (
            json!({"type": "function", "function": {"name": "f", "description": 1}}),
            "tools[1].function.description",
        ),
        (
            json!({"type": "function", "function": {"name": "f", "parameters": "{}"}}),
            "tools[1].function.parameters",
        ),
    ] {
        let good = json!({"type": "function", "function": f});
        let e = check_tools(&[good, tool.clone()]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some(param), "{tool}: {e}");
        assert!(e.message.contains(param), "{e}");
    }
}

#[test]
fn tool_choice_is_checked_against_the_tools() {
    let tools = [json!({"type": "function", "function": {"name": "f"}})];
    let named = |n: &str| json!({"type": "function", "function": {"name": n}});
    for (choice, expected) in [
        (None, ToolChoice::Auto),
        (Some(json!(null)), ToolChoice::Auto),
        (Some(json!("none")), ToolChoice::None),
        (Some(json!("auto")), ToolChoice::Auto),
        (Some(json!("required")), ToolChoice::Required),
        (Some(named("f")), ToolChoice::Function("f".into())),
    ] {
        assert_eq!(
            check_tool_choice(choice.as_ref(), &tools).unwrap(),
            expected
        );
    }
    // "none" and "auto" need no tools.
    check_tool_choice(Some(&json!("none")), &[]).unwrap();
    check_tool_choice(Some(&json!("auto")), &[]).unwrap();
    for (bad, tools, param) in [
        (named("g"), &tools[..], "tool_choice.function.name"),
        (
            json!({"type": "function"}),
            &tools[..],
            "tool_choice.function.name",
        ),
        (
            json!({"type": "x", "function": {"name": "f"}}),
            &tools[..],
            "tool_choice.type",
        ),
        (json!("sometimes"), &tools[..], "tool_choice"),
        (json!(1), &tools[..], "tool_choice"),
        (json!("required"), &[][..], "tool_choice"),
        (named("f"), &[][..], "tool_choice"),
    ] {
        let e = check_tool_choice(Some(&bad), tools).unwrap_err();
        assert_eq!(e.param.as_deref(), Some(param), "{bad}: {e}");
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
    }
}
