"""The official `openai` Python client reads tool calls from `wavefront serve`'s router
(engine/tests/serve_tool_calls.rs runs it against a scripted engine whose replies are, in order:
a call with text before it, the same call streamed one character a piece, a plain answer).
usage: openai_tools.py BASE_URL

Checks, exiting non-zero on the first failure:
  - a whole reply parses into the client's types: content, one tool call (id, type, function
    name, arguments as a JSON string), finish_reason "tool_calls";
  - the streamed reply, its delta.tool_calls assembled by index as the client's users do, gives
    the same call and content;
  - the assistant turn as the client returned it, and a tool turn answering it, are taken back.
Prints one JSON line with the call, for the Rust test to check.
"""

import json
import sys

import openai

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}]


def main() -> int:
    client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0,
                           timeout=60)
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    params = dict(model="scripted", messages=messages, tools=TOOLS, tool_choice="auto")

    whole = client.chat.completions.create(**params)
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    message = choice.message
    assert message.content == "I will look it up.", message
    (call,) = message.tool_calls
    assert call.type == "function" and call.id.startswith("call_"), call
    assert call.function.name == "get_weather", call
    assert json.loads(call.function.arguments) == {"city": "Paris"}, call

    content, calls, finish = [], {}, None
    for chunk in client.chat.completions.create(**params, stream=True):
        c = chunk.choices[0]
        if c.delta.content:
            content.append(c.delta.content)
        for tc in c.delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            if tc.id:
                entry["id"] = tc.id
            if tc.function and tc.function.name:
                entry["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                entry["arguments"] += tc.function.arguments
        if c.finish_reason:
            finish = c.finish_reason
    assert "".join(content) == message.content, content
    assert finish == "tool_calls", finish
    assert list(calls) == [0], calls
    assert calls[0]["name"] == "get_weather", calls
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}, calls
    assert calls[0]["id"].startswith("call_"), calls

    turns = messages + [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    answer = client.chat.completions.create(model="scripted", messages=turns, tools=TOOLS)
    assert answer.choices[0].finish_reason == "stop", answer
    assert answer.choices[0].message.tool_calls is None, answer
    assert answer.choices[0].message.content == "It is sunny in Paris.", answer

    print(json.dumps({"id": call.id, "name": call.function.name,
                      "arguments": call.function.arguments, "openai": openai.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
