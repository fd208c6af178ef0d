"""Load on the stack exactly as `make dev` runs it (proxy under `cargo lambda watch`): every
request is answered with its proper status, with no timeouts, at every concurrency up to the
stack's stated limit of 200 (infra/local/README.md). Numbers are printed, not asserted: the
only pass/fail is loss (a missing or wrong answer, or a 30 s client timeout).

Run with `-s` to see the figures."""

import asyncio
import collections
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx
import openai

STATED_CONCURRENCY = 200
TIMEOUT = 30


def chat_body(i: int, stream: bool) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"load {i}"}], "stream": stream}


async def one(c: httpx.AsyncClient, url: str, key: str, i: int):
    """Streaming and not, plus refusals that must stay refusals under load."""
    kind = i % 4
    t = time.monotonic()
    try:
        if kind == 3:
            r = await c.get(f"{url}/v1/models")  # no key: a 401 in OpenAI's shape
            ok = r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
            return ("401" if ok else f"bad {r.status_code}"), time.monotonic() - t
        stream = kind == 1
        async with c.stream(
            "POST", f"{url}/v1/chat/completions", json=chat_body(i, stream),
            headers={"authorization": f"Bearer {key}"},
        ) as r:
            data = b"".join([x async for x in r.aiter_bytes()])
        ok = r.status_code == 200 and (b"[DONE]" in data if stream else b'"choices"' in data)
        return ("200" if ok else f"bad {r.status_code}"), time.monotonic() - t
    except httpx.HTTPError as e:
        return type(e).__name__, time.monotonic() - t


async def burst(url: str, key: str, concurrency: int, total: int) -> dict:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as c:
        async def run(i):
            async with sem:
                return await one(c, url, key, i)

        start = time.monotonic()
        results = await asyncio.gather(*(run(i) for i in range(total)))
        elapsed = time.monotonic() - start
    lat = sorted(r[1] for r in results)
    return {
        "concurrency": concurrency, "requests": total, "elapsed_s": round(elapsed, 2),
        "answers": dict(collections.Counter(r[0] for r in results)),
        "p50_s": round(lat[len(lat) // 2], 3), "p99_s": round(lat[int(len(lat) * 0.99) - 1], 3),
        "max_s": round(lat[-1], 3),
    }


def assert_no_loss(stats: dict):
    print("\nload:", json.dumps(stats))
    allowed = {"200", "401"}
    lost = {k: v for k, v in stats["answers"].items() if k not in allowed}
    assert not lost, f"lost or wrong answers: {stats}"
    assert sum(stats["answers"].values()) == stats["requests"]


def test_no_request_is_lost_at_50_and_at_the_stated_concurrency(stack):
    for concurrency, total in ((50, 200), (STATED_CONCURRENCY, 600)):
        assert_no_loss(asyncio.run(burst(stack.url, stack.key, concurrency, total)))
    # And the stack is still answering afterwards, unauthenticated calls included.
    try:
        urllib.request.urlopen(f"{stack.url}/v1/models", timeout=10)
        raise AssertionError("GET /v1/models without a key must be refused")
    except urllib.error.HTTPError as e:
        assert e.code == 401


def test_official_sdks_lose_nothing_over_many_streams_at_low_concurrency(stack):
    """The slow leak: a few clients, hundreds of streams closed the moment the SDK has its
    last event. Each close can cost the function one Runtime API connection."""
    oa = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0, timeout=TIMEOUT)
    an = anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0, timeout=TIMEOUT)

    def call(i: int):
        t = time.monotonic()
        try:
            if i % 2:
                s = oa.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": f"s{i}"}], stream=True
                )
                text = "".join((c.choices[0].delta.content or "") for c in s if c.choices)
            else:
                with an.messages.stream(
                    model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": f"s{i}"}]
                ) as s:
                    text = "".join(s.text_stream)
            return ("200" if text else "empty"), time.monotonic() - t
        except (openai.APIError, anthropic.APIError) as e:
            return type(e).__name__, time.monotonic() - t

    start = time.monotonic()
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(call, range(400)))
    lat = sorted(r[1] for r in results)
    assert_no_loss({
        "concurrency": 4, "requests": 400, "elapsed_s": round(time.monotonic() - start, 2),
        "answers": dict(collections.Counter(r[0] for r in results)),
        "p50_s": round(lat[200], 3), "max_s": round(lat[-1], 3),
    })
