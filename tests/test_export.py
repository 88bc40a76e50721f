"""Exports and import on real DuckDB files: events out in each format and back into a fresh store (the
same events, the same answers, nothing twice), metrics exports equal to `botmeter query`, bad files
refused before anything is written, the window, and the command line's errors."""

from __future__ import annotations

import csv
import json
import math
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from botmeter import Meter
from botmeter.analyse.catalogue import CATALOGUE
from botmeter.demo import run_demo
from botmeter.events import COLUMNS
from botmeter.interfaces.cli import main
from botmeter.report.export import ExportError, import_events
from botmeter.store import open_store
from conftest import query, scalar

FORMATS = ("json", "csv", "parquet")
NOW = datetime.now(UTC)
# A fixed window around the demo's days, the same for the export and for `botmeter query`.
START = (NOW - timedelta(days=12)).strftime("%Y-%m-%dT00:00:00Z")
END = (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:00:00Z")
# What a user would compare after an import: several metrics, broken down.
QUERIES = (
    ("cost_usd", "--by", "model"),
    ("active_users",),
    ("conversations",),
    ("latency_ms", "--stat", "p95"),
    ("latency_ms", "--by", "stage", "--stat", "p50,p95,p99", "--interval", "none"),
    ("errors", "--by", "category"),
    ("messages_per_conversation", "--stat", "avg,p90", "--interval", "week"),
    ("retention", "--interval", "week"),
)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def ok(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.output


def bot_query(store: str, metric: str, *args: str) -> list[dict[str, Any]]:
    window = ("--start", START, "--end", END)
    rest = args if "--interval" in args else (*args, "--interval", "day")
    return json.loads(ok("query", metric, *window, *rest, "--format", "json", "--store", store))


def events(path: Path) -> list[tuple]:
    """Every stored event, every column, in id order; properties parsed (JSON may respell them)."""
    rows = query(path, f"SELECT {', '.join(COLUMNS)} FROM events ORDER BY event_id")
    at = list(COLUMNS).index("properties")
    return [(*r[:at], None if r[at] is None else json.loads(r[at]), *r[at + 1 :]) for r in rows]


def same(a: Any, b: Any) -> bool:
    """Equal, floats up to the last digits (sums added up in another order after an import)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.fixture(scope="module")
def demo(tmp_path_factory, clean_env_for_module) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BOTMETER_STORE_TEXT", "true")  # message text too: Unicode, quotes, emoji
        run_demo(f"duckdb://{path}", days=10, users=60, seed=5, end=NOW, progress=False)
    return f"duckdb://{path}", path


@pytest.fixture
def copy_of_demo(demo, tmp_path) -> tuple[str, Path]:
    path = tmp_path / "copy.duckdb"
    shutil.copy(demo[1], path)
    return f"duckdb://{path}", path


# -- events: out and back in ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_events_make_the_round_trip(demo, copy_of_demo, tmp_path, fmt):
    url, path = demo
    exported = tmp_path / "out" / f"events.{fmt}"
    out = ok("export", "--start", START, "--end", END, "--output", str(exported), "--store", url)
    total = scalar(path, "SELECT count(*) FROM events")
    assert f"exported {total:,} events" in out and exported.exists()
    assert not list(exported.parent.glob(".*"))  # nothing left beside it

    fresh = tmp_path / "fresh.duckdb"
    out = ok("import", str(exported), "--store", f"duckdb://{fresh}")
    assert f"read {total:,} events: added {total:,}, skipped 0" in out
    assert events(fresh) == events(path)
    for q in QUERIES:
        assert same(bot_query(f"duckdb://{fresh}", *q), bot_query(url, *q)), q

    # Again, into the new store and into the original: nothing is added twice.
    again = ok("import", str(exported), "--store", f"duckdb://{fresh}")
    assert f"added 0, skipped {total:,}" in again
    copy_url, copy_path = copy_of_demo
    assert f"added 0, skipped {total:,}" in ok("import", str(exported), "--store", copy_url)
    assert events(copy_path) == events(path)
    assert events(fresh) == events(path)
    for q in QUERIES[:3]:
        assert same(bot_query(f"duckdb://{fresh}", *q), bot_query(url, *q)), q


def test_what_each_events_file_looks_like(demo, tmp_path):
    url, path = demo
    first = query(path, "SELECT event_id::VARCHAR, ts FROM events ORDER BY ts, event_id LIMIT 1")[0]
    for fmt in FORMATS:
        ok("export", "--start", START, "--end", END, "--output", str(tmp_path / f"e.{fmt}"), "--store", url)
    # JSON: one array (a valid document), every column in stored order, ISO times with Z.
    items = json.loads((tmp_path / "e.json").read_text())
    assert list(items[0]) == list(COLUMNS)
    assert items[0]["event_id"] == first[0]
    assert items[0]["ts"] == first[1].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert any(isinstance(i["properties"], dict) for i in items)
    # CSV: a header of every column, properties as JSON text.
    with open(tmp_path / "e.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(COLUMNS) and rows[0]["event_id"] == first[0]
    assert all(r["ts"].endswith("Z") for r in rows)
    assert any(r["properties"].startswith("{") for r in rows)
    # Parquet: native types; the time a UTC timestamp.
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.column_names == list(COLUMNS)
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("input_tokens").type == pa.int64()
    assert table.schema.field("cost_usd").type == pa.float64()
    assert str(table.column("event_id")[0].as_py()) == first[0]
    assert len(items) == len(rows) == table.num_rows


def test_json_lines_and_files_without_optional_columns_import(demo, tmp_path):
    url, path = demo
    array = tmp_path / "e.json"
    ok("export", "--start", START, "--end", END, "--output", str(array), "--store", url)
    items = json.loads(array.read_text())
    lines = tmp_path / "e.jsonl"
    lines.write_text("".join(json.dumps(i) + "\n" for i in items))
    fresh = tmp_path / "lines.duckdb"
    assert "skipped 0" in ok("import", str(lines), "--store", f"duckdb://{fresh}")
    assert events(fresh) == events(path)

    # Only what an event must have, plus a user: the rest is NULL.
    slim = tmp_path / "slim.csv"
    slim.write_text(
        "kind,ts,event_id,user_id,name\n"
        "message,2026-11-02T10:00:00Z,5b0f7c52-8a7e-4d55-9f57-3d1c2b7c9a10,u1,\n"
        'activity,2026-11-02T10:00:01+02:00,5b0f7c52-8a7e-4d55-9f57-3d1c2b7c9a11,"",reset\n'
    )
    target = tmp_path / "slim.duckdb"
    result = import_events(open_store(f"duckdb://{target}"), slim)
    assert (result.read, result.added, result.skipped) == (2, 2, 0)
    stored = query(target, "SELECT kind, ts, user_id, name, bot, cost_usd FROM events ORDER BY ts")
    # The offset is honoured (08:00 UTC), and "" (quoted: an empty text) is kept apart from an empty
    # cell (no value), as DuckDB writes them.
    assert stored == [
        ("activity", datetime(2026, 11, 2, 8, 0, 1), "", "reset", None, None),
        ("message", datetime(2026, 11, 2, 10, 0), "u1", None, None, None),
    ]


def test_a_large_file_goes_in_batches_each_checked_before_the_first(demo, tmp_path):
    url, path = demo
    exported = tmp_path / "e.parquet"
    ok("export", "--start", START, "--end", END, "--output", str(exported), "--store", url)
    fresh = open_store(f"duckdb://{tmp_path / 'batched.duckdb'}")
    result = import_events(fresh, exported, batch_rows=1000)
    assert result.added == result.read == fresh.count()
    assert events(tmp_path / "batched.duckdb") == events(path)

    # A bad value in the last row: refused before the first batch is written.
    table = pq.read_table(exported)
    tokens = table.column("input_tokens").to_pylist()
    tokens[-1] = -1
    bad = table.set_column(table.column_names.index("input_tokens"), "input_tokens", pa.array(tokens))
    pq.write_table(bad, tmp_path / "bad.parquet")
    other = open_store(f"duckdb://{tmp_path / 'other.duckdb'}")
    with pytest.raises(ExportError, match=rf"row {table.num_rows:,}, input_tokens: '-1'"):
        import_events(other, tmp_path / "bad.parquet", batch_rows=1000)
    assert other.count() == 0


# -- metrics: what `botmeter query` gives ----------------------------------------------------------


@pytest.fixture(scope="module")
def answers(demo) -> dict[str, list[dict[str, Any]]]:
    """`botmeter query METRIC --start --end --interval day --format json` for every metric."""
    return {name: bot_query(demo[0], name) for name in CATALOGUE}


def _long_rows(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_metric.setdefault(row["metric"], []).append(row)
    return by_metric


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_metrics_export_is_what_botmeter_query_gives(demo, answers, tmp_path, fmt):
    url, _ = demo
    out = tmp_path / f"metrics.{fmt}"
    window = ("--start", START, "--end", END)
    ok("export", "--what", "metrics", *window, "--output", str(out), "--store", url)
    if fmt == "json":
        doc = json.loads(out.read_text())
        assert (doc["schema"], doc["version"], doc["interval"]) == ("botmeter.metrics_export", 1, "day")
        assert doc["period"] == {"start": START, "end": END} and doc["unavailable"] == {}
        assert list(doc["metrics"]) == list(CATALOGUE)
        for name, rows in answers.items():
            entry = doc["metrics"][name]
            assert entry["rows"] == rows, name
            assert entry["unit"] == CATALOGUE[name].unit and entry["stats"] == [CATALOGUE[name].stats[0]]
        return
    if fmt == "csv":
        with open(out, newline="") as f:
            got = _long_rows(list(csv.DictReader(f)))
        for name, rows in answers.items():
            assert len(got[name]) == len(rows), name
            for want, row in zip(rows, got[name], strict=True):
                # The cells `botmeter query --format csv` would print: str() of each value, "" for none.
                assert {k: row[k] for k in want} == {k: "" if v is None else str(v) for k, v in want.items()}
                assert row["unit"] == CATALOGUE[name].unit and row["unavailable"] == ""
        return
    table = pq.read_table(out)
    assert table.schema.field("bucket").type == pa.timestamp("us", tz="UTC")
    header = json.loads(table.schema.metadata[b"botmeter.metrics_export"])
    assert header["period"] == {"start": START, "end": END} and header["unavailable"] == {}
    got = _long_rows(table.to_pylist())
    for name, rows in answers.items():
        assert len(got[name]) == len(rows), name
        for want, row in zip(rows, got[name], strict=True):
            row = {**row, "bucket": row["bucket"].strftime("%Y-%m-%dT%H:%M:%SZ")}
            assert {k: row[k] for k in want} == want, name


def test_several_statistics_and_the_days_window(demo, tmp_path):
    url, _ = demo
    out = tmp_path / "latency.csv"
    ok("export", "--what", "metrics", "--metric", "latency_ms", "--stat", "p50,p95", "--interval", "none",
       "--start", START, "--end", END, "--output", str(out), "--store", url)  # fmt: skip
    with open(out, newline="") as f:
        (row,) = csv.DictReader(f)
    want = bot_query(url, "latency_ms", "--stat", "p50,p95", "--interval", "none")[0]
    assert (row["p50"], row["p95"]) == (str(want["p50"]), str(want["p95"]))
    assert "value" not in row

    # --days: today so far and the days before, as `botmeter query --days` reads it.
    day = datetime.now(UTC).date()
    doc_path = tmp_path / "week.json"
    ok("export", "--what", "metrics", "--days", "7", "--metric", "cost_usd,active_users,errors",
       "--output", str(doc_path), "--store", url)  # fmt: skip
    doc = json.loads(doc_path.read_text())
    queried = {
        name: json.loads(ok("query", name, "--days", "7", "--format", "json", "--store", url))
        for name in doc["metrics"]
    }
    if datetime.now(UTC).date() != day:
        pytest.skip("midnight UTC passed between the export and the queries")
    assert doc["period"]["start"] == f"{day - timedelta(days=6)}T00:00:00Z"
    assert list(doc["metrics"]) == ["cost_usd", "active_users", "errors"]
    for name, rows in queried.items():
        assert doc["metrics"][name]["rows"] == rows, name


def test_metrics_a_query_cannot_give_are_listed_not_zero(demo, tmp_path):
    url, _ = demo
    out = tmp_path / "m.csv"
    result = invoke(
        "export", "--what", "metrics", "--interval", "month", "--output", str(out), "--store", url
    )
    assert result.exit_code == 0, result.output
    assert "not exported: retention" in result.output
    with open(out, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "retention"]
    assert len(rows) == 1 and "day or week" in rows[0]["unavailable"] and rows[0]["value"] == ""
    # Named, the same metric is an error: the user asked for it at an interval it does not have.
    named = invoke("export", "--what", "metrics", "--metric", "retention", "--interval", "month",
                   "--output", str(out), "--store", url)  # fmt: skip
    assert named.exit_code != 0 and "day or week" in named.output


# -- bad files ---------------------------------------------------------------------------------------

GOOD = {
    "event_id": "5b0f7c52-8a7e-4d55-9f57-3d1c2b7c9a10",
    "ts": "2026-11-02T10:00:00.000000Z",
    "bot": "b",
    "kind": "llm_call",
    "input_tokens": 10,
    "latency_ms": 120.5,
    "properties": {"a": 1},
}


def _ids(n: int) -> list[str]:
    return [f"5b0f7c52-8a7e-4d55-9f57-{i:012x}" for i in range(1, n + 1)]


def _events(change: dict[str, Any], drop: str | None = None) -> list[dict[str, Any]]:
    """Three good events; the second one changed."""
    rows = [{**GOOD, "event_id": i} for i in _ids(3)]
    rows[1] = {**rows[1], **change}
    if drop:
        rows = [{k: v for k, v in r.items() if k != drop} for r in rows]
    return rows


BAD_JSON = [
    ({"event_id": "not-a-uuid"}, 'row 2, event_id: "not-a-uuid" is not a UUID'),
    ({"ts": "yesterday"}, 'row 2, ts: "yesterday" is not an ISO-8601 time'),
    ({"ts": 1762077600}, "row 2, ts: 1762077600 is not an ISO-8601 time"),
    ({"ts": None}, "row 2, ts: missing"),
    ({"input_tokens": -5}, "row 2, input_tokens: -5 is not a whole number >= 0"),
    ({"input_tokens": 2.5}, "row 2, input_tokens: 2.5 is not a whole number >= 0"),
    ({"input_tokens": "12"}, 'row 2, input_tokens: "12" is not a whole number >= 0'),
    ({"latency_ms": "fast"}, 'row 2, latency_ms: "fast" is not a finite number >= 0'),
    ({"kind": "chat"}, 'row 2, kind: "chat" is not one of message, llm_call'),
    ({"model": 4}, "row 2, model: 4 is not text"),
    ({"properties": [1, 2]}, "row 2, properties: [1,2] is not a JSON object"),
    ({"colour": "red"}, "unknown column 'colour'"),
]


@pytest.mark.parametrize(("change", "message"), BAD_JSON, ids=[m.split(":")[0] for _, m in BAD_JSON])
def test_a_bad_json_value_is_named_and_nothing_is_written(copy_of_demo, tmp_path, change, message):
    url, path = copy_of_demo
    before = scalar(path, "SELECT count(*) FROM events")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_events(change)))
    result = invoke("import", str(bad), "--store", url)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "nothing imported" in result.output or "unknown column" in result.output
    assert scalar(path, "SELECT count(*) FROM events") == before


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({"input_tokens": "abc"}, "row 2, input_tokens: 'abc' is not a whole number >= 0"),
        ({"input_tokens": "-1"}, "row 2, input_tokens: '-1' is not a whole number >= 0"),
        ({"cost_usd": "1,5"}, "row 2, cost_usd: '1,5' is not a finite number >= 0"),
        ({"cost_usd": "nan"}, "row 2, cost_usd: 'nan' is not a finite number >= 0"),
        ({"ts": "2026-13-45"}, "row 2, ts: '2026-13-45' is not an ISO-8601 time"),
        ({"properties": "{oops"}, "row 2, properties: '{oops' is not a JSON object"),
        ({"kind": ""}, "row 2, kind: missing; every event needs event_id, ts and kind"),  # an empty cell
    ],
)
def test_a_bad_csv_cell_is_named_and_nothing_is_written(copy_of_demo, tmp_path, cells, message):
    url, path = copy_of_demo
    before = scalar(path, "SELECT count(*) FROM events")
    bad = tmp_path / "bad.csv"
    columns = ["event_id", "ts", "kind", "input_tokens", "cost_usd", "properties"]
    with open(bad, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for i, event_id in enumerate(_ids(3)):
            row = {"event_id": event_id, "ts": GOOD["ts"], "kind": "llm_call", "input_tokens": "3",
                   "cost_usd": "0.5", "properties": '{"a":1}'}  # fmt: skip
            writer.writerow({**row, **cells} if i == 1 else row)
    with pytest.raises(ExportError) as caught:
        import_events(open_store(url), bad)
    assert message in str(caught.value)
    assert scalar(path, "SELECT count(*) FROM events") == before


def test_missing_columns_and_wrong_parquet_types_are_named(tmp_path):
    target = open_store(f"duckdb://{tmp_path / 'empty.duckdb'}")
    no_id = tmp_path / "no_id.json"
    no_id.write_text(json.dumps(_events({}, drop="event_id")))
    with pytest.raises(ExportError, match="no event_id column; every event needs event_id, ts and kind"):
        import_events(target, no_id)
    # Parquet keeps types: text where a number belongs is wrong even when it spells one.
    table = pa.table({"event_id": _ids(2), "ts": [GOOD["ts"]] * 2, "kind": ["message"] * 2,
                      "chars": ["12", "13"]})  # fmt: skip
    pq.write_table(table, tmp_path / "typed.parquet")
    wrong = (
        r"row 1, chars: '12' is not a whole number >= 0 \(the file's column is VARCHAR\) \(and 1 more row\)"
    )
    with pytest.raises(ExportError, match=wrong):
        import_events(target, tmp_path / "typed.parquet")
    # Several problems: each column's first, in file order.
    many = tmp_path / "many.json"
    many.write_text(json.dumps([*_events({"kind": "chat", "input_tokens": -1}), {**GOOD, "event_id": "x"}]))
    with pytest.raises(ExportError) as caught:
        import_events(target, many)
    text = str(caught.value)
    assert text.index("row 2, input_tokens") < text.index("row 2, kind") < text.index("row 4, event_id")
    assert target.count() == 0 and not (tmp_path / "empty.duckdb").exists()


def test_not_json_at_all_is_said(tmp_path):
    target = open_store(f"duckdb://{tmp_path / 's.duckdb'}")
    broken = tmp_path / "broken.json"
    broken.write_text('[{"event_id": "x",')
    with pytest.raises(ExportError, match="not a JSON array of events or JSON Lines"):
        import_events(target, broken)
    numbers = tmp_path / "numbers.json"
    numbers.write_text("[1, 2]")
    with pytest.raises(ExportError, match="not objects"):
        import_events(target, numbers)
    for name, content in (("empty.json", "[]"), ("empty.csv", ""), ("header.csv", "event_id,ts,kind\n")):
        (tmp_path / name).write_text(content)
        assert import_events(target, tmp_path / name).read == 0, name


# -- the window -------------------------------------------------------------------------------------


def test_only_events_in_the_window_are_exported(store_url, store_path, tmp_path):
    start, end = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 5, tzinfo=UTC)
    meter = Meter(bot="w", store=store_url)
    times = {
        "before": start - timedelta(microseconds=1),
        "first": start,
        "middle": start + timedelta(days=1, hours=3),
        "last": end - timedelta(microseconds=1),
        "at_end": end,
        "today": datetime.now(UTC) - timedelta(seconds=1),  # not NOW: the module may load before midnight
    }
    for name, ts in times.items():
        meter.track_activity(name, ts=ts)
    meter.close()
    for fmt in FORMATS:
        out = tmp_path / f"w.{fmt}"
        ok("export", "--start", "2026-11-02", "--end", "2026-11-05T00:00:00Z", "--output", str(out),
           "--store", store_url)  # fmt: skip
        inside = open_store(f"duckdb://{tmp_path / f'w_{fmt}.duckdb'}")
        import_events(inside, out)
        names = [n for (n,) in query(tmp_path / f"w_{fmt}.duckdb", "SELECT name FROM events ORDER BY ts")]
        assert names == ["first", "middle", "last"], fmt
    # --days 1: today so far.
    ok("export", "--days", "1", "--output", str(tmp_path / "today.json"), "--store", store_url)
    assert [e["name"] for e in json.loads((tmp_path / "today.json").read_text())] == ["today"]


# -- the command line's errors ------------------------------------------------------------------------


def test_command_line_errors_are_clear(demo, tmp_path, monkeypatch):
    url, _ = demo
    monkeypatch.chdir(tmp_path)
    out = str(tmp_path / "x.json")
    to = ("--output", out, "--store", url)
    cloudwatch = "cloudwatch://?namespace=N&region=us-east-1"
    cases = [
        (["export", "--format", "xml", *to], "'xml' is not one of"),
        (["export", "--store", url], "Missing option '--output'"),
        (["import", str(tmp_path / "nowhere.json"), "--store", url], "does not exist"),
        (["export", "--what", "events", "--output", out, "--store", cloudwatch],
         "cannot give them back; export its metrics instead (--what metrics)"),
        (["import", out, "--store", cloudwatch], "Import into a DuckDB store"),
        (["export", "--metric", "cost_usd", *to], "--metric: for --what metrics only"),
        (["export", "--days", "3", "--start", START, "--end", END, *to], "not both"),
        (["export", "--start", "soon", *to], "start: 'soon' is not an ISO date"),
        (["export", "--what", "metrics", "--metric", "cost", *to], "unknown metric 'cost'; valid metrics:"),
        (["export", "--what", "metrics", "--stat", "p95", *to], "name the metrics"),
        (["export", "--output", out, "--store", f"duckdb://{tmp_path / 'none.duckdb'}"], "no store at"),
    ]  # fmt: skip
    (tmp_path / "x.json").write_text("[]")  # for the import into CloudWatch: a file that exists
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)
    # A failed export leaves what was there before, and nothing beside it.
    assert (tmp_path / "x.json").read_text() == "[]"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# -- CloudWatch: the metrics it gives, the rest listed ------------------------------------------------


def test_metrics_export_from_cloudwatch_lists_what_it_cannot_give(aws, tmp_path):
    tag = uuid.uuid4().hex[:8]
    namespace = f"Export{tag}"
    url = f"cloudwatch://?namespace={namespace}&region=us-east-1&mode=api"
    meter = Meter(bot=f"bot-{tag}", store=url, spool_dir=str(tmp_path / "spool"), hash_key="ab" * 16)
    for _ in range(3):
        meter.track_sms(direction="in", text="hello", user="+15551234567", cost_usd=0.0079)
    for _ in range(2):
        meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=10, cost_usd=0.02)
    assert meter.flush()
    meter.close()
    region = ("--namespace", namespace, "--region", "us-east-1")
    names = ("messages", "llm_calls", "cost_usd", "active_users")
    out = tmp_path / "cw.json"
    result = invoke("export", "--what", "metrics", *region, "--days", "1", "--interval", "none",
                    "--metric", ",".join(names), "--output", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    # What CloudWatch gives is what `botmeter query` gives; what it cannot is listed with the reason.
    assert set(doc["metrics"]) | set(doc["unavailable"]) == set(names)
    assert "active_users" in doc["unavailable"] and doc["unavailable"]["active_users"]
    assert f"not exported: active_users: {doc['unavailable']['active_users']}" in result.output
    for name in doc["metrics"]:
        rows = json.loads(ok("query", name, *region, "--days", "1", "--interval", "none", "--format", "json"))
        assert doc["metrics"][name]["rows"] == rows, name
    assert doc["metrics"]["messages"]["rows"][0]["value"] == 3
    assert doc["metrics"]["llm_calls"]["rows"][0]["value"] == 2
    # The stored events are not CloudWatch's to give.
    events_out = invoke("export", *region, "--output", str(tmp_path / "events.json"))
    assert events_out.exit_code != 0 and "--what metrics" in events_out.output
