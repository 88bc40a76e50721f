"""The write path under faults: one bad event, fork, a failing disk, short writes, bad spool files,
memory. Real processes, real file systems (tmpfs mounts where root may mount them), real DuckDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from botmeter import Meter
from botmeter.collect.recorder import make_recorder
from botmeter.config import Config
from botmeter.events import RECORD_CALLS, RECORDS
from botmeter.process.pipeline import MAX_FIELD_BYTES, Pipeline
from botmeter.store.spool import Spool
from conftest import query, scalar, subprocess_env
from tmpfs import remount, tmpfs

GOOD = {
    "track_custom": {"name": "good"},
    "track_llm_call": {"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 2},
    "track_message": {"direction": "in", "user": "+15551234567"},
    "track_sms": {"direction": "out", "text": "hello", "user": "+15551234567"},
}


def _deep(levels: int) -> dict:
    top: dict = {}
    cur = top
    for _ in range(levels):
        cur["a"] = {}
        cur = cur["a"]
    return top


def _self_referring() -> dict:
    d: dict = {"x": 1}
    d["me"] = d
    return d


def _inject(meter: Meter, call: str, **bad: object) -> None:
    """Records a good event through the track call, then gives it the bad value(s) in the buffer.

    The writer must hold up whatever the track call lets through, so this puts values there that a
    stricter track call would refuse (the pure-Python buffer's records are plain tuples)."""
    getattr(meter, call)(**GOOD[call])
    lane = meter._buffer.lanes[RECORD_CALLS.index(call)]
    record = list(lane.pop())
    names = ("ts", *RECORDS[call].names)
    for name, value in bad.items():
        record[names.index(name)] = value
    lane.append(tuple(record))


def _dropped_record(store_path: Path) -> tuple[float, dict]:
    rows = query(
        store_path, "SELECT units, properties FROM events WHERE kind = 'system' AND name = 'dropped'"
    )
    total = sum(r[0] for r in rows)
    merged: dict = {}
    for _, props in rows:
        for key, value in json.loads(props).items():
            if isinstance(value, dict):
                bucket = merged.setdefault(key, {})
                for k, v in value.items():
                    bucket[k] = bucket.get(k, 0) + v
            else:
                merged[key] = merged.get(key, 0) + value
    return total, merged


# -- 1. one bad event costs at most itself ----------------------------------------------------


def test_one_bad_event_costs_only_itself_on_the_writer(store_url, store_path):
    # flush_interval=60: the writer drains only at flush, after every value is in place.
    meter = Meter(bot="b", store=store_url, pure_python=True, flush_interval=60, batch_size=10_000)
    bad = [
        ("track_custom", {"properties": _self_referring()}),
        ("track_custom", {"properties": _deep(5000)}),
        ("track_custom", {"name": "lone \ud800 surrogate"}),
        ("track_custom", {"ts": 1e300}),
        ("track_llm_call", {"input_tokens": 2**64}),
        ("track_message", {"user": 10**5000}),  # a huge integer id: too long to write out as text
        ("track_custom", {"event_id": 10**40}),
        ("track_custom", {"properties": {"nan": float("nan")}}),
    ]
    for i in range(200):
        for call in GOOD:
            getattr(meter, call)(**GOOD[call])
        if i < len(bad):
            _inject(meter, bad[i][0], **bad[i][1])
    assert meter.flush(30) is False  # honest: not everything tracked was stored
    stats = meter.stats()
    assert stats["rejected"] == len(bad) and stats["dropped"] == len(bad)
    assert meter.flush(30) is True  # nothing lost since
    meter.close()
    assert scalar(store_path, "SELECT count(*) FROM events WHERE name = 'good'") == 200
    assert scalar(store_path, "SELECT count(*) FROM events WHERE kind = 'llm_call' AND cost_usd > 0") == 200
    assert scalar(store_path, "SELECT count(*) FROM events WHERE kind = 'message'") == 400
    # Every good SMS is priced: the bad events did not cost them their processing.
    assert scalar(store_path, "SELECT count(*) FROM events WHERE channel = 'sms' AND cost_usd > 0") == 200
    total, record = _dropped_record(store_path)
    assert total == len(bad)
    assert record["rejected_track_custom"] == 6
    assert record["rejected_track_llm_call"] == 1 and record["rejected_track_message"] == 1
    reasons = " ".join(record["reasons"])
    for column in ("properties:", "name:", "ts:", "input_tokens:", "event_id:", "hash_users:"):
        assert column in reasons


@pytest.mark.parametrize("pure_python", [False, True])
def test_values_the_track_call_accepts_cost_only_their_event(store_url, store_path, pure_python):
    # Through the public calls only: whatever a call accepts must not take its batch with it.
    meter = Meter(bot="b", store=store_url, pure_python=pure_python, flush_interval=60, batch_size=10_000)
    attempts = [
        lambda: meter.track_custom("x", properties=_self_referring()),
        lambda: meter.track_custom("x", properties=_deep(5000)),
        lambda: meter.track_custom("lone \ud800"),
        lambda: meter.track_custom("x", ts=1e300),
        lambda: meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=2**64),
        lambda: meter.track_message(direction="in", user=10**5000),
        lambda: meter.track_sms(direction="out", text="hi \ud800", user="+15551234567"),
    ]
    accepted = 0
    for attempt in attempts:
        try:
            attempt()
            accepted += 1
        except (TypeError, ValueError):
            pass  # refused at the call, naming the argument: fine too
        for call in GOOD:
            getattr(meter, call)(**GOOD[call])
    meter.flush(30)
    stats = meter.stats()
    meter.close()
    n = len(attempts)
    assert scalar(store_path, "SELECT count(*) FROM events WHERE name = 'good'") == n
    assert scalar(store_path, "SELECT count(*) FROM events WHERE kind = 'llm_call' AND cost_usd > 0") == n
    assert scalar(store_path, "SELECT count(*) FROM events WHERE channel = 'sms' AND cost_usd > 0") >= n
    stored_bad = scalar(store_path, "SELECT count(*) FROM events WHERE kind <> 'system'") - 4 * n
    assert stored_bad + stats["rejected"] == accepted
    total, _ = _dropped_record(store_path)
    assert total == stats["rejected"]


def test_a_processor_that_fails_on_one_event_costs_only_that_event_its_work(store_url, store_path):
    def picky(frame):
        if "boom" in frame.columns.get("name", []):
            raise RuntimeError("cannot handle boom")
        frame.columns["unit"] = ["seen"] * frame.n
        return frame

    meter = Meter(bot="b", store=store_url, processors=[picky], flush_interval=60)
    for i in range(100):
        meter.track_custom("boom" if i == 37 else "fine")
    meter.close()
    # The processor's work reached every event but the one it failed on, which is stored without it.
    assert scalar(store_path, "SELECT count(*) FROM events WHERE name = 'fine' AND unit = 'seen'") == 99
    assert scalar(store_path, "SELECT count(*) FROM events WHERE name = 'boom' AND unit IS NULL") == 1


def test_an_event_the_store_refuses_is_set_aside_alone(tmp_path, store_url, store_path):
    # A processor leaves one event without a time: DuckDB refuses it (NOT NULL). The other 999 of
    # its batch are stored; that one waits in failed/ with the reason.
    def lose_ts(frame):
        names = frame.columns.get("name")
        if names and "no-time" in names:
            frame.columns["ts"] = [
                None if n == "no-time" else t for n, t in zip(names, frame.columns["ts"], strict=True)
            ]
        return frame

    spool = tmp_path / "spool"
    meter = Meter(bot="b", store=store_url, spool_dir=str(spool), processors=[lose_ts], flush_interval=60)
    for i in range(1000):
        meter.track_custom("no-time" if i == 500 else "ok")
    assert meter.flush(30) is False
    stats = meter.stats()
    meter.close()
    assert scalar(store_path, "SELECT count(*) FROM events WHERE name = 'ok'") == 999
    assert stats["rejected"] == 1 and stats["spool_events"] == 0
    reasons = list((spool / "failed").glob("*.reason.txt"))
    assert len(reasons) == 1 and "NOT NULL" in reasons[0].read_text()
    kept = ipc.open_stream(pa.OSFile(str(reasons[0]).removesuffix(".reason.txt"))).read_all()
    assert kept.column("name").to_pylist() == ["no-time"]
    total, record = _dropped_record(store_path)
    assert total == 1 and record["rejected_by_store"] == 1


# -- 2. fork while the writer is busy ----------------------------------------------------------

FORKS = """
import json, os, sys, threading, time
from botmeter import Meter

meter = Meter(bot="forks", store=sys.argv[1], flush_interval=0.05, lock_timeout=10)
stop = False

def busy():
    i = 0
    while not stop:
        meter.track_custom("parent")
        i += 1
        if i % 200 == 0:
            time.sleep(0.001)

writer = threading.Thread(target=busy)
writer.start()
time.sleep(0.3)
children = {}
for n in range(30):
    pid = os.fork()
    if pid == 0:
        for _ in range(1000):
            meter.track_custom(f"child{n}")
        ok = meter.flush(120)  # stored, or spooled (the file may be busy with 30 others)
        meter.close()
        os._exit(0 if ok else 3)
    children[pid] = n
    time.sleep(0.02)
codes = {n: os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid, n in children.items()}
stop = True
writer.join()
meter.close()
print(json.dumps(codes))
"""


FORK_MID_PROCESSING = """
import os, sys, threading, time
from botmeter import Meter

started = threading.Event()
state = {"processing": False}

def slow(frame):
    state["processing"] = True
    started.set()
    time.sleep(0.5)
    state["processing"] = False
    return frame

meter = Meter(bot="forks", store=sys.argv[1], processors=[slow], flush_interval=0.05)
meter.track_custom("parent")
started.wait(30)
pid = os.fork()
if pid == 0:
    # A step the fork caught half done would be in the child for good (Arrow's locks with it).
    if state["processing"]:
        os._exit(4)
    meter.track_custom("child")
    os._exit(0 if meter.flush(60) and meter.close() is not False else 3)
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
meter.close()
print(code)
"""


def _run_forking(tmp_path, text: str, store_url: str) -> subprocess.CompletedProcess:
    """Runs a script that forks, in a process of its own; it must end well."""
    script = tmp_path / "forking.py"
    script.write_text(text)
    out = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), store_url],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


FORK_WITH_WORK_HANDED_OVER = """
import os, sys
from botmeter import Meter

meter = Meter(bot="forks", store=sys.argv[1], flush_interval=60)
# Handed to the writer (as an instrumented call's record is), not yet run when the fork comes.
meter.defer(lambda name, ts: meter.track_custom(name, ts=ts), ("handed-over",))
pid = os.fork()
if pid == 0:
    meter.track_custom("child")
    os._exit(0 if meter.flush(60) and meter.close() is not False else 3)
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
meter.close()
print(code)
"""


def test_work_handed_to_the_writer_before_a_fork_is_done_once_by_the_parent(tmp_path, store_url, store_path):
    out = _run_forking(tmp_path, FORK_WITH_WORK_HANDED_OVER, store_url)
    assert out.stdout.strip().splitlines()[-1] == "0", out.stderr[-3000:]
    counts = dict(query(store_path, "SELECT name, count(*) FROM events WHERE kind = 'custom' GROUP BY 1"))
    assert counts == {"handed-over": 1, "child": 1}


def test_a_fork_waits_for_the_processing_step_in_progress(tmp_path, store_url, store_path):
    out = _run_forking(tmp_path, FORK_MID_PROCESSING, store_url)
    assert out.stdout.strip().splitlines()[-1] == "0", out.stderr[-3000:]
    assert "Exception ignored" not in out.stderr
    counts = dict(query(store_path, "SELECT name, count(*) FROM events GROUP BY 1"))
    assert counts == {"parent": 1, "child": 1}


def test_every_child_forked_while_the_writer_is_busy_stores_its_events(tmp_path, store_url, store_path):
    out = _run_forking(tmp_path, FORKS, store_url)
    codes = json.loads(out.stdout.strip().splitlines()[-1])
    assert codes == {str(n): 0 for n in range(30)}
    counts = dict(query(store_path, "SELECT name, count(*) FROM events WHERE name LIKE 'child%' GROUP BY 1"))
    # On a failure, what the processes logged and what waits on disk tell a lost event from one
    # still spooled.
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.arrow"))
    assert counts == {f"child{n}": 1000 for n in range(30)}, (left, out.stderr[-3000:])


# -- 3. a failing disk with the spool beside the store ----------------------------------------


# Tracks paced events until a stop file appears, flushing every half second and saying so; the
# spool is the default one, beside the store, on the same file system.
DISK_BOT = """
import json, os, sys, time
from botmeter import Meter

store, stop = sys.argv[1], sys.argv[2]
meter = Meter(bot="disk", store=store, flush_interval=0.1, lock_timeout=0.5,
              max_buffer=int(os.environ["MAX_BUFFER"]))
tracked = 0
start = time.monotonic()
next_flush = start + 0.5
while not os.path.exists(stop):
    meter.track_message(direction="in", user=f"+1555000{tracked % 97:04d}")
    tracked += 1
    now = time.monotonic()
    if now >= next_flush:
        print(f"flush {tracked} {meter.flush(1.0)}", flush=True)
        next_flush = time.monotonic() + 0.5
    ahead = tracked / 2000 - (now - start)
    if ahead > 0:
        time.sleep(ahead)
final = meter.flush(30)
stats = meter.stats()
meter.close()
print("done " + json.dumps({"tracked": tracked, "flushed": final, "stats": stats}), flush=True)
"""


def _run_disk_bot(tmp_path: Path, store: Path, max_buffer: int) -> tuple[subprocess.Popen, Path, list[str]]:
    script = tmp_path / "disk_bot.py"
    script.write_text(DISK_BOT)
    stop = tmp_path / "stop"
    proc = subprocess.Popen(
        [sys.executable, str(script), f"duckdb://{store}", str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(MAX_BUFFER=str(max_buffer)),
    )
    return proc, stop, []


def _read_until(proc: subprocess.Popen, lines: list[str], want: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith(want):
            return
    raise AssertionError(f"no {want!r} within {timeout}s: {lines[-5:]} {proc.stderr.read()[-2000:]}")


def _finish(proc: subprocess.Popen, stop: Path, lines: list[str]) -> dict:
    stop.touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    lines.extend(out.splitlines())
    done = [line for line in lines if line.startswith("done ")]
    assert done, "\n".join(lines[-5:]) + err[-2000:]
    return json.loads(done[-1][5:])


def test_read_only_disk_under_store_and_spool_keeps_events_in_memory_then_stores_them(tmp_path):
    disk = tmp_path / "disk"
    with tmpfs(disk, "64m"):
        store = disk / "bot.duckdb"
        proc, stop, lines = _run_disk_bot(tmp_path, store, max_buffer=400_000)
        _read_until(proc, lines, "flush", 30)
        remount(disk, "ro")
        _read_until(proc, lines, "flush", 10)  # a flush that may have started before the remount
        _read_until(proc, lines, "flush", 10)
        while_read_only = lines[-1]
        remount(disk, "rw")
        time.sleep(1.5)
        report = _finish(proc, stop, lines)
        assert while_read_only.endswith("False")  # flush tells the truth: nothing durable
        stats = report["stats"]
        assert report["flushed"] is True and stats["dropped"] == 0 and stats["unsaved_events"] == 0
        assert scalar(store, "SELECT count(*) FROM events WHERE kind = 'message'") == report["tracked"]
        assert scalar(store, "SELECT count(*) FROM events WHERE kind = 'system'") == 0


def test_what_memory_cannot_hold_while_the_disk_fails_is_counted_and_recorded(tmp_path):
    disk = tmp_path / "disk"
    with tmpfs(disk, "64m"):
        store = disk / "bot.duckdb"
        # 2,000 events/s for about 3 s read-only, 1,500 events of memory: most must be dropped.
        proc, stop, lines = _run_disk_bot(tmp_path, store, max_buffer=1_500)
        _read_until(proc, lines, "flush", 30)
        remount(disk, "ro")
        time.sleep(3.0)
        remount(disk, "rw")
        time.sleep(1.5)
        report = _finish(proc, stop, lines)
        stats = report["stats"]
        stored = scalar(store, "SELECT count(*) FROM events WHERE kind = 'message'")
        total, _ = _dropped_record(store)
        # Every event tracked is either stored or counted in the store's dropped record.
        assert stored + total == report["tracked"] and total == stats["dropped"] > 1000
        assert stats["dropped"] == stats["dropped_buffer_full"] + stats["dropped_memory_full"]
        assert stats["unsaved_events"] == 0
        assert any(line.endswith("False") for line in lines if line.startswith("flush"))


# -- 4. short writes in the spool ----------------------------------------------------------------


def _events_table(n: int, text: str = "x") -> pa.Table:
    buffer, fns = make_recorder(n + 1, pure_python=True)
    for i in range(n):
        fns["track_custom"](f"{text}{i}", properties={"pad": "p" * 200})
    table = Pipeline(Config.resolve(bot="b"), None).run(buffer.drain_columns())
    assert table is not None
    return table


def test_a_nearly_full_disk_never_leaves_a_truncated_batch_in_the_spool(tmp_path):
    disk = tmp_path / "disk"
    with tmpfs(disk, "2m"):
        filler = disk / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        os.truncate(filler, filler.stat().st_size - 256 * 1024)  # 256 KB free
        spool = Spool(disk / "spool", 1 << 30)
        table = _events_table(3000)  # about 1 MB as Arrow: a write can only be partial
        assert not spool.append(table)
        assert sorted(p.name for p in (disk / "spool").iterdir()) == []  # no .arrow, no .arrow.tmp
        filler.unlink()
        assert spool.append(table)
        [path] = list((disk / "spool").iterdir())
        assert ipc.open_stream(pa.OSFile(str(path))).read_all().num_rows == 3000


def test_a_spool_file_cut_at_a_batch_boundary_is_not_replayed_as_the_batch(tmp_path, store_url, store_path):
    spool = Spool(tmp_path / "spool", 1 << 30)
    first, second = _events_table(100, "a"), _events_table(100, "b")
    both = pa.concat_tables([first, second])
    assert both.column("ts").num_chunks == 2 and spool.append(both)
    [path] = spool._segments()
    # The file as a crash after the first record batch would leave it: schema + batch 1, no end.
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, first.schema) as writer:
        writer.write_table(first)
    path.write_bytes(path.read_bytes()[: sink.getvalue().size - 8])
    meter = Meter(bot="b", store=store_url, spool_dir=str(spool.directory))
    meter.flush(30)
    stats = meter.stats()
    meter.close()
    assert stats["replayed"] == 0 and stats["quarantined"] == 200
    assert (spool.directory / "failed" / path.name).exists()


# -- 5. spool files that would block replay ------------------------------------------------------


def test_a_directory_and_a_refused_event_in_the_spool_do_not_block_the_rest(tmp_path, store_url, store_path):
    spool = Spool(tmp_path / "spool", 1 << 30)
    (spool.directory / "00000000000000000001-1-000001-n5.arrow").mkdir(parents=True)  # sorts first
    assert spool.append(_events_table(50, "first"))
    bad = _events_table(50, "second")
    ts = bad.column("ts")
    no_time = pa.array([None if i == 7 else v for i, v in enumerate(ts.to_pylist())], ts.type)
    assert spool.append(bad.set_column(bad.schema.get_field_index("ts"), "ts", no_time))
    assert spool.append(_events_table(50, "third"))
    meter = Meter(bot="b", store=store_url, spool_dir=str(spool.directory))
    meter.track_custom("live")
    meter.flush(30)
    stats = meter.stats()
    meter.close()
    assert scalar(store_path, "SELECT count(*) FROM events WHERE kind = 'custom'") == 150 - 1 + 1
    assert stats["spool_batches"] == 0 and stats["rejected"] == 1
    failed = {p.name for p in (spool.directory / "failed").iterdir()}
    assert "00000000000000000001-1-000001-n5.arrow" in failed
    assert "00000000000000000001-1-000001-n5.arrow.reason.txt" in failed
    refused = [p for p in (spool.directory / "failed").glob("*-n1.arrow.reason.txt")]
    assert len(refused) == 1 and "NOT NULL" in refused[0].read_text()


# -- 6. memory ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("pure_python", [False, True])
def test_the_buffer_is_capped_in_bytes_and_its_drops_counted(store_url, store_path, pure_python):
    meter = Meter(
        bot="b",
        store=store_url,
        pure_python=pure_python,
        max_buffer_mb=1,
        flush_interval=60,
        batch_size=10**6,
    )
    text = "t" * 20_000  # under the free-form limit: kept, and accounted for
    for _ in range(200):
        meter.track_message(direction="in", text=text)
    stats = meter.stats()
    assert stats["buffered_bytes"] <= 1024 * 1024 and 40 <= stats["buffered"] <= 52
    assert stats["dropped_buffer_full"] == 200 - stats["buffered"]
    meter.close()
    assert scalar(store_path, "SELECT count(*) FROM events WHERE kind = 'message'") == stats["buffered"]
    total, record = _dropped_record(store_path)
    assert total == 200 - stats["buffered"] and record["buffer_full"] == {"track_message": total}


@pytest.mark.parametrize("pure_python", [False, True])
def test_free_form_properties_over_the_limit_are_not_kept(store_url, store_path, pure_python):
    meter = Meter(bot="b", store=store_url, pure_python=pure_python)
    meter.track_custom("big", properties={"blob": "b" * 100_000})
    meter.track_custom("small", properties={"blob": "b" * 1000})
    meter.close()
    rows = dict(query(store_path, "SELECT name, properties FROM events WHERE kind = 'custom'"))
    big = json.loads(rows["big"])["_truncated"]
    assert big["at_least_bytes"] > MAX_FIELD_BYTES and big["limit_bytes"] == MAX_FIELD_BYTES
    assert json.loads(rows["small"]) == {"blob": "b" * 1000}


def test_a_bot_sending_100_kb_properties_stays_within_its_memory(tmp_path, store_url):
    # 5,000 events with 100 KB of properties each, tracked before the writer's first cycle: kept
    # whole, that is 500 MB; under the free-form limit the buffer holds a few MB.
    bot = textwrap.dedent(
        """
        import resource, sys
        from botmeter import Meter
        meter = Meter(bot="b", store=sys.argv[1], flush_interval=60)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for i in range(5000):
            meter.track_custom("big", properties={"blob": "x" * 100_000 + str(i)})
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(grown * 1024, meter.stats()["buffered"], flush=True)
        meter.close()
        """
    )
    script = tmp_path / "big.py"
    script.write_text(bot)
    out = subprocess.run(
        [sys.executable, str(script), store_url],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    grown, buffered = map(int, out.stdout.split())
    assert buffered == 5000 and grown < 64 * 1024 * 1024


def test_a_reader_in_the_writers_process_waits_for_the_file_instead_of_failing(tmp_path):
    """DuckDB refuses a read-only connection while the same process holds the file read-write
    ("different configuration"); a reader then waits for the writer to let go, as for a lock."""
    import threading

    import duckdb

    from botmeter.analyse import Reader

    url = f"duckdb://{tmp_path}/bot.duckdb"
    meter = Meter(bot="b", store=url, hash_users=False)
    meter.track_message(direction="in", text="hi", user="u")
    assert meter.flush()
    meter.close()
    held = duckdb.connect(str(tmp_path / "bot.duckdb"))  # as a writer keeping the file open
    threading.Timer(0.3, held.close).start()
    assert Reader(url).query("messages", days=1, interval=None).total() == 1


def test_a_store_file_cut_short_at_its_creation_is_set_aside_not_spooled_against_forever(tmp_path):
    """A full disk while DuckDB created the file leaves a few bytes that no open accepts; the
    store renames them aside (nothing is deleted) and starts the file again."""
    path = tmp_path / "bot.duckdb"
    path.write_bytes(b"\0" * 4096)  # what a disk filling up mid-creation leaves
    old = time.time() - 60
    os.utime(path, (old, old))
    meter = Meter(bot="b", store=f"duckdb://{path}", hash_users=False)
    meter.track_message(direction="in", text="hi", user="u")
    assert meter.flush()
    stats = meter.stats()
    meter.close()
    assert stats["written"] == 1 and stats["spooled"] == 0
    assert scalar(path, "SELECT count(*) FROM events") == 1
    aside = list(tmp_path.glob("bot.duckdb.torn-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"\0" * 4096


def test_a_file_that_is_not_duckdb_is_never_moved(tmp_path):
    path = tmp_path / "bot.duckdb"
    path.write_bytes(b"not a database\n" * 2000)  # 30 KB of something else
    old = time.time() - 60
    os.utime(path, (old, old))
    meter = Meter(bot="b", store=f"duckdb://{path}", hash_users=False)
    meter.track_message(direction="in", text="hi", user="u")
    assert meter.flush()  # spooled: the store cannot take it
    stats = meter.stats()
    meter.close()
    assert stats["spooled"] == 1 and path.read_bytes() == b"not a database\n" * 2000
    assert not list(tmp_path.glob("bot.duckdb.torn-*"))


def test_a_reader_gets_the_file_the_writer_of_its_own_process_keeps_open(tmp_path):
    """The writer keeps the file open between batches; a reader in the same process closes it
    for the writer (both need the process's lock on the path) instead of waiting it out."""
    from botmeter.analyse import Reader
    from botmeter.backends.duckdb.store import DuckDBStore

    url = f"duckdb://{tmp_path}/bot.duckdb"
    meter = Meter(bot="b", store=url, hash_users=False)
    meter.track_message(direction="in", text="hi", user="u")
    assert meter.flush()
    meter.close()
    writer = DuckDBStore(url, lock_timeout=30)
    with writer.writing(keep_open=True):
        pass
    assert writer._held is not None  # kept open, as between a burst's batches
    assert Reader(DuckDBStore(url, lock_timeout=0.5)).query("messages", days=1, interval=None).total() == 1
    assert writer._held is None


FIRST_BATCH_IMPORTS = """
import sys
from botmeter import Meter

meter = Meter(bot="warm", store=sys.argv[1])
assert meter.flush(60)  # an empty first cycle: the writer has started (and loaded what it loads first)
before = set(sys.modules)
meter.track_llm_call(
    provider="openai", model="gpt-4o-mini", input_tokens=1200, output_tokens=80, latency_ms=900
)
meter.track_message(direction="in", user="u1", conversation="c1", channel="sms", text="hi")
assert meter.flush(60)
print(" ".join(sorted(name for name in set(sys.modules) - before if name.split(".")[0] in sys.argv[2:])))
meter.close()
"""


def test_the_writer_loads_what_its_first_batch_needs_before_the_first_batch(tmp_path, store_url, store_path):
    # Loaded in the first batch instead, on a thread that competes for the GIL with a busy bot,
    # the price data and pyarrow's pandas import took seconds while the bot's calls piled up.
    script = tmp_path / "warm.py"
    script.write_text(FIRST_BATCH_IMPORTS)
    out = subprocess.run(
        [sys.executable, str(script), store_url, "genai_prices", "pandas", "numpy"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "", f"imported by the first batch: {out.stdout.strip()[:500]}"
    assert scalar(store_path, "SELECT count(*) FROM events WHERE kind = 'llm_call' AND cost_usd > 0") == 1
