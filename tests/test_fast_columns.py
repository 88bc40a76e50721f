"""The writer's C column helpers give exactly what the Python reference gives."""

from __future__ import annotations

import math
import random

import pyarrow as pa
import pytest

from botmeter.collect.recorder import fast_path_available
from botmeter.process.pipeline import to_array
from botmeter.process.sms import segments_column, sms_parts

pytestmark = pytest.mark.skipif(not fast_path_available(), reason="C fast path not built")

ALPHABETS = [
    "abcXYZ 019.,!?",  # plain GSM basic
    "abc éàüÑ£¥§¿Δ",  # GSM basic beyond ASCII
    "ab{}[]~|^€\\",  # extension: two septets each
    "abcçĞ",  # not GSM-7 (ç is not in the basic set): UCS-2
    "ab😀🐱",  # astral: two UTF-16 units each
    "ab`",  # the backtick is not GSM-7
]


def random_texts(rng: random.Random, count: int) -> list[str | None]:
    texts: list[str | None] = [None, ""]
    for _ in range(count):
        alphabet = "".join(rng.sample(ALPHABETS, rng.randint(1, 3)))
        # Lengths cluster around the segment boundaries, where counting goes wrong.
        length = rng.choice(
            [rng.randint(0, 400), *(b + rng.randint(-3, 3) for b in (67, 70, 134, 153, 160, 306))]
        )
        texts.append("".join(rng.choice(alphabet) for _ in range(max(length, 0))))
    return texts


def test_segments_column_matches_sms_parts():
    texts = random_texts(random.Random(11), 3000)
    expected = [float(sms_parts(t or "")[0]) for t in texts]
    assert segments_column(texts) == expected


@pytest.mark.parametrize(
    ("values", "typ"),
    [
        ([1.5, None, 3, 0.0, math.inf, -2.5], pa.float64()),
        ([1, None, 2**40, 0], pa.int64()),
        (["a", None, "é😀", "", "long" * 100], pa.string()),
        ([None, None], pa.string()),
        ([], pa.float64()),
    ],
)
def test_to_array_equals_pyarrow(values, typ):
    fast = to_array(values, typ)
    assert fast.equals(pa.array(values, typ))
    fast.validate(full=True)


def test_to_array_falls_back_on_unexpected_values():
    # Ints in a text column, huge ints, a lone surrogate: pyarrow's converter decides (or raises).
    assert to_array([1, "a"], pa.string(), str).to_pylist() == ["1", "a"]
    with pytest.raises(OverflowError):
        to_array([2**70], pa.int64())
    with pytest.raises((pa.ArrowInvalid, UnicodeEncodeError)):
        to_array(["\ud800"], pa.string())
