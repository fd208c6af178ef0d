"""The official SDKs, unchanged but for base_url and api_key, get answers through tollgate —
streaming and not — and the audit line records each request with its usage."""

import anthropic
import openai


def oa(stack, key=None):
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key or stack.key, max_retries=0, timeout=30)


def an(stack, key=None):
    return anthropic.Anthropic(base_url=stack.url, api_key=key or stack.key, max_retries=0, timeout=30)


def test_openai_chat_completion(stack):
    raw = oa(stack).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "ping from openai sdk"}]
    )
    r = raw.parse()
    assert r.choices[0].message.content.startswith("Hello from the mock provider.")
    assert "ping from openai sdk" in r.choices[0].message.content
    a = stack.audit_for(raw.headers["x-tollgate-request-id"])
    assert a["decision"] == "allow" and a["status"] == 200
    assert a["route"] == "chat.completions" and a["tenant"] == "demo"
    assert a["tokens_in"] == r.usage.prompt_tokens and a["tokens_out"] == r.usage.completion_tokens


def test_openai_chat_stream_with_usage(stack):
    stream = oa(stack).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text.startswith("Hello from the mock provider.")
    assert usage is not None and usage.completion_tokens > 0
    rid = stream.response.headers["x-tollgate-request-id"]
    a = stack.audit_for(rid)
    assert a["stream"] is True and a["reason"] == "ok"
    assert a["tokens_out"] == usage.completion_tokens


def test_openai_other_routes(stack):
    c = oa(stack)
    e = c.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    assert len(e.data) == 2 and len(e.data[0].embedding) > 0
    comp = c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert comp.choices[0].text
    resp = c.responses.create(model="gpt-4o-mini", input="hello responses")
    assert resp.output_text.startswith("Hello from the mock provider.")
    models = c.models.list()
    assert len(models.data) > 0


def test_anthropic_messages(stack):
    raw = an(stack).messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "hi claude"}]
    )
    m = raw.parse()
    assert m.content[0].text.startswith("Hello from the mock provider.")
    a = stack.audit_for(raw.headers["x-tollgate-request-id"])
    assert a["route"] == "messages" and a["pool"] == "anthropic"
    assert a["tokens_in"] == m.usage.input_tokens and a["tokens_out"] == m.usage.output_tokens


def test_anthropic_stream(stack):
    with an(stack).messages.stream(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "stream it"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text.startswith("Hello from the mock provider.")
    assert final.usage.output_tokens > 0


def test_anthropic_count_tokens(stack):
    r = an(stack).messages.count_tokens(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "count these words please"}]
    )
    assert r.input_tokens > 0
