"""meter.context(): user, conversation and stage for every track call inside the block.

Both recorders (the C fast path and the pure-Python twin) must fill the same fields the same way.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

import botmeter
from botmeter import Meter, current_context
from botmeter.collect.context import context
from botmeter.collect.recorder import fast_path_available, make_recorder
from botmeter.events import RECORD_CALLS, RECORDS
from conftest import query

IMPLEMENTATIONS = [pytest.param(True, id="python")]
if fast_path_available():
    IMPLEMENTATIONS.insert(0, pytest.param(False, id="c"))


@pytest.fixture(params=IMPLEMENTATIONS)
def recorder(request):
    return make_recorder(1000, pure_python=request.param)


def fields(buf, call, *names):
    columns = buf.drain_columns()[RECORD_CALLS.index(call)]
    assert columns is not None, f"no {call} record"
    spec = RECORDS[call]
    return [tuple(row[spec.index(n)] for n in names) for row in zip(*columns, strict=True)]


def test_calls_inside_a_block_get_its_fields(recorder):
    buf, fns = recorder
    with context(user="+15551234567", conversation="c-1", stage="llm"):
        fns["track_llm_call"](provider="openai", model="gpt-4o", input_tokens=3)
        fns["track_error"](ValueError("x"))
        fns["track_message"](direction="in")
    fns["track_message"](direction="out")  # after the block: nothing
    assert fields(buf, "track_llm_call", "user", "conversation", "stage") == [("+15551234567", "c-1", "llm")]
    # fields(...) drained the buffer; track again to read the other lanes
    with context(user="u", conversation="c", stage="reply"):
        fns["track_error"](ValueError("x"))
        fns["track_timing"]("retrieval", 3.0)  # timing's stage is required: the call's own is kept
        fns["track_activity"]("reset")
    columns = buf.drain_columns()
    spec = RECORDS["track_error"]
    (error,) = zip(*columns[RECORD_CALLS.index("track_error")], strict=True)
    assert (error[spec.index("user")], error[spec.index("stage")]) == ("u", "reply")
    spec = RECORDS["track_timing"]
    (timing,) = zip(*columns[RECORD_CALLS.index("track_timing")], strict=True)
    assert (timing[spec.index("stage")], timing[spec.index("conversation")]) == ("retrieval", "c")
    spec = RECORDS["track_activity"]
    (activity,) = zip(*columns[RECORD_CALLS.index("track_activity")], strict=True)
    assert activity[spec.index("user")] == "u"


def test_a_call_that_gives_a_field_keeps_it(recorder):
    buf, fns = recorder
    with context(user="ctx-user", conversation="ctx-conv", stage="ctx-stage"):
        fns["track_llm_call"](provider="openai", model="m", user="own", stage="own-stage")
    expected = [("own", "ctx-conv", "own-stage")]
    assert fields(buf, "track_llm_call", "user", "conversation", "stage") == expected


def test_nested_blocks_override_and_inherit(recorder):
    buf, fns = recorder
    with context(user="u1", conversation="c1"):
        with context(conversation="c2", stage="s2"):
            assert current_context() == botmeter.Context("u1", "c2", "s2")
            fns["track_llm_call"](provider="p", model="m")
        fns["track_llm_call"](provider="p", model="m")
    fns["track_llm_call"](provider="p", model="m")
    assert fields(buf, "track_llm_call", "user", "conversation", "stage") == [
        ("u1", "c2", "s2"),
        ("u1", "c1", None),
        (None, None, None),
    ]
    assert current_context() == botmeter.Context()


def test_threads_with_a_copied_context_and_asyncio_tasks_see_it(recorder):
    buf, fns = recorder

    def in_thread():
        fns["track_message"](direction="in")

    async def handler(user):
        with context(user=user):
            await asyncio.sleep(0)  # let the other task run inside its own block
            fns["track_message"](direction="in")
            await asyncio.create_task(asyncio.sleep(0))

    async def main():
        await asyncio.gather(handler("a"), handler("b"))
        with context(user="to_thread"):
            await asyncio.to_thread(in_thread)

    asyncio.run(main())
    with context(user="copied"):
        ctx = contextvars.copy_context()
    t = threading.Thread(target=ctx.run, args=(in_thread,))
    t.start()
    t.join()
    plain = threading.Thread(target=in_thread)  # a plain thread starts with an empty context
    plain.start()
    plain.join()
    assert fields(buf, "track_message", "user") == [("a",), ("b",), ("to_thread",), ("copied",), (None,)]


def test_bad_values_are_refused_when_the_block_opens():
    with pytest.raises(TypeError, match=r"user must be a str or int or None, got \[1\]"), context(user=[1]):
        pass
    with pytest.raises(TypeError, match="context: stage must be a str or None, got 3"), context(stage=3):
        pass
    assert current_context() == botmeter.Context()


def test_meter_context_reaches_the_store(store_url, store_path):
    meter = Meter(bot="b", store=store_url, hash_users=False)
    with meter.context(user="alice", conversation="c-9", stage="answer"):
        meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=10, output_tokens=2)
    meter.close()
    stored = query(store_path, "SELECT user_id, conversation_id, stage FROM events")
    assert stored == [("alice", "c-9", "answer")]
