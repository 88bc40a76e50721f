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


class HttpStore:
    """Sends batches to a collector; the reading side is the collector's (its routes)."""

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
        self._client: Any = None
        self._client_lock = threading.Lock()
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
        import httpx

        body = _arrow_bytes(batch)
        try:
            response = self._http().post(self.endpoint, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"collector {self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 202:
            self.sent_events += batch.num_rows
            newest = pc.max(batch.column("ts")).as_py()
            if newest is not None:
                self.last_sent_at = newest.replace(tzinfo=UTC)
            return batch.num_rows
        said, field = _said(response)
        if response.status_code in (400, 413) and field != "bot":
            # The content is refused (or too large): the writer writes halves down to the fault.
            raise StoreError(f"collector {self.url} refused the batch ({response.status_code}): {said}")
        if response.status_code in (401, 403):
            status = response.status_code
            log.error("botmeter: collector %s refused the token (%d): %s", self.url, status, said)
        raise StoreUnavailable(f"collector {self.url} answered {response.status_code}: {said}")

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
        self._client_lock = threading.Lock()

    def close(self) -> None:
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
