"""Nothing lost: real processes, real file locks, a real read-only and a real full file system.

Every test runs a bot in its own process (the same code path a bot uses) and checks, by
counting rows in the DuckDB file, that every event it tracked arrived exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from botmeter import Meter
from botmeter.backends.duckdb.store import DuckDBStore
from botmeter.store.spool import Spool
from conftest import hold_store_file, scalar, start_python, subprocess_env
from tmpfs import remount, tmpfs

# A bot that tracks paced events until a stop file appears, then flushes, closes and reports.
BOT = """
import json, os, sys, time
from botmeter import Meter

store, spool, stop = sys.argv[1], sys.argv[2], sys.argv[3]
rate = float(os.environ.get("RATE", "2000"))
meter = Meter(bot="durable", store=store, spool_dir=spool, flush_interval=0.2,
              lock_timeout=float(os.environ.get("LOCK_TIMEOUT", "0.5")))
tracked = 0
slowest = 0.0
start = time.monotonic()
last_report = 0.0
while not os.path.exists(stop):
    t0 = time.perf_counter()
    meter.track_message(direction="in", user=f"+1555000{tracked % 97:04d}", conversation=f"c{tracked % 13}")
    slowest = max(slowest, time.perf_counter() - t0)
    tracked += 1
    if os.environ.get("FLUSH_EVERY") and tracked % int(os.environ["FLUSH_EVERY"]) == 0:
        target = tracked
        meter.flush()
        print(f"durable {target}", flush=True)
    now = time.monotonic()
    if now - last_report > 0.05:
        print(f"tracked {tracked}", flush=True)
        last_report = now
    ahead = tracked / rate - (now - start)
    if ahead > 0:
        time.sleep(ahead)
meter.flush()
stats = meter.stats()
meter.close()
print("done " + json.dumps({"tracked": tracked, "slowest_call_s": slowest, "stats": stats}), flush=True)
"""


def run_bot(tmp_path: Path, store_url: str, spool: Path, **env: str) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "bot.py"
    script.write_text(BOT)
    stop = tmp_path / "stop"
    stop.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, str(script), store_url, str(spool), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(**env),
    )
    return proc, stop


def finish(proc: subprocess.Popen, stop: Path) -> dict:
    stop.touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    done = [line for line in out.splitlines() if line.startswith("done ")]
    assert done, out + err
    return json.loads(done[-1][5:])


def events_in(path: Path) -> tuple[int, int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchall()[0]
    finally:
        con.close()


@pytest.mark.parametrize("rate", ["3000", "100000"])
def test_a_second_process_reads_while_the_bot_writes(tmp_path, store_path, store_url, rate):
    # At 100,000 events/s the writer is busy without pause: readers get in by asking (<store>.readers/).
    proc, stop = run_bot(tmp_path, store_url, tmp_path / "spool", RATE=rate, LOCK_TIMEOUT="5")
    time.sleep(1.0)
    seen = []
    deadline = time.monotonic() + 4
    # Three reads at least, however slow a loaded machine makes each CLI start (bounded at 60 s).
    while time.monotonic() < deadline or (len(seen) < 3 and time.monotonic() < deadline + 56):
        # The real CLI in its own process, as an operator would run it while the bot is live.
        out = subprocess.run(
            [sys.executable, "-m", "botmeter", "status", "--format", "json", "--store", store_url],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        seen.append(json.loads(out.stdout)["events"])
    report = finish(proc, stop)
    assert len(seen) >= 3 and seen == sorted(seen) and seen[-1] > 0
    stats = report["stats"]
    assert stats["dropped"] == 0 and stats["spooled"] == 0
    assert report["slowest_call_s"] < 0.5  # the bot was never made to wait on the readers
    assert events_in(store_path) == (report["tracked"], report["tracked"])


def test_file_locked_by_another_process_spools_then_replays(tmp_path, store_path, store_url):
    spool = tmp_path / "spool"
    proc, stop = run_bot(tmp_path, store_url, spool, RATE="2000", LOCK_TIMEOUT="0.3")
    time.sleep(1.0)
    # Another process takes the file for writing and keeps it for 3 seconds.
    locker = hold_store_file(store_path, tmp_path, 3)
    time.sleep(2.0)
    assert Spool(spool, 1 << 30).depth().batches > 0  # batches waited on disk while the file was held
    assert locker.wait(timeout=30) == 0
    time.sleep(1.5)
    report = finish(proc, stop)
    stats = report["stats"]
    assert stats["spooled"] > 0 and stats["replayed"] == stats["spooled"]
    assert stats["spool_batches"] == 0 and stats["dropped"] == 0
    assert events_in(store_path) == (report["tracked"], report["tracked"])


def test_read_only_file_system_spools_then_replays(tmp_path):
    disk = tmp_path / "disk"
    with tmpfs(disk, "64m"):
        store_path = disk / "bot.duckdb"
        spool = tmp_path / "spool"
        proc, stop = run_bot(tmp_path, f"duckdb://{store_path}", spool, RATE="2000")
        time.sleep(1.0)
        remount(disk, "ro")
        time.sleep(1.5)
        spooled_while_ro = Spool(spool, 1 << 30).depth().events
        remount(disk, "rw")
        time.sleep(1.5)
        report = finish(proc, stop)
        stats = report["stats"]
        assert spooled_while_ro > 0 and stats["spooled"] > 0
        assert stats["replayed"] == stats["spooled"] and stats["dropped"] == 0
        assert events_in(store_path) == (report["tracked"], report["tracked"])


def test_full_disk_spools_then_replays(tmp_path):
    disk = tmp_path / "disk"
    # Room for the store (4.5 MB after a few thousand events, rollups included) and a checkpoint's
    # copy of its changed blocks; with less, the file could never be checkpointed again once full.
    with tmpfs(disk, "16m"):
        store_path = disk / "bot.duckdb"
        spool = tmp_path / "spool"
        proc, stop = run_bot(tmp_path, f"duckdb://{store_path}", spool, RATE="2000")
        # The disk fills while the bot writes, not while DuckDB creates the file (that case, a
        # file cut short at its creation, is tests/test_write_path.py's).
        deadline = time.monotonic() + 60
        while not (store_path.exists() and store_path.stat().st_size >= 3 * 4096):
            assert time.monotonic() < deadline, "the bot never created its store"
            time.sleep(0.05)
        time.sleep(1.0)
        filler = disk / "filler"
        # Keep taking every byte that frees up for 1.5 s: DuckDB frees its log at each checkpoint,
        # so one fill alone would let it carry on in the space it just released.
        with open(filler, "wb", buffering=0) as f:
            until = time.monotonic() + 1.5
            while time.monotonic() < until:
                try:
                    f.write(b"\0" * 4096)
                except OSError:
                    time.sleep(0.001)
        spooled_while_full = Spool(spool, 1 << 30).depth().events
        filler.unlink()
        time.sleep(1.5)
        report = finish(proc, stop)
        stats = report["stats"]
        assert spooled_while_full > 0
        assert stats["replayed"] == stats["spooled"] and stats["dropped"] == 0
        assert events_in(store_path) == (report["tracked"], report["tracked"])


def test_sigkill_loses_at_most_the_last_flush_interval(tmp_path, store_path, store_url):
    spool = tmp_path / "spool"
    proc, _ = run_bot(tmp_path, store_url, spool, RATE="2000", FLUSH_EVERY="500")
    durable = tracked = 0
    deadline = time.monotonic() + 3
    assert proc.stdout is not None
    for line in proc.stdout:
        kind, n = line.split()
        if kind == "durable":
            durable = int(n)
        else:
            tracked = int(n)
        if time.monotonic() > deadline and durable:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # The store opens cleanly (DuckDB replays its log) and holds everything flushed before the kill.
    stored, distinct = events_in(store_path)
    assert stored == distinct
    assert stored >= durable
    # At 2,000 events/s and a 0.2 s flush interval, the unflushed tail is a few hundred events.
    assert tracked - stored <= 2000 * 0.2 * 3
    # A restarted bot writes on: the file is healthy.
    proc2, stop2 = run_bot(tmp_path, store_url, spool, RATE="2000")
    time.sleep(0.5)
    report = finish(proc2, stop2)
    assert events_in(store_path) == (stored + report["tracked"], stored + report["tracked"])


def test_replay_is_in_order_and_deduplicated(tmp_path, store_url, store_path):
    from botmeter.process.pipeline import SCHEMA, Pipeline

    assert Pipeline  # the schema the writer produces is the schema spooled
    spool = Spool(tmp_path / "spool", 1 << 30)
    ids = [os.urandom(16) for _ in range(30)]
    batches = []
    for part in range(3):
        n = 10
        cols = {name: pa.nulls(n, SCHEMA.field(name).type) for name in SCHEMA.names}
        cols["event_id"] = pa.ExtensionArray.from_storage(
            pa.uuid(), pa.array(ids[part * 10 : part * 10 + 10], pa.binary(16))
        )
        cols["ts"] = pa.array([1_790_000_000_000_000 + part * 10 + i for i in range(n)], pa.int64()).cast(
            pa.timestamp("us")
        )
        cols["kind"] = pa.array(["custom"] * n)
        cols["name"] = pa.array([f"batch{part}"] * n)
        batch = pa.Table.from_pydict(cols, schema=SCHEMA)
        batches.append(batch)
        assert spool.append(batch)
    order: list[str] = []
    store = DuckDBStore(store_url)

    def write(table: pa.Table) -> int:
        order.append(table.column("name")[0].as_py())
        return store.write(table)

    # The first batch reached the store before (a crash between the write and the removal).
    store.write(batches[0])
    assert spool.replay(write) == 30
    assert order == ["batch0", "batch1", "batch2"]
    assert scalar(store_path, "SELECT count(*) FROM events") == 30
    assert spool.depth().batches == 0


def test_a_batch_the_store_rejects_is_set_aside_not_blocking(tmp_path, store_url, store_path):
    spool = Spool(tmp_path / "spool", 1 << 30)
    bad = pa.table({"nonsense": [1, 2, 3]})
    assert spool.append(bad)
    store = DuckDBStore(store_url)
    assert spool.replay(store.write) == 0
    assert spool.quarantined_events == 3
    assert (tmp_path / "spool" / "failed").is_dir()
    assert spool.depth().batches == 0


def test_a_held_batch_is_durable_but_replayed_by_nobody_until_let_go(tmp_path):
    """The collector holds the batches it answered while its store was busy: on disk, but locked,
    so no replay (here another Spool on the same directory, as another worker) takes them; let go
    (the store failed), they wait for replay like any other; discarded (stored), they are gone."""
    directory = tmp_path / "spool"
    holder, other = Spool(directory, 1 << 30), Spool(directory, 1 << 30)
    first = holder.append(pa.table({"x": [1, 2, 3]}), hold=True)
    second = holder.append(pa.table({"x": [4, 5]}), hold=True)
    assert first and second and len(list(directory.glob("*.arrow"))) == 2
    assert holder.held_events == 5
    assert not holder.has_pending() and holder.depth().events == 0
    assert other.has_pending()  # there, and (without skip_locked) counted as waiting...
    assert not other.has_pending(skip_locked=True)  # ...but held by another
    taken: list[int] = []
    assert other.replay(lambda t: taken.append(t.num_rows) or t.num_rows) == 0 and taken == []
    holder.discard(first)
    assert holder.let_go(second) == 2
    assert holder.held_events == 0 and holder.has_pending(skip_locked=True)
    assert other.replay(lambda t: taken.append(t.num_rows) or t.num_rows) == 2 and taken == [2]
    assert list(directory.glob("*.arrow")) == []


def test_full_spool_refuses_and_counts(tmp_path):
    # The writer then keeps the batch in memory (tests/test_write_path.py).
    spool = Spool(tmp_path / "spool", 2048)
    table = pa.table({"x": list(range(10_000))})
    assert not spool.append(table)
    assert spool.refused_events == 10_000
    assert list((tmp_path / "spool").iterdir()) == []


def test_events_are_written_at_exit_without_flush_or_close(tmp_path, store_path, store_url):
    # A bot that simply ends: the atexit hook flushes what it tracked.
    bot = start_python(
        f"""
        from botmeter import Meter
        meter = Meter(bot="short", store={store_url!r}, flush_interval=60)
        for i in range(1234):
            meter.track_activity("tick")
        """,
        tmp_path,
        "short_bot.py",
    )
    _, err = bot.communicate(timeout=60)
    assert bot.returncode == 0, err
    assert events_in(store_path) == (1234, 1234)


def test_the_file_is_free_for_other_processes_once_flush_returns(tmp_path, store_path, store_url):
    """A flush's last write must not leave the file held until the next write: a notebook or the
    duckdb shell opens it for writing at once, without retrying."""
    meter = Meter(bot="b", store=store_url, spool_dir=str(tmp_path / "sp"), hash_key="ab" * 16)
    try:
        for round_ in range(8):
            for i in range(200):
                meter.track_message(direction="in", text="hi", user=f"u{i}", conversation=f"c{round_}")
            assert meter.flush()
            other = subprocess.run(
                [sys.executable, "-c", f"import duckdb; duckdb.connect({str(store_path)!r}).close()"],
                capture_output=True,
                text=True,
                env=subprocess_env(),
                timeout=60,
            )
            assert other.returncode == 0, f"round {round_}: {other.stderr.strip().splitlines()[-1:]}"
    finally:
        meter.close()


def test_a_waiting_note_is_seen_while_it_waits_and_not_once_withdrawn_or_stale(tmp_path):
    # The one mechanism both stores use for "another process waits for this file" (DuckDB's
    # writer between writes, an idle chdb:// engine): what the holder sees of a waiting process.
    from botmeter.store.waiting import NOTE_TTL_S, WaitingRoom

    room = WaitingRoom(tmp_path / "store.duckdb")
    assert not room.anyone_waiting()  # no room yet
    with room.waiting() as note:
        assert room.anyone_waiting()
        note.withdraw()  # the file is open: the holder need not let go any more
        assert not room.anyone_waiting()
    with room.waiting():
        assert room.anyone_waiting()
    assert not room.anyone_waiting()  # withdrawn at the end of the block
    # A note left by a process that died is ignored once stale.
    dead = room.folder / "12345-1"
    dead.touch()
    assert room.anyone_waiting()
    old = dead.stat().st_mtime - NOTE_TTL_S - 1
    os.utime(dead, (old, old))
    assert not room.anyone_waiting()
