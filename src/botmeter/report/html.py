"""HTML and inline SVG for the dashboard: an escaping element builder, fixed colours, one scale and
axis helper, and a few small chart functions.

Every string becomes text (escaped) unless it is ``Markup``, which only this module and the
dashboard make from their own templates. Event data (user ids, model names, error messages,
activity names) therefore can only ever be text: there is no other way into the page.
Charts are drawn here, in Python, as SVG: the page needs no script, no library and no network.
"""

from __future__ import annotations

import html
import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .numbers import short

Fmt = Callable[[float | None], str]
Series = Sequence[tuple[str, Sequence[float | None]]]


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


# -- colours -----------------------------------------------------------------------------------------

# Okabe and Ito's colour-blind-safe palette, with a dark grey for black (which vanishes in dark mode).
# The page's CSS defines one class per name (``c-vermillion``...); tests/test_dashboard.py checks that
# every pair stays apart under simulated protanopia, deuteranopia and tritanopia.
PALETTE: dict[str, str] = {
    "vermillion": "#D55E00",
    "orange": "#E69F00",
    "yellow": "#F0E442",
    "green": "#009E73",
    "sky": "#56B4E9",
    "blue": "#0072B2",
    "purple": "#CC79A7",
    "grey": "#44474F",
    "other": "#BBBBBB",  # only for "N others": what was summed together
}
DARK_PALETTE: dict[str, str] = {**PALETTE, "grey": "#D0D3D9", "other": "#55595F"}
# Red is for what is critical, and for nothing that is fine.
SEVERITY_COLOURS: dict[str, str] = {
    "critical": "vermillion",
    "error": "orange",
    "warning": "yellow",
    "info": "sky",
}
CATEGORY_COLOURS: dict[str, str] = {
    "quota": "vermillion",  # money: critical by default
    "auth": "purple",  # credentials: critical by default
    "upstream_error": "orange",
    "rate_limit": "yellow",
    "timeout": "sky",
    "network": "blue",
    "invalid_request": "green",
    "internal": "grey",
}
PROVIDER_COLOURS: dict[str, str] = {
    "twilio": "blue",
    "openai": "green",
    "anthropic": "orange",
    "bedrock": "yellow",
    "aws": "yellow",
    "google": "sky",
    "gemini": "sky",
    "mistral": "purple",
    "other": "grey",
}
SERIES_COLOURS: dict[str, str] = {
    "Messages": "blue",
    "LLM calls": "green",
    "Paid APIs": "orange",
    "Channel fees": "sky",
    "p50": "sky",
    "p95": "blue",
    "p99": "purple",
    "new": "sky",
    "returning": "blue",
    "messages": "blue",
    "conversations": "orange",
    "per conversation": "blue",
    "per active user": "orange",
    "error rate": "orange",
    "failure rate": "vermillion",
}
# Colours a name outside the tables may get: red stays for what is critical.
_FREE = ("blue", "green", "orange", "sky", "purple", "yellow", "grey")


def colours(names: Sequence[str], fixed: Mapping[str, str] = SERIES_COLOURS) -> list[str]:
    """A colour per name: its fixed one first, then for the rest one chosen from the name itself (so
    the same name has the same colour in every report) among those still free; when none is free,
    the neutral "other" (never a colour that already means something in the chart)."""

    def wanted(name: str) -> str | None:
        return fixed.get(name) or fixed.get(name.split(" ", 1)[0].lower())

    out: list[str | None] = [None] * len(names)
    taken: set[str] = set()
    for i, name in enumerate(names):  # fixed colours win over chosen ones
        colour = wanted(name)
        if name.endswith(" others"):
            out[i] = "other"
        elif colour is not None and colour not in taken:
            out[i] = colour
            taken.add(colour)
    for i, name in enumerate(names):
        if out[i] is None:
            start = zlib.crc32(name.encode()) % len(_FREE)
            order = [_FREE[(start + k) % len(_FREE)] for k in range(len(_FREE))]
            out[i] = next((c for c in order if c not in taken), "other")
            taken.add(out[i])
    return [c or "other" for c in out]


def palette_css() -> str:
    """The colour classes: one CSS variable and class per palette name, lighter greys in dark mode."""
    light = " ".join(f"--c-{n}: {c};" for n, c in PALETTE.items())
    dark = " ".join(f"--c-{n}: {c};" for n, c in DARK_PALETTE.items() if PALETTE[n] != c)
    rules = "\n".join(
        f".c-{n} {{ fill: var(--c-{n}); stroke: var(--c-{n}); background: var(--c-{n}); }}" for n in PALETTE
    )
    return (
        f":root {{ {light} }}\n@media (prefers-color-scheme: dark) {{ :root {{ {dark} }} }}\n{rules}\n"
        "svg .line { fill: none; }\n"
    )


# -- the scale and axes every chart shares -------------------------------------------------------------

# Chart sizes in SVG units: a wide panel's chart is drawn wider, so its text is not scaled up.
W, H = 600, 240
WIDE_W, WIDE_H = 1200, 290
LEFT, RIGHT, TOP, BOTTOM = 60, 12, 34, 42
# The largest font a chart's text gets (on a phone), in SVG units: labels are spaced for it.
MAX_FONT = 20
CHAR_W = 0.6


def nice_max(value: float) -> float:
    """The top of an axis of four equal steps, each step a round number (1, 2, 2.5 or 5 x 10^k)."""
    if value <= 0:
        return 4.0
    raw = value / 4
    exp = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 2.5, 5, 10):
        if raw <= step * exp * (1 + 1e-9):
            return 4 * step * exp
    return 40 * exp


@dataclass(frozen=True)
class Axis:
    """What a day chart's axes say: the day labels, the unit of the values, the zone of the days."""

    labels: Sequence[str]  # one per slot, e.g. "4 Dec"
    unit: str  # "USD per day", "users", "seconds"
    x_title: str = "day (UTC)"
    partial_last: bool = False  # the last slot is today so far
    fmt: Fmt = short  # axis values


@dataclass(frozen=True)
class Frame:
    """The plot area of one chart: slots along x, a value scale along y, and its axes."""

    axis: Axis
    top: float
    width: int = W
    height: int = H

    @property
    def n(self) -> int:
        return max(len(self.axis.labels), 1)

    @property
    def right(self) -> float:
        """The plot's right edge: a wide chart repeats its values on the right, which is what a
        phone shows first (it opens on the latest days)."""
        return self.width - (LEFT if self.width > W else RIGHT)

    @property
    def slot(self) -> float:
        return (self.right - LEFT) / self.n

    @property
    def bottom(self) -> float:
        return self.height - BOTTOM

    def x(self, i: int) -> float:
        return LEFT + self.slot * (i + 0.5)

    def y(self, v: float | None) -> float:
        return self.bottom - (self.bottom - TOP) * (v or 0) / self.top

    def label_step(self) -> int:
        """Every how many slots a date label fits, at the largest font the page uses."""
        widest = max((len(label) for label in self.axis.labels), default=1)
        return max(1, math.ceil((widest * CHAR_W * MAX_FONT + 10) / self.slot))

    def draw(self) -> list[Markup]:
        """Grid lines with their values, the unit, date labels that never overlap (the latest always
        shown), the x axis' title, and a shade over today's partial day."""
        out = []
        if self.axis.partial_last:
            x0 = LEFT + self.slot * (self.n - 1)
            out.append(
                h(
                    "rect",
                    {
                        "x": f"{x0:.1f}",
                        "y": TOP,
                        "width": f"{self.slot:.1f}",
                        "height": f"{self.bottom - TOP:.1f}",
                        "class": "partial-day",
                    },
                    h("title", None, f"{self.axis.labels[-1]}: today so far (partial day)"),
                )
            )
        for i in range(5):
            value = self.top * i / 4
            y = self.y(value)
            out.append(
                h(
                    "line",
                    {
                        "x1": LEFT,
                        "x2": f"{self.right:.1f}",
                        "y1": f"{y:.1f}",
                        "y2": f"{y:.1f}",
                        "class": "grid",
                    },
                )
            )
            out.append(
                h("text", {"x": LEFT - 5, "y": f"{y + 4:.1f}", "class": "ylabel"}, self.axis.fmt(value))
            )
            if self.width > W:
                out.append(
                    h(
                        "text",
                        {"x": f"{self.right + 5:.1f}", "y": f"{y + 4:.1f}", "class": "ylabel right"},
                        self.axis.fmt(value),
                    )
                )
        out.append(h("text", {"x": 2, "y": 16, "class": "unit"}, self.axis.unit))
        if self.width > W:
            out.append(h("text", {"x": self.width - 2, "y": 16, "class": "unit right"}, self.axis.unit))
        out.extend(self._day_labels())
        title = self.axis.x_title + (" · shaded: today so far" if self.axis.partial_last else "")
        out.append(h("text", {"x": f"{self.right:.1f}", "y": self.height - 3, "class": "xtitle"}, title))
        return out

    def _day_labels(self) -> list[Markup]:
        """Day labels from the latest back, every ``label_step`` days; a label is kept inside the
        chart (anchored at its end or start near an edge) and left out if it would touch the one
        after it, at the largest font the page uses."""
        out = []
        labels = self.axis.labels
        free_right = math.inf  # where the label to the right begins
        for i in range(len(labels) - 1, -1, -self.label_step()):
            w = len(labels[i]) * CHAR_W * MAX_FONT
            x, anchor = self.x(i), "middle"
            if x + w / 2 > self.width - 2:
                x, anchor = self.width - 2.0, "end"
            elif x - w / 2 < 2:
                x, anchor = 2.0, "start"
            left = {"middle": x - w / 2, "end": x - w, "start": x}[anchor]
            if left + w + 8 > free_right:
                continue
            free_right = left
            out.append(
                h(
                    "text",
                    {"x": f"{x:.1f}", "y": self.bottom + 18, "class": f"xlabel {anchor}"},
                    labels[i],
                )
            )
        return out


def _svg(width: int, height: int, label: str, body: list[Any]) -> Markup:
    # A wide chart scrolls sideways on a phone rather than shrinking its text to nothing; the
    # scroller is right-to-left so it opens on the latest days.
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


def _has_data(series: Series) -> bool:
    return any(v for _, values in series for v in values)


Marker = tuple[int, str, str]  # (slot, "anomaly" | "alert", what it says)


def bar_chart(
    axis: Axis,
    series: Series,
    *,
    title: str,
    fmt: Fmt,
    colour_of: Sequence[str],
    markers: Sequence[Marker] = (),
    wide: bool = False,
) -> Markup | None:
    """Stacked bars, one per day; None when there is nothing to draw."""
    if not _has_data(series):
        return None
    n = len(axis.labels)
    totals = [sum(values[i] or 0 for _, values in series) for i in range(n)]
    frame = Frame(axis, nice_max(max(totals, default=0)), *((WIDE_W, WIDE_H) if wide else (W, H)))
    bar = max(frame.slot * 0.78, 1)
    body: list[Any] = frame.draw()
    for i in range(n):
        y0 = frame.bottom
        x = frame.x(i) - bar / 2
        for (name, values), colour in zip(series, colour_of, strict=True):
            v = values[i] or 0
            if v <= 0:
                continue
            bh = (frame.bottom - TOP) * v / frame.top
            y0 -= bh
            body.append(
                h(
                    "rect",
                    {
                        "x": f"{x:.1f}",
                        "y": f"{y0:.1f}",
                        "width": f"{bar:.1f}",
                        "height": f"{max(bh, 0.5):.1f}",
                        "class": f"mark c-{colour}",
                    },
                    h("title", None, f"{axis.labels[i]} {name}: {fmt(values[i])}"),
                )
            )
    if max(totals) > 0:
        # The largest and the latest bar carry their value: readable without hovering.
        for i in {totals.index(max(totals)), n - 1}:
            y = frame.y(totals[i]) - 4
            # The latest bar's label ends at its bar, so it stays inside the chart.
            x, anchor = (frame.x(i) + bar / 2, "value end") if i == n - 1 else (frame.x(i), "value")
            body.append(
                h(
                    "text",
                    {"x": f"{x:.1f}", "y": f"{max(y, 12):.1f}", "class": anchor},
                    fmt(totals[i]) + (" so far" if axis.partial_last and i == n - 1 else ""),
                )
            )
    body.extend(_markers(frame, markers, [frame.y(t) for t in totals]))
    return _svg(frame.width, frame.height, title, body)


def line_chart(
    axis: Axis,
    series: Series,
    *,
    title: str,
    fmt: Fmt,
    colour_of: Sequence[str],
    markers: Sequence[Marker] = (),
    wide: bool = False,
) -> Markup | None:
    """Lines with a dot per point; gaps where a value is missing; None when there is nothing to draw."""
    values_all = [v for _, values in series for v in values if v is not None]
    if not any(values_all):
        return None
    frame = Frame(axis, nice_max(max(values_all)), *((WIDE_W, WIDE_H) if wide else (W, H)))
    body: list[Any] = frame.draw()
    highest = [frame.bottom] * len(axis.labels)
    for (name, values), colour in zip(series, colour_of, strict=True):
        points, d, pen = [], [], "M"
        for i, v in enumerate(values):
            if v is None:
                pen = "M"
                continue
            x, y = frame.x(i), frame.y(v)
            highest[i] = min(highest[i], y)
            d.append(f"{pen}{x:.1f},{y:.1f}")
            pen = "L"
            points.append(
                h(
                    "circle",
                    {"cx": f"{x:.1f}", "cy": f"{y:.1f}", "r": 2.4, "class": f"mark dot c-{colour}"},
                    h("title", None, f"{axis.labels[i]} {name}: {fmt(v)}"),
                )
            )
        if d:
            body.append(h("path", {"d": " ".join(d), "class": f"line c-{colour}"}))
        body.extend(points)
    body.extend(_markers(frame, markers, highest))
    return _svg(frame.width, frame.height, title, body)


def _markers(frame: Frame, markers: Sequence[Marker], tops: Sequence[float]) -> list[Markup]:
    out = []
    for index, kind, text in markers:
        if not 0 <= index < len(tops):
            continue
        x, y = frame.x(index), max(tops[index] - 11, TOP)
        out.append(
            h(
                "g",
                {"class": f"marker {kind}"},
                h("circle", {"cx": f"{x:.1f}", "cy": f"{y:.1f}", "r": 8}),
                h("text", {"x": f"{x:.1f}", "y": f"{y + 4:.1f}"}, "!" if kind == "anomaly" else "▲"),
                h("title", None, text),
            )
        )
    return out


def box_plot(stats: Mapping[str, float | None], *, title: str, fmt: Fmt, unit: str) -> Markup:
    """A distribution: whiskers p10-p90, box p25-p75, median line, mean dot; labels under it."""
    width, height = W, 110
    top = nice_max(max(stats.get("p90") or 0, stats.get("avg") or 0) * 1.05)
    plot_w = width - 2 * LEFT

    def x(v: float | None) -> float:
        return LEFT + plot_w * (v or 0) / top

    mid = 46
    body: list[Any] = [
        h("text", {"x": 2, "y": 16, "class": "unit"}, unit),
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
                "class": "mark c-blue box",
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
        pos = x(stats.get(key)) + {"end": -5, "middle": 0, "start": 5}[anchor]
        y = mid + 36 if anchor == "middle" else mid + 5
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


def legend(items: Sequence[tuple[str, str]], colour_of: Sequence[str]) -> Markup:
    """Series names with their figure, as text beside the series' colour."""
    return h(
        "ul",
        {"class": "legend"},
        [
            h(
                "li",
                None,
                h("span", {"class": f"swatch c-{colour}"}),
                h("span", {"class": "name"}, name),
                " ",
                h("b", None, figure) if figure else None,
            )
            for (name, figure), colour in zip(items, colour_of, strict=True)
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


def bar_list(
    items: Sequence[tuple[str, float, str]], *, fmt: Fmt, caption: str, colour_of: Sequence[str]
) -> Markup:
    """Horizontal bars with label, number and a note (a share, a rate), largest first."""
    top = max((v for _, v, _ in items), default=0) or 1
    rows = [
        h(
            "tr",
            None,
            h("th", {"scope": "row"}, label),
            h("td", {"class": "num"}, fmt(value)),
            h("td", {"class": "num muted"}, note),
            h(
                "td",
                {"class": "barcell"},
                h("div", {"class": f"hbar mark c-{colour}", "style": f"width:{100 * value / top:.1f}%"}),
            ),
        )
        for (label, value, note), colour in zip(items, colour_of, strict=True)
    ]
    return h("table", {"class": "barlist"}, h("caption", None, caption), h("tbody", None, rows))


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool = False
    optional: bool = False  # hidden on a phone, so the figures that matter stay in view


def table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    *,
    caption: str,
    total: Sequence[Any] | None = None,
) -> Markup:
    """A plain table; number columns align right and never wrap; ``total`` is a last, bold row."""

    def cls(c: Column) -> str | None:
        return " ".join(x for x in ("num" if c.numeric else "", "opt" if c.optional else "") if x) or None

    head = h("tr", None, [h("th", {"scope": "col", "class": cls(c)}, c.name) for c in columns])
    body = [
        h("tr", None, [h("td", {"class": cls(columns[i])}, cell) for i, cell in enumerate(row)])
        for row in rows
    ]
    foot = (
        h(
            "tfoot",
            None,
            h("tr", None, [h("td", {"class": cls(columns[i])}, cell) for i, cell in enumerate(total)]),
        )
        if total
        else None
    )
    return h(
        "div",
        {"class": "scroll"},
        h(
            "table",
            {"class": "data"},
            h("caption", None, caption),
            h("thead", None, head),
            h("tbody", None, body),
            foot,
        ),
    )
