"""The official `openai` Python client against `wavefront serve` (engine/tests/openai_client.rs
boots the server and runs this): usage: openai_client.py BASE_URL API_KEY

Checks, exiting non-zero on the first failure:
  - models.list() names one model;
  - a non-streamed chat and the same request streamed (stream_options.include_usage) give the
    same text, finish reason and usage (sampled, fixed seed);
  - a second seed gives another text (the seed reaches the sampler);
  - logprobs with top_logprobs parse into the client's types, one entry per token;
  - a text completion with a stop string ends with finish_reason "stop" and without it;
  - a bad request raises openai.BadRequestError naming the field (OpenAI's error object);
  - a wrong key raises openai.AuthenticationError.
Prints one JSON line with what the Rust test compares against its own raw HTTP request.
"""

import json
import sys

import openai


def main() -> int:
    base, key = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=120)

    models = client.models.list().data
    assert len(models) == 1, models
    model = models[0].id

    messages = [{"role": "user", "content": "Write one sentence about the sea."}]
    params = dict(model=model, messages=messages, max_tokens=24, temperature=0.8, seed=42)
    whole = client.chat.completions.create(**params)
    assert whole.object == "chat.completion", whole
    choice = whole.choices[0]
    assert choice.message.role == "assistant", choice
    text = choice.message.content
    assert text, whole
    assert choice.finish_reason in ("stop", "length"), choice
    assert whole.usage.completion_tokens > 0, whole.usage
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    pieces, finish, usage, roles = [], None, None, []
    stream = client.chat.completions.create(
        **params, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk", chunk
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.role:
                roles.append(c.delta.role)
            if c.delta.content:
                pieces.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    streamed = "".join(pieces)
    assert roles == ["assistant"], roles
    assert streamed == text, (streamed, text)
    assert finish == choice.finish_reason, (finish, choice.finish_reason)
    assert usage is not None, "no usage chunk"
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
    ), (usage, whole.usage)

    lp = client.chat.completions.create(
        model=model, messages=messages, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2
    )
    content = lp.choices[0].logprobs.content
    assert len(content) == lp.usage.completion_tokens, (len(content), lp.usage)
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 2, t
        assert t.top_logprobs[0].token == t.token, t  # greedy: the most likely token

    other = client.chat.completions.create(**{**params, "seed": 43}).choices[0].message.content
    assert other != text, "seeds 42 and 43 gave the same text"

    done = client.completions.create(
        model=model, prompt="1, 2, 3, 4, 5,", max_tokens=40, temperature=0, stop=[" 9"]
    )
    assert done.object == "text_completion", done
    assert done.choices[0].finish_reason == "stop", done
    assert "9" not in done.choices[0].text and "8" in done.choices[0].text, done.choices[0].text

    try:
        client.chat.completions.create(model=model, messages=messages, temperature=-1)
        raise AssertionError("temperature -1 was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400, e
        assert isinstance(e.body, dict) and e.body.get("param") == "temperature", e.body

    wrong = openai.OpenAI(base_url=base + "/v1", api_key=key + "x", max_retries=0)
    try:
        wrong.models.list()
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401, e

    print(json.dumps({"model": model, "text": text, "usage": whole.usage.model_dump(),
                      "finish_reason": choice.finish_reason, "openai": openai.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
