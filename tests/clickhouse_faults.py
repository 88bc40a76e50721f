"""A fault injector for the ClickHouse HTTP tests: a loopback HTTP endpoint, NOT a ClickHouse server.

clickhouse-connect's HTTP client talks to it as to a server. Requests no rule picks are answered
by the embedded ClickHouse engine (chdb, through clickhouse-connect's own chdb client) in the
format the request asks for, so the data path is a real engine's. Requests a rule picks (by a
piece of their query text, such as ``INSERT INTO``) are answered as a failing server would:

* ``hang``: reads the request and never answers (the client times out; nothing stored);
* ``forward_then_drop``: the engine takes the insert, then the connection closes without an
  answer (the batch arrived, its answer was lost: a client cannot tell this from a failure);
* ``drop_mid_body``: reads half the request body and closes the connection (the server went away
  mid-batch; nothing stored);
* ``status503``: a 503 without a ClickHouse error (a proxy or load balancer in front of it);
* ``too_many_parts``, ``auth``: ClickHouse's error answer with its code (252, 516).

``refuse()`` closes the listening socket (connection refused) until ``serve()`` opens it again.
The engine itself never fails on demand, hence this endpoint; everything else is the real engine.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import clickhouse_connect

# URL parameters clickhouse-connect sends that are not settings.
_NOT_SETTINGS = {
    "query",
    "query_id",
    "session_id",
    "database",
    "default_format",
    "compress",
    "decompress",
    "wait_end_of_query",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "enable_http_compression",
    "cancel_http_readonly_queries_on_client_close",
}
_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*$", re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+([`\w.]+)\s*(?:\(([^)]*)\))?\s*FORMAT\s+(\w+)\s*$", re.I | re.S)
_ERRORS = {
    "too_many_parts": (
        252,
        "Too many parts (3001) in table 'events'. Merges are processing significantly "
        "slower than inserts (TOO_MANY_PARTS)",
    ),
    "auth": (
        516,
        "default: Authentication failed: password is incorrect, or there is no user with such "
        "name (AUTHENTICATION_FAILED)",
    ),
}


@dataclass
class Rule:
    match: str
    action: str
    times: int | None = None
    hits: int = 0


@dataclass
class ClickHouseFaults:
    path: Path  # the embedded engine's folder
    rules: list[Rule] = field(default_factory=list)
    inserts_taken: int = 0  # inserts the engine ran

    def __post_init__(self) -> None:
        self.engine = clickhouse_connect.get_client(interface="chdb", path=str(self.path))
        self._lock = threading.Lock()
        self._engine_lock = threading.Lock()
        self._release = threading.Event()
        self._open: set[socket.socket] = set()
        self.port = 0
        self.serve()

    @property
    def url(self) -> str:
        return f"clickhouse://default@127.0.0.1:{self.port}/default?compress=false"

    def serve(self) -> None:
        """Listens (again, on the same port after ``refuse``)."""
        injector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with injector._lock:
                    injector._open.add(self.connection)

            def finish(self) -> None:
                with injector._lock:
                    injector._open.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                injector._handle(self)

            do_GET = do_POST

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def refuse(self) -> None:
        """Stops listening and closes the connections it had: new ones are refused."""
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def add(self, match: str, action: str, times: int | None = None) -> Rule:
        rule = Rule(match, action, times)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
        self._release.set()

    def close(self) -> None:
        self.clear()
        self.refuse()
        self.engine.close()

    def _pick(self, query: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.match in query and (rule.times is None or rule.hits < rule.times):
                    rule.hits += 1
                    return rule
        return None

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        params = dict(parse_qsl(urlsplit(request.path).query))
        length = int(request.headers.get("Content-Length") or 0)
        query = params.get("query")
        rule = self._pick(query or request.headers.get("X-Peek", "")) if query else None
        if rule is not None and rule.action == "drop_mid_body":
            request.rfile.read(length // 2)
            request.close_connection = True
            request.connection.shutdown(socket.SHUT_RDWR)
            return
        body = request.rfile.read(length) if length else b""
        if query is None:
            query, body = body.decode(), b""
            rule = self._pick(query)
        if rule is not None and rule.action == "hang":
            self._release.wait(60)
            request.close_connection = True
            return
        if rule is not None and rule.action == "status503":
            self._answer(request, 503, b"service unavailable")
            return
        if rule is not None and rule.action in _ERRORS:
            code, text = _ERRORS[rule.action]
            self._answer(
                request,
                500 if code != 516 else 401,
                f"Code: {code}. DB::Exception: {text}".encode(),
                {"X-ClickHouse-Exception-Code": str(code)},
            )
            return
        settings = {k: v for k, v in params.items() if k not in _NOT_SETTINGS and not k.startswith("param_")}
        bound = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        try:
            answer = self._run(query, body, settings, bound, params.get("database"))
        except Exception as exc:  # the engine's own error, passed on as a server would
            text = str(exc)
            code = re.search(r"Code: (\d+)", text)
            self._answer(
                request, 500, text.encode(), {"X-ClickHouse-Exception-Code": code.group(1) if code else "1"}
            )
            return
        if rule is not None and rule.action == "forward_then_drop":
            request.close_connection = True
            request.connection.shutdown(socket.SHUT_RDWR)
            return
        self._answer(request, 200, answer, {"X-ClickHouse-Summary": "{}"})

    def _run(
        self, query: str, body: bytes, settings: dict[str, str], bound: dict[str, str], database: str | None
    ) -> bytes:
        with self._engine_lock:
            if database:
                self.engine.database = database
            insert = _INSERT.match(query)
            if insert and body:
                table, columns, fmt = insert.groups()
                names = [c.strip().strip("`") for c in columns.split(",")] if columns else None
                self.engine.raw_insert(table.strip("`"), names, body, settings=settings, fmt=fmt)
                self.inserts_taken += 1
                return b""
            fmt_match = _FORMAT.search(query)
            fmt = fmt_match.group(1) if fmt_match else "TabSeparated"
            if fmt_match:
                query = query[: fmt_match.start()]
            if query.lstrip()[:6].upper() == "INSERT":  # INSERT ... VALUES: nothing to answer
                self.engine.command(query, settings=settings or None)
                return b""
            return self.engine.raw_query(query, parameters=bound or None, settings=settings or None, fmt=fmt)

    @staticmethod
    def _answer(
        request: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
