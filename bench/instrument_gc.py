"""CPU time and garbage-collector time of streamed OpenAI chat calls, bare and instrumented.

Wall-clock medians (bench/instrument.py) move by tens of microseconds on a shared machine; this
reads the calling thread's CPU time and, through ``gc.callbacks``, the time the garbage collector
spends and the objects it frees. A call that leaves reference cycles behind shows there: the bare
SDK call leaves none. Same mock API as bench/instrument.py (33-token reply, 37 events).

    PYTHONPATH=src .venv/bin/python bench/instrument_gc.py [--calls 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import httpx2
import openai

import instrument as bench
from botmeter import Meter

GC = {"start": 0, "spent": 0, "freed": 0, "collections": [0, 0, 0]}


def on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        GC["start"] = time.thread_time_ns()
    else:
        GC["spent"] += time.thread_time_ns() - GC["start"]
        GC["freed"] += info["collected"]
        GC["collections"][info["generation"]] += 1


def async_client() -> openai.AsyncOpenAI:
    async def api(request: httpx2.Request) -> httpx2.Response:
        return bench.openai_api(request)

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(api))
    return openai.AsyncOpenAI(api_key="sk-bench", http_client=http, max_retries=0)


async def streamed_async(client: Any, n: int) -> None:
    for _ in range(n):
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=bench.MESSAGES, stream=True
        )
        async for _ in stream:
            pass


def run(client: Any, n: int, loop: asyncio.AbstractEventLoop | None) -> None:
    if loop is None:
        for _ in range(n):
            bench.chat_streamed(client)
    else:
        loop.run_until_complete(streamed_async(client, n))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    calls = parser.parse_args().calls
    gc.callbacks.append(on_gc)
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory() as tmp:
        meter = Meter(bot="bench", store=f"duckdb://{tmp}/bench.duckdb")
        for mode in ("sync", "async"):
            make = bench.openai_client if mode == "sync" else async_client
            on = None if mode == "sync" else loop
            for name, client in (("bare", make()), ("botmeter", meter.instrument(make()))):
                run(client, 50, on)
                gc.collect()
                GC.update(spent=0, freed=0, collections=[0, 0, 0])
                start = time.thread_time_ns()
                run(client, calls, on)
                cpu = (time.thread_time_ns() - start) / calls / 1e3
                in_gc = GC["spent"] / calls / 1e3
                print(
                    f"{mode:5s} {name:8s} CPU {cpu:6.0f} us a call, of it the GC {in_gc:5.1f} us;"
                    f" objects the GC freed {GC['freed'] / calls:5.1f} a call; collections by generation"
                    f" {GC['collections']}"
                )
        loop.close()
        meter.close()


if __name__ == "__main__":
    main()
