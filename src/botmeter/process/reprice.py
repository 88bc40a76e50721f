"""Recomputes stored costs from the raw usage kept with every event (tokens, segments, units).

Used when prices change or a price list is added: ``botmeter reprice --since 2026-11-01``.
Costs the bot gave itself (``price_version = 'caller'``) are left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import pyarrow as pa

from ..config import Config
from .pricing import LlmPricer, PriceList, call_extras, price_units
from .sms import SmsRates


class RepricedStore(Protocol):
    """What repricing needs of a store (``DuckDBStore`` has it): the stored raw usage, and a way to
    write costs back. The store runs the SQL; this module only prices."""

    def usage_to_reprice(
        self, since: datetime, until: datetime | None = None
    ) -> AbstractContextManager[tuple[Iterator[pa.RecordBatch], Iterator[pa.RecordBatch]]]: ...

    def update_costs(self, changes: pa.Table) -> int: ...


@dataclass
class RepriceResult:
    examined: int
    changed: int
    unpriced: int


def reprice(
    store: RepricedStore, config: Config, since: datetime, until: datetime | None = None
) -> RepriceResult:
    price_list = PriceList.load(config.prices) if config.prices else None
    llm = LlmPricer(price_list)
    rates = SmsRates.load(config.sms_rates) if config.sms_rates else SmsRates.default()
    ids: list[bytes] = []
    costs: list[float | None] = []
    versions: list[str | None] = []
    examined = unpriced = 0
    with store.usage_to_reprice(since, until) as (llm_rows, unit_rows):
        for batch in llm_rows:
            c = batch.to_pydict()
            new_costs, new_versions = llm.price_batch(
                c["provider"],
                c["model"],
                c["epoch"],
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
                        c["epoch"][i],
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
