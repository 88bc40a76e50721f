"""Recomputes stored costs from the raw usage kept with every event (tokens, segments, units).

Used when prices change or a price list is added: ``botmeter reprice --since 2026-11-01``.
Costs the bot gave itself (``price_version = 'caller'``) are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from ..config import Config
from ..store.duckdb_store import DuckDBStore
from .pricing import LlmPricer, PriceList, call_extras, price_units
from .sms import SmsRates

_CHUNK = 100_000


@dataclass
class RepriceResult:
    examined: int
    changed: int
    unpriced: int


def reprice(
    store: DuckDBStore, config: Config, since: datetime, until: datetime | None = None
) -> RepriceResult:
    price_list = PriceList.load(config.prices) if config.prices else None
    llm = LlmPricer(price_list)
    rates = SmsRates.load(config.sms_rates) if config.sms_rates else SmsRates.default()
    where = "ts >= $since" + (" AND ts < $until" if until else "")
    params = {"since": since.replace(tzinfo=None)} | ({"until": until.replace(tzinfo=None)} if until else {})
    ids: list[bytes] = []
    costs: list[float | None] = []
    versions: list[str | None] = []
    examined = unpriced = 0
    with store.reading() as con:
        con.execute("SET arrow_lossless_conversion = true")  # event ids as UUIDs, not text
        llm_rows = con.sql(
            "SELECT event_id, provider, model, epoch(ts), input_tokens, output_tokens, cached_tokens, "
            "cache_write_tokens, reasoning_tokens, properties FROM events WHERE kind = 'llm_call' "
            f"AND price_version IS DISTINCT FROM 'caller' AND {where}",
            params=params,
        ).to_arrow_reader(_CHUNK)
        for batch in llm_rows:
            c = batch.to_pydict()
            new_costs, new_versions = llm.price_batch(
                c["provider"],
                c["model"],
                c["epoch(ts)"],
                c["input_tokens"],
                c["output_tokens"],
                c["cached_tokens"],
                c["cache_write_tokens"],
                c["reasoning_tokens"],
                call_extras(c["properties"]),
            )
            examined += batch.num_rows
            unpriced += sum(1 for cost in new_costs if cost is None)
            ids.extend(_id_bytes(batch))
            costs.extend(new_costs)
            versions.extend(new_versions)
        unit_rows = con.sql(
            "SELECT event_id, kind, provider, name, unit, units, epoch(ts), direction, country FROM events "
            "WHERE units IS NOT NULL AND ((kind = 'message' AND unit = 'sms_segment') OR kind = 'api_call') "
            f"AND price_version IS DISTINCT FROM 'caller' AND {where}",
            params=params,
        ).to_arrow_reader(_CHUNK)
        for batch in unit_rows:
            c = batch.to_pydict()
            batch_ids = _id_bytes(batch)
            for i in range(batch.num_rows):
                examined += 1
                is_sms = c["kind"][i] == "message"
                cost, version = (None, None)
                if price_list is not None:
                    cost, version = price_units(
                        price_list,
                        c["provider"][i],
                        None if is_sms else c["name"][i],
                        c["unit"][i],
                        c["units"][i],
                        c["epoch(ts)"][i],
                        c["direction"][i] if is_sms else None,
                        c["country"][i] if is_sms else None,
                    )
                if cost is None and is_sms:
                    cost = c["units"][i] * rates.rate(c["country"][i], c["direction"][i] or "out")
                    version = rates.version
                if cost is None:
                    unpriced += 1
                ids.append(batch_ids[i])
                costs.append(cost)
                versions.append(version)
    if not ids:
        return RepriceResult(examined, 0, unpriced)
    event_ids = pa.ExtensionArray.from_storage(pa.uuid(), pa.array(ids, pa.binary(16)))
    changes = pa.table(
        {
            "event_id": event_ids,
            "cost_usd": pa.array(costs, pa.float64()),
            "price_version": pa.array(versions, pa.string()),
        }
    )
    changed = store.update_costs(changes)
    return RepriceResult(examined, changed, unpriced)


def _id_bytes(batch: pa.RecordBatch) -> list[bytes]:
    column = batch.column("event_id")
    return column.storage.to_pylist() if isinstance(column, pa.ExtensionArray) else column.to_pylist()
