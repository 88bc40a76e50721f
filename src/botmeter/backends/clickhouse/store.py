"""ClickHouse as a store: a server over HTTP, or the embedded engine in the bot's own process.

``clickhouse://[user[:password]@]host[:port]/database[?secure=true&verify=false&ca_cert=PATH...]``
talks to a server (or ClickHouse Cloud) over its HTTP interface through ``clickhouse-connect``;
the password may come from ``CLICKHOUSE_PASSWORD`` instead of the URL, and never appears in a log
line, an error or ``store.url``. ``chdb:///abs/path`` and ``chdb://relative/path`` run the same
client on the embedded engine (``chdb``), keeping its data in that folder.

A write is one insert into ``events``: the materialized views (``schema.py``) keep the rollups in
the same insert. Each event is stored once:

* a batch carries ``insert_deduplication_token``, a hash of its event ids, so a batch sent again
  (its answer lost in a timeout, a replay from the spool, two processes replaying the same spool
  file) is dropped by the server, and by the views with it;
* a batch that is not the writer's first attempt at ids it just made is first filtered: the event
  ids already stored in its time range are left out, so an event written again in a later batch,
  alone or among new ones, is stored once.

Both hold for several processes and machines writing to one server. Two processes inserting a
batch each that share an event id at the same moment (only ids the bot chose can be shared: a
retried webhook handled by two workers) could both pass the filter; such ids are rare, and the
insert tokens still drop whole repeats.

The embedded engine keeps one folder per process: a second process cannot open a ``chdb://``
folder while the first holds it. A bot keeps the engine open between writes and lets go of it when
it has been idle for ``idle_hold`` seconds (default 1; ``release``), so a CLI command in another
process gets in between writes, as with a DuckDB file; several bot processes share a server
(``clickhouse://``), not a folder. Opening the engine costs 80–200 ms (more on a bigger store)
and its first statements run cold, so back-to-back reads (the query service's requests) reuse it.
A process that waits for the folder says so (a note in ``<folder>.readers/``, as for a DuckDB
file), and the holder lets go at once when idle.

Failures: a server that refuses connections, times out, answers 5xx, has too many parts or is
read-only is tried again with backoff (``retries``, default 2, from 0.2 s doubling) and then
``StoreUnavailable`` (the writer spools the batch and replays it in order). An authentication
failure is not retried (it will not pass by itself) but spools the same way. An error about the
batch's content raises ``StoreError``, and the writer sets the events at fault aside.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from ...events import CALLER_KEYS, COLUMNS
from ...exceptions import ConfigError, SchemaError, StoreError, StoreUnavailable
from ...store.waiting import WaitingRoom
from ..duckdb.rollups import DEFAULT_SESSION_GAP_S
from . import schema, upkeep

log = logging.getLogger("botmeter")

CALLER_KEY_WINDOW = timedelta(days=7)
_ID_CHUNK = 20_000  # stored ids looked up per query (each id is ~40 bytes of SQL)
_BACKOFF_S = 0.2
_INSERT_SETTINGS = {
    "insert_deduplicate": 1,
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    # An insert is one part per month it spans: never split by size, so a repeat is the same blocks.
    "max_insert_block_size": 100_000_000,
    "min_insert_block_size_rows": 0,
    "min_insert_block_size_bytes": 0,
    # On a cluster (a Distributed events table): the insert reaches the shards before it answers,
    # token included, so a retry is dropped there and the next write's id check sees the events.
    "distributed_foreground_insert": 1,
    # A NULL where none may be (event_id, ts, kind) refuses the batch, as DuckDB's NOT NULL does,
    # rather than storing the type's default.
    "input_format_null_as_default": 0,
}
# Server error codes that will not pass by themselves: authentication, and the batch's content (a
# value that does not fit its column). Anything else (timeouts, too many parts, memory, a read-only
# replica, Keeper, a 5xx without a code) may pass: tried again, then spooled.
_AUTH_CODES = {192, 193, 194, 195, 497, 516}
_BAD_BATCH_CODES = {6, 27, 38, 41, 53, 69, 70, 72, 117, 131, 190, 349}
_CODE = re.compile(r"(?:Code:|error code)\s*(\d+)")
_HTTP_STATUS = re.compile(r"response code\s*(\d{3})|HTTP (?:status )?(\d{3})")

# The URL's numeric options and their defaults: (whole number, default).
_NUMBER_OPTIONS = {
    "retries": (True, 2),
    "connect_timeout": (False, 5.0),
    "send_receive_timeout": (False, 10.0),
    "idle_hold": (False, 1.0),
}
_URL_OPTIONS = {
    "secure",
    "verify",
    "ca_cert",
    "client_cert",
    "client_cert_key",
    "server_host_name",
    "database",
    "compress",
    *_NUMBER_OPTIONS,
}


# An idle engine kept open looks this often whether its hold is over or another process waits for
# its folder.
_IDLE_CHECK_S = 0.05
# Stores of this process keeping their embedded engine open while idle.
_KEPT_OPEN: weakref.WeakSet[ClickHouseStore] = weakref.WeakSet()


def _number_options(options: dict[str, str], url: str) -> dict[str, float]:
    """The URL's numeric options, each a finite number >= 0 (a whole one for ``retries``), checked
    when the store is made: a bad one is named with its value."""
    out: dict[str, float] = {}
    for name, (whole, default) in _NUMBER_OPTIONS.items():
        text = options.get(name)
        if text is None:
            out[name] = default
            continue
        try:
            value = int(text) if whole else float(text)
            good = 0 <= value < float("inf")  # (NaN is not)
        except ValueError:
            good = False
        if not good:
            what = "a whole number >= 0" if whole else "seconds >= 0"
            raise ConfigError(f"store URL {redact(url)!r}: {name} must be {what}, not {text!r}")
        out[name] = value
    return out


def parse_url(url: str) -> dict[str, Any]:
    """The connection a store URL names (``clickhouse://`` or ``chdb://``), password included."""
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(options) - _URL_OPTIONS)
    if unknown:
        raise ConfigError(
            f"store URL {redact(url)!r}: unknown option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(_URL_OPTIONS))}"
        )
    conn: dict[str, Any] = {"scheme": parts.scheme, "options": options}
    if parts.scheme == "chdb":
        where = unquote((parts.netloc or "") + parts.path)  # chdb://rel/path: netloc is its first part
        if not where:
            raise ConfigError(
                f"store URL {url!r} names no folder; use chdb:///abs/path or chdb://relative/path"
            )
        conn["path"] = Path(where).expanduser().absolute()
        conn["database"] = options.get("database") or "default"
        return conn
    if not parts.hostname:
        raise ConfigError(f"store URL {redact(url)!r} names no host; use clickhouse://host:8123/database")
    secure = options.get("secure", "false").lower() in ("1", "true", "yes")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"store URL {redact(url)!r}: the port is not a number") from exc
    conn.update(
        host=parts.hostname,
        port=port or (8443 if secure else 8123),
        secure=secure,
        username=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else os.environ.get("CLICKHOUSE_PASSWORD", ""),
        database=(unquote(parts.path.strip("/")) or options.get("database") or "default"),
    )
    return conn


def redact(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class ClickHouseStore:
    """Events in ClickHouse: a server (``clickhouse://``) or the embedded engine (``chdb://``)."""

    # One insert per batch: a ClickHouse part per month it spans. Big batches make few parts.
    preferred_batch_rows = 245_760

    def __init__(
        self,
        url: str,
        *,
        lock_timeout: float = 5.0,
        retries: int | None = None,
        session_gap_s: int | None = None,
        **_: Any,
    ) -> None:
        self._conn = parse_url(url)
        self._password = self._conn.get("password") or ""
        self.url = redact(url)
        options = self._conn["options"]
        self._numbers = _number_options(options, url)
        self.retries = int(self._numbers["retries"]) if retries is None else retries
        self.lock_timeout = lock_timeout
        self.idle_hold = self._numbers["idle_hold"]
        self.embedded = self._conn["scheme"] == "chdb"
        self.path: Path | None = self._conn.get("path")
        self.database: str = self._conn["database"]
        self._client: Any = None
        self._lock = threading.RLock()
        self._idle_since: float | None = None  # the embedded engine's, while kept open unused
        self._keeper: threading.Thread | None = None
        # Where other processes waiting for the folder say so (the embedded engine only).
        self._waiting: WaitingRoom | None = None if self.path is None else WaitingRoom(self.path)
        self._migrated = False
        self._database_seen = False
        # None: keep the gap the stored sessions were built with (readers never rebuild them).
        self.session_gap_s = session_gap_s
        self._gap_s = DEFAULT_SESSION_GAP_S

    # -- connection -----------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***").replace(quote(self._password, safe=""), "***")
        return text

    def _where(self) -> str:
        if self.embedded:
            return str(self.path)
        return f"{self._conn['host']}:{self._conn['port']}/{self.database}"

    def _open(self) -> Any:
        if self._client is not None:
            return self._client
        try:
            import clickhouse_connect
        except ImportError as exc:  # pragma: no cover - the extra is not installed
            raise ConfigError(
                f"{self.url}: ClickHouse stores need the clickhouse extra: pip install 'botmeter[clickhouse]'"
            ) from exc
        options = self._conn["options"]
        if self.embedded:
            self._client = self._open_embedded(clickhouse_connect)
        else:
            kwargs: dict[str, Any] = {
                "host": self._conn["host"],
                "port": self._conn["port"],
                "username": self._conn["username"],
                "password": self._password,
                "secure": self._conn["secure"],
                "connect_timeout": self._numbers["connect_timeout"],
                # A hung server holds the writer (never the bot) for at most about (retries + 1) times
                # this before the batch is spooled; one batch's insert takes well under it.
                "send_receive_timeout": self._numbers["send_receive_timeout"],
                # Requests run on the writer's thread and a reader's at once: no shared session.
                "autogenerate_session_id": False,
                "compress": options.get("compress", "lz4"),
            }
            if "verify" in options:
                kwargs["verify"] = options["verify"].lower() not in ("0", "false", "no")
            for name in ("ca_cert", "client_cert", "client_cert_key", "server_host_name"):
                if name in options:
                    kwargs[name] = options[name]
            try:
                client = clickhouse_connect.get_client(**kwargs)
            except Exception as exc:
                raise self._mapped(exc, "connect") from exc
            self._client = client
        try:
            # Only when missing: a user that may only insert (the tables made by `botmeter clickhouse
            # ddl`) may not create databases either. Looked at once: the embedded engine is opened
            # again after every pause in writing, and the two statements cost about 0.13 s there.
            name = schema.quote_name(self.database)
            if not self._database_seen and not int(self._client.command(f"EXISTS DATABASE {name}")):
                self._client.command(f"CREATE DATABASE IF NOT EXISTS {name}")
            self._database_seen = True
            self._client.database = self.database
        except Exception as exc:
            self._drop_client()
            raise self._mapped(exc, "open the database") from exc
        return self._client

    def _open_embedded(self, clickhouse_connect: Any) -> Any:
        assert self.path is not None
        # The engine opens one folder per process: another store here that keeps its engine open
        # while idle lets go of it first.
        for other in list(_KEPT_OPEN):
            if other is not self and other.path != self.path:
                other._let_go_if_idle()
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.01
        with contextlib.ExitStack() as stack:
            noted = False
            while True:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    # No query log: nobody reads the embedded engine's, and keeping it cost a cold
                    # dashboard's hundred statements about a second (BENCHMARKS.md).
                    return clickhouse_connect.get_client(
                        interface="chdb", path=str(self.path), settings={"log_queries": 0}
                    )
                except Exception as exc:
                    # Another process holds the folder (the engine locks it): wait for it, briefly,
                    # with a note in its waiting room for a holder that keeps it open while idle.
                    if time.monotonic() >= deadline:
                        raise StoreUnavailable(f"cannot open {self.path}: {self._scrub(str(exc))}") from exc
                    if not noted:
                        stack.enter_context(self._waiting.waiting())
                        noted = True
                time.sleep(pause)
                pause = min(pause * 2, 0.2)

    def reader_client(self, client: Any) -> Any:
        """A client for reads on another thread while ``client`` (this store's, from ``client()``)
        is open: a server's client takes requests from several threads; the embedded engine's runs
        one query at a time, so another client of the same engine (about 9 ms to make)."""
        if not self.embedded:
            return client
        import clickhouse_connect

        client = clickhouse_connect.get_client(
            interface="chdb", path=str(self.path), settings={"log_queries": 0}
        )
        client.database = self.database
        return client

    def close_reader_client(self, client: Any) -> None:
        with contextlib.suppress(Exception):
            client.close()

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        self._idle_since = None
        _KEPT_OPEN.discard(self)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _migrate(self, client: Any) -> None:
        if self._migrated:
            return
        current = self._stored_version(client)
        if current > schema.SCHEMA_VERSION:
            raise SchemaError(
                f"{self._where()} has schema version {current}, newer than this botmeter's "
                f"{schema.SCHEMA_VERSION}; upgrade botmeter"
            )
        if current < schema.SCHEMA_VERSION:
            client.command(schema.META_DDL.format(on="", engine="ReplacingMergeTree(updated)"))
            for version in range(current + 1, schema.SCHEMA_VERSION + 1):
                for statement in schema.MIGRATIONS[version]:
                    if callable(statement):
                        statement(client)
                    else:
                        client.command(statement)
            client.command(
                f"INSERT INTO botmeter_meta (key, value) VALUES ('schema_version', '{schema.SCHEMA_VERSION}')"
            )
        stored = upkeep.session_gap(client)
        self._gap_s = DEFAULT_SESSION_GAP_S if stored is None else stored
        if self.session_gap_s is not None and self.session_gap_s != stored:
            # Sessions split at another gap now: built again once.
            upkeep.rebuild_sessions(client, self.session_gap_s)
            self._gap_s = self.session_gap_s
        self._migrated = True

    def _stored_version(self, client: Any) -> int:
        if not int(client.command("EXISTS TABLE botmeter_meta")):
            return 0
        value = client.command(
            "SELECT argMax(value, updated) FROM botmeter_meta WHERE key = 'schema_version'"
        )
        return int(value) if value not in (None, "") else 0

    @contextlib.contextmanager
    def client(self, migrate: bool = True) -> Iterator[Any]:
        """The clickhouse-connect client, opened (and the tables made) on first use."""
        with self._lock:
            self._idle_since = None
            client = self._open()
            try:
                if migrate:
                    self._migrate(client)
                yield client
            except StoreError:
                raise
            except Exception as exc:
                raise self._mapped(exc, "query", blame_batch=False) from exc

    # -- errors ---------------------------------------------------------------------------------

    def _mapped(self, exc: BaseException, doing: str, blame_batch: bool = False) -> StoreError:
        kind = classify(exc)
        if kind == "bad_batch" and not blame_batch:
            kind = "transient"  # only the insert itself can be refused for the batch's content
        first = self._scrub(" ".join(str(exc).split()))[:500]
        text = f"{self.url}: cannot {doing}: {first}"
        if kind == "bad_batch":
            return StoreError(text)
        if kind == "auth":
            return StoreUnavailable(
                f"{self.url}: authentication failed (check the user and CLICKHOUSE_PASSWORD): {first}"
            )
        return StoreUnavailable(text)

    # -- the seam -------------------------------------------------------------------------------

    def write(self, batch: pa.Table, *, fresh: bool = False, keep_open: bool = False) -> int:
        """Inserts the batch, minus event ids already stored (unless ``fresh``), in one insert."""
        if batch.num_rows == 0:
            return 0
        caller_keys = CALLER_KEYS in (batch.schema.metadata or {})
        batch = _ordered(batch)
        if not fresh or caller_keys:
            batch = self._unstored(batch, caller_keys)
            if batch.num_rows == 0:
                return 0
        token = _token(batch)
        settings = {**_INSERT_SETTINGS, "insert_deduplication_token": token}
        pause = _BACKOFF_S
        attempt = 0
        while True:
            try:
                with self.client() as client:
                    try:
                        client.insert_arrow("events", _for_insert(batch), settings=settings)
                    except Exception as exc:
                        raise self._mapped(exc, "insert", blame_batch=True) from exc
                    self._keep(client, batch, token)
                return batch.num_rows
            except StoreError as exc:
                cause = exc.__cause__
                transient = cause is None or classify(cause) == "transient"
                if isinstance(exc, SchemaError) or not isinstance(exc, StoreUnavailable) or not transient:
                    raise
                if attempt >= self.retries:
                    raise
                attempt += 1
                log.info("botmeter: %s; trying again in %.1fs", exc, pause)
                if not self.embedded:
                    self._drop_client()  # a fresh connection for the next try
                time.sleep(pause)
                pause *= 2

    def _keep(self, client: Any, batch: pa.Table, token: str) -> None:
        """The writer's own upkeep over the events just stored (``upkeep.py``), once per batch (a
        batch sent again was dropped by the server). The events are stored whatever happens here:
        a failure leaves the kept figures short, which readers see and answer from the events."""
        try:
            upkeep.add_once(client, batch, self._gap_s, token)
        except Exception as exc:
            text = self._scrub(str(exc))
            log.warning("botmeter: %s: sessions, turns and daily percentiles not kept up: %s", self.url, text)

    def _unstored(self, batch: pa.Table, caller_keys: bool) -> pa.Table:
        """The batch without ids stored already, or repeated in it (the first of each is kept)."""
        ids = _id_bytes(batch)
        if pc.count_distinct(ids).as_py() != batch.num_rows:
            seen: set[bytes] = set()
            first = []
            for i, value in enumerate(ids.to_pylist()):
                if value not in seen:
                    seen.add(value)
                    first.append(i)
            batch = batch.take(pa.array(first, pa.int64()))
            ids = _id_bytes(batch)
        bounds = pc.min_max(batch.column("ts"))
        lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
        if caller_keys:
            # Ids the bot chose (a retried webhook) may repeat with a later ts: look further back.
            lo, hi = lo - CALLER_KEY_WINDOW, hi + CALLER_KEY_WINDOW
        stored: list[pa.Array] = []
        uuids = [_uuid_text(v) for v in ids.to_pylist()]
        with self.client() as client:
            if not int(client.command("SELECT count() FROM events LIMIT 1") or 0):
                return batch
            for start in range(0, len(uuids), _ID_CHUNK):
                chunk = uuids[start : start + _ID_CHUNK]
                listed = ",".join(f"'{u}'" for u in chunk)
                found = client.query_arrow(
                    "SELECT event_id FROM events WHERE ts BETWEEN {lo:DateTime64(6)} AND {hi:DateTime64(6)} "
                    f"AND event_id IN ({listed})",
                    parameters={"lo": lo, "hi": hi},
                    settings={"max_query_size": 64 * len(chunk) + 4096},
                )
                column = found.column("event_id")
                if len(column):
                    stored.extend(_storage(chunk) for chunk in column.chunks)
        if not stored:
            return batch
        known = pa.concat_arrays(stored)
        return batch.filter(pc.invert(pc.is_in(ids, value_set=known)))

    def count(self) -> int:
        if self.embedded and not self._exists():
            return 0
        with self.client(migrate=False) as client:
            if not int(client.command("EXISTS TABLE events")):
                return 0
            return int(client.command("SELECT count() FROM events"))

    def last_event_at(self) -> datetime | None:
        """When the newest event happened (botmeter's own system events and times more than a day
        ahead aside)."""
        if self.embedded and not self._exists():
            return None
        latest = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None)
        with self.client(migrate=False) as client:
            if not int(client.command("EXISTS TABLE events")):
                return None
            rows = client.query(
                "SELECT max(ts), count() FROM events WHERE kind <> 'system' AND ts <= {latest:DateTime64(6)}",
                parameters={"latest": latest},
            ).result_rows
        newest, n = rows[0]
        if not n or not isinstance(newest, datetime):
            return None
        return newest.replace(tzinfo=UTC) if newest.tzinfo is None else newest.astimezone(UTC)

    def count_since(self, since: datetime) -> int:
        """Events with ``ts >= since``."""
        with self.client(migrate=False) as client:
            if not int(client.command("EXISTS TABLE events")):
                return 0
            return int(
                client.command(
                    "SELECT count() FROM events WHERE ts >= {since:DateTime64(6)}",
                    parameters={
                        "since": since.astimezone(UTC).replace(tzinfo=None) if since.tzinfo else since
                    },
                )
            )

    def _exists(self) -> bool:
        return self.path is not None and self.path.exists()

    def summary(self) -> dict[str, Any]:
        """What ``botmeter status`` shows: events, first and last, by kind, dropped, size, schema."""
        info: dict[str, Any] = {"exists": False}
        if self.embedded and not self._exists():
            return info
        with self.client(migrate=False) as client:
            if not int(client.command("EXISTS TABLE events")):
                return info
            info["exists"] = True
            info["schema_version"] = self._stored_version(client)
            total, first, last = client.query("SELECT count(), min(ts), max(ts) FROM events").result_rows[0]
            info["events"] = int(total)
            info["first_event"] = first.replace(tzinfo=None).isoformat(" ") if total else None
            info["last_event"] = last.replace(tzinfo=None).isoformat(" ") if total else None
            info["by_kind"] = dict(
                client.query("SELECT kind, count() FROM events GROUP BY kind ORDER BY 2 DESC").result_rows
            )
            info["dropped_events_recorded"] = int(
                client.command(
                    "SELECT toInt64(sum(coalesce(units, 0))) FROM events WHERE kind = 'system' AND "
                    "name = 'dropped'"
                )
                or 0
            )
        info["size_bytes"] = self.size_bytes()
        return info

    def size_bytes(self, table: str | None = None) -> int:
        """Bytes on disk of botmeter's tables (or one of them), compressed, as the engine counts."""
        where = "" if table is None else " AND table = {table:String}"
        with self.client(migrate=False) as client:
            value = client.command(
                "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = currentDatabase()"
                + where,
                parameters={"table": table} if table else None,
            )
        return int(value or 0)

    def read_events(
        self, since: datetime | None = None, after: tuple[datetime, bytes] | None = None, limit: int = 100_000
    ) -> pa.Table:
        """Up to ``limit`` events in (ts, event_id) order, from ``since`` and after the ``after`` key,
        with the columns and types of a processed batch (for ``botmeter copy``)."""
        from ...events import EVENT_SCHEMA as SCHEMA

        conditions = ["1"]
        params: dict[str, Any] = {}
        if since is not None:
            conditions.append("ts >= {since:DateTime64(6)}")
            params["since"] = since.replace(tzinfo=None)
        if after is not None:
            conditions.append("(ts, event_id) > ({ts:DateTime64(6)}, toUUID({id:String}))")
            params["ts"], params["id"] = after[0].replace(tzinfo=None), _uuid_text(after[1])
        columns = ", ".join(
            f"toNullable(toString({name})) AS {name}"
            if (name in schema._LOW_CARDINALITY or name == "kind")
            else name
            for name in COLUMNS
        )
        with self.client(migrate=False) as client:
            if not int(client.command("EXISTS TABLE events")):
                return SCHEMA.empty_table()
            table = client.query_arrow(
                f"SELECT {columns} FROM events WHERE {' AND '.join(conditions)} ORDER BY ts, event_id "
                f"LIMIT {int(limit)}",
                parameters=params,
            )
        return _as_batch(table, SCHEMA)

    def default_spool_dir(self) -> Path:
        return self._local_base().with_name(self._local_base().name + ".spool")

    def default_key_path(self) -> Path:
        return self._local_base().with_name(self._local_base().name + ".key")

    def _local_base(self) -> Path:
        if self.path is not None:
            return self.path
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        stem = re.sub(
            r"[^A-Za-z0-9._-]", "_", f"clickhouse-{self._conn['host']}-{self._conn['port']}-{self.database}"
        )
        return Path(cache) / "botmeter" / stem

    def release(self, *, at_once: bool = False) -> None:
        """Nothing of this process uses the store now: the embedded engine lets go of its folder
        once it has been idle for ``idle_hold`` seconds, or at once when another process waits
        for it (or ``at_once``); a server's connections stay pooled."""
        if not self.embedded or self._client is None:
            return
        with self._lock:
            if at_once or self.idle_hold <= 0 or self._waiting.anyone_waiting():
                self._drop_client()
                return
            self._idle_since = time.monotonic()
            _KEPT_OPEN.add(self)
            if self._keeper is None:  # (a keeper says it stops under this lock: none is missed)
                self._keeper = threading.Thread(
                    target=self._hold_while_idle, name="botmeter-chdb-idle", daemon=True
                )
                self._keeper.start()

    def _hold_while_idle(self) -> None:
        """Lets go of the idle engine after ``idle_hold`` seconds, or as soon as another process
        waits for the folder; ends when the engine is in use again or let go."""
        while True:
            idle_since = self._idle_since
            left = _IDLE_CHECK_S if idle_since is None else idle_since + self.idle_hold - time.monotonic()
            time.sleep(min(_IDLE_CHECK_S, max(0.005, left)))
            # Not while a read or a write holds the lock: it is in use, and idle again after.
            if not self._lock.acquire(blocking=False):
                continue
            try:
                if self._client is not None and self._idle_since is not None:
                    waited_for = self._waiting.anyone_waiting()
                    if time.monotonic() - self._idle_since < self.idle_hold and not waited_for:
                        continue
                    self._drop_client()
                self._keeper = None
                return
            finally:
                self._lock.release()

    def _let_go_if_idle(self) -> None:
        if self._lock.acquire(blocking=False):
            try:
                if self._idle_since is not None:
                    self._drop_client()
            finally:
                self._lock.release()

    def before_fork(self) -> None:
        self.release(at_once=True)

    def after_fork(self) -> None:
        # The parent's connections and engine are not the child's: open afresh on first use.
        self._client = None
        self._lock = threading.RLock()
        self._idle_since = None
        self._keeper = None

    def close(self) -> None:
        with self._lock:
            self._drop_client()

    def __repr__(self) -> str:
        return f"ClickHouseStore({self.url!r})"


def classify(exc: BaseException) -> str:
    """``transient`` (try again soon), ``auth`` (will not pass by itself) or ``bad_batch`` (the
    batch's content is refused)."""
    text = str(exc)
    match = _CODE.search(text)
    if match:
        code = int(match.group(1))
        if code in _AUTH_CODES:
            return "auth"
        if code in _BAD_BATCH_CODES:
            return "bad_batch"
        return "transient"
    status = _HTTP_STATUS.search(text)
    if status:
        value = int(status.group(1) or status.group(2))
        if value in (401, 403):
            return "auth"
    return "transient"


def _ordered(batch: pa.Table) -> pa.Table:
    """The columns in stored order, without schema metadata (the server need not see it)."""
    if batch.schema.names != list(COLUMNS):
        batch = batch.select(list(COLUMNS))
    return batch.replace_schema_metadata(None)


def _for_insert(batch: pa.Table) -> pa.Table:
    """The batch as sent: the LowCardinality columns dictionary-encoded, which the engine reads
    as they are stored (a fifth less work per insert, measured) instead of hashing every string."""
    # One record batch, not the writer's many chunks: the Arrow message the client writes is then
    # one block with one dictionary per column, which both the client and the engine read faster.
    batch = batch.combine_chunks()
    columns = [
        pc.dictionary_encode(batch.column(name)) if name in schema.DICTIONARY_COLUMNS else batch.column(name)
        for name in batch.column_names
    ]
    return pa.table(columns, names=batch.column_names)


def _storage(array: Any) -> pa.Array:
    return array.storage if isinstance(array, pa.ExtensionArray) else array


def _id_bytes(batch: pa.Table) -> pa.Array:
    column = batch.column("event_id")
    chunks = [_storage(chunk) for chunk in column.chunks]
    if not chunks:
        return pa.array([], pa.binary(16))
    return pa.concat_arrays(chunks).cast(pa.binary(16))


def _uuid_text(value: bytes) -> str:
    h = value.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _token(batch: pa.Table) -> str:
    """The same events make the same token: a hash of their ids, in order."""
    digest = hashlib.blake2b(digest_size=20)
    for chunk in _id_bytes(batch).buffers()[1:]:
        if chunk is not None:
            digest.update(chunk)
    digest.update(str(batch.num_rows).encode())
    return digest.hexdigest()


def _as_batch(table: pa.Table, target: pa.Schema) -> pa.Table:
    """Arrow from ClickHouse (UTC timestamps, dictionaries, UUID) as a processed batch's columns."""
    arrays = []
    for field in target:
        column = table.column(field.name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if isinstance(field.type, pa.ExtensionType):
            storage = (
                pa.chunked_array([_storage(c) for c in column.chunks], pa.binary(16))
                if column.num_chunks
                else pa.chunked_array([], pa.binary(16))
            )
            column = pa.chunked_array(
                [pa.ExtensionArray.from_storage(field.type, c.cast(pa.binary(16))) for c in storage.chunks],
                field.type,
            )
        else:
            column = column.cast(field.type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=target)
