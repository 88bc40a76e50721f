"""AWS CloudWatch as a store: metrics for dashboards and alarms, one log record per event.

``cloudwatch://?namespace=DadaCatTwilio&region=us-east-1&mode=api`` (needs ``botmeter[aws]``,
i.e. boto3, in api mode only).

Two modes, the same metrics:

* **emf** (the default inside AWS Lambda): metrics as CloudWatch Embedded Metric Format
  documents and event records as JSON lines, printed on stdout. Lambda ships stdout to
  CloudWatch Logs, which extracts the metrics: no API call, nothing for the function to wait on.
* **api** (the default elsewhere): ``PutMetricData`` for the metrics and ``PutLogEvents`` for the
  records, into the log group ``/botmeter/<namespace>`` (one stream per process).

Metrics are declared once, in ``METRICS``: which events each counts or measures, its unit and
its dimension sets. Dimensions are low-cardinality only (bot, channel, provider, model, error
category, stage, activity or custom name); users and conversations are in the records. Values
are grouped per minute as ``Values``/``Counts`` (api) or value arrays (emf), so CloudWatch keeps
percentiles. The read side imports ``METRICS`` and ``DIMENSION_COLUMNS`` to query them back.

CloudWatch's limits are enforced here (emulators do not enforce them): ``PutMetricData`` at
most 1,000 metrics and 1 MB a request and 150 distinct values a metric; ``PutLogEvents`` in time
order, at most 10,000 events and 1,048,576 bytes (message bytes + 26 each) spanning under 24
hours; EMF at most 100 metrics a document and 100 values a metric; 30 dimensions a metric.
Events older than 14 days or more than 2 hours ahead, which CloudWatch refuses, are not sent
and are counted in ``rejected_events``.

Exactly once, per batch. CloudWatch cannot be asked what it already has, and a batch becomes
several requests, so a batch that failed part way must not resend what arrived. Each batch is
cut into requests deterministically (the same rows in the same order give the same requests;
the spool hands back exactly the table that failed), and each request is known by a digest of
its content. When a batch fails part way, the digests of the requests CloudWatch acknowledged
are saved in a small JSON file named after the batch (a digest of its event ids), in
``<spool>/cloudwatch-acks/``; a replay skips those requests and deletes the file when the batch
is complete. Content digests rather than request numbers mean a changed namespace or log group
sends again (to the new place), never skips. During a replay the file is updated after every
request, so a crash loses at most the record of one request.

A request whose answer was lost (a read timeout, a connection cut after sending) may or may not
have been taken, and CloudWatch has no idempotency token for puts: it is never retried blindly.
It is noted as in doubt with the log stream it went to; the replay looks its records up there
(``GetLogEvents``: a stream is written by one process) and sends only those missing. Metric values
cannot be looked up, so a ``PutMetricData`` in doubt is not sent again: the metrics may miss its
values (counted in ``unconfirmed_metric_values``) but never count them twice.
Duplicate event ids within a batch are sent once; across batches CloudWatch has no way to check,
so an ``event_id=`` the bot repeats in a later batch is counted again (DuckDB dedupes those).

Failures: throttling, 5xx answers and connection errors (before anything was sent) are retried a
few times with short, jittered backoff, within a time bound per request (``connect_timeout_s``,
``read_timeout_s``) and per batch (``batch_deadline_s``); then (and at once for missing
credentials or access denied) the write raises ``StoreUnavailable``, the writer spools the batch
and replays it when CloudWatch answers. Only a request CloudWatch rejects as invalid raises
``StoreError`` (the spool sets the batch aside).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import secrets
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from ...config import Config, setting_from_env
from ...exceptions import ConfigError, StoreError, StoreUnavailable

log = logging.getLogger("botmeter")

# -- what is recorded ------------------------------------------------------------------------

# CloudWatch dimension name -> event column.
DIMENSION_COLUMNS: Final[dict[str, str]] = {
    "Bot": "bot",
    "Channel": "channel",
    "Provider": "provider",
    "Model": "model",
    "ErrorCategory": "error_category",
    "Stage": "stage",
    "Activity": "name",
    "Name": "name",
}


@dataclass(frozen=True)
class CloudWatchMetric:
    """One CloudWatch metric and the events it is made of.

    ``value`` is the event column recorded; None counts events (read the ``Sum``). Each event is
    recorded under every dimension set whose columns it has (``("Bot",)`` always: the total).
    """

    name: str
    kinds: tuple[str, ...]  # event kinds it covers; () for every kind
    value: str | None
    unit: str
    dimension_sets: tuple[tuple[str, ...], ...]
    where: tuple[tuple[str, str], ...] = ()  # (column, value) an event must have
    description: str = ""


_B: Final = ("Bot",)
_BC: Final = ("Bot", "Channel")
_BP: Final = ("Bot", "Provider")
_BPM: Final = ("Bot", "Provider", "Model")

_M = CloudWatchMetric  # short, for the table below
METRICS: Final[tuple[CloudWatchMetric, ...]] = (
    _M("Messages", ("message",), None, "Count", (_B, _BC), description="messages in and out"),
    _M(
        "InboundMessages",
        ("message",),
        None,
        "Count",
        (_B, _BC),
        (("direction", "in"),),
        "messages from users",
    ),
    _M(
        "OutboundMessages", ("message",), None, "Count", (_B, _BC), (("direction", "out"),), "messages sent"
    ),
    _M(
        "SmsSegments",
        ("message",),
        "units",
        "Count",
        (_B, _BP),
        (("unit", "sms_segment"),),
        "SMS segments per message",
    ),
    _M("LlmCalls", ("llm_call",), None, "Count", (_B, _BPM), description="LLM calls"),
    _M("InputTokens", ("llm_call",), "input_tokens", "Count", (_B, _BPM), description="prompt tokens"),
    _M(
        "OutputTokens", ("llm_call",), "output_tokens", "Count", (_B, _BPM), description="completion tokens"
    ),
    _M("CachedTokens", ("llm_call",), "cached_tokens", "Count", (_B, _BPM), description="cache reads"),
    _M(
        "CacheWriteTokens",
        ("llm_call",),
        "cache_write_tokens",
        "Count",
        (_B, _BPM),
        description="cache writes",
    ),
    _M(
        "ReasoningTokens", ("llm_call",), "reasoning_tokens", "Count", (_B, _BPM), description="reasoning"
    ),
    _M(
        "LlmLatencyMs", ("llm_call",), "latency_ms", "Milliseconds", (_B, _BPM), description="LLM call time"
    ),
    _M("LlmCostUSD", ("llm_call",), "cost_usd", "None", (_BPM,), description="LLM cost, US dollars"),
    _M("CostUSD", (), "cost_usd", "None", (_B, _BP), description="cost of any event, US dollars"),
    _M("ApiCalls", ("api_call",), None, "Count", (_B, _BP), description="other API calls"),
    _M("ApiLatencyMs", ("api_call",), "latency_ms", "Milliseconds", (_BP,), description="API call time"),
    _M(
        "Errors",
        ("error",),
        None,
        "Count",
        (_B, ("Bot", "ErrorCategory"), ("Bot", "Stage")),
        description="errors",
    ),
    _M("LatencyMs", ("timing",), "latency_ms", "Milliseconds", (("Bot", "Stage"),), description="stages"),
    _M("Activities", ("activity",), None, "Count", (_B, ("Bot", "Activity")), description="activities"),
    _M("CustomEvents", ("custom",), None, "Count", (("Bot", "Name"),), description="custom events"),
    _M("CustomValues", ("custom",), "units", "None", (("Bot", "Name"),), description="custom values"),
    _M(
        "DroppedEvents",
        ("system",),
        "units",
        "Count",
        (_B,),
        (("name", "dropped"),),
        "events botmeter dropped (buffer full)",
    ),
)
METRICS_BY_NAME: Final = {m.name: m for m in METRICS}

# -- CloudWatch's limits -----------------------------------------------------------------------

MAX_METRICS_PER_REQUEST: Final = 1000
MAX_METRIC_REQUEST_BYTES: Final = 1_000_000  # 1 MB less room for the request's envelope
MAX_VALUES_PER_DATUM: Final = 150
MAX_DIMENSIONS: Final = 30
MAX_DIMENSION_VALUE: Final = 1024
MAX_LOG_EVENTS_PER_REQUEST: Final = 10_000
MAX_LOG_REQUEST_BYTES: Final = 1_048_576
LOG_EVENT_OVERHEAD: Final = 26
MAX_LOG_EVENT_BYTES: Final = 256 * 1024 - LOG_EVENT_OVERHEAD
MAX_LOG_SPAN_MS: Final = 24 * 3600 * 1000
MAX_EMF_METRICS: Final = 100
MAX_EMF_VALUES: Final = 100
MAX_EMF_DOCUMENT_BYTES: Final = 200_000  # well under a log event's 256 KB
MAX_LINES_PER_WRITE: Final = 1000
MAX_LINES_BYTES: Final = 1_048_576
OLDEST_ACCEPTED: Final = timedelta(days=14) - timedelta(minutes=5)
NEWEST_ACCEPTED: Final = timedelta(hours=2) - timedelta(minutes=5)

for _metric in METRICS:  # a mistake in the table fails at import, not in a bot's writer
    for _dims in _metric.dimension_sets:
        assert 0 < len(_dims) <= MAX_DIMENSIONS and all(d in DIMENSION_COLUMNS for d in _dims), _metric

MODES: Final = ("emf", "api")
URL_OPTIONS: Final = ("namespace", "region", "mode", "log_group")
DEFAULT_NAMESPACE: Final = "botmeter"
_NAMESPACE_RE = re.compile(r"^[0-9A-Za-z.\-_/#: ]{1,255}$")
_LOG_GROUP_RE = re.compile(r"^[.\-_/#A-Za-z0-9]{1,512}$")
_REGION_RE = re.compile(r"^[a-z0-9-]{1,64}$")

# Error codes that mean "the request itself is wrong": sending it again can never work.
_BAD_REQUEST: Final = frozenset(
    {
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "InvalidParameterException",
        "MissingParameter",
        "MissingRequiredParameter",
        "ValidationError",
        "ValidationException",
        "InvalidFormat",
        "SerializationException",
        "InvalidSequenceTokenException",
    }
)
# Calls that add data: sent twice, they count twice (CloudWatch has no idempotency token for them).
_PUTS: Final = frozenset({"put_log_events", "put_metric_data"})
_THROTTLED: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServiceError",
        "InternalServiceFault",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def in_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


# -- from a batch to requests ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    """All values of one metric with one set of dimension values in one minute."""

    metric: CloudWatchMetric
    dimensions: tuple[tuple[str, str], ...]  # (name, value), in the dimension set's order
    minute_ms: int
    values: list[float]
    counts: list[int]


def _dimension_value(raw: Any) -> str | None:
    # CloudWatch takes ASCII dimension values without control characters, 1-1024 long.
    text = "".join(c for c in str(raw) if c.isprintable()).encode("ascii", "replace").decode()
    text = text[:MAX_DIMENSION_VALUE]
    return text if text.strip() else None


def _mask(batch: pa.Table, metric: CloudWatchMetric) -> pa.Array | None:
    mask = None
    if metric.kinds:
        mask = pc.is_in(batch.column("kind"), value_set=pa.array(metric.kinds))
    for column, wanted in metric.where:
        step = pc.fill_null(pc.equal(batch.column(column), wanted), False)
        mask = step if mask is None else pc.and_(mask, step)
    if metric.value is not None:
        step = pc.is_valid(batch.column(metric.value))
        mask = step if mask is None else pc.and_(mask, step)
    return mask


def aggregate(batch: pa.Table) -> list[Series]:
    """The batch's metrics: per metric, dimension values and minute, each distinct value and its count."""
    if batch.num_rows == 0:
        return []
    micros = pc.cast(batch.column("ts"), pa.int64())
    minutes = pc.multiply(pc.divide(micros, 60_000_000), 60_000)
    clean: dict[Any, str | None] = {}
    out: list[Series] = []
    for metric in METRICS:
        mask = _mask(batch, metric)
        for dims in metric.dimension_sets:
            columns = {"m": minutes}
            for i, name in enumerate(dims):
                columns[f"d{i}"] = batch.column(DIMENSION_COLUMNS[name])
            if metric.value is not None:
                columns["v"] = pc.cast(batch.column(metric.value), pa.float64())
            table = pa.table(columns)
            keep = mask
            for i in range(len(dims)):
                step = pc.is_valid(table.column(f"d{i}"))
                keep = step if keep is None else pc.and_(keep, step)
            if keep is not None:
                table = table.filter(keep)
            if table.num_rows == 0:
                continue
            keys = ["m", *(f"d{i}" for i in range(len(dims))), *(["v"] if metric.value else [])]
            grouped = table.group_by(keys, use_threads=False).aggregate([([], "count_all")])
            # Sorted, so that the same batch always makes the same requests (see the module doc).
            grouped = grouped.sort_by([(k, "ascending") for k in keys]).to_pydict()
            counts = grouped["count_all"]
            dim_columns = [grouped[f"d{i}"] for i in range(len(dims))]
            values = grouped.get("v")
            current: Series | None = None
            for row, minute in enumerate(grouped["m"]):
                raw = tuple(col[row] for col in dim_columns)
                cleaned = []
                for value in raw:
                    if value not in clean:
                        clean[value] = _dimension_value(value)
                    cleaned.append(clean[value])
                if None in cleaned:
                    continue
                dimensions = tuple(zip(dims, cleaned, strict=True))
                if current is None or current.minute_ms != minute or current.dimensions != dimensions:
                    current = Series(metric, dimensions, minute, [], [])
                    out.append(current)
                current.values.append(1.0 if values is None else values[row])
                current.counts.append(counts[row])
    return out


def _datum_bytes(datum: dict[str, Any]) -> int:
    # An upper bound for the JSON and CBOR encodings botocore uses: the JSON text, plus 9 bytes
    # (a CBOR double) for every number, which JSON may write in fewer.
    numbers = len(datum.get("Values", ())) + len(datum.get("Counts", ())) + 1
    return len(json.dumps(datum, separators=(",", ":"))) + 9 * numbers


def metric_requests(series: Iterable[Series]) -> list[list[dict[str, Any]]]:
    """PutMetricData bodies (``Timestamp`` in epoch ms): at most 150 values a datum, 1,000 datums
    and about 1 MB a request."""
    requests: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for s in series:
        for start in range(0, len(s.values), MAX_VALUES_PER_DATUM):
            datum = {
                "MetricName": s.metric.name,
                "Dimensions": [{"Name": n, "Value": v} for n, v in s.dimensions],
                "Timestamp": s.minute_ms,
                "Values": s.values[start : start + MAX_VALUES_PER_DATUM],
                "Counts": s.counts[start : start + MAX_VALUES_PER_DATUM],
                "Unit": s.metric.unit,
            }
            nbytes = _datum_bytes(datum)
            if current and (
                len(current) >= MAX_METRICS_PER_REQUEST or size + nbytes > MAX_METRIC_REQUEST_BYTES
            ):
                requests.append(current)
                current, size = [], 0
            current.append(datum)
            size += nbytes
    if current:
        requests.append(current)
    return requests


def emf_documents(series: Iterable[Series], namespace: str) -> list[tuple[int, str]]:
    """EMF documents, one line each, with their minute: one per dimension values and minute, at
    most 100 metrics and 100 values a metric each (more make more documents)."""
    groups: dict[tuple[int, tuple[tuple[str, str], ...]], list[tuple[CloudWatchMetric, list[float]]]] = {}
    for s in series:
        if s.metric.value is None:
            samples = [float(sum(s.counts))]  # a count: one sample, the number of events (read Sum)
        else:
            samples = [v for v, n in zip(s.values, s.counts, strict=True) for _ in range(n)]
        groups.setdefault((s.minute_ms, s.dimensions), []).append((s.metric, samples))
    lines: list[tuple[int, str]] = []
    for (minute, dimensions), entries in groups.items():
        rounds = max(len(samples) for _, samples in entries)
        for start in range(0, rounds, MAX_EMF_VALUES):
            members = [(m, samples[start : start + MAX_EMF_VALUES]) for m, samples in entries]
            members = [(m, part) for m, part in members if part]
            doc: list[tuple[CloudWatchMetric, list[float]]] = []
            size = 0
            for metric, part in members:
                nbytes = len(json.dumps(part)) + 2 * len(metric.name) + 40
                if doc and (len(doc) >= MAX_EMF_METRICS or size + nbytes > MAX_EMF_DOCUMENT_BYTES):
                    lines.append((minute, _emf_line(namespace, minute, dimensions, doc)))
                    doc, size = [], 0
                doc.append((metric, part))
                size += nbytes
            if doc:
                lines.append((minute, _emf_line(namespace, minute, dimensions, doc)))
    return lines


def _emf_line(
    namespace: str,
    minute: int,
    dimensions: tuple[tuple[str, str], ...],
    doc: list[tuple[CloudWatchMetric, list[float]]],
) -> str:
    body: dict[str, Any] = {
        "_aws": {
            "Timestamp": minute,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [[name for name, _ in dimensions]],
                    "Metrics": [{"Name": m.name, "Unit": m.unit} for m, _ in doc],
                }
            ],
        }
    }
    body.update(dimensions)
    for metric, part in doc:
        body[metric.name] = part[0] if len(part) == 1 else part
    return json.dumps(body, separators=(",", ":"))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def records(batch: pa.Table) -> list[tuple[int, str]]:
    """One JSON record per event (null fields left out), with its time in ms, in time order."""
    n = batch.num_rows
    if n == 0:
        return []
    micros = pc.cast(batch.column("ts"), pa.int64()).to_pylist()
    ids = _id_storage(batch).to_pylist()
    columns: dict[str, list] = {}
    for name in batch.column_names:
        if name in ("event_id", "ts"):
            continue
        column = batch.column(name)
        if column.null_count < n:
            columns[name] = column.to_pylist()
    properties = columns.pop("properties", None)
    out = []
    for i in sorted(range(n), key=micros.__getitem__):
        us = micros[i]
        record: dict[str, Any] = {
            "event_id": str(uuid.UUID(bytes=ids[i])),
            "ts": (_EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z"),
        }
        for name, values in columns.items():
            value = values[i]
            if value is not None:
                record[name] = value
        if properties is not None and properties[i] is not None:
            try:
                record["properties"] = json.loads(properties[i])
            except ValueError:
                record["properties"] = properties[i]
        message = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
        if len(message) * 4 > MAX_LOG_EVENT_BYTES and len(message.encode()) > MAX_LOG_EVENT_BYTES:
            message = _shrunk(record)
        out.append((us // 1000, message))
    return out


def _shrunk(record: dict[str, Any]) -> str:
    # A log event holds at most 256 KB: long free text goes first, then every long field is cut.
    record = {k: v for k, v in record.items() if k not in ("text", "properties")}
    record["truncated"] = True
    message = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
    if len(message.encode()) > MAX_LOG_EVENT_BYTES:
        record = {k: (v[:1000] if isinstance(v, str) else v) for k, v in record.items()}
        message = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
    return message


def log_requests(events: list[tuple[int, str]]) -> list[list[tuple[int, str]]]:
    """PutLogEvents bodies from time-ordered (ms, message) events: at most 10,000 events and
    1,048,576 bytes (message + 26 each) a request, spanning less than 24 hours."""
    requests: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    size = 0
    first = 0
    for ts, message in events:
        nbytes = len(message.encode()) + LOG_EVENT_OVERHEAD
        if current and (
            len(current) >= MAX_LOG_EVENTS_PER_REQUEST
            or size + nbytes > MAX_LOG_REQUEST_BYTES
            or ts - first >= MAX_LOG_SPAN_MS
        ):
            requests.append(current)
            current, size = [], 0
        if not current:
            first = ts
        current.append((ts, message))
        size += nbytes
    if current:
        requests.append(current)
    return requests


def line_writes(lines: list[tuple[int | None, str, bool]]) -> list[list[tuple[int | None, str, bool]]]:
    """Groups stdout lines into writes of at most 1,000 lines and 1 MB."""
    writes: list[list[tuple[int | None, str, bool]]] = []
    current: list[tuple[int | None, str, bool]] = []
    size = 0
    for item in lines:
        nbytes = len(item[1].encode()) + 1
        if current and (len(current) >= MAX_LINES_PER_WRITE or size + nbytes > MAX_LINES_BYTES):
            writes.append(current)
            current, size = [], 0
        current.append(item)
        size += nbytes
    if current:
        writes.append(current)
    return writes


def _id_storage(batch: pa.Table) -> pa.Array:
    ids = batch.column("event_id")
    chunks = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in ids.chunks]
    return pa.chunked_array(chunks, pa.binary(16)).combine_chunks()


def _unique(batch: pa.Table) -> pa.Table:
    """The batch without repeated event ids (the first of each is kept)."""
    storage = _id_storage(batch)
    if pc.count_distinct(storage).as_py() == batch.num_rows:
        return batch
    seen: set[bytes] = set()
    keep = []
    for i, raw in enumerate(storage.to_pylist()):
        if raw not in seen:
            seen.add(raw)
            keep.append(i)
    return batch.take(pa.array(keep, pa.int64()))


def batch_key(batch: pa.Table) -> str:
    """Names a batch by its event ids: the same batch replayed from the spool has the same key."""
    storage = _id_storage(batch)
    data = storage.buffers()[1]
    view = memoryview(data)[storage.offset * 16 : (storage.offset + len(storage)) * 16]
    return hashlib.sha256(view).hexdigest()[:32]


@dataclass(slots=True)
class Chunk:
    """One request (api) or one write to stdout (emf), known by the digest of its content."""

    kind: str  # "logs": [(ms, message)]; "metrics": [datum]; "lines": [(ms or None, line, is_record)]
    items: list

    def digest(self, scope: str) -> str:
        h = hashlib.sha256(f"{scope}\x00{self.kind}\x00".encode())
        h.update(json.dumps(self.items, separators=(",", ":")).encode())
        return h.hexdigest()[:32]


@dataclass(slots=True)
class Progress:
    """What became of a batch's requests: ``done`` (digests CloudWatch acknowledged) and ``doubt``
    (digest -> the log stream it went to, "" for metrics: sent, but the answer was lost)."""

    done: set[str] = field(default_factory=set)
    doubt: dict[str, str] = field(default_factory=dict)


class Acks:
    """Which requests of a batch CloudWatch took, for batches that failed part way.

    One small file per batch, written to a temporary name and renamed, so it is whole or absent;
    a batch is replayed by one process at a time (the spool locks it), so files are not shared.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._pruned = False

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def load(self, key: str) -> Progress:
        try:
            noted = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return Progress()
        if isinstance(noted, list):  # the first format: the digests of the requests taken
            return Progress(set(noted))
        if not isinstance(noted, dict):
            return Progress()
        return Progress(set(noted.get("done") or ()), dict(noted.get("doubt") or {}))

    def save(self, key: str, progress: Progress) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".{key}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump({"done": sorted(progress.done), "doubt": progress.doubt}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path(key))
        except OSError as exc:  # without it a replay may resend; never stop the writer for it
            log.warning("botmeter: cannot record CloudWatch progress in %s: %s", self.directory, exc)
        self._prune()

    def clear(self, key: str) -> None:
        with contextlib.suppress(OSError):
            self._path(key).unlink()

    def _prune(self, max_age_s: float = 14 * 86400) -> None:
        # Files of batches that were set aside or dropped; CloudWatch takes nothing that old anyway.
        if self._pruned:
            return
        self._pruned = True
        cutoff = time.time() - max_age_s
        with contextlib.suppress(OSError):
            for path in self.directory.glob("*.json"):
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()


# -- the store ---------------------------------------------------------------------------------


def _parse_url(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in URL_OPTIONS:
            raise ConfigError(
                f"store URL {url!r}: unknown option {name!r}; valid options: {', '.join(URL_OPTIONS)}"
            )
        if name in options:
            raise ConfigError(f"store URL {url!r}: option {name!r} given twice")
        if not value:
            raise ConfigError(f"store URL {url!r}: option {name!r} is empty")
        options[name] = value
    place = (parts.netloc + parts.path).strip("/")
    if place:
        # cloudwatch://Namespace is accepted as the namespace.
        if "namespace" in options:
            raise ConfigError(
                f"store URL {url!r}: namespace given twice ({place!r} and {options['namespace']!r})"
            )
        options["namespace"] = place
    return options


class CloudWatchStore:
    """Events as CloudWatch metrics (per minute, low-cardinality dimensions) and log records."""

    # The read side: GetMetricData for the metrics, Logs Insights over the records.

    # Retries of throttling, 5xx and connection errors: a few, short; then the batch is spooled.
    attempts = 4
    backoff_s = 0.1
    max_backoff_s = 1.0
    # After CloudWatch failed every retry, calls fail at once for this long: the writer tries again
    # every flush interval, and a flush or close during an outage should not wait out retries each time.
    cooldown_s = 1.0
    # Time bounds: a request waits at most read_timeout_s for its answer, and no new request or
    # retry of a batch starts after batch_deadline_s (the rest waits in the spool).
    connect_timeout_s = 2.0
    read_timeout_s = 5.0
    batch_deadline_s = 10.0

    def __init__(
        self,
        url: str,
        *,
        config: Config | None = None,
        spool_dir: str | Path | None = None,
        **_: Any,
    ) -> None:
        self.url = url
        options = _parse_url(url)

        def pick(option: str, setting: str) -> Any:
            # The URL beats the Meter's argument or environment, which beat the default.
            if option in options:
                return options[option]
            if config is not None:
                return getattr(config, setting)
            return setting_from_env(setting)

        self.namespace = pick("namespace", "cloudwatch_namespace") or DEFAULT_NAMESPACE
        if not _NAMESPACE_RE.match(self.namespace) or self.namespace.startswith("AWS/"):
            raise ConfigError(
                f"CloudWatch namespace {self.namespace!r} is invalid: 1-255 of A-Z a-z 0-9 . - _ / # : "
                "and space, not starting with AWS/"
            )
        mode = pick("mode", "cloudwatch_mode") or ("emf" if in_lambda() else "api")
        if mode not in MODES:
            raise ConfigError(f"CloudWatch mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.region = pick("region", "cloudwatch_region")
        if self.region is not None and not _REGION_RE.match(self.region):
            raise ConfigError(f"CloudWatch region {self.region!r} is invalid (such as us-east-1)")
        safe = re.sub(r"[^.\-_/#A-Za-z0-9]", "-", self.namespace)
        self.log_group = pick("log_group", "cloudwatch_log_group") or f"/botmeter/{safe}"
        if not _LOG_GROUP_RE.match(self.log_group):
            raise ConfigError(
                f"CloudWatch log_group {self.log_group!r} is invalid: 1-512 of A-Z a-z 0-9 . - _ / #"
            )
        spool = (
            spool_dir or (config.spool_dir if config is not None else None) or setting_from_env("spool_dir")
        )
        self.acks = Acks(Path(spool or self.default_spool_dir()) / "cloudwatch-acks")
        self.sent_events = 0  # events whose record this store sent
        self.last_sent_at: datetime | None = None  # naive UTC, as the batch's ts column
        self.rejected_events = 0  # events outside CloudWatch's time window, not sent
        self.unconfirmed_metric_values = 0  # metric values sent without an answer, not sent again
        self._clients: dict[str, Any] = {}
        self._stream: str | None = None
        self._down_until = 0.0
        self._down_why = ""
        if self.mode == "api":
            self._load_boto()
            self._client("cloudwatch")  # a missing region is a setting to fix: say so now, not later
            self._client("logs")

    # -- AWS clients ----------------------------------------------------------------------------

    def _load_boto(self) -> None:
        try:
            import boto3
            import botocore.config
            import botocore.exceptions
        except ImportError:
            raise ConfigError(
                "the CloudWatch store in api mode needs boto3: pip install 'botmeter[aws]' "
                "(or use mode=emf, which needs nothing)"
            ) from None
        self._boto3 = boto3
        self._botocore_exc = botocore.exceptions
        # botocore's own retries are off: this store retries briefly itself, then spools. No
        # endpoint is given, so boto3 honours AWS_ENDPOINT_URL and its own configuration.
        self._boto_config = botocore.config.Config(
            retries={"total_max_attempts": 1},
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            user_agent_extra="botmeter",
        )

    def _client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            try:
                session = self._boto3.session.Session()
                client = session.client(service, region_name=self.region, config=self._boto_config)
            except self._botocore_exc.NoRegionError:
                raise ConfigError(
                    "the CloudWatch store needs a region: region= in the store URL, "
                    "BOTMETER_CLOUDWATCH_REGION, DYNAMODB_REGION, AWS_REGION or AWS_DEFAULT_REGION"
                ) from None
            self._clients[service] = client
        return client

    def _call(
        self,
        service: str,
        operation: str,
        *,
        remember_outage: bool = True,
        deadline: float | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """One AWS call; throttling, 5xx and connection errors retried briefly, errors mapped.

        ``remember_outage``: after failing every retry, fail further calls at once for ``cooldown_s``
        (the writer's calls; a reader asking one query after another needs no such pause).
        ``deadline`` (``time.monotonic()``): no retry starts after it. A put whose answer was lost
        (read timeout, connection cut after sending) is not retried: it raises ``InDoubt``."""
        exc_mod = self._botocore_exc
        if remember_outage and time.monotonic() < self._down_until:
            raise StoreUnavailable(
                f"CloudWatch {operation}: not tried, it failed moments ago ({self._down_why})"
            )
        fn = getattr(self._client(service), operation)
        delay = self.backoff_s
        problem = ""
        tries = 0
        for attempt in range(self.attempts):
            if attempt:
                pause = random.uniform(delay / 2, delay)  # jittered, so processes do not retry in step
                if deadline is not None and time.monotonic() + pause >= deadline:
                    problem += " (out of time for more tries)"
                    break
                time.sleep(pause)
                delay = min(delay * 2, self.max_backoff_s)
            tries += 1
            try:
                return fn(**params)
            except exc_mod.ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", ""))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                problem = f"{code or status}: {error.get('Message', exc)}"
                if code in _THROTTLED or status >= 500 or status == 429:
                    continue
                if code in _BAD_REQUEST:
                    raise StoreError(f"CloudWatch {operation} rejected the request: {problem}") from exc
                # Not found, access denied, expired credentials: wait in the spool until fixed.
                raise _Unavailable(f"CloudWatch {operation}: {problem}", code) from exc
            except (exc_mod.NoCredentialsError, exc_mod.PartialCredentialsError) as exc:
                # A client keeps the credentials it found when made: make a new one next time, so
                # credentials that turn up later (a role attached, variables set) are used.
                self._clients.pop(service, None)
                raise StoreUnavailable(f"CloudWatch {operation}: no AWS credentials ({exc})") from exc
            except exc_mod.ParamValidationError as exc:
                raise StoreError(f"CloudWatch {operation}: invalid request: {exc}") from exc
            except exc_mod.ConnectionError as exc:  # never reached CloudWatch: safe to send again
                problem = str(exc)
                continue
            except exc_mod.HTTPClientError as exc:
                # Sent, but the answer was lost (read timeout, connection cut): CloudWatch may have
                # taken it. A put sent again could count twice, so the caller decides what to do.
                problem = str(exc)
                if operation in _PUTS:
                    if remember_outage:
                        self._down_until = time.monotonic() + self.cooldown_s
                        self._down_why = f"no answer to {operation}: {problem}"
                    raise InDoubt(f"CloudWatch {operation}: sent, but no answer came ({problem})") from exc
                continue
            except exc_mod.BotoCoreError as exc:
                raise StoreUnavailable(f"CloudWatch {operation}: {exc}") from exc
        why = f"failed {tries} times; last: {problem}"
        if remember_outage:
            self._down_until = time.monotonic() + self.cooldown_s
            self._down_why = why
        raise StoreUnavailable(f"CloudWatch {operation} {why}")

    def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """One AWS call for the read side (boto3 is needed here in either mode), retried and mapped
        to botmeter's errors as writes are."""
        if not hasattr(self, "_boto3"):
            self._load_boto()
        return self._call(service, operation, remember_outage=False, **params)

    def resolved_region(self) -> str:
        """The region boto3 settles on when the URL and settings name none."""
        if not hasattr(self, "_boto3"):
            self._load_boto()
        return self._client("cloudwatch").meta.region_name

    # -- the seam -----------------------------------------------------------------------------

    def plan(self, batch: pa.Table) -> list[Chunk]:
        """The requests (api) or stdout writes (emf) that store the batch, always the same for it."""
        series = aggregate(batch)
        events = records(batch)
        if self.mode == "api":
            return [Chunk("logs", r) for r in log_requests(events)] + [
                Chunk("metrics", r) for r in metric_requests(series)
            ]
        lines: list[tuple[int | None, str, bool]] = [(None, message, True) for _, message in events]
        lines += [(minute, line, False) for minute, line in emf_documents(series, self.namespace)]
        return [Chunk("lines", w) for w in line_writes(lines)]

    def _scope(self, chunk: Chunk) -> str:
        if chunk.kind == "logs":
            return f"logs:{self.region}:{self.log_group}"
        if chunk.kind == "metrics":
            return f"metrics:{self.region}:{self.namespace}"
        return f"stdout:{self.namespace}"

    def write(self, batch: pa.Table, *, fresh: bool = False, keep_open: bool = False) -> int:
        """Sends the batch; a batch that failed part way resumes where it stopped. Returns the
        number of events whose record was sent. Gives up (``StoreUnavailable``, the batch spools)
        once ``batch_deadline_s`` has passed or a request's answer is lost."""
        if batch.num_rows == 0:
            return 0
        batch = _unique(batch)
        chunks = self.plan(batch)
        key = batch_key(batch)
        deadline = time.monotonic() + self.batch_deadline_s
        # A fresh batch was never tried, so nothing of it was sent: no file to look for, and no
        # digest is computed unless it fails.
        progress = Progress() if fresh else self.acks.load(key)
        had_file = bool(progress.done or progress.doubt)
        sent_now: list[Chunk] = []
        rows = 0
        try:
            for chunk in chunks:
                digest = chunk.digest(self._scope(chunk)) if not fresh else None
                if digest is not None and digest in progress.done:
                    continue
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"CloudWatch: the batch took over {self.batch_deadline_s:g} s; "
                        "the rest waits in the spool"
                    )
                if digest is not None and digest in progress.doubt:
                    rows += self._resolve(chunk, progress.doubt[digest], deadline)
                else:
                    try:
                        rows += self._send(chunk, deadline)
                    except InDoubt:
                        progress.doubt[digest or chunk.digest(self._scope(chunk))] = (
                            self._stream or "" if chunk.kind == "logs" else ""
                        )
                        raise
                sent_now.append(chunk)
                if digest is not None:
                    progress.done.add(digest)
                    progress.doubt.pop(digest, None)
                    if len(chunks) > 1:
                        self.acks.save(key, progress)  # a crash now must not resend this request
        except BaseException:
            if fresh:
                progress.done |= {c.digest(self._scope(c)) for c in sent_now}
            if progress.done or progress.doubt:
                self.acks.save(key, progress)
            raise
        if had_file or (not fresh and progress.done):
            self.acks.clear(key)
        self.sent_events += rows
        if rows:
            newest = pc.max(batch.column("ts")).as_py()
            if newest is not None and (self.last_sent_at is None or newest > self.last_sent_at):
                self.last_sent_at = newest
        return rows

    def _resolve(self, chunk: Chunk, stream: str, deadline: float) -> int:
        """A request sent before whose answer was lost: finds out what CloudWatch took, sends the rest."""
        if chunk.kind == "logs":
            # Records can be looked up in the stream they were sent to (one process writes it).
            missing = self._missing_records(chunk, stream, deadline)
            found = len(chunk.items) - len(missing)
            if found:
                log.info("botmeter: %d CloudWatch records whose answer was lost had arrived", found)
            return found + (self._send(Chunk("logs", missing), deadline) if missing else 0)
        # CloudWatch cannot be asked which metric values it took, and values sent twice count
        # twice: the request is not sent again. The records (and every figure read from them) are whole.
        values = sum(sum(d.get("Counts") or [1]) for d in chunk.items)
        self.unconfirmed_metric_values += values
        log.warning(
            "botmeter: a CloudWatch PutMetricData request (%d values) got no answer; not sent again, "
            "so that nothing counts twice (the metrics may miss them; the records are whole)",
            values,
        )
        return 0

    def _missing_records(self, chunk: Chunk, stream: str, deadline: float) -> list:
        """The records of ``chunk`` not found in the log stream ``stream``."""
        if not stream:
            return list(chunk.items)
        wanted = {message for _, message in chunk.items}
        stamps = [ts for ts, _ in chunk.items]
        params: dict[str, Any] = {
            "logGroupName": self.log_group,
            "logStreamName": stream,
            "startTime": min(stamps),
            "endTime": max(stamps) + 1,
            "startFromHead": True,
        }
        found: set[str] = set()
        token = None
        while True:
            try:
                page = self._call(
                    "logs",
                    "get_log_events",
                    deadline=deadline,
                    **params,
                    **({"nextToken": token} if token else {}),
                )
            except _Unavailable as exc:
                if exc.code == "ResourceNotFoundException":
                    return list(chunk.items)  # the stream was never made: nothing arrived
                if exc.code == "AccessDeniedException":
                    # Without logs:GetLogEvents the records cannot be looked up: sent again (they
                    # may count twice) rather than kept in the spool for good.
                    log.warning("botmeter: %s; records whose answer was lost are sent again", exc)
                    return list(chunk.items)
                raise
            found |= {e.get("message") for e in page.get("events", ())} & wanted
            following = page.get("nextForwardToken")
            if not page.get("events") or following == token or len(found) == len(wanted):
                break
            token = following
        return [item for item in chunk.items if item[1] not in found]

    def _window(self) -> tuple[int, int]:
        now = time.time()
        return (
            int((now - OLDEST_ACCEPTED.total_seconds()) * 1000),
            int((now + NEWEST_ACCEPTED.total_seconds()) * 1000),
        )

    def _reject(self, n: int, what: str) -> None:
        if n:
            self.rejected_events += n
            log.warning(
                "botmeter: %d %s outside CloudWatch's window (14 days back, 2 hours ahead) not sent", n, what
            )

    def _send(self, chunk: Chunk, deadline: float | None = None) -> int:
        lo, hi = self._window()
        if chunk.kind == "logs":
            events = [{"timestamp": ts, "message": m} for ts, m in chunk.items if lo <= ts <= hi]
            self._reject(len(chunk.items) - len(events), "event records")
            return self._put_log_events(events, deadline) if events else 0
        if chunk.kind == "metrics":
            data = [
                {**d, "Timestamp": datetime.fromtimestamp(d["Timestamp"] / 1000, UTC)}
                for d in chunk.items
                if lo <= d["Timestamp"] <= hi
            ]
            if len(data) < len(chunk.items):
                log.warning("botmeter: metric values outside CloudWatch's window not sent")
            if data:
                self._call(
                    "cloudwatch",
                    "put_metric_data",
                    deadline=deadline,
                    Namespace=self.namespace,
                    MetricData=data,
                )
            return 0
        lines = [line for ts, line, _ in chunk.items if ts is None or lo <= ts <= hi]
        if len(lines) < len(chunk.items):
            log.warning("botmeter: metric values outside CloudWatch's window not sent")
        try:
            out = sys.stdout  # looked up each time: Lambda's runtime and tests may replace it
            out.write("\n".join(lines) + "\n")
            out.flush()
        except (OSError, ValueError) as exc:
            raise StoreUnavailable(f"cannot write EMF lines to stdout: {exc}") from exc
        return sum(1 for _, _, is_record in chunk.items if is_record)

    def _put_log_events(self, events: list[dict[str, Any]], deadline: float | None = None) -> int:
        if self._stream is None:
            host = re.sub(r"[:*]", "-", socket.gethostname()) or "host"
            self._stream = f"botmeter/{host}/{os.getpid()}-{secrets.token_hex(4)}"
        params = {"logGroupName": self.log_group, "logStreamName": self._stream, "logEvents": events}
        try:
            answer = self._call("logs", "put_log_events", deadline=deadline, **params)
        except _Unavailable as exc:
            if exc.code != "ResourceNotFoundException":
                raise
            # Only now create the group and stream: a bot whose role may only put events still works
            # with a group made beforehand.
            self._create("create_log_group", deadline, logGroupName=self.log_group)
            self._create(
                "create_log_stream", deadline, logGroupName=self.log_group, logStreamName=self._stream
            )
            answer = self._call("logs", "put_log_events", deadline=deadline, **params)
        rejected = answer.get("rejectedLogEventsInfo") or {}
        n = len(events)
        too_old = (
            max(rejected.get("tooOldLogEventEndIndex", -1), rejected.get("expiredLogEventEndIndex", -1)) + 1
        )
        too_new = n - rejected.get("tooNewLogEventStartIndex", n)
        self._reject(too_old + too_new, "event records")
        return n - too_old - too_new

    def _create(self, operation: str, deadline: float | None, **params: Any) -> None:
        try:
            self._call("logs", operation, deadline=deadline, **params)
        except _Unavailable as exc:
            if exc.code == "ResourceAlreadyExistsException":
                return
            if exc.code == "AccessDeniedException" and operation == "create_log_group":
                return  # perhaps the group exists and the role may not create groups: try the stream
            raise

    def count(self) -> int:
        """Events whose record this store instance sent. CloudWatch itself cannot be counted cheaply:
        the read side counts the records in the log group."""
        return self.sent_events

    def last_event_at(self) -> datetime | None:
        """The newest event this store instance sent (CloudWatch is not asked: that costs a query)."""
        return None if self.last_sent_at is None else self.last_sent_at.replace(tzinfo=UTC)

    def default_spool_dir(self) -> Path:
        return self._local_dir() / f"{self._file_stem()}.spool"

    def default_key_path(self) -> Path:
        if in_lambda():
            log.warning(
                "botmeter: in Lambda each container would make its own user-hash key, so one user "
                "would count as several: set BOTMETER_HASH_KEY"
            )
        return self._local_dir() / f"{self._file_stem()}.key"

    def _file_stem(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]", "_", self.namespace)

    def _local_dir(self) -> Path:
        if in_lambda():
            return Path(tempfile.gettempdir()) / "botmeter"  # only /tmp is writable in Lambda
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(cache) / "botmeter"

    def release(self) -> None:
        """Nothing is held between writes."""

    def before_fork(self) -> None:
        """Nothing to close: the child drops the clients instead (after_fork)."""

    def after_fork(self) -> None:
        # A boto3 client's connection pool must not be shared with the parent; the child writes its
        # own log stream.
        self._clients = {}
        self._stream = None

    def close(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients = {}

    def __repr__(self) -> str:
        return f"CloudWatchStore(namespace={self.namespace!r}, mode={self.mode!r}, region={self.region!r})"


class InDoubt(StoreUnavailable):
    """A put was sent but its answer was lost: CloudWatch may or may not have taken it."""


class _Unavailable(StoreUnavailable):
    """StoreUnavailable with the AWS error code, for the cases this module handles itself."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


__all__: list[str] = [
    "DIMENSION_COLUMNS",
    "METRICS",
    "METRICS_BY_NAME",
    "CloudWatchMetric",
    "CloudWatchStore",
    "Series",
    "aggregate",
    "emf_documents",
    "log_requests",
    "metric_requests",
    "records",
]
