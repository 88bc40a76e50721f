"""Caller-thread cost of one track call, against peers measured in the same process.

The requirement: the median cost of

    meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=812, output_tokens=95,
                         cached_tokens=200, reasoning_tokens=0, latency_ms=840.0,
                         user="+15551234567", conversation="c-1")

over >= 200,000 calls is at most 3.5x the cost of ``append((a, b, c))`` on a ``collections.deque``
(tuple built from local variables), and below both the prometheus_client way (two
``Counter.labels(...).inc()`` and one ``Histogram.labels(...).observe()``) and an OpenTelemetry SDK
span with six attributes under a ``BatchSpanProcessor`` whose exporter does nothing.

Method: every contender is a timed loop of K calls; one round runs every contender once, in an
order shuffled per round, so drift on a shared machine hits all of them alike. Per-call time is
loop time / K; a contender's figure is the median across rounds. Ratios are given two ways: the
ratio of the medians, and the median of the per-round ratios (each round's contender time over the
same round's peer time). The gate needs both to pass. The meters are real: a DuckDB file in a
temporary directory, the background writer running, ``max_buffer`` large enough never to drop.

    PYTHONPATH=src .venv/bin/python bench/track_call.py [--rounds 300] [--k 1000] [--json PATH]

``--no-gc`` turns the cyclic GC off while timing (a real bot runs with it on); ``--isolated`` is a
diagnostic that times the C track functions on a bare buffer (no Meter, no writer, no DuckDB),
emptied every batch_size records like the deque. Neither is the requirement's situation.

Exit status: 0 when the requirement is met, 1 when it is not, 2 when the run itself went wrong
(events dropped or missing in the store).
"""

from __future__ import annotations

import argparse
import collections
import gc
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from itertools import repeat
from pathlib import Path
from typing import Any

REQUIRED_MAX_DEQUE_RATIO = 3.5
PACKAGES = ("botmeter", "duckdb", "pyarrow", "genai-prices", "prometheus-client", "opentelemetry-sdk")


# -- the machine ------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """What the figures were measured on: cores, memory, CPU model, Python and package versions."""

    def run(*cmd: str) -> str | None:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    try:
        from botmeter.collect.recorder import fast_path_available

        fast_path = fast_path_available()
    except ImportError:
        fast_path = None
    repo = Path(__file__).resolve().parent.parent
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": run("nproc"),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "free_h": run("free", "-h"),
        "loadavg_at_start": os.getloadavg(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": packages,
        "fast_path_built": fast_path,
        "git_head": run("git", "-C", str(repo), "rev-parse", "--short", "HEAD"),
        # Others may be changing the tree: which source files differ from HEAD, and a digest of them all.
        "git_status_src": run("git", "-C", str(repo), "status", "--porcelain", "--", "src", "setup.py"),
        "src_digest": source_digest(repo / "src" / "botmeter"),
    }


def source_digest(root: Path) -> str:
    """sha256 (first 12 hex) over the package's .py, .c and built extension files, to tie figures to code."""
    h = hashlib.sha256()
    for path in sorted(
        p for p in root.rglob("*") if p.suffix in (".py", ".c", ".so", ".toml") and p.is_file()
    ):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def calibrate(rounds: int = 50, k: int = 10_000) -> float:
    """Machine-speed reference: median ns per ``append((a, b, c))`` on a deque emptied every round.

    Timed before and after an absolute measurement (ingest), it shows whether the shared machine
    was slower during the run than around it.
    """
    samples = []
    dq: collections.deque = collections.deque()
    append, perf = dq.append, time.perf_counter_ns
    a, b, c = 812, 840.0, "c-1"
    for _ in range(rounds):
        t0 = perf()
        for _ in repeat(None, k):
            append((a, b, c))
        samples.append((perf() - t0) / k)
        dq.clear()
    return statistics.median(samples)


# -- contenders -------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    run: Callable[[int], int]  # run(k) -> nanoseconds for k calls
    after_round: Callable[[], None] | None = None  # untimed housekeeping (e.g. emptying the deque)
    note: str = ""
    samples: list[float] = field(default_factory=list)  # ns per call, one per round


def deque_contender(clear_every: int) -> Contender:
    dq: collections.deque = collections.deque()

    def run(k: int, append=dq.append, perf=time.perf_counter_ns) -> int:
        a, b, c = 812, 840.0, "c-1"
        t0 = perf()
        for _ in repeat(None, k):
            append((a, b, c))
        return perf() - t0

    def after_round() -> None:
        # The meter's buffer is emptied by its writer every batch; the deque is emptied as often.
        if len(dq) >= clear_every:
            dq.clear()

    return Contender("deque.append((a, b, c))", run, after_round, f"emptied every {clear_every:,} items")


def empty_loop_contender() -> Contender:
    def run(k: int, perf=time.perf_counter_ns) -> int:
        t0 = perf()
        for _ in repeat(None, k):
            pass
        return perf() - t0

    return Contender("empty loop", run, note="loop overhead, included in every figure")


def meter_contenders(meter: Any, label: str) -> list[Contender]:
    def llm(k: int, meter=meter, perf=time.perf_counter_ns) -> int:
        t0 = perf()
        for _ in repeat(None, k):
            meter.track_llm_call(
                provider="openai",
                model="gpt-4o",
                input_tokens=812,
                output_tokens=95,
                cached_tokens=200,
                reasoning_tokens=0,
                latency_ms=840.0,
                user="+15551234567",
                conversation="c-1",
            )
        return perf() - t0

    def message(k: int, meter=meter, perf=time.perf_counter_ns) -> int:
        t0 = perf()
        for _ in repeat(None, k):
            meter.track_message(
                direction="in", text="what's the weather tomorrow?", user="+15551234567", conversation="c-1"
            )
        return perf() - t0

    def timing(k: int, meter=meter, perf=time.perf_counter_ns) -> int:
        t0 = perf()
        for _ in repeat(None, k):
            meter.track_timing("llm", 840.0, provider="openai", model="gpt-4o", conversation="c-1")
        return perf() - t0

    return [
        Contender(f"{label}.track_llm_call", llm),
        Contender(f"{label}.track_message", message),
        Contender(f"{label}.track_timing", timing),
    ]


def prometheus_contender() -> Contender:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    labels = ["provider", "model"]
    tokens_in = Counter("llm_input_tokens", "prompt tokens", labels, registry=registry)
    tokens_out = Counter("llm_output_tokens", "completion tokens", labels, registry=registry)
    latency = Histogram("llm_latency_seconds", "LLM call latency", labels, registry=registry)

    def run(
        k: int, tokens_in=tokens_in, tokens_out=tokens_out, latency=latency, perf=time.perf_counter_ns
    ) -> int:
        t0 = perf()
        for _ in repeat(None, k):
            tokens_in.labels("openai", "gpt-4o").inc(812)
            tokens_out.labels("openai", "gpt-4o").inc(95)
            latency.labels("openai", "gpt-4o").observe(0.840)
        return perf() - t0

    return Contender(
        "prometheus 2x Counter.inc + Histogram.observe",
        run,
        note="labels (provider, model) passed positionally; default histogram buckets",
    )


def otel_contenders() -> tuple[list[Contender], Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NullExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NullExporter()))
    tracer = provider.get_tracer("bench")

    def start_span(k: int, tracer=tracer, perf=time.perf_counter_ns) -> int:
        t0 = perf()
        for _ in repeat(None, k):
            span = tracer.start_span("llm_call")
            span.set_attribute("gen_ai.system", "openai")
            span.set_attribute("gen_ai.request.model", "gpt-4o")
            span.set_attribute("gen_ai.usage.input_tokens", 812)
            span.set_attribute("gen_ai.usage.output_tokens", 95)
            span.set_attribute("gen_ai.usage.cached_tokens", 200)
            span.set_attribute("latency_ms", 840.0)
            span.end()
        return perf() - t0

    def current_span(k: int, tracer=tracer, perf=time.perf_counter_ns) -> int:
        t0 = perf()
        for _ in repeat(None, k):
            with tracer.start_as_current_span("llm_call") as span:
                span.set_attribute("gen_ai.system", "openai")
                span.set_attribute("gen_ai.request.model", "gpt-4o")
                span.set_attribute("gen_ai.usage.input_tokens", 812)
                span.set_attribute("gen_ai.usage.output_tokens", 95)
                span.set_attribute("gen_ai.usage.cached_tokens", 200)
                span.set_attribute("latency_ms", 840.0)
        return perf() - t0

    note = "BatchSpanProcessor (defaults) + exporter returning SUCCESS"
    return [
        Contender("otel start_span + 6 set_attribute + end", start_span, note=note),
        Contender("otel start_as_current_span + 6 set_attribute", current_span, note=note),
    ], provider


# -- measuring --------------------------------------------------------------------------------


def measure(contenders: list[Contender], rounds: int, k: int, warmup: int, seed: int) -> None:
    rng = random.Random(seed)
    order = list(contenders)
    for r in range(warmup + rounds):
        rng.shuffle(order)
        for c in order:
            ns = c.run(k)
            if c.after_round is not None:
                c.after_round()
            if r >= warmup:
                c.samples.append(ns / k)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ratios(a: Contender, b: Contender) -> dict[str, float]:
    per_round = [x / y for x, y in zip(a.samples, b.samples, strict=True)]
    return {
        "ratio_of_medians": statistics.median(a.samples) / statistics.median(b.samples),
        "median_of_round_ratios": statistics.median(per_round),
        "round_ratio_p25": quantile(per_round, 0.25),
        "round_ratio_p75": quantile(per_round, 0.75),
    }


def meter_setups(tmp: Path, max_buffer: int, per_meter: int) -> tuple[list[Contender], Callable, dict]:
    """Real meters on DuckDB files in ``tmp``, writers running: C fast path, pure Python, disabled."""
    from botmeter import Meter

    # Room for every call, in count and in bytes (a record is accounted at about 300 bytes).
    room = {"max_buffer": max_buffer, "max_buffer_mb": max_buffer * 400 / 2**20 + 64}
    meter_c = Meter(bot="bench", store=f"duckdb://{tmp}/bench.duckdb", **room)
    meter_py = Meter(bot="bench", store=f"duckdb://{tmp}/bench-py.duckdb", pure_python=True, **room)
    meter_off = Meter(bot="bench", store=f"duckdb://{tmp}/bench-off.duckdb", enabled=False, **room)
    if not meter_c.fast_path:
        print("warning: the C fast path is not built; 'meter' is the pure-Python recorder", file=sys.stderr)
    contenders = [
        *meter_contenders(meter_c, "meter"),
        *meter_contenders(meter_py, "meter(pure_python)"),
        *meter_contenders(meter_off, "meter(enabled=False)"),
    ]

    def finish() -> dict[str, Any]:
        # The run is valid only if the meters really recorded everything they were given.
        checks = {}
        for label, meter in (("meter", meter_c), ("meter(pure_python)", meter_py)):
            flushed = meter.flush(timeout=300)
            stats = meter.stats()
            meter.close()
            stored = meter.store.count()
            expected = 3 * per_meter
            checks[label] = {
                "flushed": flushed,
                "dropped": stats["dropped"],
                "tracked": expected,
                "stored": stored,
                "writer_cycles": meter._writer.stats.cycles,
                "ok": flushed and stats["dropped"] == 0 and stored == expected,
            }
        meter_off.close()
        return checks

    config = meter_c.config
    settings = {
        "situation": f"real Meter, writer running (batch_size={config.batch_size}, "
        f"flush_interval={config.flush_interval}s, max_buffer={max_buffer:,})",
        "batch_size": config.batch_size,
        "flush_interval": config.flush_interval,
        "max_buffer": max_buffer,
        "fast_path": meter_c.fast_path,
    }
    return contenders, finish, settings


def isolated_contenders(max_buffer: int, per_meter: int) -> tuple[list[Contender], Callable, dict]:
    """The C track functions on a bare buffer, emptied (untimed) every batch_size records."""
    from types import SimpleNamespace

    from botmeter.collect.recorder import make_recorder
    from botmeter.config import Config

    batch_size = Config().batch_size
    buf, fns = make_recorder(max_buffer)
    drained = [0]

    calibrate = getattr(buf, "calibrate", None)  # the fast path's clock, anchored as the writer does
    if calibrate is not None:
        calibrate()
        time.sleep(0.25)
        calibrate()

    def drain() -> None:
        if buf.size >= batch_size:
            drained[0] += sum(len(cols[0]) for cols in buf.drain_columns() if cols)
            if calibrate is not None:
                calibrate()

    contenders = meter_contenders(SimpleNamespace(**fns), "recorder")
    for c in contenders:
        c.after_round = drain

    def finish() -> dict[str, Any]:
        total = drained[0] + buf.size
        dropped = sum(buf.dropped_counts())
        ok = total == 3 * per_meter and not dropped
        return {"recorder": {"tracked": 3 * per_meter, "recorded": total, "dropped": dropped, "ok": ok}}

    settings = {
        "situation": f"ISOLATED diagnostic: bare C recorder, no writer, emptied every {batch_size:,} records",
        "batch_size": batch_size,
        "flush_interval": None,
        "max_buffer": max_buffer,
        "fast_path": True,
    }
    return contenders, finish, settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300, help="timed rounds per contender (default 300)")
    parser.add_argument("--k", type=int, default=1000, help="calls per timed loop (default 1000)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds first (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed for the per-round order")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary DuckDB files")
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="turn the cyclic GC off while timing (default: on, as in a real bot)",
    )
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="diagnostic: the C track functions on a bare buffer (no Meter, no writer thread, no DuckDB), "
        "emptied every batch_size records like the deque; not the requirement's situation",
    )
    args = parser.parse_args(argv)
    if args.rounds * args.k < 200_000:
        parser.error("rounds * k must be >= 200,000 calls per contender")

    env = environment()
    tmp = Path(tempfile.mkdtemp(prefix="botmeter-bench-"))
    per_meter = (args.rounds + args.warmup) * args.k  # calls per track contender
    max_buffer = 3 * per_meter + 1_000  # everything at once, even if the writer never ran
    if args.isolated:
        track, finish, settings = isolated_contenders(max_buffer, per_meter)
    else:
        track, finish, settings = meter_setups(tmp, max_buffer, per_meter)
    batch_size = settings["batch_size"]

    deque_c = deque_contender(batch_size)
    prom = prometheus_contender()
    otel, otel_provider = otel_contenders()
    contenders = [deque_c, empty_loop_contender(), *track, prom, *otel]
    by_name = {c.name: c for c in contenders}
    gated_name = track[0].name
    print(
        f"{len(contenders)} contenders x {args.rounds} rounds x {args.k} calls "
        f"(+{args.warmup} warm-up rounds), order shuffled per round; {settings['situation']}; "
        f"GC {'off' if args.no_gc else 'on'}",
        flush=True,
    )
    if args.no_gc:
        gc.disable()
    t0 = time.monotonic()
    measure(contenders, args.rounds, args.k, args.warmup, args.seed)
    elapsed = time.monotonic() - t0
    gc.enable()

    checks = finish()
    otel_provider.shutdown()
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)

    results = {}
    for c in contenders:
        results[c.name] = {
            "ns_per_call_median": statistics.median(c.samples),
            "ns_per_call_p25": quantile(c.samples, 0.25),
            "ns_per_call_p75": quantile(c.samples, 0.75),
            "ns_per_call_min": min(c.samples),
            "ns_per_call_mean": statistics.fmean(c.samples),
            "calls": len(c.samples) * args.k,
            "note": c.note,
        }
    otel_pick = min(otel, key=lambda c: statistics.median(c.samples))
    loop = statistics.median(by_name["empty loop"].samples)
    track_names = {c.name for c in track}
    table_ratios: dict[str, dict[str, dict[str, float]]] = {}
    for c in contenders:
        if c.name in (deque_c.name, "empty loop"):
            continue
        table_ratios[c.name] = {"deque": ratios(c, deque_c)}
        if c.name in track_names:
            table_ratios[c.name]["prometheus"] = ratios(c, prom)
            table_ratios[c.name]["otel"] = ratios(c, otel_pick)

    gated = table_ratios[gated_name]
    verdicts = {
        f"<= {REQUIRED_MAX_DEQUE_RATIO}x deque": all(
            gated["deque"][k] <= REQUIRED_MAX_DEQUE_RATIO
            for k in ("ratio_of_medians", "median_of_round_ratios")
        ),
        "< prometheus": all(
            gated["prometheus"][k] < 1.0 for k in ("ratio_of_medians", "median_of_round_ratios")
        ),
        "< otel": all(gated["otel"][k] < 1.0 for k in ("ratio_of_medians", "median_of_round_ratios")),
    }
    passed = all(verdicts.values())
    run_ok = all(v["ok"] for v in checks.values())

    # -- report ----------------------------------------------------------------------------------
    print(f"\nmeasured in {elapsed:.1f}s; python {env['python']}, {env['nproc']} cores, {env['cpu_model']}")
    print(f"load average at start: {env['loadavg_at_start']}\n")
    width = max(len(c.name) for c in contenders)
    head = f"{'ns/call':>8}  {'p25':>7}  {'p75':>7}  {'mean':>8}  {'/deque':>7}  {'rnd/deque':>9}  calls"
    print(f"{'contender':<{width}}  {head}")
    for c in contenders:
        r = results[c.name]
        rd = table_ratios.get(c.name, {}).get("deque")
        cols = (
            f"{rd['ratio_of_medians']:>7.2f}  {rd['median_of_round_ratios']:>9.2f}"
            if rd
            else f"{'':>7}  {'':>9}"
        )
        print(
            f"{c.name:<{width}}  {r['ns_per_call_median']:>8.1f}  {r['ns_per_call_p25']:>7.1f}  "
            f"{r['ns_per_call_p75']:>7.1f}  {r['ns_per_call_mean']:>8.1f}  {cols}  {r['calls']:,}"
        )
    print(f"\notel form used as the peer: {otel_pick.name} (the cheaper of the two here)")
    print(f"\n{'track call vs peers':<{width}}  {'/prom':>7}  {'rnd/prom':>8}  {'/otel':>7}  {'rnd/otel':>8}")
    for name, rs in table_ratios.items():
        if "prometheus" in rs:
            p, o = rs["prometheus"], rs["otel"]
            print(
                f"{name:<{width}}  {p['ratio_of_medians']:>7.2f}  {p['median_of_round_ratios']:>8.2f}  "
                f"{o['ratio_of_medians']:>7.2f}  {o['median_of_round_ratios']:>8.2f}"
            )
    net = (results[gated_name]["ns_per_call_median"] - loop) / (
        results[deque_c.name]["ns_per_call_median"] - loop
    )
    print(f"\nfor information, net of the empty loop ({loop:.1f} ns): {gated_name} / deque = {net:.2f}")
    for label, chk in checks.items():
        details = ", ".join(f"{k} {v:,}" for k, v in chk.items() if k != "ok" and not isinstance(v, bool))
        print(f"{label}: {details} -> {'ok' if chk['ok'] else 'NOT OK'}")
    if args.isolated:
        print("\nISOLATED diagnostic run: not the requirement's situation (no Meter, no writer)")
    print(f"\nrequirement for {gated_name} (both ratio of medians and median of per-round ratios):")
    for what, ok in verdicts.items():
        print(f"  {what}: {'PASS' if ok else 'FAIL'}")
    print(f"overall: {'PASS' if passed else 'FAIL'}")

    if args.json:
        out = {
            "benchmark": "track_call",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "environment": env,
            "parameters": {
                "rounds": args.rounds,
                "k": args.k,
                "warmup": args.warmup,
                "seed": args.seed,
                **settings,
                "gc": not args.no_gc,
                "deque_emptied_every": batch_size,
            },
            "elapsed_s": elapsed,
            "results": results,
            "ratios": table_ratios,
            "empty_loop_ns": loop,
            "net_of_loop_ratio_deque": net,
            "otel_peer": otel_pick.name,
            "gated": gated_name,
            "checks": checks,
            "requirement": {
                "max_deque_ratio": REQUIRED_MAX_DEQUE_RATIO,
                "verdicts": verdicts,
                "passed": passed,
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    if not run_ok:
        print("the run is not valid: events were dropped or missing", file=sys.stderr)
        return 2
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
