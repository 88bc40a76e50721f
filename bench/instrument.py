"""What an instrumented SDK call adds over the bare SDK call, against Langfuse and OpenLLMetry.

The requirement: for an OpenAI chat completion (streamed and not) and an Anthropic message, each
answered by an httpx ``MockTransport`` with bodies shaped like the real APIs', the time
``meter.instrument(client)`` adds to a call is

* at most 5% of the bare SDK call, and
* at most a tenth of what Langfuse's drop-in OpenAI wrapper (``langfuse.openai``) and OpenLLMetry's
  OpenAI instrumentation (``opentelemetry-instrumentation-openai``) add to the same call (OpenAI
  scenarios; neither has a drop-in for the Anthropic client to compare with).

Method: one process, one scenario at a time, rounds x K turns; in each turn every contender makes
one timed call, in an order shuffled per turn, so the noise of a shared machine falls on all alike.
Langfuse and OpenLLMetry patch the SDK's classes, so their patched methods are put in place
(untimed) for their own call only and the SDK's originals for everyone else's (botmeter wraps its
own client object and needs no switching). A contender's added time is the median over turns of
(its call - the bare call of the same turn); the median over rounds of the per-round mean of those
differences is printed too, as it keeps the rare long stalls (a background thread's burst, GC). The peers
run with their real span pipelines (a ``BatchSpanProcessor``-style processor) and an exporter that
drops the spans, so nothing is sent anywhere; botmeter runs with a real Meter writing to a DuckDB
file in a temporary directory. Each run reports how many spans and events the contenders produced,
to show they did their work.

    PYTHONPATH=src .venv/bin/python bench/instrument.py [--rounds 40] [--k 20] [--json PATH]

The peers are not dependencies of botmeter: install them into the venv to run this (see
bench/README.md). Without them the script measures botmeter alone and says so.
Exit status: 0 when the requirement is met, 1 when it is not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai

from botmeter import Meter

MAX_SHARE_OF_BARE = 0.05
MAX_SHARE_OF_PEER = 0.10
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]

# -- the mock APIs -------------------------------------------------------------------------------

CHAT = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The capital of France is Paris.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 8,
        "total_tokens": 1208,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_06737a9306",
}


# A reply the length of one SMS (about 40 tokens, one chunk each), and a one-line one.
REPLY_TEXT = (
    "Paris is the capital of France. It has been the seat of government for most of the country's"
    " history, and today it is home to about two million people in the city itself."
)
REPLY = REPLY_TEXT.split(" ")
SHORT_REPLY = ["The", "capital", "of", "France", "is", "Paris."]


def chat_stream(include_usage: bool, words: list[str]) -> bytes:
    base = {k: CHAT[k] for k in ("id", "created", "model", "service_tier", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    words = [w if i == 0 else " " + w for i, w in enumerate(words)]
    deltas = [{"role": "assistant", "content": "", "refusal": None}] + [{"content": w} for w in words] + [{}]
    out = []
    for i, delta in enumerate(deltas):
        finish = "stop" if i == len(deltas) - 1 else None
        chunk = base | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            chunk["usage"] = None
        out.append(chunk)
    if include_usage:
        out.append(base | {"choices": [], "usage": CHAT["usage"]})
    # compact JSON, as the API writes its chunks
    events = "".join(f"data: {json.dumps(c, separators=(',', ':'))}\n\n" for c in out)
    return (events + "data: [DONE]\n\n").encode()


MESSAGE = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "The capital of France is Paris."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 21,
        "cache_creation_input_tokens": 1800,
        "cache_read_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 1200},
        "output_tokens": 9,
        "service_tier": "standard",
    },
}
CHAT_BODY = json.dumps(CHAT).encode()
MESSAGE_BODY = json.dumps(MESSAGE).encode()
STREAMS = {
    (usage, short): chat_stream(usage, SHORT_REPLY if short else REPLY)
    for usage in (False, True)
    for short in (False, True)
}


def openai_api(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    if body.get("stream"):
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        short = body["messages"][0]["content"] == SHORT_QUESTION
        stream = STREAMS[usage, short]
        return httpx2.Response(200, content=stream, headers={"content-type": "text/event-stream"})
    return httpx2.Response(200, content=CHAT_BODY, headers={"content-type": "application/json"})


def anthropic_api(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, content=MESSAGE_BODY, headers={"content-type": "application/json"})


def openai_client() -> openai.OpenAI:
    return openai.OpenAI(
        api_key="sk-bench",
        http_client=httpx2.Client(transport=httpx2.MockTransport(openai_api)),
        max_retries=0,
    )


def anthropic_client() -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="sk-ant-bench",
        http_client=httpx2.Client(transport=httpx2.MockTransport(anthropic_api)),
        max_retries=0,
    )


def chat(client: Any, **extra: Any) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def chat_streamed(client: Any, **extra: Any) -> None:
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **extra):
        pass


SHORT_QUESTION = "Capital of France, in one line?"


def chat_streamed_short(client: Any, **extra: Any) -> None:
    question = [{"role": "user", "content": SHORT_QUESTION}]
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=question, stream=True, **extra):
        pass


def message(client: Any, **extra: Any) -> None:
    client.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=MESSAGES)


SCENARIOS: dict[str, tuple[Callable[[], Any], Callable[[Any], None], bool]] = {
    # name: (client factory, one call, do the OpenAI peers apply)
    "openai chat": (openai_client, chat, True),
    "openai chat, streamed": (openai_client, chat_streamed, True),
    "anthropic messages": (anthropic_client, message, False),
    "openai chat, streamed 7": (openai_client, chat_streamed_short, True),
}
# Not part of the requirement: a 7-chunk reply shows most the one cost botmeter cannot shrink, what
# the API sends when usage is asked for (a usage chunk, and "usage":null in every chunk).
FOR_INFORMATION = {"openai chat, streamed 7"}
# A reference for the streamed scenarios, not a contender: the bare client asking for usage itself,
# i.e. what the API's answer to include_usage costs the SDK, with nothing of botmeter's.
USAGE_ASKED = "usage asked"
USAGE_ASKED_ARGS = {"extra_body": {"stream_options": {"include_usage": True}}}

# -- the peers -----------------------------------------------------------------------------------


class Switch:
    """Puts one contender's patched SDK attributes in place, and the SDK's originals back."""

    def __init__(self) -> None:
        self.targets: list[tuple[Any, str]] = []
        self.variants: dict[str, dict[tuple[int, str], Any]] = {}
        self.originals: dict[tuple[int, str], Any] = {}

    def watch(self, *targets: tuple[Any, str]) -> None:
        self.targets = list(targets)
        self.originals = {(id(o), a): o.__dict__[a] for o, a in targets}

    def capture(self, name: str) -> None:
        """Remembers what the patching just installed under ``name``, then restores the originals."""
        self.variants[name] = {(id(o), a): o.__dict__[a] for o, a in self.targets}
        self.use(None)

    def use(self, name: str | None) -> None:
        chosen = self.variants[name] if name else self.originals
        for o, a in self.targets:
            setattr(o, a, chosen[(id(o), a)])


class NullExporter:
    """An OpenTelemetry span exporter that counts spans and sends nothing."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


FLUSH: list[Callable[[], Any]] = []  # the peers' flushes, so their exporters see every span


def setup_peers(switch: Switch) -> tuple[dict[str, Any], dict[str, str]]:
    """Installs Langfuse's and OpenLLMetry's OpenAI patches (each captured, then switched off)."""
    from openai.resources.chat.completions import Completions

    switch.watch((Completions, "create"), (openai.Stream, "__iter__"))
    exporters: dict[str, Any] = {}
    missing: dict[str, str] = {}
    try:
        from langfuse import Langfuse
        from opentelemetry.sdk.trace import TracerProvider

        exporters["langfuse"] = NullExporter()
        FLUSH.append(
            Langfuse(
                public_key="pk-lf-bench",
                secret_key="sk-lf-bench",
                host="http://127.0.0.1:9",  # nothing listens; nothing is sent there anyway (null exporter)
                span_exporter=exporters["langfuse"],
                tracer_provider=TracerProvider(),
            ).flush
        )
        import langfuse.openai  # noqa: F401 (patches the SDK's classes on import)

        switch.capture("langfuse")
    except ImportError as exc:
        exporters.pop("langfuse", None)
        missing["langfuse"] = str(exc)
    try:
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporters["openllmetry"] = NullExporter()
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporters["openllmetry"]))
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        FLUSH.append(provider.force_flush)
        switch.capture("openllmetry")
    except ImportError as exc:
        exporters.pop("openllmetry", None)
        missing["openllmetry"] = str(exc)
    return exporters, missing


# -- timing --------------------------------------------------------------------------------------


def measure(
    name: str,
    meter: Meter,
    switch: Switch,
    peers: list[str],
    rounds: int,
    k: int,
    warmup: int,
    rng: random.Random,
    block: int = 1,
) -> dict[str, Any]:
    make, call, peers_apply = SCENARIOS[name]
    clients = {"bare": make(), "botmeter": meter.instrument(make())}
    contenders = ["bare", "botmeter"] + (peers if peers_apply else [])
    if call in (chat_streamed, chat_streamed_short):
        contenders.append(USAGE_ASKED)
    for peer in contenders[2:]:
        clients[peer] = make()
    clock = time.perf_counter

    def turn() -> dict[str, float]:
        # Every contender makes `block` calls in a row (the median of them counts), in an order
        # shuffled each turn, so whatever else the machine is doing falls on all of them alike.
        # Switching the peers' patches is not timed.
        spent = {}
        order = contenders[:]
        rng.shuffle(order)
        for contender in order:
            peer = contender not in ("bare", "botmeter", USAGE_ASKED)
            if peer:
                switch.use(contender)
            client = clients[contender]
            extra = USAGE_ASKED_ARGS if contender == USAGE_ASKED else {}
            times = []
            for _ in range(block):
                start = clock()
                call(client, **extra)
                times.append(clock() - start)
            spent[contender] = statistics.median(times)
            if peer:
                switch.use(None)
        return spent

    for _ in range(warmup * k):
        turn()
    # Every contender's background work caught up before the timed turns (botmeter's writer loads
    # its price data in its first cycle; on a thread competing with a busy caller for the GIL
    # that takes seconds): the turns measure the steady state.
    meter.flush()
    for flush in FLUSH:
        flush()
    turns = [turn() for _ in range(rounds * k)]
    bare = [t["bare"] for t in turns]
    result: dict[str, Any] = {
        "bare_us": statistics.median(bare) * 1e6,
        "added_us": {},
        "share_of_bare": {},
        "added_mean_us": {},
    }
    for contender in contenders[1:]:
        added = [t[contender] - t["bare"] for t in turns]
        result["added_us"][contender] = statistics.median(added) * 1e6
        result["share_of_bare"][contender] = statistics.median(
            [a / b for a, b in zip(added, bare, strict=True)]
        )
        # for information: means over rounds of k turns keep the rare long stalls the medians leave out
        means = [statistics.fmean(added[i : i + k]) for i in range(0, len(added), k)]
        result["added_mean_us"][contender] = statistics.median(means) * 1e6
    if USAGE_ASKED in contenders:
        result["botmeter_over_usage_asked_us"] = (
            statistics.median([t["botmeter"] - t[USAGE_ASKED] for t in turns]) * 1e6
        )
    return result


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in (
        "openai",
        "anthropic",
        "httpx2",
        "langfuse",
        "opentelemetry-instrumentation-openai",
        "opentelemetry-sdk",
        "duckdb",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def time_stages() -> dict[str, list[float]]:
    """Wraps botmeter's stages of an instrumented call in timers (seconds per call, appended)."""
    from botmeter.integrations import _wrap
    from botmeter.integrations import openai as openai_integration

    times: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        found = times.setdefault(name, [])

        def call(*args: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                found.append(time.perf_counter() - start)

        return call

    _wrap._prepare = timed("prepare (before the SDK call)", _wrap._prepare)
    _wrap._finish = timed("finish (record, or hook a watch on a stream)", _wrap._finish)
    _wrap.Watch.finish = timed("stream's end (record)", _wrap.Watch.finish)
    openai_integration._step = timed("OpenAI stream: one network read", openai_integration._step)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds per scenario (default 30)")
    parser.add_argument("--k", type=int, default=40, help="turns per round (default 40)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument(
        "--block",
        type=int,
        default=1,
        help="calls in a row per contender and turn, the median of them counting (default 1: one call "
        "each, contenders alternating call by call)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only", action="append", choices=list(SCENARIOS), help="measure only this scenario (repeatable)"
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="also time botmeter's own stages on the bot's thread in this run (each wrapped in a timer, "
        "which adds its own cost to botmeter's figure)",
    )
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()

    stages = time_stages() if args.stages else None
    load_before = os.getloadavg()
    switch = Switch()
    exporters, missing = setup_peers(switch)
    peers = list(exporters)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        meter = Meter(bot="bench", store=f"duckdb://{tmp}/bench.duckdb")
        results = {
            name: measure(name, meter, switch, peers, args.rounds, args.k, args.warmup, rng, args.block)
            for name in (args.only or SCENARIOS)
        }
        meter.flush()
        for flush in FLUSH:
            flush()
        stats = meter.stats()
        meter.close()
    cores = os.cpu_count()
    print(
        f"{args.rounds} rounds x {args.k} turns per scenario (+{args.warmup} warm-up rounds), "
        f"{args.block} call(s) in a row per contender a turn, order shuffled per turn; "
        f"python {platform.python_version()}, {cores} cores"
    )
    print(f"load average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
    for name, pkg in package_versions().items():
        print(f"  {name} {pkg or '(not installed)'}")
    if missing:
        print("peers not installed (see bench/README.md): " + ", ".join(missing))
    print()
    print(
        f"{'scenario':<24}{'bare call':>11}  "
        + "".join(f"{c + ' adds':>20}" for c in ["botmeter", *peers, USAGE_ASKED])
    )
    verdict = True
    for name, r in results.items():
        cells = []
        for contender in ["botmeter", *peers, USAGE_ASKED]:
            if contender in r["added_us"]:
                cells.append(
                    f"{r['added_us'][contender]:8.1f} us ({r['share_of_bare'][contender] * 100:5.2f}%)"
                )
            else:
                cells.append(f"{'-':>19}")
        print(f"{name:<24}{r['bare_us']:8.1f} us  " + "".join(f"{c:>20}" for c in cells))
    if stages is not None:
        print()
        print("botmeter's stages on the bot's thread, timed where they run (median of calls, all scenarios):")
        for stage, times in stages.items():
            if times:
                print(f"  {stage:<46}{statistics.median(times) * 1e6:7.1f} us  ({len(times)} calls)")
    print()
    print("the same, as medians over rounds of the mean difference (keeps stalls; for information):")
    for name, r in results.items():
        print(f"  {name:<22}" + "".join(f"{c}: {v:8.1f} us   " for c, v in r["added_mean_us"].items()))
    print()
    for name, r in results.items():
        ours = r["added_us"]["botmeter"]
        share = r["share_of_bare"]["botmeter"]
        if "botmeter_over_usage_asked_us" in r:
            print(
                f"{name}: the bare call asking for usage itself adds {r['added_us'][USAGE_ASKED]:.1f} us; "
                f"botmeter adds {r['botmeter_over_usage_asked_us']:.1f} us over that"
            )
        if name in FOR_INFORMATION:
            print(f"{name}: botmeter adds {share * 100:.2f}% of the bare call (for information, not gated)")
            continue
        ok = share <= MAX_SHARE_OF_BARE
        line = f"{name}: botmeter adds {share * 100:.2f}% of the bare call (<= {MAX_SHARE_OF_BARE:.0%}): "
        line += "PASS" if ok else "FAIL"
        verdict &= ok
        for peer in peers:
            if peer in r["added_us"]:
                theirs = r["added_us"][peer]
                ratio = ours / theirs if theirs > 0 else float("inf")
                ok = ratio <= MAX_SHARE_OF_PEER
                verdict &= ok
                line += f"; {ratio:.3f} of {peer}'s (<= {MAX_SHARE_OF_PEER}): {'PASS' if ok else 'FAIL'}"
        print(line)
    calls = (args.rounds + args.warmup) * args.k * args.block
    spans = {name: e.spans for name, e in exporters.items()}
    print(
        f"work done: botmeter wrote {stats.get('written')} events "
        f"(integration failures {stats['integration_failures']}); "
        f"spans exported to null: {spans}; {calls} calls per contender and scenario"
    )
    print(f"overall: {'PASS' if verdict else 'FAIL'}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"results": results, "packages": package_versions(), "spans": spans, "pass": verdict},
                indent=2,
            )
        )
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
