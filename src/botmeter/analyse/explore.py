"""The explorer: what is in the store, before asking it anything.

Event kinds with counts, the time span, events per day, every field with its fill rate, every
dimension with its cardinality and top values, the models without a price, and storage size.
"""

from __future__ import annotations

from typing import Any


def explore(reader: Any, top: int = 5) -> dict[str, Any]:
    """Every engine answers it its own way; ``top`` values per dimension where it can count them."""
    return reader.engine.explore(top)
