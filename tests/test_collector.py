"""The collector's routes through Starlette's TestClient, against a real DuckDB file: bad batches
refused whole, every auth failure, the caps (413), the rate limit (429), gzip, retries stored once,
/healthz, /metrics, /openapi.json. The real-process tests are in test_collector_processes.py."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import duckdb
import pytest
from starlette.testclient import TestClient

from botmeter.server.app import create_app
from botmeter.server.settings import ServerConfig


@pytest.fixture
def served(tmp_path: Path):
    def make(**options):
        db = tmp_path / "c.duckdb"
        app = create_app(ServerConfig(store=f"duckdb://{db}", **options))
        tokens = app.state.tokens
        keys = {
            "ingest": tokens.create("dadacat", ("ingest",)),
            "read": tokens.create("dadacat", ("read",)),
            "other": tokens.create("otherbot", ("ingest",)),
        }
        return TestClient(app), keys, db

    return make


def _rows(db: Path, sql: str = "SELECT count(*) FROM events") -> list:
    if not db.exists():
        return [(0,)]
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


GOOD = [
    {"kind": "message", "direction": "in", "user": "+15551234567", "conversation": "c1", "event_id": "m1"},
    {"kind": "llm_call", "provider": "openai", "model": "gpt-4o", "input_tokens": 100, "output_tokens": 20},
    {"kind": "error", "error": "RateLimitError", "message": "slow down", "ts": "2026-12-01T10:00:00+00:00"},
    {"kind": "timing", "stage": "reply", "latency_ms": 812.5, "ts": 1_796_000_000},
    {"kind": "sms", "direction": "out", "text": "hello", "user": "+447700900123"},
    {"kind": "api_call", "provider": "twilio", "name": "lookup", "cost_usd": 0.005},
    {"kind": "activity", "name": "reset", "user": "u1"},
    {"kind": "custom", "name": "thumbs_up", "value": 1, "properties": {"answer": 3}},
]


def test_a_batch_of_every_kind_is_stored_for_the_tokens_bot(served) -> None:
    client, keys, db = served()
    with client:
        answer = client.post("/v1/events", json={"events": GOOD}, headers=_bearer(keys["ingest"]))
        assert answer.status_code == 202 and answer.json() == {"accepted": len(GOOD)}
    rows = _rows(db, "SELECT kind, bot, user_id FROM events ORDER BY kind")
    # An SMS is stored as a message with its segments and cost.
    assert sorted(k for k, _, _ in rows) == sorted(
        ["message", "llm_call", "error", "timing", "message", "api_call", "activity", "custom"]
    )
    assert {b for _, b, _ in rows} == {"dadacat"}
    assert all(u is None or not u.startswith("+") for _, _, u in rows)  # phone numbers hashed
    assert _rows(db, "SELECT cost_usd > 0 FROM events WHERE kind = 'llm_call'") == [(True,)]


@pytest.mark.parametrize(
    ("event", "field", "value"),
    [
        (
            {"kind": "llm_call", "provider": "openai", "model": "gpt-4o", "input_tokens": -1},
            "input_tokens",
            -1,
        ),
        ({"kind": "message", "direction": "sideways"}, "direction", "sideways"),
        ({"kind": "telegram", "direction": "in"}, "kind", "telegram"),
        ({"direction": "in"}, "kind", None),
        ({"kind": "message", "direction": "in", "bot": "otherbot"}, "bot", "otherbot"),
        ({"kind": "timing", "stage": "reply"}, "latency_ms", None),
        ({"kind": "message", "direction": "in", "ts": "2026-12-01T10:00:00"}, "ts", "2026-12-01T10:00:00"),
        ({"kind": "message", "direction": "in", "ts": 1_796_000_000_000}, "ts", 1_796_000_000_000),
        ({"kind": "error", "error": None}, "error", None),
        ({"kind": "custom", "name": "x", "properties": "not a dict"}, "properties", "not a dict"),
        (
            {"kind": "llm_call", "provider": "o", "model": "m", "input_tokens": 5, "cached_tokens": 9},
            "cached_tokens",
            9,
        ),
    ],
)
def test_one_bad_event_refuses_the_batch_naming_index_field_and_value(served, event, field, value) -> None:
    client, keys, db = served()
    with client:
        answer = client.post(
            "/v1/events", json={"events": [*GOOD[:2], event]}, headers=_bearer(keys["ingest"])
        )
    assert answer.status_code == 400
    body = answer.json()
    assert (body["index"], body["field"], body["value"]) == (2, field, value)
    assert field in body["error"] and body["error"].startswith("event 2")
    assert _rows(db) == [(0,)]  # nothing of the batch written


@pytest.mark.parametrize(
    ("body", "field"),
    [(b"{not json", None), (b'{"event": []}', "events"), (b'[{"kind": "message"}]', "events")],
)
def test_a_body_that_is_not_a_batch_is_refused(served, body, field) -> None:
    client, keys, _ = served()
    with client:
        answer = client.post("/v1/events", content=body, headers=_bearer(keys["ingest"]))
    assert answer.status_code == 400 and answer.json()["field"] == field


def test_every_auth_failure(served) -> None:
    client, keys, db = served()
    batch = {"events": GOOD[:1]}
    with client:
        none = client.post("/v1/events", json=batch)
        assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
        wrong = client.post("/v1/events", json=batch, headers=_bearer(keys["ingest"][:-2] + "xx"))
        assert wrong.status_code == 401
        assert client.post("/v1/events", json=batch, headers=_bearer("bm_nothing_here")).status_code == 401
        assert (
            client.post("/v1/events", json=batch, headers={"Authorization": "Token abc"}).status_code == 401
        )
        assert (
            client.post("/v1/events", json=batch, headers={"Authorization": "Basic %%%"}).status_code == 401
        )
        scope = client.post("/v1/events", json=batch, headers=_bearer(keys["read"]))
        assert scope.status_code == 403 and "ingest" in scope.json()["error"]
        # HTTP Basic, any user name, the token as the password, as browsers send it.
        basic = base64.b64encode(f"me:{keys['ingest']}".encode()).decode()
        assert (
            client.post("/v1/events", json=batch, headers={"Authorization": f"Basic {basic}"}).status_code
            == 202
        )
        token_id = keys["ingest"].split("_")[1]
        client.app.state.tokens.revoke(token_id)
        client.app.state.tokens._checked = (
            0.0  # the server re-reads the file within a second; no waiting here
        )
        revoked = client.post("/v1/events", json=batch, headers=_bearer(keys["ingest"]))
        assert revoked.status_code == 401
    assert _rows(db) == [(1,)]
    # The token itself is nowhere in the tokens file, only its hash.
    kept = Path(str(db) + ".tokens.json").read_text()
    assert all(token not in kept for token in keys.values())


def test_ingest_tokens_write_only_their_bots_events(served) -> None:
    client, keys, db = served()
    with client:
        assert (
            client.post("/v1/events", json={"events": GOOD[:1]}, headers=_bearer(keys["other"])).status_code
            == 202
        )
    assert _rows(db, "SELECT bot FROM events") == [("otherbot",)]


def test_caps_on_body_size_and_batch_size_answer_413(served) -> None:
    client, keys, db = served(max_body_mb=0.01, max_batch_events=5)
    with client:
        many = client.post("/v1/events", json={"events": GOOD[:1] * 6}, headers=_bearer(keys["ingest"]))
        assert many.status_code == 413 and "5" in many.json()["error"]
        big = {"events": [{"kind": "custom", "name": "x", "properties": {"pad": "x" * 20_000}}]}
        assert client.post("/v1/events", json=big, headers=_bearer(keys["ingest"])).status_code == 413
        # A small gzip body that inflates past the cap (a zip bomb) is refused too.
        bomb = gzip.compress(json.dumps(big).encode())
        headers = {**_bearer(keys["ingest"]), "Content-Encoding": "gzip", "Content-Type": "application/json"}
        assert len(bomb) < 10_000
        assert client.post("/v1/events", content=bomb, headers=headers).status_code == 413
    assert _rows(db) == [(0,)]


def test_gzip_bodies_are_taken(served) -> None:
    client, keys, db = served()
    body = gzip.compress(json.dumps({"events": GOOD}).encode())
    headers = {**_bearer(keys["ingest"]), "Content-Encoding": "gzip", "Content-Type": "application/json"}
    with client:
        assert client.post("/v1/events", content=body, headers=headers).status_code == 202
        broken = client.post("/v1/events", content=body[:-9], headers=headers)
        assert broken.status_code == 400
    assert _rows(db) == [(len(GOOD),)]


def test_rate_limit_answers_429_with_retry_after(served) -> None:
    client, keys, db = served(rate_limit=10, max_batch_events=10)
    batch = {"events": [{"kind": "custom", "name": "n", "value": i} for i in range(10)]}
    with client:
        assert client.post("/v1/events", json=batch, headers=_bearer(keys["ingest"])).status_code == 202
        limited = client.post("/v1/events", json=batch, headers=_bearer(keys["ingest"]))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        # Another token has its own allowance.
        assert client.post("/v1/events", json=batch, headers=_bearer(keys["other"])).status_code == 202
        metrics = client.get("/metrics").text
    assert "botmeter_server_rate_limited_events_total 10" in metrics
    assert _rows(db) == [(20,)]


def test_a_retried_batch_with_event_ids_is_stored_once(served) -> None:
    client, keys, db = served()
    batch = {"events": [{"kind": "custom", "name": "n", "value": i, "event_id": f"e{i}"} for i in range(50)]}
    with client:
        for _ in range(3):
            assert client.post("/v1/events", json=batch, headers=_bearer(keys["ingest"])).status_code == 202
    assert _rows(db) == [(50,)]


def test_healthz_metrics_and_openapi(served) -> None:
    client, keys, _ = served()
    with client:
        client.post("/v1/events", json={"events": GOOD}, headers=_bearer(keys["ingest"]))
        client.post("/v1/events", json={"events": [{"kind": "nope"}]}, headers=_bearer(keys["ingest"]))
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["store_reachable"] is True and health.json()["spool_events"] == 0
        metrics = client.get("/metrics")
        spec = client.get("/openapi.json").json()
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert f"botmeter_server_accepted_events_total {len(GOOD)}" in text
    assert "botmeter_server_rejected_batches_total 1" in text
    assert 'botmeter_server_request_seconds_count{route="/v1/events"} 2' in text
    for name in ("spooled_events", "dropped_events"):
        assert f"botmeter_server_{name}_total 0" in text
    assert spec["openapi"].startswith("3.") and "/v1/events" in spec["paths"]
    assert {"/healthz", "/metrics", "/openapi.json"} <= set(spec["paths"])


def test_the_remote_store_maps_the_collectors_answers_to_what_the_writer_does(served, monkeypatch) -> None:
    """The remote Meter's store against the collector's app: 202 is written; a refused token, the
    rate limit and a batch for another bot are StoreUnavailable (the writer spools and replays);
    a refused event is a StoreError (the writer finds it and sets it aside)."""
    import pyarrow as pa

    from botmeter.backends.http.store import HttpStore
    from botmeter.config import Config
    from botmeter.exceptions import StoreError, StoreUnavailable
    from botmeter.process.pipeline import Pipeline

    client, keys, db = served(rate_limit=1, max_batch_events=3)
    table = Pipeline(Config.resolve(bot="dadacat"), None).run(_lanes(3))
    with client:

        def store_with(token: str) -> HttpStore:
            store = HttpStore("http://testserver", config=Config.resolve(token=token))
            store._client = client  # the app in this process, through Starlette's httpx client
            return store

        assert store_with(keys["ingest"]).write(table) == 3
        with pytest.raises(StoreUnavailable, match="429"):
            store_with(keys["ingest"]).write(table)  # 3 more events before the next 3 seconds
        with pytest.raises(StoreUnavailable, match="401"):
            store_with(keys["ingest"] + "x").write(table)
        with pytest.raises(StoreUnavailable, match="bot"):
            store_with(keys["other"]).write(table)
        broken = table.set_column(
            table.schema.get_field_index("event_id"),
            "event_id",
            pa.nulls(3, table.schema.field("event_id").type),
        )
        with pytest.raises(StoreError) as refused:
            fresh_token = client.app.state.tokens.create("dadacat", ("ingest",))  # its own rate allowance
            store_with(fresh_token).write(broken.slice(0, 1))
        assert not isinstance(refused.value, StoreUnavailable) and "event_id" in str(refused.value)
    assert _rows(db) == [(3,)]


def _lanes(n: int) -> tuple:
    from botmeter.collect.recorder import make_recorder

    buffer, track = make_recorder(n + 1)
    for i in range(n):
        track["track_custom"]("n", value=i)
    return buffer.drain_columns()


def test_the_collector_writes_to_cloudwatch_too(aws, tmp_path: Path, monkeypatch) -> None:
    """Any store behind the collector: CloudWatch (the moto server), one log record per event."""
    import boto3

    from aws_emulator import log_messages

    monkeypatch.setenv("BOTMETER_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the user-hash key goes there
    namespace = "CollectorTest"
    config = ServerConfig(
        store=f"cloudwatch://?namespace={namespace}&region=us-east-1&mode=api",
        tokens_file=str(tmp_path / "tokens.json"),
    )
    app = create_app(config)
    token = app.state.tokens.create("dadacat", ("ingest",))
    with TestClient(app) as client:
        answer = client.post("/v1/events", json={"events": GOOD}, headers=_bearer(token))
        assert answer.status_code == 202
        assert client.get("/healthz").json()["spool_events"] == 0
    logs = boto3.client("logs", region_name="us-east-1")
    records = [json.loads(m) for m in log_messages(logs, f"/botmeter/{namespace}")]
    assert len(records) == len(GOOD)
    assert {r.get("bot") for r in records} == {"dadacat"}
