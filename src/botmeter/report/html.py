"""HTML and inline SVG for the dashboard: an escaping element builder and a few chart kinds.

Every string becomes text (escaped) unless it is ``Markup``, which only this module and the
dashboard make from their own templates. Event data (user ids, model names, error messages,
activity names) therefore can only ever be text: there is no other way into the page.
Charts are drawn here, in Python, as SVG: the page needs no script, no library and no network.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .numbers import short

Fmt = Callable[[float | None], str]
PALETTE_SIZE = 10  # colours s0..s9 are in the page's CSS, so dark mode can change them


class Markup(str):
    """Text already made safe by this module: inserted as it is."""

    __slots__ = ()


def esc(value: Any) -> Markup:
    return value if isinstance(value, Markup) else Markup(html.escape(str(value), quote=True))


def h(tag: str, attrs: dict[str, Any] | None = None, *children: Any) -> Markup:
    """An element: attribute values and string children are escaped; None and False are left out."""
    parts = [f"<{tag}"]
    for name, value in (attrs or {}).items():
        if value is None or value is False:
            continue
        name = name.rstrip("_").replace("_", "-")
        parts.append(f" {name}" if value is True else f' {name}="{esc(value)}"')
    parts.append(">")
    parts.extend(_children(children))
    parts.append(f"</{tag}>")
    return Markup("".join(parts))


def join(items: Iterable[Any]) -> Markup:
    return Markup("".join(_children(items)))


def _children(children: Iterable[Any]) -> Iterable[str]:
    for child in children:
        if child is None or child is False:
            continue
        if isinstance(child, list | tuple):
            yield from _children(child)
        else:
            yield esc(child)


# -- charts ------------------------------------------------------------------------------------------

# Chart sizes in SVG units: a wide panel's chart is drawn wider, so its text is not scaled up.
W, H = 600, 230
WIDE_W, WIDE_H = 1200, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 10, 16, 26


def _nice_max(value: float) -> float:
    """The top of an axis of four equal steps, each step a round number (1, 2, 2.5 or 5 x 10^k)."""
    if value <= 0:
        return 4.0
    raw = value / 4
    exp = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 2.5, 5, 10):
        if raw <= step * exp * (1 + 1e-9):
            return 4 * step * exp
    return 40 * exp


def _axes(labels: Sequence[str], top: float, axis_fmt: Fmt, width: int, height: int) -> list[Markup]:
    """Grid lines with their values, and a few x labels (about six, always the first and last)."""
    out = []
    plot_h = height - TOP - BOTTOM
    for i in range(5):
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(
            h("line", {"x1": LEFT, "x2": width - RIGHT, "y1": f"{y:.1f}", "y2": f"{y:.1f}", "class": "grid"})
        )
        out.append(h("text", {"x": LEFT - 4, "y": f"{y + 3:.1f}", "class": "ylabel"}, axis_fmt(value)))
    n = len(labels)
    step = max(1, math.ceil(n / 6))
    plot_w = width - LEFT - RIGHT
    for i in range(0, n, step):
        x = LEFT + plot_w * (i + 0.5) / n
        out.append(h("text", {"x": f"{x:.1f}", "y": height - 7, "class": "xlabel"}, labels[i]))
    return out


def _svg(width: int, height: int, label: str, body: list[Any]) -> Markup:
    # A wide chart scrolls sideways on a phone rather than shrinking its text to nothing.
    return h(
        "div",
        {"class": "chartwrap"},
        h(
            "svg",
            {
                "viewBox": f"0 0 {width} {height}",
                "role": "img",
                "aria-label": label,
                "class": "chart wide" if width > W else "chart",
            },
            h("title", None, label),
            body,
        ),
    )


def bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    title: str,
    fmt: Fmt,
    axis_fmt: Fmt = short,
    markers: Sequence[tuple[int, str, str]] = (),
    width: int = W,
    height: int = H,
) -> Markup:
    """Stacked bars, one per label. ``markers``: (index, kind "anomaly"|"alert", explanation)."""
    n = max(len(labels), 1)
    totals = [sum(v or 0 for _, values in series for v in [values[i]]) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    slot = plot_w / n
    bar = max(slot * 0.78, 1)
    body: list[Any] = _axes(labels, top, axis_fmt, width, height)
    for i in range(len(labels)):
        y0 = TOP + plot_h
        x = LEFT + slot * i + (slot - bar) / 2
        for s, (name, values) in enumerate(series):
            v = values[i] or 0
            if v <= 0:
                continue
            bh = plot_h * v / top
            y0 -= bh
            body.append(
                h(
                    "rect",
                    {
                        "x": f"{x:.1f}",
                        "y": f"{y0:.1f}",
                        "width": f"{bar:.1f}",
                        "height": f"{max(bh, 0.5):.1f}",
                        "class": f"mark s{s % PALETTE_SIZE}",
                    },
                    h("title", None, f"{labels[i]} {name}: {fmt(values[i])}"),
                )
            )
    if totals and max(totals) > 0:
        # The largest and the latest bar carry their value: readable without hovering.
        for i in {totals.index(max(totals)), len(totals) - 1}:
            x = LEFT + slot * (i + 0.5)
            y = TOP + plot_h - plot_h * totals[i] / top - 3
            body.append(
                h("text", {"x": f"{x:.1f}", "y": f"{max(y, 9):.1f}", "class": "value"}, fmt(totals[i]))
            )
    body.extend(_markers(markers, [TOP + plot_h - plot_h * t / top for t in totals], slot))
    return _svg(width, height, title, body)


def line_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    title: str,
    fmt: Fmt,
    axis_fmt: Fmt = short,
    markers: Sequence[tuple[int, str, str]] = (),
    width: int = W,
    height: int = H,
    colour_offset: int = 0,
) -> Markup:
    """Lines with a dot per point; gaps where a value is missing (null)."""
    n = max(len(labels), 1)
    values_all = [v for _, values in series for v in values if v is not None]
    top = _nice_max(max(values_all, default=0))
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    slot = plot_w / n
    body: list[Any] = _axes(labels, top, axis_fmt, width, height)
    highest: list[float] = [TOP + plot_h] * len(labels)
    for s, (name, values) in enumerate(series):
        colour = f"s{(s + colour_offset) % PALETTE_SIZE}"
        points = []
        path = []
        for i, v in enumerate(values):
            if v is None:
                path.append(None)
                continue
            x, y = LEFT + slot * (i + 0.5), TOP + plot_h - plot_h * v / top
            highest[i] = min(highest[i], y)
            path.append((x, y))
            points.append(
                h(
                    "circle",
                    {"cx": f"{x:.1f}", "cy": f"{y:.1f}", "r": 2.2, "class": f"mark dot {colour}"},
                    h("title", None, f"{labels[i]} {name}: {fmt(v)}"),
                )
            )
        d, pen = [], "M"
        for p in path:
            if p is None:
                pen = "M"
                continue
            d.append(f"{pen}{p[0]:.1f},{p[1]:.1f}")
            pen = "L"
        if d:
            body.append(h("path", {"d": " ".join(d), "class": f"line {colour}"}))
        body.extend(points)
    body.extend(_markers(markers, highest, slot))
    return _svg(width, height, title, body)


def _markers(markers: Sequence[tuple[int, str, str]], tops: Sequence[float], slot: float) -> list[Markup]:
    out = []
    for index, kind, text in markers:
        if not 0 <= index < len(tops):
            continue
        x = LEFT + slot * (index + 0.5)
        y = max(tops[index] - 10, TOP)
        symbol = "!" if kind == "anomaly" else "▲"
        out.append(
            h(
                "g",
                {"class": f"marker {kind}"},
                h("circle", {"cx": f"{x:.1f}", "cy": f"{y:.1f}", "r": 7}),
                h("text", {"x": f"{x:.1f}", "y": f"{y + 3.5:.1f}"}, symbol),
                h("title", None, text),
            )
        )
    return out


def box_plot(stats: dict[str, float | None], *, title: str, fmt: Fmt, width: int = W) -> Markup:
    """A distribution: whiskers p10-p90, box p25-p75, median line, mean dot; labels under it."""
    height = 96
    hi = stats.get("p90") or 0
    top = _nice_max(max(hi, stats.get("avg") or 0) * 1.05)
    plot_w = width - 2 * LEFT

    def x(v: float | None) -> float:
        return LEFT + plot_w * (v or 0) / top

    mid = 40
    body: list[Any] = [
        h(
            "line",
            {
                "x1": f"{x(stats.get('p10')):.1f}",
                "x2": f"{x(stats.get('p90')):.1f}",
                "y1": mid,
                "y2": mid,
                "class": "whisker",
            },
        ),
        h(
            "rect",
            {
                "x": f"{x(stats.get('p25')):.1f}",
                "y": mid - 14,
                "width": f"{max(x(stats.get('p75')) - x(stats.get('p25')), 1):.1f}",
                "height": 28,
                "class": "mark s0 box",
            },
            h("title", None, f"middle half: {fmt(stats.get('p25'))} to {fmt(stats.get('p75'))}"),
        ),
        h(
            "line",
            {
                "x1": f"{x(stats.get('p50')):.1f}",
                "x2": f"{x(stats.get('p50')):.1f}",
                "y1": mid - 14,
                "y2": mid + 14,
                "class": "median",
            },
        ),
        h("circle", {"cx": f"{x(stats.get('avg')):.1f}", "cy": mid, "r": 4, "class": "mark mean"}),
    ]
    for key, anchor in (("p10", "end"), ("p50", "middle"), ("p90", "start")):
        pos = x(stats.get(key)) + {"end": -4, "middle": 0, "start": 4}[anchor]
        y = mid + 30 if anchor == "middle" else mid + 4
        body.append(
            h(
                "text",
                {"x": f"{pos:.1f}", "y": y, "class": f"boxlabel {anchor}"},
                f"{key} {fmt(stats.get(key))}",
            )
        )
    return _svg(width, height, title, body)


def sparkline(values: Sequence[float], *, label: str, width: int = 120, height: int = 24) -> Markup:
    top = max(values, default=0) or 1
    slot = width / max(len(values), 1)
    bars = [
        h(
            "rect",
            {
                "x": f"{slot * i:.1f}",
                "y": f"{height - height * v / top:.1f}",
                "width": f"{max(slot * 0.8, 0.8):.1f}",
                "height": f"{height * v / top:.1f}",
                "class": "mark spark",
            },
        )
        for i, v in enumerate(values)
        if v
    ]
    return h(
        "svg",
        {"viewBox": f"0 0 {width} {height}", "class": "sparkline", "role": "img", "aria-label": label},
        h("title", None, label),
        bars,
    )


def legend(items: Sequence[tuple[str, str]], colour_offset: int = 0) -> Markup:
    """Series names with their figure, as text beside the series' colour."""
    return h(
        "ul",
        {"class": "legend"},
        [
            h(
                "li",
                None,
                h("span", {"class": f"swatch s{(i + colour_offset) % PALETTE_SIZE}"}),
                h("span", {"class": "name"}, name),
                " ",
                h("b", None, figure) if figure else None,
            )
            for i, (name, figure) in enumerate(items)
        ],
    )


def facts(items: Sequence[tuple[str, str]]) -> Markup:
    """Figures for the whole period, as text: label and number."""
    return h(
        "ul",
        {"class": "facts"},
        [
            h("li", None, h("span", {"class": "name"}, name), " ", h("b", None, figure))
            for name, figure in items
        ],
    )


def heat_table(
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    cells: Sequence[Sequence[float | None]],
    *,
    caption: str,
    fmt: Fmt,
    scale_max: float | None = None,
    extra_column: tuple[str, Sequence[str]] | None = None,
) -> Markup:
    """A table whose cells carry their number and a shade for its size (five steps)."""
    values = [v for row in cells for v in row if v is not None]
    top = scale_max if scale_max is not None else max(values, default=0) or 1
    head = [h("th", None, "")]
    if extra_column:
        head.append(h("th", None, extra_column[0]))
    head += [h("th", {"scope": "col"}, c) for c in column_labels]
    body = []
    for r, label in enumerate(row_labels):
        row: list[Any] = [h("th", {"scope": "row"}, label)]
        if extra_column:
            row.append(h("td", {"class": "num"}, extra_column[1][r]))
        for v in cells[r]:
            if v is None:
                row.append(h("td", {"class": "heat none"}, ""))
                continue
            level = min(int(5 * v / top), 4) if top else 0
            row.append(h("td", {"class": f"heat mark h{level}"}, fmt(v)))
        body.append(h("tr", None, row))
    return h(
        "div",
        {"class": "scroll"},
        h(
            "table",
            {"class": "heat"},
            h("caption", None, caption),
            h("thead", None, h("tr", None, head)),
            h("tbody", None, body),
        ),
    )


def bar_list(items: Sequence[tuple[str, float]], *, fmt: Fmt, caption: str) -> Markup:
    """Horizontal bars with label and number, largest first."""
    top = max((v for _, v in items), default=0) or 1
    rows = [
        h(
            "tr",
            None,
            h("th", {"scope": "row"}, label),
            h("td", {"class": "num"}, fmt(value)),
            h(
                "td",
                {"class": "barcell"},
                h("div", {"class": "hbar mark s0", "style": f"width:{100 * value / top:.1f}%"}),
            ),
        )
        for label, value in items
    ]
    return h("table", {"class": "barlist"}, h("caption", None, caption), h("tbody", None, rows))


def table(columns: Sequence[tuple[str, bool]], rows: Sequence[Sequence[Any]], *, caption: str) -> Markup:
    """A plain table; ``columns`` are (name, numeric)."""
    head = h(
        "tr",
        None,
        [h("th", {"scope": "col", "class": "num" if num else None}, name) for name, num in columns],
    )
    body = [
        h(
            "tr",
            None,
            [h("td", {"class": "num" if columns[i][1] else None}, cell) for i, cell in enumerate(row)],
        )
        for row in rows
    ]
    return h(
        "div",
        {"class": "scroll"},
        h(
            "table",
            {"class": "data"},
            h("caption", None, caption),
            h("thead", None, head),
            h("tbody", None, body),
        ),
    )
