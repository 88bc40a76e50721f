"""Error-message masking time against message length: linear, and bounded where it runs.

Masking runs on the writer thread and holds the GIL, so while it runs the bot's own threads wait.
For each message shape built to make a backtracking pattern re-read a long run (and one ordinary
error text), it times:

- ``mask_text`` on the whole message (every pattern, quoted prose included, with no length
  bound): the time per character stays flat as the length grows when every pattern is linear;
- ``normalise_message`` (what the pipeline runs): it reads at most 2,000 characters, so its time
  stays flat whatever the length.

Each figure is the best of ``--repeat`` runs.

    PYTHONPATH=src .venv/bin/python bench/masking.py [--lengths 1000,10000,100000,1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from botmeter.process.error_facts import mask_text, normalise_message
from test_errors import ADVERSARIAL

# The shapes the tests hold masking to (tests/test_errors.py), and one ordinary error text.
SHAPES: dict[str, Callable[[int], str]] = {
    **ADVERSARIAL,
    "error text": lambda n: (
        "order 1182 for +44 7911 123456 failed (req_AbC123xyz9), see https://x.io/o/1182 ana@x.io "
        * (n // 90 + 1)
    )[:n],
}


def mask_every_way(text: str) -> str:
    return mask_text(text, keep_quoted=False)  # quoted prose too, as with BOTMETER_STORE_TEXT off


def best(fn: Callable[[str], str], text: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1000,10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    print(f"{'shape':<18} {'length':>10} {'mask_text ms':>13} {'ns/char':>8} {'normalise ms':>13}")
    for shape, build in SHAPES.items():
        for n in lengths:
            text = build(n)
            whole = best(mask_every_way, text, args.repeat)
            bounded = best(normalise_message, text, args.repeat)
            per_char = whole * 1e9 / max(n, 1)
            print(f"{shape:<18} {n:>10,} {whole * 1e3:>13.2f} {per_char:>8.0f} {bounded * 1e3:>13.3f}")


if __name__ == "__main__":
    main()
