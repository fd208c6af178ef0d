"""A Lambda Runtime API that hands out invocations concurrently, as Lambda Managed Instances
does, with an API Gateway-like HTTP front, and a counting forwarder for the AWS emulator.

Why not `cargo lambda watch`: it forces `AWS_LAMBDA_MAX_CONCURRENCY=1` on the functions it
starts (infra/local/README.md), so lambda_runtime's concurrent mode never runs under it.

- `RuntimeApi`: `GET /2018-06-01/runtime/invocation/next` blocks until an invocation is queued
  and may be called by many pollers at once (lambda_runtime's `concurrency-tokio` mode runs
  `AWS_LAMBDA_MAX_CONCURRENCY` tasks, each long-polling `/next` on its own connection);
  `POST …/{id}/response` takes the streamed response (`Transfer-Encoding: chunked`, the
  API Gateway prelude JSON, eight NUL bytes, then the body) and relays it as it arrives;
  `POST …/{id}/error` records a function error. It counts invocations in flight (handed out by
  `/next`, response not yet finished) and keeps the maximum.
- `ApiFront`: any HTTP request becomes an API Gateway REST (payload v1) proxy event with a fresh
  request id; the function's streamed answer goes back to the caller as it comes (status and
  headers from the prelude, body chunked), with the invocation's id in `x-amzn-requestid` as
  API Gateway does. So the official SDKs can be the clients.
- `AwsWire`: a forwarder in front of the moto server that records every AWS call (target,
  table or secret) so tests can count store reads.

Standard library only; every server is a `ThreadingHTTPServer` on 127.0.0.1, port 0."""

import json
import queue
import sys
import threading
import time
import urllib.parse
import uuid
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RUNTIME_PREFIX = "/2018-06-01/runtime"
PRELUDE_END = b"\0" * 8


def read_chunked(rfile):
    """Yields the chunks of a chunked request body; consumes the trailers."""
    while True:
        line = rfile.readline()
        if not line:
            return
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers (lambda_runtime announces its error trailers here)
            return
        data = rfile.read(size)
        rfile.readline()
        yield data


class Invocation:
    def __init__(self, request_id: str, event: dict):
        self.id = request_id
        self.event = event
        self.chunks: "queue.Queue[bytes | None]" = queue.Queue()
        self.error = None


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    # A deep accept queue: bursts open dozens of connections at once (the default is 5).
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # A peer that hangs up (the proxy stopping, a client done with a keep-alive connection)
        # is not an error of the emulator; anything else is printed as usual.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class Server:
    """A ThreadingHTTPServer on a free loopback port, run on a daemon thread."""

    def __init__(self, handler):
        self.httpd = _Httpd(("127.0.0.1", 0), handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class RuntimeApi(Server):
    def __init__(self):
        self.pending: "queue.Queue[Invocation]" = queue.Queue()
        self.invocations: dict = {}
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.pollers_waiting = 0
        self.max_pollers_waiting = 0
        self.errors: list = []
        super().__init__(RuntimeHandler)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def submit(self, event: dict) -> Invocation:
        inv = Invocation(str(uuid.uuid4()), event)
        with self.lock:
            self.invocations[inv.id] = inv
        self.pending.put(inv)
        return inv

    def _started(self):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _finished(self):
        with self.lock:
            self.in_flight -= 1

    def reset_maxima(self):
        with self.lock:
            self.max_in_flight = self.in_flight
            self.max_pollers_waiting = self.pollers_waiting


class RuntimeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict = None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        api: RuntimeApi = self.server.owner
        if self.path != f"{RUNTIME_PREFIX}/invocation/next":
            return self._reply(404)
        with api.lock:
            api.pollers_waiting += 1
            api.max_pollers_waiting = max(api.max_pollers_waiting, api.pollers_waiting)
        try:
            inv = api.pending.get()
        finally:
            with api.lock:
                api.pollers_waiting -= 1
        api._started()
        body = json.dumps(inv.event).encode()
        self._reply(200, body, {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": inv.id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 300_000),
            "Lambda-Runtime-Invoked-Function-Arn":
                "arn:aws:lambda:us-east-1:123456789012:function:tollgate-proxy",
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
        })

    def do_POST(self):
        api: RuntimeApi = self.server.owner
        parts = self.path[len(RUNTIME_PREFIX):].strip("/").split("/")
        if len(parts) == 3 and parts[0] == "invocation":
            inv = api.invocations.get(parts[1])
            if inv is None:
                return self._reply(404)
            if parts[2] == "response":
                try:
                    if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                        for chunk in read_chunked(self.rfile):
                            inv.chunks.put(chunk)
                    else:
                        inv.chunks.put(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                finally:
                    inv.chunks.put(None)
                    api._finished()
                return self._reply(202)
            if parts[2] == "error":
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                inv.error = body.decode(errors="replace")
                api.errors.append((inv.id, inv.error))
                inv.chunks.put(None)
                api._finished()
                return self._reply(202)
        if parts[:2] == ["init", "error"]:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            api.errors.append(("init", body.decode(errors="replace")))
            return self._reply(202)
        return self._reply(404)


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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

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
            chunk = inv.chunks.get(timeout=120)
            if chunk is None:
                detail = (inv.error or "no response").encode()
                self.send_response(502)
                self.send_header("Content-Length", str(len(detail)))
                self.send_header("x-amzn-requestid", inv.id)
                self.end_headers()
                self.wfile.write(detail)
                return
            buf += chunk
            if PRELUDE_END in buf:
                head, buf = buf.split(PRELUDE_END, 1)
                prelude = json.loads(head)
        self.send_response(int(prelude.get("statusCode", 200)))
        for k, v in (prelude.get("headers") or {}).items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        for cookie in prelude.get("cookies") or []:
            self.send_header("Set-Cookie", cookie)
        self.send_header("x-amzn-requestid", inv.id)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def write(data: bytes):
            if data:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        write(buf)
        while (chunk := inv.chunks.get(timeout=120)) is not None:
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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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


class WireHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

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
