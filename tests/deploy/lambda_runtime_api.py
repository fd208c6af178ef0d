"""A minimal Lambda Runtime API (2018-06-01) for one function process, playing the caller the
way API Gateway's streaming integration does (InvokeWithResponseStream), and the reader of the
streamed response the way API Gateway reads it.

The function polls `GET /runtime/invocation/next`, gets the event, and answers with
`POST /runtime/invocation/{id}/response`. In response-streaming mode that POST carries
`Lambda-Runtime-Function-Response-Mode: streaming`, is chunked, and for an HTTP integration has
the content type `application/vnd.awslambda.http-integration-response`: a JSON prelude
(statusCode, headers, multiValueHeaders, cookies), 8 NUL bytes, then the body. A failure after
the stream began comes as the trailers `Lambda-Runtime-Function-Error-Type`/`-Body`. API Gateway
needs the prelude and delimiter within the first 16 KB and starts answering the client once it
has them (API Gateway developer guide, "Set up a Lambda proxy integration with payload response
streaming").

Every chunk's arrival time is kept, so a test can tell a streamed body from a buffered one.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response"
DELIMITER = b"\0" * 8
PRELUDE_LIMIT = 16 * 1024


@dataclass
class Invocation:
    event: dict
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    sent_at: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # of the function's /response POST
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)
    error: dict | None = None  # a POST /error
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def raw(self) -> bytes:
        return b"".join(c for _, c in self.chunks)


class RuntimeApi:
    def __init__(self, function_arn: str, deadline_s: int = 300):
        self.arn = function_arn
        self.deadline_s = deadline_s
        self.pending: queue.Queue[Invocation] = queue.Queue()
        self.by_id: dict[str, Invocation] = {}
        self.init_error: dict | None = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def reply(self, code: int, body: bytes = b"", headers: dict | None = None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self.reply(404)
                while True:
                    try:
                        inv = api.pending.get(timeout=1)
                        break
                    except queue.Empty:
                        if api.closing:
                            return self.reply(500)
                api.by_id[inv.request_id] = inv
                inv.sent_at = time.monotonic()
                self.reply(200, json.dumps(inv.event).encode(), {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(int((time.time() + api.deadline_s) * 1000)),
                    "Lambda-Runtime-Invoked-Function-Arn": api.arn,
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
                })

            def do_POST(self):
                parts = self.path.split("/")
                if self.path.endswith("/runtime/init/error"):
                    api.init_error = {"headers": dict(self.headers), "body": self.read_all()[1]}
                    return self.reply(202, b'{"status":"OK"}')
                if len(parts) < 2 or parts[-1] not in ("response", "error"):
                    return self.reply(404)
                inv = api.by_id.get(parts[-2])
                if inv is None:
                    return self.reply(400, b'{"errorType":"InvalidRequestID"}')
                inv.headers = {k.lower(): v for k, v in self.headers.items()}
                chunks, body, trailers = self.read_all(record=inv.chunks if parts[-1] == "response" else None)
                inv.trailers = trailers
                if parts[-1] == "error":
                    inv.error = {"type": self.headers.get("Lambda-Runtime-Function-Error-Type"),
                                 "body": body.decode(errors="replace")}
                self.reply(202, b'{"status":"OK"}')
                inv.done.set()

            def read_all(self, record: list | None = None):
                """The request body, chunk by chunk as it arrives (chunked or sized)."""
                got: list[tuple[float, bytes]] = record if record is not None else []
                trailers: dict[str, str] = {}
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while True:  # trailers, then the empty line
                                line = self.rfile.readline().decode("latin-1").strip()
                                if not line:
                                    break
                                k, _, v = line.partition(":")
                                trailers[k.strip().lower()] = v.strip()
                            break
                        data = self.rfile.read(size)
                        self.rfile.readline()  # CRLF after the chunk
                        got.append((time.monotonic(), data))
                else:
                    n = int(self.headers.get("Content-Length", "0"))
                    if n:
                        got.append((time.monotonic(), self.rfile.read(n)))
                return got, b"".join(c for _, c in got), trailers

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # a function process ended mid-poll (the rehearsal stops it): nothing to report
                import sys
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.closing = False
        self.server = Server(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def invoke(self, event: dict, timeout: float = 60) -> Invocation:
        inv = Invocation(event)
        self.pending.put(inv)
        if not inv.done.wait(timeout):
            raise TimeoutError(f"no response to invocation {inv.request_id} within {timeout} s")
        return inv

    def close(self) -> None:
        self.closing = True
        self.server.shutdown()


@dataclass
class ApiGatewayView:
    """What API Gateway makes of a streamed response."""
    status: int
    headers: dict[str, str]
    body: bytes
    prelude_at: float  # when the prelude + delimiter had arrived
    body_chunks: list[tuple[float, bytes]]


def read_as_api_gateway(inv: Invocation) -> ApiGatewayView:
    """Reads the function's response as API Gateway's streaming integration does; raises
    AssertionError with what is wrong."""
    assert inv.error is None, f"the function reported an error: {inv.error}"
    h = inv.headers
    assert h.get("lambda-runtime-function-response-mode", "").lower() == "streaming", (
        f"not a streamed response (Lambda-Runtime-Function-Response-Mode: {h.get('lambda-runtime-function-response-mode')})")
    assert h.get("content-type", "").split(";")[0].strip() == HTTP_INTEGRATION, (
        f"content type {h.get('content-type')!r}, API Gateway needs {HTTP_INTEGRATION}")
    assert "lambda-runtime-function-error-type" not in inv.trailers, f"error trailers: {inv.trailers}"
    raw = inv.raw
    cut = raw.find(DELIMITER)
    assert cut >= 0, "no 8-NUL delimiter after the prelude"
    assert cut + len(DELIMITER) <= PRELUDE_LIMIT, f"prelude ends at byte {cut}: API Gateway needs it in the first 16 KB"
    prelude = json.loads(raw[:cut])
    assert isinstance(prelude.get("statusCode"), int), f"prelude statusCode {prelude.get('statusCode')!r}"
    headers = prelude.get("headers") or {}
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()), f"prelude headers {headers!r}"
    for k, vs in (prelude.get("multiValueHeaders") or {}).items():
        assert isinstance(vs, list) and all(isinstance(v, str) for v in vs), f"multiValueHeaders {k}: {vs!r}"
    # When the prelude was complete, and the body's chunks with their arrival times.
    seen, prelude_at, body_chunks = 0, None, []
    end = cut + len(DELIMITER)
    for t, c in inv.chunks:
        start, seen = seen, seen + len(c)
        if seen >= end and prelude_at is None:
            prelude_at = t
        if seen > end:
            body_chunks.append((t, c[max(0, end - start):]))
    assert prelude_at is not None
    return ApiGatewayView(prelude["statusCode"], {k.lower(): v for k, v in headers.items()},
                          raw[end:], prelude_at, body_chunks)
