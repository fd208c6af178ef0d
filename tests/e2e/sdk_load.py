"""Steady traffic from stock OpenAI SDK clients, for tests that change something under load
(rotation, federated token refresh): half the clients stream, half do not; every answer must be
the mock provider's, and every failure, whatever its type, is kept."""

import threading
import time

import openai


class SdkLoad:
    """`with SdkLoad(stack, key) as load:` sends requests until the block ends; then `load.ok`
    holds each answer's completion time and `load.failures` each error."""

    def __init__(self, stack, key: str, clients: int = 4, prompt: str = "under load?"):
        self.ok: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._run,
                args=(
                    openai.OpenAI(
                        base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=30
                    ),
                    i % 2 == 1,
                    prompt,
                ),
                daemon=True,
            )
            for i in range(clients)
        ]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
        return False

    def _run(self, client, stream: bool, prompt: str):
        messages = [{"role": "user", "content": prompt}]
        while not self._stop.is_set():
            try:
                if stream:
                    text = "".join(
                        (ch.choices[0].delta.content or "")
                        for ch in client.chat.completions.create(
                            model="gpt-4o-mini", messages=messages, stream=True
                        )
                        if ch.choices
                    )
                else:
                    text = (
                        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
                        .choices[0]
                        .message.content
                    )
                assert text.startswith("Hello from the mock provider."), text[:80]
                self.ok.append(time.time())
            except Exception as e:  # every failure counts, whatever its type
                self.failures.append(f"{type(e).__name__}: {e}")
