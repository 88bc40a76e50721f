"""Synthetic event stores for the analysis benchmark, made by SQL inside DuckDB (millions per second).

The shape follows a busy SMS bot: a long tail of users (a few heavy ones), conversations of a
handful of turns, each turn an inbound message, an LLM call, timings, a reply; errors, activities
and API calls now and then; a daily rhythm. Values come from ``hash(i, salt)`` so a store of a
given size is the same on every run.

    python bench/analysis_data.py /tmp/bm10m.duckdb --events 10000000 --days 30
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from botmeter.backends.duckdb import rollups  # noqa: E402
from botmeter.backends.duckdb.store import DuckDBStore  # noqa: E402

# Events of one turn, in order: what kind each is (the i-th event of a turn).
_TURN = ("in", "llm", "timing_llm", "timing_reply", "out", "extra")


def fill(path: Path, events: int, days: int, end: datetime, users: int | None = None) -> float:
    """Writes ``events`` events spread over the ``days`` days before ``end``; returns seconds taken."""
    store = DuckDBStore(f"duckdb://{path}")
    users = users or max(50, events // 300)
    turns = events // len(_TURN)
    span_s = days * 86400
    start = end - timedelta(days=days)
    began = time.perf_counter()
    with store.writing() as con:
        con.execute("SET threads = 2")
        # A turn: a user (Zipf-like: squaring a uniform favours small ids), a time with a daily
        # rhythm, a conversation of ~6 turns per user-half-hour.
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE turns AS
            SELECT t,
                   'u' || lpad(CAST(CAST(pow((hash(t // 4, 1) % 1000000) / 1e6, 2) * {users} AS BIGINT)
                                    AS VARCHAR), 8, '0')
                       AS user_id,
                   -- a conversation is 4 turns a minute or two apart; conversations spread over the span
                   TIMESTAMP '{start:%Y-%m-%d %H:%M:%S}'
                       + to_microseconds(CAST(((t // 4) * 4 * {span_s}.0 / {turns}) * 1e6 AS BIGINT)
                         + CAST((hash(t // 4, 2) % 3600000000) AS BIGINT)
                         + (t % 4) * 90000000) AS ts,
                   CAST(hash(t, 3) % 1000 AS BIGINT) AS r
            FROM range({turns}) AS r(t)
            """
        )
        con.execute(
            f"""
            INSERT INTO events BY NAME
            SELECT
                uuid() AS event_id,
                least(ts + to_milliseconds(CAST(k * 700 + hash(t, k, 4) % 500 AS BIGINT)),
                      TIMESTAMP '{end:%Y-%m-%d %H:%M:%S}' - INTERVAL 1 SECOND) AS ts,
                'dadacat' AS bot,
                CASE k WHEN 0 THEN 'message' WHEN 4 THEN 'message' WHEN 1 THEN 'llm_call'
                       WHEN 2 THEN 'timing' WHEN 3 THEN 'timing'
                       ELSE CASE WHEN r < 150 THEN 'error' WHEN r < 250 THEN 'activity'
                                 WHEN r < 450 THEN 'api_call' ELSE 'custom' END END AS kind,
                user_id,
                CASE WHEN hash(t // 4, 9) % 10 < 8 THEN user_id || '-' || CAST(t // 4 AS VARCHAR) END
                    AS conversation_id,
                CASE WHEN r % 7 = 0 THEN 'web' ELSE 'sms' END AS channel,
                CASE k WHEN 0 THEN 'in' WHEN 4 THEN 'out' END AS direction,
                CASE WHEN k IN (0, 4) THEN ['US', 'GB', 'CA', 'IN', 'MX'][1 + r % 5] END AS country,
                CASE WHEN k IN (0, 4) THEN 'twilio'
                     WHEN k = 1 AND r < 600 THEN 'openai' WHEN k = 1 THEN 'anthropic'
                     WHEN k = 5 AND r >= 250 AND r < 450 THEN 'openweathermap' END AS provider,
                CASE WHEN k = 1 THEN ['gpt-4o-mini', 'gpt-4o', 'o3-mini', 'claude-3-5-haiku-latest',
                                      'claude-sonnet-4-5', 'made-up-model'][1 + (r // 7) % 6]
                     WHEN k = 2 THEN ['gpt-4o-mini', 'gpt-4o', 'claude-sonnet-4-5'][1 + r % 3] END AS model,
                CASE WHEN k = 1 THEN 200 + hash(t, 5) % 3000 END AS input_tokens,
                CASE WHEN k = 1 THEN 20 + hash(t, 6) % 400 END AS output_tokens,
                CASE WHEN k = 1 THEN (hash(t, 7) % 3) * 100 END AS cached_tokens,
                CASE WHEN k = 1 THEN 0 END AS cache_write_tokens,
                CASE WHEN k = 1 THEN 0 END AS reasoning_tokens,
                CASE WHEN k IN (0, 4) THEN 1 + r % 3 WHEN k = 5 AND r >= 250 AND r < 450 THEN 1 END AS units,
                CASE WHEN k IN (0, 4) THEN 'sms_segment' WHEN k = 5 AND r >= 250 AND r < 450 THEN 'call' END
                    AS unit,
                CASE WHEN k IN (0, 4) THEN 20 + r % 300 END AS chars,
                CASE WHEN k IN (0, 4) THEN 0.0079 * (1 + r % 3)
                     WHEN k = 1 AND (r // 7) % 6 <> 5 THEN (200 + hash(t, 5) % 3000) * 1.5e-7
                                                         + (20 + hash(t, 6) % 400) * 6e-7
                     WHEN k = 5 AND r >= 250 AND r < 450 THEN 0.0001 END AS cost_usd,
                CASE WHEN k IN (1, 2, 3) THEN 50 + (hash(t, k, 8) % 400000) / 100.0 END AS latency_ms,
                CASE k WHEN 2 THEN 'llm' WHEN 3 THEN 'reply' END AS stage,
                CASE WHEN k = 5 AND r < 150 THEN ['RateLimitError', 'APITimeoutError',
                    'TwilioRestException', 'KeyError', 'AuthenticationError'][1 + r % 5] END AS error_type,
                CASE WHEN k = 5 AND r < 150
                     THEN ['rate_limit', 'timeout', 'delivery', 'internal', 'auth'][1 + r % 5]
                     END AS error_category,
                CASE WHEN k = 5 AND r < 150 THEN ['warning', 'error', 'error', 'error', 'critical'][1 + r % 5]
                     END AS severity,
                CASE WHEN k = 5 AND r < 150 THEN 'fp' || CAST(r % 23 AS VARCHAR) END AS fingerprint,
                CASE WHEN k = 5 AND r < 150 THEN 'something failed for request <id>' END AS error_message,
                CASE WHEN k = 5 AND r >= 150 AND r < 250 THEN ['reset', 'admin:status', 'feature:image',
                                                               'feature:weather'][1 + r % 4]
                     WHEN k = 5 AND r >= 250 AND r < 450 THEN 'weather.current'
                     WHEN k = 5 THEN 'custom.thing' END AS name
            FROM turns, range({len(_TURN)}) AS kk(k)
            ORDER BY ts
            """
        )
        con.execute("DROP TABLE turns")
        # Events went in by SQL, not through the writer: build the rollups the writer keeps.
        rollups.rebuild(con, rollups.session_gap(con))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    seconds = fill(args.path, args.events, args.days, end)
    print(f"{args.events:,} events over {args.days} days in {seconds:.1f} s -> {args.path}")


if __name__ == "__main__":
    main()
