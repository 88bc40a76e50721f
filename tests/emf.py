"""The Embedded Metric Format's rules as a check, and reading EMF output back, for the tests."""

from __future__ import annotations

import json
import math

UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}  # fmt: skip


def check_emf(doc: dict) -> None:
    """Raises AssertionError where a document breaks the Embedded Metric Format's rules."""
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int) and 10**12 < meta["Timestamp"] < 10**13  # epoch ms
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        assert isinstance(directive["Namespace"], str) and 1 <= len(directive["Namespace"]) <= 255
        assert isinstance(directive["Dimensions"], list)
        for dimension_set in directive["Dimensions"]:
            assert isinstance(dimension_set, list) and len(dimension_set) <= 30
            for name in dimension_set:
                value = doc[name]  # every referenced dimension is a top-level member
                assert isinstance(value, str) and value.strip() and len(value) <= 1024
                assert value.isascii()
        metrics = directive["Metrics"]
        assert 1 <= len(metrics) <= 100
        for m in metrics:
            assert isinstance(m["Name"], str) and 1 <= len(m["Name"]) <= 255
            assert m.get("Unit", "None") in UNITS
            value = doc[m["Name"]]  # every referenced metric is a top-level member
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100
            assert all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def emf_lines(text: str) -> tuple[list[dict], list[dict]]:
    """(EMF documents, event records) from captured stdout; every line must be one JSON object."""
    docs, records = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        (docs if "_aws" in obj else records).append(obj)
    return docs, records


def emf_total(docs: list[dict], name: str, dimensions: dict[str, str], stat: str = "Sum") -> float:
    total = 0.0
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            if name not in {m["Name"] for m in directive["Metrics"]}:
                continue
            for dimension_set in directive["Dimensions"]:
                if sorted(dimension_set) == sorted(dimensions) and all(
                    doc[k] == v for k, v in dimensions.items()
                ):
                    values = doc[name] if isinstance(doc[name], list) else [doc[name]]
                    total += sum(values) if stat == "Sum" else len(values)
    return total
