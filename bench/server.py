"""The collector: HTTP ingest into the DuckDB file from several client processes.

Requirement (issue 12): at least 100,000 events/s over HTTP into the DuckDB store on this 2-core
machine, batches of 1,000 events, with the ratio to in-process ingest measured in the same run;
p50 and p99 request latency at half that rate; the server's memory bounded under 10x overload,
and what is refused answered 429/503, never accepted and lost.

One run, in order, each phase against a fresh `botmeter serve` process on 127.0.0.1:

1. **in-process**: one `Meter(store="duckdb://...")` tracks the same events (track calls, the
   background writer, the file): events/s from the first call until `flush()` returns.
2. **json**: `--clients` processes post pre-built `/v1/events` JSON bodies of `--batch` events
   (`--connections` at a time each) as fast as they are answered; events/s = events answered 202 /
   the time from the first request to the last answer.
3. **meter**: `--clients` processes each run a remote Meter (`Meter(store="http://...")`,
   `batch_size=--batch`) tracking the events as fast as they can; events/s until every `flush()`
   returned True.
4. **half rate**: the json clients paced to half the rate of phase 2; p50/p99 request latency.
5. **overload**: the server's per-token rate limit set to a tenth of its capacity from phase 2
   while the clients post unpaced, 16 connections each (429s); then again without a rate limit
   and with `--max-pending-events` of 4 batches (503s). The server's idle and peak RSS, answers
   by status, and the check that stored == answered 202.

6. **otlp**: `--clients` processes post OTLP/HTTP protobuf exports of `--otlp-batch` GenAI spans
   (the SDK's own encoder, as its BatchSpanProcessor and OTLPSpanExporter send them: 512 spans a
   request by default) to `POST /v1/traces`, `--connections` at a time each; spans/s = spans
   answered 200 with none rejected / the time from the first request to the last answer. For
   comparison with the figure Phoenix users report (about 80 spans/s, Arize-ai/phoenix#3027).
   `--otlp-only` runs this phase alone.

Events arrive live (ts within the last minute) and carry no event_id, as a Meter's track calls
(the remote Meter's batches carry the ids the client made); `BENCH_EVENT_IDS=1` gives the json
clients' events ids, so the store checks a week around each batch for them.

Under load the server answers 202 once a batch is in its fsynced spool and writes the held
batches in large groups: the json phases also time until the store holds every event
(`stored_events_per_s`), and report the server's and the clients' CPU time and the load average.

After each phase the file is checked: stored events == events answered 202 (== tracked, for the
Meter phases), each event once.

    PYTHONPATH=src .venv/bin/python bench/server.py [--clients 2] [--batches 150] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from track_call import calibrate, environment

REQUIRED_EVENTS_PER_S = 100_000
PHOENIX_SPANS_PER_S = 80  # what Phoenix users report its span ingestion reaching (Arize-ai/phoenix#3027)
# Whether the json clients give each event an event_id (exactly-once retries, at the cost of the
# store's duplicate check over a week around the batch): off by default, like the Meter phases.
IDS = os.environ.get("BENCH_EVENT_IDS") == "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from collector_server import CollectorProcess, botmeter_env, create_token  # noqa: E402

MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku-latest")]


def make_events(n: int, seed: int, prefix: str | None) -> list[dict[str, Any]]:
    """A bot's turns, as they arrive live (ts within the last minute): a message in, an LLM call,
    the reply's timing, a message out; with ``prefix``, each with an ``event_id`` made of it."""
    rng = random.Random(seed)
    now = time.time()
    out: list[dict[str, Any]] = []
    i = 0
    while len(out) < n:
        user = f"+1555{rng.randrange(10**6, 10**7)}"
        conversation = f"c-{rng.randrange(5000)}"
        ts = now - rng.random() * 60
        provider, model = rng.choice(MODELS)
        turn = [
            {"kind": "message", "direction": "in", "text": "what's the weather tomorrow?"},
            {
                "kind": "llm_call",
                "provider": provider,
                "model": model,
                "input_tokens": rng.randrange(200, 4000),
                "output_tokens": rng.randrange(20, 400),
                "latency_ms": rng.uniform(300, 3000),
            },
            {"kind": "timing", "stage": "reply", "latency_ms": rng.uniform(400, 4000)},
            {"kind": "message", "direction": "out", "text": "Sunny, 21 degrees."},
        ]
        for event in turn:
            event.update(user=user, conversation=conversation, ts=ts)
            if prefix is not None:
                event["event_id"] = f"{prefix}-{i}"
            i += 1
            out.append(event)
    return out[:n]


# -- client processes ---------------------------------------------------------------------------


def _on_connections(
    count: int, timeout: float, bodies: list[bytes], send: Any, interval: float = 0.0
) -> None:
    """Sends every body once over ``count`` connections (a thread and a client each), each taking
    the next body not yet sent; with ``interval``, each connection paces itself to one body per
    ``interval`` seconds."""
    import httpx

    lock = threading.Lock()
    taken = iter(bodies)

    def run() -> None:
        with httpx.Client(timeout=timeout) as client:
            due = time.perf_counter()
            while True:
                with lock:
                    body = next(taken, None)
                if body is None:
                    return
                if interval:
                    due += interval
                    pause = due - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                send(client, body)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def json_client(
    url: str, token: str, batches: int, batch: int, connections: int, rate: float, seed: int
) -> None:
    """Posts pre-built bodies; prints answers by status, latencies and the time span as JSON."""
    import httpx

    bodies = [
        json.dumps(
            {"events": make_events(batch, seed * 100_000 + b, f"{seed}-{b}" if IDS else None)}
        ).encode()
        for b in range(batches)
    ]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    accepted = [0]
    lock = threading.Lock()
    interval = connections * batch / rate if rate else 0.0  # per connection, to reach `rate` together

    def send(client: httpx.Client, body: bytes) -> None:
        t0 = time.perf_counter()
        try:
            status = client.post(f"{url}/v1/events", content=body, headers=headers).status_code
        except httpx.HTTPError:
            status = 0
        took = time.perf_counter() - t0
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(took)
            if status == 202:
                accepted[0] += batch

    start = time.perf_counter()
    cpu = time.process_time()
    _on_connections(connections, 60, bodies, send, interval)
    print(
        json.dumps(
            {
                "start": start,
                "end": time.perf_counter(),
                "statuses": statuses,
                "accepted": accepted[0],
                "latencies": latencies,
                "wall_start": time.time() - (time.perf_counter() - start),
                "cpu_s": time.process_time() - cpu,  # the client's own CPU while sending
            }
        )
    )


def meter_client(url: str, n: int, batch: int, seed: int) -> None:
    from botmeter import Meter

    events = make_events(n, seed, None)
    meter = Meter(bot="bench", store=url, batch_size=batch, flush_interval=0.05, max_buffer=n + 1)
    start = time.time()
    _track_all(meter, events)
    flushed = meter.flush(timeout=300)
    end = time.time()
    stats = meter.stats()
    meter.close()
    print(
        json.dumps(
            {
                "start": start,
                "end": end,
                "flushed": flushed,
                "spooled": stats["spooled"],
                "dropped": stats["dropped"],
            }
        )
    )


def _track_all(meter: Any, events: list[dict[str, Any]]) -> None:
    calls = {k: getattr(meter, f"track_{k}") for k in ("message", "llm_call", "timing")}
    for event in events:
        fields = dict(event)
        calls[fields.pop("kind")](**fields)


def otlp_client(url: str, token: str, batches: int, batch: int, connections: int, seed: int) -> None:
    """Posts OTLP protobuf exports of GenAI chat spans made by the SDK; prints results as JSON."""
    import httpx
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    rng = random.Random(seed)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    bodies = []
    for _ in range(batches):
        for _ in range(batch):
            provider_name, model = rng.choice(MODELS)
            attributes = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider_name,
                "gen_ai.request.model": model,
                "gen_ai.response.model": model,
                "gen_ai.usage.input_tokens": rng.randrange(200, 4000),
                "gen_ai.usage.output_tokens": rng.randrange(20, 400),
                "gen_ai.conversation.id": f"c-{rng.randrange(5000)}",
                "server.address": "api.example",
            }
            with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes):
                pass
        bodies.append(encode_spans(memory.get_finished_spans()).SerializeToString())
        memory.clear()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-protobuf"}
    statuses: dict[int, int] = {}
    accepted = [0]
    lock = threading.Lock()

    def send(client: httpx.Client, body: bytes) -> None:
        try:
            answer = client.post(f"{url}/v1/traces", content=body, headers=headers)
            status = answer.status_code
            rejected = (
                ExportTraceServiceResponse.FromString(answer.content).partial_success.rejected_spans
                if status == 200
                else batch
            )
        except httpx.HTTPError:
            status, rejected = 0, batch
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
            accepted[0] += batch - rejected

    start = time.perf_counter()
    _on_connections(connections, 120, bodies, send)
    end = time.perf_counter()
    print(
        json.dumps(
            {
                "start": start,
                "end": end,
                "statuses": statuses,
                "accepted": accepted[0],
                "wall_start": time.time() - (end - start),
                "latencies": [],
            }
        )
    )


# -- the phases ---------------------------------------------------------------------------------


def _spawn(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _collect(procs: list[subprocess.Popen]) -> list[dict[str, Any]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=900)
        if p.returncode != 0:
            raise SystemExit(f"client failed: {stderr[-2000:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _stored(db: Path) -> tuple[int, int]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
    finally:
        con.close()


class _RssWatch:
    """Samples a process's resident memory (VmRSS) every 20 ms; ``peak_mb`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.02)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kb / 1024


def _new_store(db: Path) -> str:
    """Creates the file with its tables first: a running collector's or bot's file exists already."""
    from botmeter.store import open_store

    store = open_store(f"duckdb://{db}")
    with store.writing():
        pass
    store.close()
    return f"duckdb://{db}"


def _server(workdir: Path, name: str, *args: str) -> tuple[CollectorProcess, Path, list[str]]:
    db = workdir / f"{name}.duckdb"
    store = _new_store(db)
    tokens = [create_token(store, "bench", "ingest") for _ in range(ARGS.clients)]
    server = CollectorProcess(store, "--max-batch-events", str(ARGS.batch), *args)
    server.start(workdir / f"{name}.log")
    return server, db, tokens


def phase_in_process(workdir: Path) -> dict[str, Any]:
    from botmeter import Meter

    n = ARGS.clients * ARGS.batches * ARGS.batch
    events = make_events(n, 1, None)
    # A first Meter pays what is imported and loaded on first use (the server does the same at
    # start, before it answers), so that neither side's figure includes it.
    warm = Meter(bot="bench", store=_new_store(workdir / "warm-up.duckdb"))
    _track_all(warm, make_events(1000, 0, None))
    warm.flush(timeout=60)
    warm.close()
    db = workdir / "inprocess.duckdb"
    meter = Meter(bot="bench", store=_new_store(db), max_buffer=n + 1, max_buffer_mb=4096)
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    _track_all(meter, events)
    assert meter.flush(timeout=600)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    meter.close()
    stored = _stored(db)
    return {
        "events": n,
        "seconds": seconds,
        "events_per_s": n / seconds,
        "cpu_s": cpu,
        "stored": stored,
        "load_average": [load, os.getloadavg()[0]],
    }


def _cpu_s(pid: int) -> float:
    """A process's CPU time so far (user and system, all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase_json(workdir: Path, name: str, rate: float = 0.0, connections: int = 2) -> dict[str, Any]:
    import httpx

    server, db, tokens = _server(workdir, name, "--rate-limit", "0")
    env = botmeter_env()
    assert server.process is not None
    server_cpu = _cpu_s(server.process.pid)
    load = os.getloadavg()[0]
    try:
        procs = [
            _spawn(
                "--client-json",
                server.url,
                tokens[k],
                str(ARGS.batches),
                str(ARGS.batch),
                str(connections),
                str(rate / ARGS.clients if rate else 0),
                str(k + 1),
                env=env,
            )
            for k in range(ARGS.clients)
        ]
        results = _collect(procs)
        # Answered 202 means durable (stored, or in the server's fsynced spool); also time when
        # the store holds everything, i.e. the spool the server answered from is written out.
        while True:
            health = httpx.get(f"{server.url}/healthz", timeout=30).json()
            if not (health.get("held_events") or health["spool_events"] or health["pending_events"]):
                break
            time.sleep(0.01)
        all_stored_at = time.time()
        server_cpu = _cpu_s(server.process.pid) - server_cpu
    finally:
        server.stop()
    summary = _summary(results, db)
    start = min(r["wall_start"] for r in results)
    summary.update(
        stored_events_per_s=summary["accepted_events"] / (all_stored_at - start),
        server_cpu_s=server_cpu,
        clients_cpu_s=sum(r["cpu_s"] for r in results),
        load_average=[load, os.getloadavg()[0]],
    )
    return summary


def _summary(results: list[dict[str, Any]], db: Path) -> dict[str, Any]:
    start = min(r["wall_start"] for r in results)
    end = max(r["wall_start"] + (r["end"] - r["start"]) for r in results)
    accepted = sum(r["accepted"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])
    statuses: dict[str, int] = {}
    for r in results:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    stored = _stored(db) if db.exists() else (0, 0)
    return {
        "accepted_events": accepted,
        "seconds": end - start,
        "events_per_s": accepted / (end - start),
        "statuses": statuses,
        "latency_p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "latency_p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "stored": stored,
        "stored_equals_accepted": stored[0] == accepted and stored[1] == accepted,
    }


def phase_meter(workdir: Path) -> dict[str, Any]:
    server, db, tokens = _server(workdir, "meter", "--rate-limit", "0")
    n = ARGS.batches * ARGS.batch
    try:
        procs = [
            _spawn(
                "--client-meter",
                server.url,
                str(n),
                str(ARGS.batch),
                str(k + 1),
                env=botmeter_env(BOTMETER_TOKEN=tokens[k], BOTMETER_SPOOL_DIR=str(workdir / f"spool-{k}")),
            )
            for k in range(ARGS.clients)
        ]
        results = _collect(procs)
    finally:
        server.stop()
    start = min(r["start"] for r in results)
    end = max(r["end"] for r in results)
    total = n * ARGS.clients
    stored = _stored(db)
    return {
        "events": total,
        "seconds": end - start,
        "events_per_s": total / (end - start),
        "flushed": all(r["flushed"] for r in results),
        "spooled": sum(r["spooled"] for r in results),
        "stored": stored,
        "stored_equals_tracked": stored == (total, total),
    }


def phase_overload(workdir: Path, capacity: float, pending_cap: int | None = None) -> dict[str, Any]:
    """Each token may send a tenth of the server's capacity divided among the clients, and the
    clients offer as much as 16 connections each can send, far above that; with ``pending_cap``
    there is no rate limit and the cap on events waiting to be stored refuses the excess (503)."""
    per_token = capacity / 10 / ARGS.clients
    if pending_cap is None:
        limits = ("--rate-limit", f"{per_token:.0f}")
    else:
        limits = ("--rate-limit", "0", "--max-pending-events", str(pending_cap))
    server, db, tokens = _server(workdir, "overload" if pending_cap is None else "overload-pending", *limits)
    assert server.process is not None
    time.sleep(0.5)
    idle = _RssWatch(server.process.pid)
    time.sleep(0.1)
    idle_mb = idle.stop()
    watch = _RssWatch(server.process.pid)
    env = botmeter_env()
    try:
        procs = [
            _spawn(
                "--client-json",
                server.url,
                tokens[k],
                str(ARGS.batches),
                str(ARGS.batch),
                "16",
                "0",
                str(k + 101),
                env=env,
            )
            for k in range(ARGS.clients)
        ]
        results = _collect(procs)
        peak_mb = watch.stop()
    finally:
        server.stop()
    summary = _summary(results, db)
    offered = ARGS.clients * ARGS.batches * ARGS.batch / summary["seconds"]
    summary.update(server_idle_rss_mb=idle_mb, server_peak_rss_mb=peak_mb, offered_events_per_s=offered)
    if pending_cap is None:
        summary.update(
            allowed_events_per_s=per_token * ARGS.clients,
            overload_factor=offered / (per_token * ARGS.clients),
        )
    else:
        summary.update(max_pending_events=pending_cap, offered_over_capacity=offered / capacity)
    return summary


def phase_otlp(workdir: Path) -> dict[str, Any]:
    server, db, tokens = _server(workdir, "otlp", "--rate-limit", "0")
    env = botmeter_env()
    try:
        procs = [
            _spawn(
                "--client-otlp",
                server.url,
                tokens[k],
                str(ARGS.otlp_batches),
                str(ARGS.otlp_batch),
                str(ARGS.connections),
                str(k + 201),
                env=env,
            )
            for k in range(ARGS.clients)
        ]
        results = _collect(procs)
    finally:
        server.stop()
    summary = _summary(results, db)
    for key in ("latency_p50_ms", "latency_p99_ms"):
        summary.pop(key)
    summary["spans_per_s"] = summary.pop("events_per_s")
    summary["accepted_spans"] = summary.pop("accepted_events")
    summary["ratio_to_phoenix_80_spans_per_s"] = summary["spans_per_s"] / PHOENIX_SPANS_PER_S
    return summary


def main() -> int:
    if ARGS.otlp_only:
        workdir = Path(tempfile.mkdtemp(prefix="bench-server-"))
        try:
            report = {"environment": environment(), "arguments": vars(ARGS), "otlp": phase_otlp(workdir)}
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(json.dumps({k: v for k, v in report.items() if k != "environment"}, indent=2))
        if ARGS.json:
            Path(ARGS.json).write_text(json.dumps(report, indent=2))
        return 0 if report["otlp"]["stored_equals_accepted"] else 2
    workdir = Path(tempfile.mkdtemp(prefix="bench-server-"))
    report: dict[str, Any] = {"environment": environment(), "arguments": vars(ARGS)}
    try:
        report["calibrate_ns_before"] = calibrate()
        report["in_process"] = phase_in_process(workdir)
        print("in-process", json.dumps(report["in_process"]), flush=True)
        report["json"] = phase_json(workdir, "json", connections=ARGS.connections)
        report["json"].pop("latency_p50_ms"), report["json"].pop("latency_p99_ms")
        print("json", json.dumps(report["json"]), flush=True)
        report["meter"] = phase_meter(workdir)
        print("meter", json.dumps(report["meter"]), flush=True)
        best = max(report["json"]["events_per_s"], report["meter"]["events_per_s"])
        report["ratio_json_to_in_process"] = (
            report["json"]["events_per_s"] / report["in_process"]["events_per_s"]
        )
        report["ratio_meter_to_in_process"] = (
            report["meter"]["events_per_s"] / report["in_process"]["events_per_s"]
        )
        half = report["json"]["events_per_s"] / 2
        report["half_rate"] = phase_json(workdir, "half", rate=half, connections=ARGS.connections)
        report["half_rate"]["target_events_per_s"] = half
        print("half rate", json.dumps(report["half_rate"]), flush=True)
        report["overload"] = phase_overload(workdir, report["json"]["events_per_s"])
        print("overload", json.dumps(report["overload"]), flush=True)
        report["overload_pending"] = phase_overload(workdir, report["json"]["events_per_s"], 4 * ARGS.batch)
        print("overload (pending cap)", json.dumps(report["overload_pending"]), flush=True)
        report["otlp"] = phase_otlp(workdir)
        print("otlp", json.dumps(report["otlp"]), flush=True)
        report["calibrate_ns_after"] = calibrate()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    phases = ("json", "half_rate", "overload", "overload_pending", "otlp")
    checks = [report[p].get("stored_equals_accepted", True) for p in phases]
    report["nothing_lost"] = all(checks) and report["meter"]["stored_equals_tracked"]
    report["meets_requirement"] = best >= REQUIRED_EVENTS_PER_S
    print(json.dumps({k: v for k, v in report.items() if k != "environment"}, indent=2))
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps(report, indent=2))
    if not report["nothing_lost"]:
        return 2
    return 0 if report["meets_requirement"] else 1


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--connections", type=int, default=8, help="connections per json client")
    parser.add_argument("--batches", type=int, default=150, help="batches per client")
    parser.add_argument("--batch", type=int, default=1000, help="events per batch")
    parser.add_argument("--otlp-batches", type=int, default=40, help="OTLP exports per client")
    parser.add_argument("--otlp-batch", type=int, default=512, help="GenAI spans per OTLP export")
    parser.add_argument("--otlp-only", action="store_true", help="run the OTLP phase alone")
    parser.add_argument("--json", help="write the report here")
    return parser.parse_args()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client-json":
        url, token, batches, batch, connections, rate, seed = sys.argv[2:9]
        json_client(url, token, int(batches), int(batch), int(connections), float(rate), int(seed))
    elif len(sys.argv) > 1 and sys.argv[1] == "--client-otlp":
        url, token, batches, batch, connections, seed = sys.argv[2:8]
        otlp_client(url, token, int(batches), int(batch), int(connections), int(seed))
    elif len(sys.argv) > 1 and sys.argv[1] == "--client-meter":
        url, n, batch, seed = sys.argv[2:6]
        meter_client(url, int(n), int(batch), int(seed))
    else:
        ARGS = _arguments()
        sys.exit(main())
