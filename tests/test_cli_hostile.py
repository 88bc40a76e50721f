"""The real ``botmeter`` command (a process per run, as a user types it) on hostile input: windows
without bounds, numbers out of range, damaged DuckDB files, and event text made of markup and
escape sequences. Every run ends with one line naming the field (or the file), a non-zero exit,
and never a traceback; stored text is printed as text."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from botmeter import Meter
from conftest import subprocess_env

HOSTILE_MODELS = [
    "gpt[/]",
    "[link=https://evil.example/]click me[/link]",
    "[bold red]loud[/]",
    "\x1b[31mred\x1b[0m",  # ANSI colour
    "\x1b]8;;https://evil.example/\x07osc-link\x1b]8;;\x07",  # OSC 8 hyperlink
    "\x1b]0;owned\x07title",  # OSC: sets the terminal's title
    "bell\x07\x9b2J",  # BEL and a C1 control sequence introducer
]
INJECTED = ["\x1b[31m", "\x1b]8;", "\x1b]0;", "\x07", "\x9b", "evil.example/\x07"]


def botmeter(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = subprocess_env(COLUMNS="250", FORCE_COLOR="1", TERM="xterm-256color")
    return subprocess.run(
        [sys.executable, "-m", "botmeter", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "bot.duckdb"
    m = Meter(bot="b", store=f"duckdb://{path}", hash_key="ab" * 16)
    for model in HOSTILE_MODELS:
        m.track_llm_call(provider="openai", model=model, input_tokens=10, cost_usd=0.01)
        m.track_activity(model)
        m.track_error(RuntimeError(f"boom {model}"), stage=model)
    for i in range(20):
        m.track_message(direction="in", text="hi", user=f"u{i}", conversation=f"c{i}")
    assert m.flush()
    m.close()
    return path


def _one_line_error(run: subprocess.CompletedProcess, *words: str) -> None:
    out = run.stdout + run.stderr
    assert "Traceback" not in out, out
    assert run.returncode != 0, out
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("Error:"), out
    for word in words:
        assert word in last, (word, last)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["query", "messages", "--days", "99999999999"], ["days", "99999999999"]),
        (["query", "messages", "--days", "0"], ["days", "0"]),
        (["query", "messages", "--end", "9999-12-31T23:59:59"], ["end", "9999-12-31"]),
        (["query", "messages", "--end", "9999-12-31T23:59:59-05:00"], ["end", "9999-12-31"]),
        (["query", "messages", "--start", "0001-01-01", "--interval", "hour"], ["start", "0001-01-01"]),
        (
            ["query", "messages", "--start", "2020-01-01", "--interval", "hour"],
            ["interval", "hour", "10,000"],
        ),
        (["errors", "--start", "0001-01-01"], ["start", "0001-01-01"]),
        (["errors", "--days", "99999999999"], ["days", "99999999999"]),
        (
            ["query", "cost_usd", "--by", "model", "--interval", "none", "--limit", "99999999999999999999"],
            ["limit", "99999999999999999999"],
        ),
        (["export", "--start", "0001-01-01", "--output", "OUT/e.jsonl"], ["start", "0001-01-01"]),
        (["export", "--days", "40000", "--output", "OUT/e.jsonl"], ["days", "40000"]),
        (["dashboard", "--budget", "nan", "--output", "OUT/d.html"], ["--budget", "nan"]),
        (["dashboard", "--budget", "inf", "--output", "OUT/d.html"], ["--budget", "inf"]),
        (["dashboard", "--days", "99999999999", "--output", "OUT/d.html"], ["--days", "99999999999"]),
        (["summary", "--days", "99999999999"], ["--days", "99999999999"]),
    ],
)
def test_bad_values_are_one_line_errors(filled, tmp_path, args, words):
    args = [a.replace("OUT", str(tmp_path)) for a in args]
    _one_line_error(botmeter(*args, "--store", f"duckdb://{filled}"), *words)
    assert not list(tmp_path.iterdir())  # nothing half-written


def _damaged(original: Path, kind: str, into: Path) -> Path:
    data = original.read_bytes()
    rnd = random.Random(kind)
    path = into / f"{kind}.duckdb"
    if kind == "directory":
        path.mkdir()
        return path
    content = {
        "empty": b"",
        "truncated_100": data[:100],
        "truncated_12k": data[:12288],
        "truncated_half": data[: len(data) // 2],
        "zeroed_header": b"\0" * 4096 + data[4096:],
        "bad_magic": data[:8] + b"XXXX" + data[12:],
        "random_block": data[:8192] + rnd.randbytes(8192) + data[16384:],
        "random_middle": data[: len(data) // 3] + rnd.randbytes(20000) + data[len(data) // 3 + 20000 :],
        "random_tail": data[:-8192] + rnd.randbytes(8192),
        "all_random": rnd.randbytes(len(data)),
        "text": b"this is not a database\n" * 40,
    }[kind]
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "kind",
    ["empty", "truncated_100", "truncated_12k", "truncated_half", "zeroed_header", "bad_magic",
     "random_block", "random_middle", "random_tail", "all_random", "text", "directory"],
)  # fmt: skip
def test_a_damaged_store_file_is_named_not_a_traceback(filled, tmp_path, kind):
    # A copy of a real store with more data, so that reads find the damage at various depths.
    path = _damaged(filled, kind, tmp_path)
    for args in (["query", "llm_calls", "--by", "model", "--interval", "none"], ["explore"], ["summary"]):
        run = botmeter(*args, "--store", f"duckdb://{path}")
        out = run.stdout + run.stderr
        assert "Traceback" not in out, (kind, args, out)
        if run.returncode != 0:  # refused: one line naming the file
            assert run.stderr.strip().splitlines()[-1].startswith("Error:") and str(path) in run.stderr
        else:  # the damage was not on the way of this read, or the answer names what is missing
            assert "damaged" in out or str(path) not in out or "Not available" in out


@pytest.mark.parametrize(
    "args",
    [
        ["query", "llm_calls", "--by", "model", "--interval", "none"],
        ["query", "activities", "--by", "name", "--interval", "day", "--days", "2"],
        ["explore"],
        ["errors"],
        ["status"],
    ],
)
def test_stored_markup_and_escape_sequences_print_as_text(filled, args):
    run = botmeter(*args, "--store", f"duckdb://{filled}")
    out = run.stdout + run.stderr
    assert run.returncode == 0 and "Traceback" not in out, out
    for sequence in INJECTED:
        assert sequence not in out, (sequence, out)
    if args[0] in ("query", "explore"):  # shown as typed (explore lists the top 5 values)
        assert "[link=https://evil.example/]click me[/link]" in out and "[bold red]loud[/]" in out
    if args[0] == "query":
        assert "gpt[/]" in out


def test_the_rest_of_the_row_survives_the_markup(filled):
    run = botmeter("query", "llm_calls", "--by", "model", "--interval", "none", "--format", "json",
                   "--store", f"duckdb://{filled}")  # fmt: skip
    assert run.returncode == 0
    assert "gpt[/]" in run.stdout and "\\u001b[31m" in run.stdout  # JSON keeps the data, escaped
