"""A fault injector for the AWS tests: an HTTP proxy on 127.0.0.1 in front of the moto server.

It passes every request through to moto, except those a rule picks (by a piece of text found in
the request line, headers or body: an operation name such as ``PutLogEvents``, a statistic such as
``p95``), which it answers as a failing endpoint would:

* ``hang``: reads the request and never answers (CloudWatch never saw it, the client times out);
* ``forward_then_hang``: passes the request to moto, which takes it, then never answers (the
  request arrived, its answer was lost: the one case a client cannot tell apart from the first);
* ``status500``: answers 500 Internal Server Error without passing it on.

moto itself never hangs or fails on demand, hence this proxy; everything else is the real server.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Rule:
    match: tuple[bytes, ...]  # every piece must be in the request
    action: str  # hang | forward_then_hang | status500
    times: int | None = None  # how many requests it applies to (None: all)
    hits: int = 0


@dataclass
class FaultProxy:
    target: str  # the moto server's URL
    rules: list[Rule] = field(default_factory=list)
    seen: list[bytes] = field(default_factory=list)  # what each request matched (for the test's asserts)

    def __post_init__(self) -> None:
        self._release = threading.Event()
        self._lock = threading.Lock()
        parts = urlsplit(self.target)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                proxy._handle(self)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def add(
        self, match: str | bytes | tuple[str | bytes, ...], action: str, times: int | None = None
    ) -> Rule:
        pieces = match if isinstance(match, tuple) else (match,)
        rule = Rule(tuple(p.encode() if isinstance(p, str) else p for p in pieces), action, times)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _pick(self, raw: bytes) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if all(p in raw for p in rule.match) and (rule.times is None or rule.hits < rule.times):
                    rule.hits += 1
                    self.seen.append(b" ".join(rule.match))
                    return rule
        return None

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, list, bytes]:
        con = http.client.HTTPConnection(self._host, self._port, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
            headers["Host"] = f"{self._host}:{self._port}"
            con.request(handler.command, handler.path, body=body, headers=headers)
            answer = con.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            con.close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        raw = f"{handler.requestline}\n{handler.headers}".encode() + body
        rule = self._pick(raw)
        if rule is not None and rule.action == "status500":
            payload = b'{"__type":"InternalFailure","message":"injected failure"}'
            handler.send_response(500)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        if rule is not None and rule.action == "forward_then_hang":
            self._forward(handler, body)
        if rule is not None and rule.action in ("hang", "forward_then_hang"):
            self._release.wait(120)  # never answers (until the proxy is closed)
            handler.close_connection = True
            return
        status, headers, payload = self._forward(handler, body)
        handler.send_response(status)
        for name, value in headers:
            if name.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
