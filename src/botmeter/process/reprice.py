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
from .pricing import LlmPricer, PriceList, UnitPricer, call_extras
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
    units = UnitPricer(price_list, rates)
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
            sms = [kind == "message" for kind in c["kind"]]
            # SMS and API calls come mixed; each is priced by the same rules as on write.
            sms_costs, sms_versions = units.sms(
                c["provider"], c["units"], c["epoch"], c["direction"], c["country"]
            )
            api_costs, api_versions = units.api(c["provider"], c["name"], c["unit"], c["units"], c["epoch"])
            for i, is_sms in enumerate(sms):
                cost, version = (sms_costs[i], sms_versions[i]) if is_sms else (api_costs[i], api_versions[i])
                examined += 1
                unpriced += cost is None
                costs.append(cost)
                versions.append(version)
            ids.extend(_id_bytes(batch))
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
