"""The collector as users run it: `botmeter serve` in its own process on 127.0.0.1, remote Meters in
other processes (`Meter(store="http://...")`), a real DuckDB file behind it. The server is killed
with SIGKILL mid-stream and its store is made read-only under it; what was acknowledged must be
stored, and what was not must come back from the clients' spools."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from collector_server import CollectorProcess, botmeter_env, create_token
from tmpfs import remount, tmpfs

pytestmark = pytest.mark.slow

# Each client process tracks `n` messages with its own conversation id and a sequence number, then
# flushes and closes, and prints what flush() said and its stats.
CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from botmeter import Meter
    name, n, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    meter = Meter(bot="dadacat", store=sys.argv[4], flush_interval=0.05, batch_size=200)
    for i in range(n):
        meter.track_message(direction="in", user=f"user-{i % 7}", conversation=name, properties={"seq": i})
        if pause and i % 100 == 99:
            time.sleep(pause)
    flushed = meter.flush(timeout=60)
    # What the collector did not take waits in the spool; each flush replays it (a bot would go on).
    deadline = time.monotonic() + float(sys.argv[5])
    while meter.stats()["spool_events"] and time.monotonic() < deadline:
        time.sleep(0.2)
        flushed = meter.flush(timeout=60) and flushed
    stats = meter.stats()
    print(json.dumps({"flushed": flushed, "spooled": stats["spooled"], "replayed": stats["replayed"],
                      "dropped": stats["dropped"], "spool_events": stats["spool_events"]}))
    meter.close()
    """
)


def _client(
    name: str, n: int, url: str, token: str, spool: Path, pause: float = 0.0, wait_for_spool: float = 60.0
) -> subprocess.Popen:
    env = botmeter_env(
        BOTMETER_TOKEN=token,
        BOTMETER_SPOOL_DIR=str(spool / name),
        BOTMETER_HASH_KEY="00112233445566778899aabbccddeeff",
    )
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT, name, str(n), str(pause), url, str(wait_for_spool)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 120) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def _accepted(server: CollectorProcess) -> int:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith("botmeter_server_accepted_events_total "):
            return int(float(line.split()[1]))
    return 0


def _wait_for_accepted(server: CollectorProcess, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _accepted(server) < n:
        assert time.monotonic() < deadline, f"the server acknowledged fewer than {n} events"
        time.sleep(0.05)


def _stored(path: Path) -> dict[str, list[int]]:
    """Sequence numbers stored per client (conversation), in order, duplicates kept; none while
    the file has no events table yet (a server killed before its first write holds all it
    acknowledged in its spool)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'events'").fetchall()
        if not tables[0][0]:
            return {}
        rows = con.execute(
            "SELECT conversation_id, CAST(json_extract(properties, '$.seq') AS INTEGER) FROM events "
            "WHERE kind = 'message' ORDER BY 1, 2"
        ).fetchall()
    finally:
        con.close()
    out: dict[str, list[int]] = {}
    for conversation, seq in rows:
        out.setdefault(conversation, []).append(seq)
    return out


def _spooled(spool: Path) -> dict[str, list[int]]:
    """Sequence numbers per client in the server's spool files (Arrow IPC), as ``_stored``."""
    import pyarrow.ipc as ipc

    out: dict[str, list[int]] = {}
    for path in sorted(spool.glob("*.arrow")):
        table = ipc.open_stream(path.read_bytes()).read_all()
        for row in table.select(["kind", "conversation_id", "properties"]).to_pylist():
            if row["kind"] == "message":
                out.setdefault(row["conversation_id"], []).append(json.loads(row["properties"])["seq"])
    return out


def test_remote_meters_in_several_processes_store_each_event_once(tmp_path: Path) -> None:
    db = tmp_path / "collector.duckdb"
    store = f"duckdb://{db}"
    token = create_token(store, "dadacat", "ingest")
    with CollectorProcess(store, "--rate-limit", "0").start(tmp_path / "server.log") as server:
        clients = {
            f"replica-{k}": _client(f"replica-{k}", 3000, server.url, token, tmp_path) for k in range(4)
        }
        results = {name: _finish(p) for name, p in clients.items()}
    assert all(r["flushed"] and r["dropped"] == 0 for r in results.values()), results
    stored = _stored(db)
    assert sorted(stored) == sorted(clients)
    for name in clients:
        assert stored[name] == list(range(3000)), name
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute(
        "SELECT count(*) = count(DISTINCT event_id), min(bot), max(bot) FROM events"
    ).fetchone() == (
        True,
        "dadacat",
        "dadacat",
    )


def test_server_killed_mid_stream_loses_nothing_acknowledged_and_clients_replay_the_rest(
    tmp_path: Path,
) -> None:
    db = tmp_path / "collector.duckdb"
    store = f"duckdb://{db}"
    token = create_token(store, "dadacat", "ingest")
    server = CollectorProcess(store, "--rate-limit", "0").start(tmp_path / "server.log")
    try:
        clients = {
            f"stream-{k}": _client(f"stream-{k}", 4000, server.url, token, tmp_path, pause=0.02)
            for k in range(3)
        }
        _wait_for_accepted(server, 2000)  # the clients are mid-stream
        server.kill()
        # Everything the dead server answered 202 for is in the file, or in its fsynced spool
        # (held there while the store was busy with the previous write).
        acknowledged = _stored(db)
        for name, seqs in _spooled(db.with_name(db.name + ".spool")).items():
            acknowledged.setdefault(name, []).extend(seqs)
        assert sum(len(v) for v in acknowledged.values()) > 0
        time.sleep(1.0)  # the clients fail meanwhile and spool
        server.start(tmp_path / "server.log")
        results = {name: _finish(p) for name, p in clients.items()}
    finally:
        server.stop()
    assert all(r["flushed"] and r["dropped"] == 0 for r in results.values()), results
    assert any(r["spooled"] > 0 for r in results.values()), "the outage was never seen by a client"
    stored = _stored(db)
    for name in clients:
        assert stored[name] == list(range(4000)), name  # each once, none missing
        assert set(acknowledged.get(name, [])) <= set(stored[name])


def test_store_failing_behind_the_server_spools_there_and_replays(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with tmpfs(disk, "64m"):
        db = disk / "collector.duckdb"
        store = f"duckdb://{db}"
        token = create_token(store, "dadacat", "ingest")
        spool = tmp_path / "server-spool"  # elsewhere: the server's spool survives its store's disk
        server = CollectorProcess(
            store, "--rate-limit", "0", env={"BOTMETER_SPOOL_DIR": str(spool), "BOTMETER_LOCK_TIMEOUT": "1"}
        )
        with server.start(tmp_path / "server.log"):
            events = [
                {"kind": "custom", "name": "tick", "value": i, "event_id": f"tick-{i}"} for i in range(50)
            ]
            headers = {"Authorization": f"Bearer {token}"}
            first = httpx.post(f"{server.url}/v1/events", json={"events": events[:10]}, headers=headers)
            assert first.status_code == 202
            remount(disk, "ro")
            clients = {
                f"ro-{k}": _client(f"ro-{k}", 1500, server.url, token, tmp_path, pause=0.01) for k in range(2)
            }
            answers = [
                httpx.post(
                    f"{server.url}/v1/events",
                    json={"events": events[i : i + 10]},
                    headers=headers,
                    timeout=30,
                )
                for i in range(10, 50, 10)
            ]
            assert [a.status_code for a in answers] == [202] * 4  # durable in the server's spool
            health = httpx.get(f"{server.url}/healthz").json()
            assert health["store_reachable"] is False and health["spool_events"] >= 40
            remount(disk, "rw")
            results = {name: _finish(p) for name, p in clients.items()}
            deadline = time.monotonic() + 30
            while httpx.get(f"{server.url}/healthz").json()["spool_events"] and time.monotonic() < deadline:
                time.sleep(0.2)
            metrics = httpx.get(f"{server.url}/metrics").text
        assert all(r["flushed"] for r in results.values()), results
        assert "botmeter_server_spooled_events_total 0" not in metrics
        stored = _stored(db)
        for name in clients:
            assert stored[name] == list(range(1500)), name
        con = duckdb.connect(str(db), read_only=True)
        values = [
            v
            for (v,) in con.execute(
                "SELECT CAST(units AS INTEGER) FROM events WHERE name = 'tick' ORDER BY 1"
            ).fetchall()
        ]
        con.close()
        assert values == list(range(50))


def test_sigterm_finishes_requests_in_flight_and_flushes(tmp_path: Path) -> None:
    db = tmp_path / "collector.duckdb"
    store = f"duckdb://{db}"
    token = create_token(store, "dadacat", "ingest")
    server = CollectorProcess(store, "--rate-limit", "0", "--log-format", "json").start(
        tmp_path / "server.log"
    )
    headers = {"Authorization": f"Bearer {token}"}
    batches = [
        {"events": [{"kind": "custom", "name": "n", "value": i, "event_id": f"{b}-{i}"} for i in range(1000)]}
        for b in range(20)
    ]
    answered: list[int] = []

    def send(batch: dict) -> None:
        try:
            answered.append(
                httpx.post(f"{server.url}/v1/events", json=batch, headers=headers, timeout=30).status_code
            )
        except httpx.TransportError:
            answered.append(0)  # refused once the server stopped listening: not acknowledged

    import threading

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    _wait_for_accepted(server, 1000)  # the stream has begun: some answered, more in flight
    # uvicorn ends by the signal it caught, once the shutdown is done.
    assert server.stop() in (0, -signal.SIGTERM)
    for t in threads:
        t.join()
    assert 202 in answered
    stored = _rows_count(db)
    assert stored == 1000 * answered.count(202)  # every acknowledged batch, whole
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    assert any("collector stopped" in line["message"] for line in lines)
    assert any(line["message"].startswith("POST /v1/events 202 ") for line in lines)
    assert token not in server.logs() and token.split("_")[2] not in server.logs()


def _metric(server: CollectorProcess, name: str) -> int:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(f"botmeter_server_{name} "):
            return int(float(line.split()[1]))
    raise AssertionError(f"no {name} in /metrics")


def test_batches_answered_from_the_spool_while_the_store_writes_survive_sigkill_and_retries(
    tmp_path: Path,
) -> None:
    """Under load the collector answers 202 once a batch is in its fsynced spool (held for the
    store's next write). Killed with SIGKILL mid-stream, every batch answered 202 is in the file
    after the restart; clients retrying every batch then store nothing twice."""
    import concurrent.futures

    db = tmp_path / "collector.duckdb"
    store = f"duckdb://{db}"
    token = create_token(store, "dadacat", "ingest")
    headers = {"Authorization": f"Bearer {token}"}
    bodies = [
        json.dumps(
            {
                "events": [
                    {"kind": "custom", "name": f"b{b}", "value": i, "event_id": f"{b}-{i}"}
                    for i in range(1000)
                ]
            }
        ).encode()
        for b in range(300)
    ]
    server = CollectorProcess(store, "--rate-limit", "0").start(tmp_path / "server.log")
    answered: dict[int, int] = {}
    killed = threading.Event()

    def send(b: int) -> None:
        if killed.is_set():
            return
        try:
            with httpx.Client(timeout=30) as client:
                answered[b] = client.post(
                    f"{server.url}/v1/events", content=bodies[b], headers=headers
                ).status_code
        except httpx.TransportError:
            answered[b] = 0  # the server died first: not acknowledged

    def per_batch() -> dict[str, tuple[int, int]]:
        con = duckdb.connect(str(db), read_only=True)
        try:
            rows = con.execute(
                "SELECT name, count(*), count(DISTINCT event_id) FROM events GROUP BY 1"
            ).fetchall()
        finally:
            con.close()
        return {name: (n, distinct) for name, n, distinct in rows}

    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            sent = [pool.submit(send, b) for b in range(len(bodies))]
            deadline = time.monotonic() + 120
            while _metric(server, "spool_acknowledged_events_total") < 5000:
                assert time.monotonic() < deadline, "no batch was answered from the spool"
                time.sleep(0.02)
            server.kill()
            killed.set()
            for future in sent:
                future.result()
        acknowledged = sorted(b for b, status in answered.items() if status == 202)
        assert 0 < len(acknowledged) < len(bodies)
        server.start(tmp_path / "server.log")  # replays the spool the dead server left
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/healthz").json()["spool_events"] and time.monotonic() < deadline:
            time.sleep(0.1)
        server.stop()
        stored = per_batch()
        for b in acknowledged:
            assert stored.get(f"b{b}") == (1000, 1000), b
        server.start(tmp_path / "server.log")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            retried = list(
                pool.map(
                    lambda b: httpx.post(
                        f"{server.url}/v1/events", content=bodies[b], headers=headers, timeout=60
                    ),
                    range(len(bodies)),
                )
            )
        assert {a.status_code for a in retried} == {202}
    finally:
        server.stop()
    assert per_batch() == {f"b{b}": (1000, 1000) for b in range(len(bodies))}


def _rows_count(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        con.close()


def test_a_slow_client_gets_408(tmp_path: Path) -> None:
    import socket

    store = f"duckdb://{tmp_path / 'c.duckdb'}"
    token = create_token(store, "dadacat", "ingest")
    with CollectorProcess(store, "--read-timeout", "1").start(tmp_path / "server.log") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n".encode()
                + b'{"events": ['
            )
            started = time.monotonic()
            reply = sock.recv(4096).decode()
        assert reply.startswith("HTTP/1.1 408") and time.monotonic() - started < 5


def test_headers_dribbled_or_never_sent_get_408_and_the_connection_closed(tmp_path: Path) -> None:
    """A slow-headers client (one byte at a time, or a connection left silent) holds a connection
    slot no longer than --read-timeout; a normal request on another connection is served meanwhile."""
    import socket

    store = f"duckdb://{tmp_path / 'c.duckdb'}"
    with CollectorProcess(store, "--read-timeout", "1").start(tmp_path / "server.log") as server:
        head = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: "
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as dribbler,
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as silent,
        ):
            started = time.monotonic()
            reply = b""
            for byte in head + b"a" * 200:  # one byte every 50 ms: 10 s of headers, never finished
                try:
                    dribbler.sendall(bytes([byte]))
                except OSError:  # the server closed the connection
                    break
                if time.monotonic() - started > 0.5:
                    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
                dribbler.settimeout(0.05)
                try:
                    reply += dribbler.recv(4096)
                    if reply:
                        break
                except TimeoutError:
                    pass
            dribbler.settimeout(10)
            reply += _until_closed(dribbler)
            took = time.monotonic() - started
            assert reply.startswith(b"HTTP/1.1 408") and b"headers" in reply, reply
            assert 0.9 < took < 5
            silent_reply = _until_closed(silent)
            assert silent_reply.startswith(b"HTTP/1.1 408")


def _until_closed(sock) -> bytes:
    out = b""
    while chunk := sock.recv(4096):
        out += chunk
    return out


def test_a_remote_meter_with_another_bots_token_keeps_its_events_in_the_spool(tmp_path: Path) -> None:
    db = tmp_path / "collector.duckdb"
    store = f"duckdb://{db}"
    token = create_token(store, "otherbot", "ingest")
    with CollectorProcess(store).start(tmp_path / "server.log") as server:
        proc = _client("wrong-bot", 10, server.url, token, tmp_path, wait_for_spool=0)
        result = _finish(proc)
    assert result["flushed"] is True  # durable: in the local spool, waiting for a right token
    assert result["spool_events"] == 10 and result["dropped"] == 0
    assert not db.exists() or _rows_count(db) == 0


def test_two_workers_share_the_file_and_store_each_acknowledged_event_once(tmp_path: Path) -> None:
    import concurrent.futures

    db = tmp_path / "collector.duckdb"
    store = f"duckdb://{db}"
    token = create_token(store, "dadacat", "ingest")
    headers = {"Authorization": f"Bearer {token}"}
    with CollectorProcess(store, "--workers", "2", "--rate-limit", "0").start(
        tmp_path / "server.log"
    ) as server:

        def send(b: int) -> int:
            events = [{"kind": "custom", "name": "n", "value": i, "event_id": f"{b}-{i}"} for i in range(200)]
            with httpx.Client(timeout=60) as client:  # a connection each: both workers get requests
                return client.post(
                    f"{server.url}/v1/events", json={"events": events}, headers=headers
                ).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(40)))
            answers += list(pool.map(send, range(10)))  # retries of batches already stored
        assert answers == [202] * 50
        deadline = time.monotonic() + 30  # a worker that found the file busy spooled; it replays
        while httpx.get(f"{server.url}/healthz").json()["spool_events"] and time.monotonic() < deadline:
            time.sleep(0.2)
    assert _rows(db, "SELECT count(*), count(DISTINCT event_id) FROM events") == [(8000, 8000)]


def _rows(db: Path, sql: str) -> list:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()
