"""``Meter(store="http://collector:8787")``: the writer sends its processed batches to a collector.

Each batch goes as one Arrow IPC stream (zstd-compressed) to ``POST /v1/events`` with the token
from ``BOTMETER_TOKEN``. The collector answers 202 only once the batch is durable there, so a
write that returns is safe. Anything else the writer must not lose: a refused connection, a
timeout, 5xx, 429, 401/403 (a token to fix) and a batch for another bot raise
``StoreUnavailable``, so the batch goes to the local spool and is replayed; a 400 about an event's
content raises ``StoreError``, so the writer finds the event at fault and sets it aside. Retries
carry the same event ids, which the collector stores once.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from ...exceptions import ConfigError, StoreError, StoreUnavailable

log = logging.getLogger("botmeter")

ARROW_TYPE = "application/vnd.apache.arrow.stream"
TIMEOUT_S = 10.0  # connect, send and wait for the collector's answer (it answers once durable)
REQUEST_ROWS = 10_000  # most events per request: the collector's default --max-batch-events
PARALLEL_REQUESTS = 8  # a larger write goes as this many requests at once


class HttpStore:
    """Sends batches to a collector; the reading side is the collector's (its routes)."""

    # The writer hands over up to this many events in one write (more when its batch size is
    # larger), sent as requests of at most the batch size (and REQUEST_ROWS), PARALLEL_REQUESTS at
    # once, which the collector stores together (its group commit). One request per round trip
    # would cap a Meter's rate at a batch per round trip.
    max_write_rows = REQUEST_ROWS * PARALLEL_REQUESTS

    def __init__(self, url: str, *, config: Any = None, timeout: float = TIMEOUT_S, **_: Any) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"store URL {url!r}: a collector's URL is http://host:port or https://host:port")
        self.url = url
        self.endpoint = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/v1/events"
        token = getattr(config, "token", None) or os.environ.get("BOTMETER_TOKEN")
        if not token:
            raise ConfigError(
                f"store {url!r}: a collector needs a token; set BOTMETER_TOKEN (botmeter tokens create)"
            )
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": ARROW_TYPE}
        self.timeout = timeout
        self.request_rows = min(REQUEST_ROWS, getattr(config, "batch_size", None) or REQUEST_ROWS)
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._pool: Any = None
        self.sent_events = 0
        self.last_sent_at: datetime | None = None
        self._stem = re.sub(r"[^A-Za-z0-9._-]", "_", parts.netloc)

    def _http(self) -> Any:
        with self._client_lock:
            if self._client is None:
                import httpx  # only a remote Meter needs it (extra botmeter[server])

                self._client = httpx.Client(timeout=self.timeout)
            return self._client

    def write(self, batch: pa.Table, *, fresh: bool = False, keep_open: bool = False) -> int:
        if batch.num_rows == 0:
            return 0
        size = self.request_rows
        parts = [batch.slice(at, size) for at in range(0, batch.num_rows, size)]
        if len(parts) == 1:
            self._send(batch)
        else:
            # All at once; the first failure is raised once every request has its answer. A part
            # stored before another failed is stored once when the whole batch is sent again
            # (the collector skips the event ids it has).
            errors = [f.exception() for f in [self._parallel().submit(self._send, p) for p in parts]]
            failed = [e for e in errors if e is not None]
            if failed:
                unavailable = [e for e in failed if isinstance(e, StoreUnavailable)]
                raise (unavailable or failed)[0]
        self.sent_events += batch.num_rows
        newest = pc.max(batch.column("ts")).as_py()
        if newest is not None:
            self.last_sent_at = newest.replace(tzinfo=UTC)
        return batch.num_rows

    def _parallel(self) -> Any:
        with self._client_lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(PARALLEL_REQUESTS, thread_name_prefix="botmeter-http")
            return self._pool

    def _send(self, batch: pa.Table) -> None:
        """One request; returns once the collector has the batch durable, or raises."""
        import httpx

        body = _arrow_bytes(batch)
        try:
            response = self._http().post(self.endpoint, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"collector {self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 202:
            return
        said, field = _said(response)
        if response.status_code in (400, 413) and field != "bot":
            # The content is refused (or too large): the writer writes halves down to the fault.
            raise StoreError(f"collector {self.url} refused the batch ({response.status_code}): {said}")
        if response.status_code in (401, 403):
            status = response.status_code
            log.error("botmeter: collector %s refused the token (%d): %s", self.url, status, said)
        raise StoreUnavailable(f"collector {self.url} answered {response.status_code}: {said}")

    @property
    def read_hint(self) -> str:
        """Where this store's events are read: on the collector, not through it."""
        base = self.endpoint.removesuffix("/v1/events")
        return (
            "the events are in the collector's store: read them there (botmeter reports with "
            "--store set to the store `botmeter serve` writes to), or ask the collector with a read "
            f"token: {base}/dashboard, {base}/summary, {base}/metrics/<metric>"
        )

    def count(self) -> int:
        """Events this store instance sent (the collector counts the rest)."""
        return self.sent_events

    def last_event_at(self) -> datetime | None:
        return self.last_sent_at

    def _local_dir(self) -> Path:
        if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            return Path(tempfile.gettempdir()) / "botmeter"  # only /tmp is writable in Lambda
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(cache) / "botmeter"

    def default_spool_dir(self) -> Path:
        return self._local_dir() / f"collector-{self._stem}.spool"

    def default_key_path(self) -> Path:
        return self._local_dir() / f"collector-{self._stem}.key"

    def release(self) -> None:
        return None

    def before_fork(self) -> None:
        return None

    def after_fork(self) -> None:
        # A client's connections belong to the parent: the child opens its own.
        self._client = None
        self._pool = None
        self._client_lock = threading.Lock()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"HttpStore({self.url!r})"


def _arrow_bytes(batch: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    options = ipc.IpcWriteOptions(compression="zstd")
    with ipc.new_stream(sink, batch.schema, options=options) as writer:
        writer.write_table(batch)
    return sink.getvalue().to_pybytes()


def _said(response: Any) -> tuple[str, str | None]:
    """What the collector said (one line, clipped), and the field its 400 names."""
    try:
        detail = response.json()
    except ValueError:
        detail = None
    field = detail.get("field") if isinstance(detail, dict) else None
    return " ".join(response.text[:300].split()), field
