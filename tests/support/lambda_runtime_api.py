"""A Lambda Runtime API (2018-06-01) emulator for one function process, with what both test
trees need around it: the reading of a streamed response as API Gateway reads it (the deploy
rehearsal, tests/deploy), an API Gateway-like HTTP front and a counting forwarder for the AWS
emulator (the concurrent sandbox, tests/e2e/test_managed_instances.py).

Why not `cargo lambda watch`: it forces `AWS_LAMBDA_MAX_CONCURRENCY=1` on the functions it
starts (infra/local/README.md), so lambda_runtime's concurrent mode never runs under it.

- `RuntimeApi`: `GET /2018-06-01/runtime/invocation/next` blocks until an invocation is queued
  and may be called by many pollers at once, as Lambda Managed Instances allows
  (lambda_runtime's `concurrency-tokio` mode runs `AWS_LAMBDA_MAX_CONCURRENCY` tasks, each
  long-polling `/next` on its own connection). `POST …/{id}/response` takes the response; in
  response-streaming mode it carries `Lambda-Runtime-Function-Response-Mode: streaming`, is
  chunked, and for an HTTP integration has the content type
  `application/vnd.awslambda.http-integration-response`: a JSON prelude (statusCode, headers,
  multiValueHeaders, cookies), 8 NUL bytes, then the body. A failure after the stream began
  comes as the trailers `Lambda-Runtime-Function-Error-Type`/`-Body`. `POST …/{id}/error` and
  `POST …/init/error` record function errors. Every chunk is kept with its arrival time (so a
  test can tell a streamed body from a buffered one) and also handed on as it arrives (so a
  front can relay it). The emulator counts invocations in flight (handed out by `/next`,
  response not yet finished) and pollers waiting, and keeps the maxima.
- `read_as_api_gateway`: API Gateway's streaming integration needs the prelude and delimiter
  within the first 16 KB and starts answering the client once it has them (API Gateway
  developer guide, "Set up a Lambda proxy integration with payload response streaming").
- `ApiFront`: any HTTP request becomes an API Gateway REST (payload v1) proxy event with a fresh
  request id; the function's streamed answer goes back to the caller as it comes (status and
  headers from the prelude, body chunked), with the invocation's id in `x-amzn-requestid` as
  API Gateway does. So the official SDKs can be the clients.
- `AwsWire`: a forwarder in front of the moto server that records every AWS call (target,
  table or secret) so tests can count store reads.

Standard library only; every server is a `ThreadingHTTPServer` on 127.0.0.1, port 0, run on a
daemon thread."""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RUNTIME_PREFIX = "/2018-06-01/runtime"
HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response"
DELIMITER = b"\0" * 8
PRELUDE_LIMIT = 16 * 1024
DEFAULT_ARN = "arn:aws:lambda:us-east-1:123456789012:function:tollgate-proxy"


@dataclass
class Invocation:
    event: dict
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    sent_at: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # of the function's /response or /error POST
    chunks: list[tuple[float, bytes]] = field(default_factory=list)  # (arrival time, bytes)
    live: queue.Queue = field(default_factory=queue.Queue)  # each chunk as it arrives, then None
    trailers: dict[str, str] = field(default_factory=dict)
    error: dict | None = None  # a POST /error: {"type", "body"}
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def raw(self) -> bytes:
        return b"".join(c for _, c in self.chunks)


def read_body(handler: BaseHTTPRequestHandler, on_chunk=lambda data: None):
    """A request's body, chunk by chunk as it arrives (chunked or sized): calls `on_chunk` with
    each one and returns the list of (arrival time, bytes) and the trailers."""
    got: list[tuple[float, bytes]] = []
    trailers: dict[str, str] = {}

    def arrived(data: bytes):
        got.append((time.monotonic(), data))
        on_chunk(data)

    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        while True:
            line = handler.rfile.readline()
            if not line:
                break
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers (lambda_runtime announces its error trailers here), then the empty line
                    line = handler.rfile.readline().decode("latin-1").strip()
                    if not line:
                        break
                    k, _, v = line.partition(":")
                    trailers[k.strip().lower()] = v.strip()
                break
            data = handler.rfile.read(size)
            handler.rfile.readline()  # CRLF after the chunk
            arrived(data)
    else:
        n = int(handler.headers.get("Content-Length", "0") or 0)
        if n:
            arrived(handler.rfile.read(n))
    return got, trailers


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    # A deep accept queue: bursts open dozens of connections at once (the default is 5).
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # A peer that hangs up (a function process stopped mid-poll, a client done with a
        # keep-alive connection) is not an error of the emulator; anything else is printed.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Server:
    """A ThreadingHTTPServer on a free loopback port, run on a daemon thread."""

    def __init__(self, handler):
        self.httpd = _Httpd(("127.0.0.1", 0), handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status: int, body: bytes = b"", headers: dict | None = None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class RuntimeApi(Server):
    def __init__(self, function_arn: str = DEFAULT_ARN, deadline_s: int = 300):
        self.arn = function_arn
        self.deadline_s = deadline_s
        self.pending: queue.Queue[Invocation] = queue.Queue()
        self.by_id: dict[str, Invocation] = {}
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.pollers_waiting = 0
        self.max_pollers_waiting = 0
        self.init_error: dict | None = None
        self.errors: list[tuple[str, dict]] = []  # (request id or "init", error)
        self.closing = False
        super().__init__(RuntimeHandler)

    def submit(self, event: dict) -> Invocation:
        """Queues an invocation for the next `/next` poll; returns at once."""
        inv = Invocation(event)
        with self.lock:
            self.by_id[inv.request_id] = inv
        self.pending.put(inv)
        return inv

    def invoke(self, event: dict, timeout: float = 60) -> Invocation:
        """Queues an invocation and waits until its response (or error) has been read whole."""
        inv = self.submit(event)
        if not inv.done.wait(timeout):
            raise TimeoutError(f"no response to invocation {inv.request_id} within {timeout} s")
        return inv

    def reset_maxima(self):
        with self.lock:
            self.max_in_flight = self.in_flight
            self.max_pollers_waiting = self.pollers_waiting

    def next_invocation(self) -> Invocation | None:
        """Blocks until an invocation is queued (None once the emulator is closing)."""
        with self.lock:
            self.pollers_waiting += 1
            self.max_pollers_waiting = max(self.max_pollers_waiting, self.pollers_waiting)
        try:
            while True:
                try:
                    inv = self.pending.get(timeout=1)
                    break
                except queue.Empty:
                    if self.closing:
                        return None
        finally:
            with self.lock:
                self.pollers_waiting -= 1
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        inv.sent_at = time.monotonic()
        return inv

    def finished(self, inv: Invocation):
        with self.lock:
            self.in_flight -= 1
            if inv.error is not None:
                self.errors.append((inv.request_id, inv.error))
        inv.live.put(None)
        inv.done.set()

    def close(self):
        self.closing = True
        super().close()


class RuntimeHandler(QuietHandler):
    def do_GET(self):
        api: RuntimeApi = self.server.owner
        if self.path != f"{RUNTIME_PREFIX}/invocation/next":
            return self.reply(404)
        inv = api.next_invocation()
        if inv is None:
            return self.reply(500)
        self.reply(200, json.dumps(inv.event).encode(), {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(int((time.time() + api.deadline_s) * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn": api.arn,
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
        })

    def do_POST(self):
        api: RuntimeApi = self.server.owner
        parts = self.path[len(RUNTIME_PREFIX):].strip("/").split("/")
        if parts == ["init", "error"]:
            _, body = self.read_error()
            api.init_error = {"type": self.headers.get("Lambda-Runtime-Function-Error-Type"), "body": body}
            with api.lock:
                api.errors.append(("init", api.init_error))
            return self.reply(202, b'{"status":"OK"}')
        if len(parts) != 3 or parts[0] != "invocation" or parts[2] not in ("response", "error"):
            return self.reply(404)
        inv = api.by_id.get(parts[1])
        if inv is None:
            return self.reply(400, b'{"errorType":"InvalidRequestID"}')
        inv.headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            if parts[2] == "response":
                inv.chunks, inv.trailers = read_body(self, inv.live.put)
            else:
                inv.trailers, body = self.read_error()
                inv.error = {"type": self.headers.get("Lambda-Runtime-Function-Error-Type"), "body": body}
        finally:
            api.finished(inv)
        self.reply(202, b'{"status":"OK"}')

    def read_error(self) -> tuple[dict, str]:
        chunks, trailers = read_body(self)
        return trailers, b"".join(c for _, c in chunks).decode(errors="replace")


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


def rest_event(method: str, target: str, headers: dict, body: bytes, request_id: str) -> dict:
    """An API Gateway REST API (payload v1) proxy event, shaped like events/proxy-*.json."""
    url = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(url.query)
    return {
        "resource": "/{proxy+}",
        "path": url.path,
        "httpMethod": method,
        "headers": {k: v for k, v in headers.items()},
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": url.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local1",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "path": f"/prod{url.path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "prod",
            "domainPrefix": "local",
            "requestTimeEpoch": int(time.time() * 1000),
            "requestId": request_id,
            "identity": {"sourceIp": "192.0.2.10", "userAgent": headers.get("User-Agent")},
            "domainName": "local.execute-api.us-east-1.amazonaws.com",
            "apiId": "local",
        },
        "body": body.decode("utf-8") if body else None,
        "isBase64Encoded": False,
    }


class ApiFront(Server):
    def __init__(self, runtime: RuntimeApi):
        self.runtime = runtime
        super().__init__(FrontHandler)


class FrontHandler(QuietHandler):
    def _handle(self):
        front: ApiFront = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        headers = {k: v for k, v in self.headers.items()}
        # The event carries API Gateway's request id; Lambda assigns the invocation its own,
        # which is the one the function sees as its request id.
        inv = front.runtime.submit(rest_event(self.command, self.path, headers, body, str(uuid.uuid4())))
        buf = b""
        prelude = None
        while prelude is None:
            chunk = inv.live.get(timeout=120)
            if chunk is None:
                detail = json.dumps(inv.error) if inv.error else "no response"
                return self.reply(502, detail.encode(), {"x-amzn-requestid": inv.request_id})
            buf += chunk
            if DELIMITER in buf:
                head, buf = buf.split(DELIMITER, 1)
                prelude = json.loads(head)
        self.send_response(int(prelude.get("statusCode", 200)))
        for k, v in (prelude.get("headers") or {}).items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        for cookie in prelude.get("cookies") or []:
            self.send_header("Set-Cookie", cookie)
        self.send_header("x-amzn-requestid", inv.request_id)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def write(data: bytes):
            if data:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        write(buf)
        while (chunk := inv.live.get(timeout=120)) is not None:
            write(chunk)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    do_GET = do_POST = do_DELETE = do_PUT = _handle


class AwsWire(Server):
    """Forwards every request to `upstream` (the moto server) and records the calls."""

    def __init__(self, upstream: str):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.calls: list = []
        self.lock = threading.Lock()
        super().__init__(WireHandler)

    def record(self, headers, body: bytes):
        target = headers.get("X-Amz-Target", "")
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            doc = {}
        call = {"target": target.split(".")[-1], "service": target.split(".")[0].split("_")[0]}
        if "TableName" in doc:
            call["table"] = doc["TableName"]
        if "Key" in doc:
            call["key"] = doc["Key"]
        if "SecretId" in doc:
            call["secret"] = doc["SecretId"]
        with self.lock:
            self.calls.append(call)

    def snapshot(self) -> list:
        with self.lock:
            return list(self.calls)


class WireHandler(QuietHandler):
    def _forward(self):
        wire: AwsWire = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        wire.record(self.headers, body)
        conn = HTTPConnection(wire.upstream.hostname, wire.upstream.port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward
