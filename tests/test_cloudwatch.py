"""The CloudWatch store: against moto's server (a real process on 127.0.0.1, killed and restarted
for the outage test), EMF lines checked against the format's rules, and AWS's limits unit-tested.

Only throttling and 5xx answers are faked (botocore's Stubber), because moto never gives them.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

import botmeter
from aws_emulator import MotoServer, aws_env, clients, log_messages, metric
from botmeter.backends.cloudwatch import store as cw
from botmeter.exceptions import ConfigError, StoreError, StoreUnavailable
from botmeter.process.pipeline import SCHEMA
from botmeter.store import open_store
from emf import UNITS, check_emf, emf_lines, emf_total

HASH_KEY = "ab" * 16
PHONE = "+15551234567"


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def names():
    # A namespace and a bot per test: moto's GetMetricData matches dimensions without the namespace.
    tag = uuid.uuid4().hex[:8]
    return f"Test{tag}", f"bot-{tag}"


@pytest.fixture(autouse=True)
def _not_in_lambda(monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)


def now_naive() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def table(rows: list[dict]) -> pa.Table:
    """A batch as the writer hands it to a store (event ids random unless given)."""
    columns = {}
    for name, typ in zip(SCHEMA.names, SCHEMA.types, strict=True):
        if name == "event_id":
            ids = [r.get("event_id") or uuid.uuid4().bytes for r in rows]
            columns[name] = pa.ExtensionArray.from_storage(pa.uuid(), pa.array(ids, pa.binary(16)))
        elif name == "ts":
            columns[name] = pa.array([r.get("ts") or now_naive() for r in rows], pa.timestamp("us"))
        elif name == "bot":
            columns[name] = pa.array([r.get("bot", "b") for r in rows], typ)
        else:
            columns[name] = pa.array([r.get(name) for r in rows], typ)
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def meter(url: str, bot: str, tmp_path: Path, **settings) -> botmeter.Meter:
    settings.setdefault("flush_interval", 0.05)
    return botmeter.Meter(
        bot=bot, store=url, spool_dir=str(tmp_path / "spool"), hash_key=HASH_KEY, **settings
    )


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("cloudwatch://?namespace=A&colour=blue", ["colour", "namespace, region, mode, log_group"]),
        ("cloudwatch://?mode=fast", ["mode", "'fast'", "emf, api"]),
        ("cloudwatch://?namespace=", ["namespace", "empty"]),
        ("cloudwatch://?namespace=A&namespace=B", ["namespace", "twice"]),
        ("cloudwatch://?namespace=AWS/Lambda", ["namespace", "AWS/"]),
        ("cloudwatch://?namespace=bad%0Aname", ["namespace"]),
        ("cloudwatch://?mode=emf&log_group=has space", ["log_group", "'has space'"]),
        ("cloudwatch://?mode=emf&region=US_EAST", ["region", "'US_EAST'"]),
        ("cloudwatch://A?namespace=B", ["namespace", "twice"]),
    ],
)
def test_bad_url_options_name_the_field(url, words):
    with pytest.raises(ConfigError) as info:
        open_store(url)
    for word in words:
        assert word in str(info.value)


def test_settings_from_url_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ANALYTICS_NAMESPACE", "SeedNamespace")
    monkeypatch.setenv("DYNAMODB_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    store = open_store("cloudwatch://?mode=emf")
    assert (store.namespace, store.region, store.mode) == ("SeedNamespace", "eu-west-1", "emf")
    assert store.log_group == "/botmeter/SeedNamespace"

    monkeypatch.setenv("BOTMETER_CLOUDWATCH_NAMESPACE", "Own")
    monkeypatch.delenv("DYNAMODB_REGION")
    monkeypatch.setenv("BOTMETER_CLOUDWATCH_LOG_GROUP", "/bots/own")
    store = open_store("cloudwatch://?mode=emf")
    assert (store.namespace, store.region, store.log_group) == ("Own", "us-west-2", "/bots/own")

    # An explicit URL option beats every variable.
    store = open_store("cloudwatch://?mode=emf&namespace=DadaCatTwilio&region=us-east-1&log_group=/x")
    assert (store.namespace, store.region, store.log_group) == ("DadaCatTwilio", "us-east-1", "/x")
    assert open_store("cloudwatch://Short?mode=emf").namespace == "Short"

    monkeypatch.setenv("BOTMETER_CLOUDWATCH_MODE", "warp")
    with pytest.raises(ConfigError, match="warp"):
        botmeter.Meter(store="cloudwatch://", spool_dir=str(tmp_path))


def test_meter_arguments_reach_the_store(tmp_path):
    m = botmeter.Meter(
        bot="b",
        store="cloudwatch://?mode=emf",
        cloudwatch_namespace="FromArgument",
        spool_dir=str(tmp_path / "spool"),
        hash_key=HASH_KEY,
    )
    try:
        assert m.store.namespace == "FromArgument"
        assert m.store.acks.directory == tmp_path / "spool" / "cloudwatch-acks"
    finally:
        m.close()


def test_mode_defaults_to_emf_in_lambda_with_local_files_in_tmp(monkeypatch, caplog):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "dadacat")
    store = open_store("cloudwatch://?namespace=Dada Cat")
    assert store.mode == "emf"
    assert store.default_spool_dir().parent == Path(tempfile.gettempdir()) / "botmeter"
    assert store.default_spool_dir().name == "Dada_Cat.spool"
    assert store.default_key_path().parent == store.default_spool_dir().parent
    assert "BOTMETER_HASH_KEY" in caplog.text  # a key per container would split users
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/x")
    store = open_store("cloudwatch://?namespace=N&mode=emf")
    assert store.default_spool_dir() == Path("/var/cache/x/botmeter/N.spool")


def test_api_mode_needs_boto3_and_a_region(aws, monkeypatch):
    import boto3

    monkeypatch.setitem(sys.modules, "boto3", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"botmeter\[aws\]"):
        open_store("cloudwatch://?mode=api&region=us-east-1")
    monkeypatch.setitem(sys.modules, "boto3", boto3)
    with pytest.raises(ConfigError, match="region"):
        open_store("cloudwatch://?mode=api")
    # EMF needs neither.
    assert open_store("cloudwatch://?mode=emf").region is None


def test_aws_endpoint_url_is_honoured(aws, names):
    store = open_store(f"cloudwatch://?namespace={names[0]}&region=us-east-1")
    assert store.mode == "api"
    assert store._client("cloudwatch").meta.endpoint_url == aws.url
    assert store._client("logs").meta.endpoint_url == aws.url


# -- limits ------------------------------------------------------------------------------------


def _series(name: str, values: list[float], dims=(("Bot", "b"),), minute: int = 1_795_000_000_000):
    m = cw.CloudWatchMetric(name, (), "latency_ms", "Milliseconds", (tuple(n for n, _ in dims),))
    return cw.Series(m, tuple(dims), minute, list(values), [1] * len(values))


def test_put_metric_data_values_datums_and_bytes():
    # 150 distinct values a datum.
    requests = cw.metric_requests([_series("A", [float(i) for i in range(151)])])
    assert [len(d["Values"]) for d in requests[0]] == [150, 1]
    assert all(len(d["Counts"]) == len(d["Values"]) for d in requests[0])
    # 1,000 datums a request.
    requests = cw.metric_requests([_series(f"M{i}", [1.0]) for i in range(1001)])
    assert [len(r) for r in requests] == [1000, 1]
    # About 1 MB a request: long dimension values fill a request before 1,000 datums do.
    dims = tuple((f"D{i}", chr(65 + i) * 1024) for i in range(3))
    series = [_series(f"Metric{i}", [i + 0.123456789 * k for k in range(150)], dims) for i in range(400)]
    requests = cw.metric_requests(series)
    assert len(requests) > 1 and all(len(r) < 1000 for r in requests)
    for r in requests:
        body = json.dumps({"Namespace": "N", "MetricData": r})
        assert len(body.encode()) <= 1_048_576
        assert sum(cw._datum_bytes(d) for d in r) <= cw.MAX_METRIC_REQUEST_BYTES
    assert sum(len(d["Values"]) for r in requests for d in r) == 400 * 150


def test_put_log_events_count_bytes_span_and_order():
    t0 = 1_795_000_000_000
    events = [(t0 + i, "x") for i in range(10_001)]
    assert [len(r) for r in cw.log_requests(events)] == [10_000, 1]
    # Bytes: message + 26 each, 1,048,576 at most; exactly at the limit stays whole.
    size = 1_048_576 // 4 - 26
    assert [len(r) for r in cw.log_requests([(t0, "y" * size)] * 4)] == [4]
    assert [len(r) for r in cw.log_requests([(t0, "y" * size)] * 3 + [(t0, "y" * (size + 1))])] == [3, 1]
    multibyte = "é" * (size // 2)  # two bytes each in UTF-8: bytes are counted, not characters
    assert [len(r) for r in cw.log_requests([(t0, multibyte)] * 4 + [(t0, "é")])] == [4, 1]
    # Less than 24 hours between the first and last event of a request.
    day = 24 * 3600 * 1000
    spans = cw.log_requests([(t0, "a"), (t0 + day - 1, "b"), (t0 + day, "c"), (t0 + 2 * day, "d")])
    assert [[m for _, m in r] for r in spans] == [["a", "b"], ["c"], ["d"]]
    for r in spans:
        assert [ts for ts, _ in r] == sorted(ts for ts, _ in r)


def test_records_are_time_ordered_and_at_most_256_kb():
    base = now_naive()
    rows = [
        {"kind": "custom", "name": "late", "ts": base},
        {"kind": "custom", "name": "huge", "ts": base - timedelta(seconds=5),
         "properties": json.dumps({"x": "z" * 300_000})},
        {"kind": "message", "direction": "in", "text": "é" * 200_000, "ts": base - timedelta(seconds=9)},
    ]  # fmt: skip
    out = cw.records(table(rows))
    assert [ts for ts, _ in out] == sorted(ts for ts, _ in out)
    for _, message in out:
        assert len(message.encode()) <= cw.MAX_LOG_EVENT_BYTES
    parsed = [json.loads(m) for _, m in out]
    assert [p.get("name") for p in parsed] == [None, "huge", "late"]
    assert parsed[0]["truncated"] and parsed[1]["truncated"] and "truncated" not in parsed[2]
    assert parsed[1]["name"] == "huge" and "properties" not in parsed[1]


def test_emf_documents_at_most_100_metrics_and_100_values():
    # The declared table never puts 100 metrics on one dimension set: made-up metrics test the split.
    series = [_series(f"M{i}", [float(i)]) for i in range(150)]
    series.append(_series("Long", [float(v) for v in range(250)]))
    lines = cw.emf_documents(series, "N")
    docs = [json.loads(line) for _, line in lines]
    for doc in docs:
        check_emf(doc)
    assert max(len(doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for doc in docs) == 100
    assert sum(len(doc["Long"]) for doc in docs if "Long" in doc) == 250
    assert sum(doc[f"M{i}"] for doc in docs for i in range(150) if f"M{i}" in doc) == sum(range(150))


def test_every_declared_metric_is_valid():
    for m in cw.METRICS:
        assert m.unit in UNITS
        assert m.value is None or m.value in SCHEMA.names
        for dims in m.dimension_sets:
            assert dims[0] == "Bot" and len(dims) <= cw.MAX_DIMENSIONS
    assert len(cw.METRICS_BY_NAME) == len(cw.METRICS)


def test_every_metric_is_documented_with_its_unit_and_dimensions():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for m in cw.METRICS:
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{m.name}` |"))
        assert f"| {m.unit} |" in row
        for dims in m.dimension_sets:
            assert "[" + ", ".join(dims) + "]" in row
        if m.value is not None:
            assert f"`{m.value}`" in row


# -- aggregation -------------------------------------------------------------------------------


def test_metrics_per_minute_with_clean_dimensions():
    t = now_naive().replace(second=10, microsecond=0)
    rows = [
        {"kind": "timing", "stage": "reply", "latency_ms": 100.0, "ts": t},
        {"kind": "timing", "stage": "reply", "latency_ms": 100.0, "ts": t + timedelta(seconds=5)},
        {"kind": "timing", "stage": "reply", "latency_ms": 250.0, "ts": t + timedelta(seconds=6)},
        {"kind": "timing", "stage": "reply", "latency_ms": 300.0, "ts": t + timedelta(minutes=1)},
        {"kind": "timing", "stage": "résumé ☃", "latency_ms": 5.0, "ts": t},
        {"kind": "timing", "stage": "   ", "latency_ms": 7.0, "ts": t},  # blank: no such dimension
        {"kind": "message", "direction": "in", "channel": None, "ts": t},
        {"kind": "llm_call", "provider": "openai", "model": "m" * 2000, "input_tokens": 3, "ts": t},
    ]
    series = cw.aggregate(table(rows))
    latency = [s for s in series if s.metric.name == "LatencyMs"]
    reply = [s for s in latency if s.dimensions == (("Bot", "b"), ("Stage", "reply"))]
    assert [(s.values, s.counts) for s in reply] == [([100.0, 250.0], [2, 1]), ([300.0], [1])]
    assert reply[1].minute_ms - reply[0].minute_ms == 60_000 and reply[0].minute_ms % 60_000 == 0
    assert {s.dimensions[1][1] for s in latency} == {"reply", "r?sum? ?"}
    messages = {s.dimensions: s.counts for s in series if s.metric.name == "Messages"}
    assert messages == {(("Bot", "b"),): [1]}  # no channel: only the total
    model = next(s for s in series if s.metric.name == "LlmCalls" and len(s.dimensions) == 3)
    assert model.dimensions[2] == ("Model", "m" * 1024)


def test_same_batch_same_requests_after_the_spool(tmp_path):
    rows = [{"kind": "timing", "stage": f"s{i % 3}", "latency_ms": float(i)} for i in range(500)]
    rows += [{"kind": "activity", "name": "reset", "user_id": f"u{i}"} for i in range(300)]
    batch = table(rows)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_table(batch)
    replayed = ipc.open_stream(sink.getvalue()).read_all()
    for mode in ("api", "emf"):
        store = cw.CloudWatchStore("cloudwatch://?mode=emf&namespace=N&region=us-east-1", spool_dir=tmp_path)
        store.mode = mode  # planning only: no client needed
        first = [c.digest(store._scope(c)) for c in store.plan(batch)]
        again = [c.digest(store._scope(c)) for c in store.plan(replayed)]
        assert first == again and len(set(first)) == len(first)
    assert cw.batch_key(batch) == cw.batch_key(replayed)


def test_emf_through_a_meter(tmp_path, capsys):
    m = meter("cloudwatch://?mode=emf&namespace=Emf", "dadacat", tmp_path, flush_interval=1.0)
    try:
        for i in range(250):  # more values than one EMF array holds
            m.track_timing("reply", 10.0 + i, user=PHONE, conversation="c-1")
        for i in range(3):
            m.track_llm_call(
                provider="openai", model="gpt-4o", input_tokens=100, output_tokens=5 + i, cost_usd=0.5
            )
        m.track_sms(direction="out", text="x" * 200, user=PHONE, cost_usd=0.0158)  # two segments
        m.track_activity("reset", event_id="same")
        m.track_activity("reset", event_id="same")  # one event, sent once
        assert m.flush()
        assert m.store.count() == 250 + 3 + 1 + 1
    finally:
        m.close()
    docs, records = emf_lines(capsys.readouterr().out)
    for doc in docs:
        check_emf(doc)
        assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Emf"
    assert len(records) == 255
    assert len({r["event_id"] for r in records}) == 255
    assert all(PHONE not in json.dumps(r) for r in records)
    bot = {"Bot": "dadacat"}
    assert emf_total(docs, "LatencyMs", {**bot, "Stage": "reply"}) == sum(10.0 + i for i in range(250))
    assert emf_total(docs, "LatencyMs", {**bot, "Stage": "reply"}, "SampleCount") == 250
    assert emf_total(docs, "LlmCalls", bot) == 3
    assert emf_total(docs, "OutputTokens", {**bot, "Provider": "openai", "Model": "gpt-4o"}) == 18
    assert emf_total(docs, "CostUSD", bot) == pytest.approx(1.5158)
    assert emf_total(docs, "SmsSegments", bot) == 2
    assert emf_total(docs, "Activities", {**bot, "Activity": "reset"}) == 1
    assert not list((tmp_path / "spool").glob("*.arrow"))


# -- against the emulator ----------------------------------------------------------------------


def test_round_trip_through_a_meter(aws, names, tmp_path):
    namespace, bot = names
    m = meter(f"cloudwatch://?namespace={namespace}&region=us-east-1", bot, tmp_path)
    seen: list[tuple[str, dict]] = []
    for client in (m.store._client("cloudwatch"), m.store._client("logs")):
        client.meta.events.register(
            "before-parameter-build", lambda params, model, **_: seen.append((model.name, dict(params)))
        )
    try:
        for _ in range(6):
            m.track_sms(direction="in", text="hello", user=PHONE, conversation="c-1", cost_usd=0.0079)
        for _ in range(4):
            m.track_sms(direction="out", text="y" * 200, user=PHONE, conversation="c-1", cost_usd=0.0158)
        for i in range(5):
            m.track_llm_call(provider="openai", model="gpt-4o", input_tokens=100 + i, output_tokens=10,
                             cached_tokens=50, latency_ms=800.0 + i, cost_usd=0.01, user=PHONE)  # fmt: skip
        for _ in range(3):
            m.track_llm_call(
                provider="anthropic", model="claude-x", input_tokens=10, latency_ms=90.0, cost_usd=0.02
            )
        m.track_error("rate_limit_exceeded", stage="llm")
        m.track_error("rate_limit_exceeded", stage="llm")
        m.track_error(TimeoutError("slow"))
        for i in range(7):
            m.track_timing("reply", 100.0 + i)
        m.track_activity("reset", user=PHONE)
        m.track_activity("reset", user=PHONE)
        m.track_api_call(provider="weather", name="forecast", cost_usd=0.001, latency_ms=120.0)
        m.track_custom("rating", value=5, unit="stars")
        assert m.flush()
        total = 6 + 4 + 5 + 3 + 3 + 7 + 2 + 1 + 1
        stats = m.stats()
        assert (stats["written"], stats["spooled"], stats["last_error"]) == (total, 0, None)
        assert m.store.count() == total
    finally:
        m.close()

    cwc, logs = clients(aws.url)
    b = {"Bot": bot}

    def get(name: str, dims: dict, stat: str = "Sum") -> float:
        return metric(cwc, namespace, name, {**b, **dims}, stat)

    assert get("Messages", {}) == 10 and get("Messages", {"Channel": "sms"}) == 10
    assert (get("InboundMessages", {}), get("OutboundMessages", {})) == (6, 4)
    assert (get("SmsSegments", {}), get("SmsSegments", {}, "SampleCount")) == (6 + 8, 10)
    assert get("SmsSegments", {"Provider": "twilio"}) == 14
    assert get("LlmCalls", {}) == 8
    assert get("LlmCalls", {"Provider": "openai", "Model": "gpt-4o"}) == 5
    assert get("InputTokens", {"Provider": "openai", "Model": "gpt-4o"}) == 510
    assert get("InputTokens", {}) == 540
    assert get("CachedTokens", {}) == 250
    assert get("LlmLatencyMs", {}, "SampleCount") == 8
    assert get("LlmLatencyMs", {"Provider": "openai", "Model": "gpt-4o"}) == 4010
    assert get("CostUSD", {}) == pytest.approx(6 * 0.0079 + 4 * 0.0158 + 0.05 + 0.06 + 0.001)
    assert get("LlmCostUSD", {"Provider": "anthropic", "Model": "claude-x"}) == pytest.approx(0.06)
    assert get("Errors", {}) == 3
    assert get("Errors", {"ErrorCategory": "rate_limit"}) == 2 and get("Errors", {"Stage": "llm"}) == 2
    assert get("Errors", {"ErrorCategory": "timeout"}) == 1
    assert (get("LatencyMs", {"Stage": "reply"}), get("LatencyMs", {"Stage": "reply"}, "SampleCount")) == (
        721,
        7,
    )
    assert get("Activities", {"Activity": "reset"}) == 2
    assert get("ApiCalls", {"Provider": "weather"}) == 1
    assert get("ApiLatencyMs", {"Provider": "weather"}) == 120
    assert (get("CustomEvents", {"Name": "rating"}), get("CustomValues", {"Name": "rating"})) == (1, 5)

    # Dimensions are low-cardinality only: users and conversations live in the records.
    listed = cwc.list_metrics(Namespace=namespace)["Metrics"]
    assert {x["MetricName"] for x in listed} <= set(cw.METRICS_BY_NAME)
    assert {d["Name"] for x in listed for d in x["Dimensions"]} <= set(cw.DIMENSION_COLUMNS)

    records = [json.loads(message) for message in log_messages(logs, f"/botmeter/{namespace}")]
    assert len(records) == total and len({r["event_id"] for r in records}) == total
    assert sum(r["kind"] == "message" for r in records) == 10
    assert all(PHONE not in json.dumps(r) for r in records)
    sms = next(r for r in records if r["kind"] == "message")
    assert sms["conversation_id"] == "c-1" and len(sms["user_id"]) > 10 and sms["bot"] == bot

    # What went on the wire kept to AWS's limits.
    puts = [p for op, p in seen if op == "PutMetricData"]
    assert puts and all(len(p["MetricData"]) <= 1000 for p in puts)
    assert all(len(d["Values"]) <= 150 and len(d["Dimensions"]) <= 30 for p in puts for d in p["MetricData"])
    batches = [p["logEvents"] for op, p in seen if op == "PutLogEvents"]
    assert batches and all(len(e) <= 10_000 for e in batches)
    assert all(sum(len(x["message"].encode()) + 26 for x in e) <= 1_048_576 for e in batches)
    assert all([x["timestamp"] for x in e] == sorted(x["timestamp"] for x in e) for e in batches)


def test_large_batches_split_on_the_wire(aws, names, tmp_path):
    namespace, bot = names
    m = meter(f"cloudwatch://?namespace={namespace}&region=us-east-1&log_group=/custom/{namespace}", bot,
              tmp_path, flush_interval=5.0)  # fmt: skip
    seen: list[tuple[str, dict]] = []
    for client in (m.store._client("cloudwatch"), m.store._client("logs")):
        client.meta.events.register(
            "before-parameter-build", lambda params, model, **_: seen.append((model.name, dict(params)))
        )
    try:
        for i in range(7000):
            m.track_activity(f"feature:{i % 1100}", properties={"i": i, "pad": "p" * 40})
        assert m.flush()
    finally:
        m.close()
    puts = [p["MetricData"] for op, p in seen if op == "PutMetricData"]
    logs_put = [p["logEvents"] for op, p in seen if op == "PutLogEvents"]
    assert len(puts) >= 2 and max(len(p) for p in puts) == 1000
    assert len(logs_put) >= 2
    for events in logs_put:
        assert len(events) <= 10_000
        assert sum(len(x["message"].encode()) + 26 for x in events) <= 1_048_576
    cwc, logs = clients(aws.url)
    assert metric(cwc, namespace, "Activities", {"Bot": bot}) == 7000
    assert metric(cwc, namespace, "Activities", {"Bot": bot, "Activity": "feature:7"}) == len(
        range(7, 7000, 1100)
    )
    records = [json.loads(x) for x in log_messages(logs, f"/custom/{namespace}")]
    assert sorted(r["properties"]["i"] for r in records) == list(range(7000))


def test_events_outside_cloudwatch_window_are_counted_not_sent(aws, names, tmp_path):
    namespace, bot = names
    store = open_store(f"cloudwatch://?namespace={namespace}&region=us-east-1", spool_dir=tmp_path)
    old = now_naive() - timedelta(days=20)
    rows = [{"kind": "activity", "name": "reset", "bot": bot, "ts": old}] * 2
    rows += [{"kind": "activity", "name": "reset", "bot": bot}] * 3
    assert store.write(table(rows), fresh=True) == 3
    assert store.rejected_events == 2
    cwc, logs = clients(aws.url)
    assert metric(cwc, namespace, "Activities", {"Bot": bot}) == 3
    assert len(log_messages(logs, f"/botmeter/{namespace}")) == 3


def _stubbed(names, tmp_path):
    from botocore.stub import Stubber

    store = open_store(f"cloudwatch://?namespace={names[0]}&region=us-east-1", spool_dir=tmp_path)
    store.backoff_s = 0.001
    logs = Stubber(store._client("logs"))
    metrics = Stubber(store._client("cloudwatch"))
    return store, logs, metrics


def test_throttling_and_5xx_are_retried_then_unavailable(aws, names, tmp_path):
    # Moto never throttles: botocore's Stubber answers as CloudWatch does when it does.
    store, logs, metrics = _stubbed(names, tmp_path)
    batch = table([{"kind": "activity", "name": "reset"}])
    logs.add_client_error("put_log_events", "ThrottlingException", http_status_code=400)
    logs.add_client_error("put_log_events", "ServiceUnavailableException", http_status_code=503)
    logs.add_response("put_log_events", {})
    metrics.add_client_error("put_metric_data", "Throttling", http_status_code=400)
    metrics.add_response("put_metric_data", {})
    with logs, metrics:
        assert store.write(batch, fresh=True) == 1
    logs.assert_no_pending_responses()
    metrics.assert_no_pending_responses()

    # Throttled on every attempt: unavailable (the writer spools), after a bounded number of tries.
    store, logs, metrics = _stubbed(names, tmp_path)
    for _ in range(store.attempts):
        logs.add_client_error("put_log_events", "ThrottlingException", http_status_code=400)
    with logs, metrics, pytest.raises(StoreUnavailable, match="4 times"):
        store.write(batch, fresh=True)
    logs.assert_no_pending_responses()


def test_bad_requests_are_final_access_denied_waits(aws, names, tmp_path):
    batch = table([{"kind": "activity", "name": "reset"}])
    store, logs, _ = _stubbed(names, tmp_path)
    logs.add_client_error("put_log_events", "InvalidParameterException", http_status_code=400)
    with logs, pytest.raises(StoreError) as info:
        store.write(batch, fresh=True)
    assert not isinstance(info.value, StoreUnavailable)

    store, logs, _ = _stubbed(names, tmp_path)
    logs.add_client_error("put_log_events", "AccessDeniedException", http_status_code=400)
    with logs, pytest.raises(StoreUnavailable, match="AccessDenied"):
        store.write(batch, fresh=True)
    logs.assert_no_pending_responses()  # not retried: only a change of policy helps


def test_unreachable_cloudwatch_fails_fast(aws, names, tmp_path, monkeypatch):
    closed = MotoServer()  # a port nobody listens on
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed.url)
    store = open_store(f"cloudwatch://?namespace={names[0]}&region=us-east-1", spool_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="failed 4 times"):
        store.write(table([{"kind": "activity", "name": "reset"}]), fresh=True)
    assert time.monotonic() - started < 3.0
    with pytest.raises(StoreUnavailable, match="moments ago"):  # no new round of retries at once
        store.write(table([{"kind": "activity", "name": "reset"}]), fresh=True)
    assert time.monotonic() - started < 3.0


def test_missing_credentials_spool_until_they_come(aws, names, tmp_path, monkeypatch):
    namespace, bot = names
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    m = meter(f"cloudwatch://?namespace={namespace}&region=us-east-1", bot, tmp_path)
    try:
        for _ in range(5):
            m.track_activity("reset")
        assert m.flush()
        stats = m.stats()
        assert stats["spooled"] == 5 and "credentials" in stats["last_error"]
        for name, value in aws_env(aws.url).items():
            monkeypatch.setenv(name, value)
        m.track_activity("reset")
        assert m.flush()
        assert m.stats()["spool_events"] == 0
    finally:
        m.close()
    cwc, logs = clients(aws.url)
    assert metric(cwc, namespace, "Activities", {"Bot": bot}) == 6
    assert len(log_messages(logs, f"/botmeter/{namespace}")) == 6


def test_outage_mid_batch_and_a_restart_store_every_event_once(names, tmp_path, monkeypatch):
    """CloudWatch dies in the middle of a batch (moto killed between two of its requests), the bot
    keeps tracking, the bot process is replaced, CloudWatch comes back on the same port: every event
    arrives once. moto keeps its data in memory, so the first server's totals are read just before
    it is killed and added to the second's."""
    namespace, bot = names
    server = MotoServer().start()
    for name, value in aws_env(server.url).items():
        monkeypatch.setenv(name, value)
    # Small requests, so that one batch is many of them.
    monkeypatch.setattr(cw, "MAX_LOG_EVENTS_PER_REQUEST", 7)
    monkeypatch.setattr(cw, "MAX_METRICS_PER_REQUEST", 2)
    monkeypatch.setattr(cw, "MAX_VALUES_PER_DATUM", 5)
    url = f"cloudwatch://?namespace={namespace}&region=us-east-1"
    group = f"/botmeter/{namespace}"
    cwc, logs = clients(server.url)

    def totals() -> dict:
        records = [json.loads(x) for x in log_messages(logs, group)]
        return {
            "messages": metric(cwc, namespace, "Messages", {"Bot": bot}),
            "latency_sum": metric(cwc, namespace, "LatencyMs", {"Bot": bot, "Stage": "reply"}),
            "latency_n": metric(cwc, namespace, "LatencyMs", {"Bot": bot, "Stage": "reply"}, "SampleCount"),
            "turns": [(r["kind"], r["properties"]["i"]) for r in records],
        }

    def turns(m: botmeter.Meter, numbers: range) -> None:
        for i in numbers:
            m.track_message(direction="in", text="hi", properties={"i": i})
            m.track_timing("reply", 10.0 + i, properties={"i": i})

    first: dict = {}
    calls = 0

    def kill_on_third_put(**_):
        nonlocal calls, first
        calls += 1
        if calls == 3:
            first.update(totals())  # what the first server holds, read before it dies
            server.kill()

    try:
        m1 = meter(url, bot, tmp_path, flush_interval=0.2)
        turns(m1, range(0, 20))
        assert m1.flush()
        m1.store._client("logs").meta.events.register(
            "before-call.cloudwatch-logs.PutLogEvents", kill_on_third_put
        )
        turns(m1, range(20, 60))  # one batch of many requests; the server dies before the third
        assert m1.flush()
        assert first and server.process is None
        assert 2 * 20 < len(first["turns"]) < 2 * 60  # part of the batch arrived
        turns(m1, range(60, 80))  # tracked while CloudWatch is down
        assert m1.flush()
        stats = m1.stats()
        assert stats["spool_events"] == 2 * (80 - 20) and stats["write_failures"] >= 1
        assert list((tmp_path / "spool" / "cloudwatch-acks").glob("*.json"))  # what arrived is noted
        m1.close()

        server.start()  # same port, empty: moto's state was in memory
        m2 = meter(url, bot, tmp_path, flush_interval=0.2)  # the bot restarted
        turns(m2, range(80, 100))
        assert m2.flush()
        assert m2.stats()["spool_events"] == 0
        m2.close()
        second = totals()
    finally:
        server.stop()

    both = sorted(first["turns"] + second["turns"])
    assert both == sorted([(k, i) for i in range(100) for k in ("message", "timing")])  # each once
    assert first["messages"] + second["messages"] == 100
    assert first["latency_n"] + second["latency_n"] == 100
    assert first["latency_sum"] + second["latency_sum"] == sum(10.0 + i for i in range(100))
    assert not list((tmp_path / "spool" / "cloudwatch-acks").glob("*.json"))


def test_a_replay_notes_each_request_so_a_crash_resends_nothing(names, tmp_path, monkeypatch):
    """A spooled batch is being replayed when CloudWatch dies again (moto killed once two requests
    went through): the requests that arrived are on disk at once, so another process (a new store)
    sends only the rest."""
    namespace, bot = names
    server = MotoServer().start()
    for name, value in aws_env(server.url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cw, "MAX_LOG_EVENTS_PER_REQUEST", 10)
    url = f"cloudwatch://?namespace={namespace}&region=us-east-1"
    batch = table(
        [{"kind": "activity", "name": "reset", "bot": bot, "properties": f'{{"i": {i}}}'} for i in range(45)]
    )
    acks = tmp_path / "cloudwatch-acks"
    taken = 0

    def count_taken(http_response, **_):
        nonlocal taken
        taken += http_response.status_code == 200

    def kill_after_two(**_):
        if taken == 2:
            server.kill()

    try:
        first = open_store(url, spool_dir=tmp_path)
        events = first._client("logs").meta.events
        events.register("after-call.cloudwatch-logs.PutLogEvents", count_taken)
        events.register("before-call.cloudwatch-logs.PutLogEvents", kill_after_two)
        with pytest.raises(StoreUnavailable):
            first.write(batch)  # not fresh: a replay from the spool
        noted = [json.loads(p.read_text()) for p in acks.glob("*.json")]
        assert [len(n["done"]) for n in noted] == [2]  # two requests of ten records arrived
        server.start()  # empty again: what arrives now is what the replay resends
        second = open_store(url, spool_dir=tmp_path)
        assert second.write(batch) == 45 - 20
        _, logs = clients(server.url)
        records = [json.loads(x) for x in log_messages(logs, f"/botmeter/{namespace}")]
        assert sorted(r["properties"]["i"] for r in records) == list(range(20, 45))
        assert not list(acks.glob("*.json"))
        # Another log group is another place: everything goes there.
        moved = open_store(url + f"&log_group=/moved/{namespace}", spool_dir=tmp_path)
        assert moved.write(batch) == 45
    finally:
        server.stop()


# -- an endpoint that hangs (fault injector in front of moto: tests/fault_proxy.py) --------------


@pytest.fixture
def hanging(aws, monkeypatch):
    """AWS_ENDPOINT_URL points at a proxy in front of moto that hangs on the requests a test picks."""
    from fault_proxy import FaultProxy

    proxy = FaultProxy(aws.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setattr(cw.CloudWatchStore, "read_timeout_s", 1.0)  # a hang costs 1 s, not 5
    monkeypatch.setattr(cw.CloudWatchStore, "cooldown_s", 0.05)
    yield proxy
    proxy.close()


def _replay(store: cw.CloudWatchStore, batch: pa.Table, tries: int = 20) -> int:
    """Replays the batch as the spool does (not fresh) until it goes through."""
    for _ in range(tries):
        try:
            return store.write(batch)
        except StoreUnavailable:
            time.sleep(0.1)
    raise AssertionError("the replay never went through")


@pytest.mark.parametrize(
    ("operation", "action"),
    [
        ("PutLogEvents", "hang"),  # never reached CloudWatch: the records are sent again, once
        ("PutLogEvents", "forward_then_hang"),  # CloudWatch took them: found in the stream, not resent
        ("PutMetricData", "hang"),  # metrics never reached it (see below)
        ("PutMetricData", "forward_then_hang"),  # CloudWatch took them: not resent
    ],
)
def test_a_request_without_answer_is_not_resent_blindly(hanging, names, tmp_path, operation, action):
    namespace, bot = names
    hanging.add(operation, action, times=1)
    batch = table(
        [{"kind": "message", "direction": "in", "bot": bot, "properties": f'{{"i": {i}}}'} for i in range(30)]
    )
    store = open_store(f"cloudwatch://?namespace={namespace}&region=us-east-1", spool_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="no answer"):
        store.write(batch, fresh=True)
    assert time.monotonic() - started < store.read_timeout_s + 1.5  # one read timeout, no retries
    noted = [json.loads(p.read_text()) for p in (tmp_path / "cloudwatch-acks").glob("*.json")]
    assert len(noted) == 1 and len(noted[0]["doubt"]) == 1  # the request in doubt is on disk
    # The replay sends (and counts) the records the first try did not.
    assert _replay(store, batch) == (30 if operation == "PutLogEvents" else 0)
    assert hanging.seen == [operation.encode()]  # the fault happened once, as asked

    cwc, logs = clients(hanging.target)
    records = [json.loads(x) for x in log_messages(logs, f"/botmeter/{namespace}")]
    assert sorted(r["properties"]["i"] for r in records) == list(range(30))  # each record once
    messages = metric(cwc, namespace, "Messages", {"Bot": bot})
    if operation == "PutMetricData" and action == "hang":
        # CloudWatch cannot say whether it took metric values: rather than count twice, they are
        # not sent again, and counted as unconfirmed. Here CloudWatch never had them.
        assert messages == 0 and store.unconfirmed_metric_values > 0
    else:
        assert messages == 30  # once, never twice
        assert (store.unconfirmed_metric_values > 0) == (operation == "PutMetricData")
    assert not list((tmp_path / "cloudwatch-acks").glob("*.json"))


def test_a_hanging_endpoint_keeps_flush_bounded_and_sends_each_record_once(hanging, names, tmp_path):
    """A bot's flush while CloudWatch hangs on every request: it returns within the bound (the batch
    spooled), and once CloudWatch answers again everything arrives once."""
    namespace, bot = names
    hanging.add("PutLogEvents", "forward_then_hang")
    hanging.add("PutMetricData", "hang")
    m = meter(f"cloudwatch://?namespace={namespace}&region=us-east-1", bot, tmp_path)
    try:
        for i in range(50):
            m.track_message(direction="in", text="hi", properties={"i": i})
        started = time.monotonic()
        assert m.flush(timeout=30)
        assert time.monotonic() - started < cw.CloudWatchStore.read_timeout_s + 3.0
        assert m.stats()["spool_events"] == 50
        hanging.clear()  # CloudWatch answers again
        deadline = time.monotonic() + 20
        while m.stats()["spool_events"] and time.monotonic() < deadline:
            m.track_activity("tick")
            m.flush(timeout=10)
            time.sleep(0.1)
        assert m.stats()["spool_events"] == 0
    finally:
        m.close()
    cwc, logs = clients(hanging.target)
    records = [json.loads(x) for x in log_messages(logs, f"/botmeter/{namespace}")]
    turns = sorted(r["properties"]["i"] for r in records if r["kind"] == "message")
    assert turns == list(range(50))
    assert metric(cwc, namespace, "Messages", {"Bot": bot}) == 50


def test_default_time_bounds_per_request_and_per_batch(aws, names, tmp_path):
    store = open_store(f"cloudwatch://?namespace={names[0]}&region=us-east-1", spool_dir=tmp_path)
    config = store._client("logs").meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.0, 5.0)
    assert config.retries["total_max_attempts"] == 1  # botocore does not retry on its own
    assert store.batch_deadline_s == 10.0


def test_records_in_doubt_are_sent_again_when_they_cannot_be_looked_up(aws, names, tmp_path):
    # A role without logs:GetLogEvents: moto does not check permissions, so botocore's Stubber
    # answers as CloudWatch Logs does. The batch must not wait in the spool for good.
    store, logs, metrics = _stubbed(names, tmp_path)
    batch = table([{"kind": "activity", "name": "reset"}])
    first = store.plan(batch)[0]
    assert first.kind == "logs"
    store.acks.save(cw.batch_key(batch), cw.Progress(set(), {first.digest(store._scope(first)): "s/1"}))
    logs.add_client_error("get_log_events", "AccessDeniedException", http_status_code=400)
    logs.add_response("put_log_events", {})
    metrics.add_response("put_metric_data", {})
    with logs, metrics:
        assert store.write(batch) == 1
    logs.assert_no_pending_responses()
    assert not list((tmp_path / "cloudwatch-acks").glob("*.json"))
