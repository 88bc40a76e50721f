"""Numbers as people read them, shared by every report form (dashboard, SMS, Slack, Markdown, text)."""

from __future__ import annotations


def money(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"${v:,.0f}"
    return f"${v:,.2f}" if abs(v) >= 1 or v == 0 else f"${v:,.4f}"


def count(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def short(v: float | None) -> str:
    """1.2k, 3.4M: for axis labels and crowded places."""
    if v is None:
        return "-"
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= size:
            return f"{v / size:.3g}{suffix}"
    return f"{v:.3g}" if v != int(v) else f"{int(v)}"


def percent(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} ms"


def seconds(v: float | None) -> str:
    if v is None:
        return "-"
    if v < 60:
        return f"{v:.0f} s"
    if v < 3600:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.1f} h"


def latency_s(v: float | None) -> str:
    """A wait in seconds as people read it: 0.42 s, 7.96 s, 12.3 s, 2.5 min."""
    if v is None:
        return "-"
    if v < 10:
        return f"{v:.2f} s"
    if v < 60:
        return f"{v:.1f} s"
    return seconds(v)


def short_money(v: float | None) -> str:
    return "-" if v is None else "$" + short(v) if abs(v) >= 1 or v == 0 else f"${v:.3f}"


__all__ = ["count", "latency_s", "money", "ms", "percent", "seconds", "short", "short_money"]
