"""The CLI's tables as a terminal shows them: money with its symbol and a total, the largest first for
one bucket, long names wrapped rather than cut, and no colour that means nothing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from rich.console import ColorSystem

from botmeter.demo import run_demo
from botmeter.interfaces.cli import console, main


@pytest.fixture(scope="module")
def demo(tmp_path_factory, clean_env_for_module) -> str:
    url = f"duckdb://{tmp_path_factory.mktemp('terminal') / 'demo.duckdb'}"
    run_demo(url, days=10, users=40, seed=3, progress=False)
    return url


def _cells(output: str) -> list[list[str]]:
    """The table's rows as cell texts (continuation lines of wrapped cells joined on)."""
    rows: list[list[str]] = []
    for line in output.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        if rows and cells[0] == "" and any(cells):
            rows[-1] = [(a + b) if b else a for a, b in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    return rows


def test_money_has_its_symbol_a_total_and_the_largest_first(demo, monkeypatch):
    runner = CliRunner(env={"COLUMNS": "100"})
    args = ["query", "cost_usd", "--days", "7", "--interval", "none", "--by", "provider,model"]
    out = runner.invoke(main, [*args, "--store", demo])
    assert out.exit_code == 0, out.output
    rows = _cells(out.output)
    *groups, total = rows
    assert total[0] == "total" and all(r[-1].startswith("$") or r[-1] == "unpriced" for r in rows)
    values = [float(r[-1].strip("$").replace(",", "")) for r in groups if r[-1] != "unpriced"]
    assert values == sorted(values, reverse=True) and len(values) >= 4
    exact = json.loads(runner.invoke(main, [*args, "--format", "json", "--store", demo]).output)
    assert total[-1] == f"${sum(r['value'] or 0 for r in exact):,.2f}"
    assert "bucket" not in out.output  # one bucket: its start says nothing
    # No escape codes: colour is for what means something, and a plain number means nothing special.
    assert "\x1b[" not in out.output
    # Piped output never has colour, so ask again as a colour terminal would: the title, header and
    # total are styled there, and the rows of figures still are not.
    monkeypatch.setattr(console, "_force_terminal", True)
    monkeypatch.setattr(console, "_color_system", ColorSystem.STANDARD)
    shown = runner.invoke(main, [*args, "--store", demo])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "\x1b[" in "".join(lines[:3]), lines[:3]  # a terminal: styles are drawn
    body = [line for line in lines if line.startswith("│")]
    *figures, total_line = body
    assert len(body) == len(rows) and "total" in total_line
    assert not [line for line in figures if "\x1b[" in line], figures


def test_long_names_wrap_instead_of_being_cut(demo):
    out = CliRunner(env={"COLUMNS": "70"}).invoke(
        main, ["query", "llm_calls", "--days", "7", "--interval", "none", "--by", "model", "--store", demo]
    )
    assert out.exit_code == 0, out.output
    assert "…" not in out.output
    models = [r[0] for r in _cells(out.output)]
    assert any(len(m) > 30 for m in models), models  # the demo's fine-tuned model, whole
    listing = CliRunner(env={"COLUMNS": "100"}).invoke(main, ["metrics"]).output
    assert "…" not in listing
    # Dimension lists wrap between their words: each line of cost_usd's holds whole names.
    lines = listing.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("│ cost_usd "))
    pieces = []
    for line in lines[first:]:
        cells = [c.strip() for c in line.strip("│").split("│")]
        if line is not lines[first] and cells[0]:
            break
        pieces += [p for p in cells[3].split(" ") if p]
    assert {p.rstrip(",") for p in pieces} >= {"provider", "model", "kind", "country", "direction"}
