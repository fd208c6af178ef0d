"""Chat request bodies for the token-estimate tool, one JSON object per line on stdout.

Every document of the DLP evaluation corpus (tests/dlp_eval/corpus.py: English and Japanese
prose, code, keys, JSON, full-width and zero-width variants) wrapped as a request, in the
shapes the proxy sees: a single user message (OpenAI chat), a system prompt plus a
multi-turn conversation, an Anthropic Messages body with a system prompt and content
blocks, an OpenAI body with a tool definition, an assistant tool call and a tool result,
and a Responses API body. `_shape` names the shape (the tool drops it before estimating).

Usage: .venv/bin/python infra/token-estimate/chat_bodies.py | cargo run -q -p tollgate-token-estimate
"""
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "dlp_eval"))
from corpus import corpus  # noqa: E402

TOOLS = [{"type": "function", "function": {
    "name": "lookup_customer", "description": "Look up a customer record by id or e-mail.",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "Customer id or e-mail address"},
        "limit": {"type": "integer"}}, "required": ["query"]}}}]


def out(shape, body):
    body["_shape"] = shape
    print(json.dumps(body, ensure_ascii=False))


def main():
    docs = [d.text for d in corpus()]
    rng = random.Random(11)
    for t in docs:
        out("user", {"model": "gpt-4o", "messages": [{"role": "user", "content": t}]})
    for i in range(0, len(docs), 5):
        turns = docs[i:i + 5]
        msgs = [{"role": "system", "content": "You are a careful assistant. Answer in the user's language."}]
        for j, t in enumerate(turns):
            msgs.append({"role": "user" if j % 2 == 0 else "assistant", "content": t})
        out("multi", {"model": "gpt-4o", "max_tokens": 256, "messages": msgs})
        out("anthropic", {"model": "claude-sonnet-4-6", "max_tokens": 256,
                          "system": "You are a careful assistant.",
                          "messages": [{"role": "user", "content": [{"type": "text", "text": t}
                                                                   for t in turns]}]})
        q = rng.choice(turns)
        out("tools", {"model": "gpt-4o", "tools": TOOLS, "messages": [
            {"role": "user", "content": q},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{i}", "type": "function",
                "function": {"name": "lookup_customer", "arguments": json.dumps({"query": q[:80]}, ensure_ascii=False)}}]},
            {"role": "tool", "tool_call_id": f"call_{i}", "content": json.dumps({"found": True, "note": turns[-1]}, ensure_ascii=False)}]})
        out("responses", {"model": "gpt-4o", "input": [{"role": "user", "content": t} for t in turns]})


if __name__ == "__main__":
    main()
