"""The self-contained HTML dashboard: one file that opens from disk with no network at all.

``write_dashboard(reader, days, output)`` gathers the figures (``analyse.dashboard_figures``), renders
them and writes the HTML (and, if asked, the same figures as JSON beside it). Charts are inline
SVG drawn by ``report.html``; the styles are inline; the page has no script.

The page is data: ``SECTIONS`` lists the panels, each a ``Panel`` (title, the figures it needs,
the chart function that draws it, the note that says how it is computed). One loop draws them;
the ``botmeter query`` commands under each panel come from the figures it needs. Adding a panel is
one entry. Above the panels, an attention strip says in plain words what needs a look, and links
to the panel that shows it.

From the command line: ``botmeter dashboard --days 7 --output metrics/dashboard.html``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..analyse.dashboard_figures import dashboard_data
from ..analyse.query import iso
from ..version import __version__
from .html import Markup, h, join, palette_css
from .numbers import count, money, percent
from .page import (
    Page,
    _dt,
    day_text,
    failure_rate,
    reply_latency,
    secs,
    signed_money,
)
from .panels import SECTIONS, Panel

STYLE_PATH = Path(__file__).with_name("dashboard.css")


# -- writing ---------------------------------------------------------------------------------------


def write_dashboard(
    reader: Any,
    days: int | None,
    output: str | Path,
    *,
    with_json: bool = False,
    now: datetime | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    timezone: str = "UTC",
    monthly_budget_usd: float | None = None,
    alerts: list[dict[str, Any]] | None = None,
) -> tuple[Path, Path | None]:
    """Writes the dashboard for the last ``days`` days, or ``start`` to ``end``, to ``output`` (and
    ``.json`` beside it). ``timezone`` (IANA) is the zone times and hours are shown in."""
    data = dashboard_data(
        reader,
        days,
        now,
        start=start,
        end=end,
        timezone=timezone,
        monthly_budget_usd=monthly_budget_usd,
        alerts=alerts,
    )
    return write_figures(data, output, with_json=with_json)


def write_figures(
    data: dict[str, Any], output: str | Path, *, with_json: bool = False
) -> tuple[Path, Path | None]:
    """Writes the dashboard of figures already worked out (``dashboard_data``, the ``dashboard``
    answer) to ``output``, and ``.json`` beside it with ``with_json``."""
    path = Path(output)
    _write_atomic(path, render(data))
    json_path = None
    if with_json:
        json_path = path.with_suffix(".json")
        _write_atomic(json_path, to_json(data))
    return path, json_path


def to_json(data: dict[str, Any]) -> str:
    def default(value: Any) -> Any:
        return iso(value) if isinstance(value, datetime) else str(value)

    return json.dumps(data, indent=1, default=default, ensure_ascii=False) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    # A reader (a browser, a mail client) never sees half a file: write beside it, then rename.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- drawing ---------------------------------------------------------------------------------------


def _command(q: dict[str, Any]) -> str:
    """The ``botmeter query`` command line that gives a panel's figures."""
    parts = ["botmeter query", q["metric"], f"--start {q['start']}", f"--end {q['end']}"]
    parts.append(f"--interval {q.get('interval') or 'none'}")
    for key in ("by", "stat", "limit"):
        if q.get(key) is not None:
            parts.append(f"--{key} {q[key]}")
    for name, values in (q.get("filters") or {}).items():
        parts.append(f"--filter {name}={'|'.join(values)}")
    return " ".join(parts)


@dataclass(frozen=True)
class Served:
    """What the page served by ``botmeter serve`` adds to the file: a form that asks for another
    window or bot (a plain GET form: the page still runs no script), links between related panels,
    and each panel's figures as a link to the reading API. The values are as the request gave them."""

    days: str = ""
    start: str = ""
    end: str = ""
    bot: str = ""
    error: str | None = None  # what was wrong with the request, said above the form
    api: str = ""  # where /metrics/... is, relative to the page
    presets: tuple[int, ...] = field(default=(1, 7, 30, 90))


def _link(path: str, params: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    kept = {k: v for k, v in params.items() if v not in (None, "", ())}
    return path + ("?" + urlencode(kept, doseq=True) if kept else "")


def draw_controls(served: Served) -> Markup:
    """The window and bot form, and links to the usual windows, for the served page."""

    def field_(label: str, name: str, value: str, **attrs: Any) -> Markup:
        tag = h("input", {"name": name, "value": value, **attrs})
        return h("label", None, label, " ", Markup(tag.removesuffix("</input>")))  # a void element

    presets = [
        h("a", {"href": _link("", {"days": n, "bot": served.bot})}, f"{n} day{'s' if n > 1 else ''}")
        for n in served.presets
    ]
    return h(
        "section",
        {"class": "controls", "id": "window", "aria-label": "Period and bot"},
        h("p", {"class": "error", "role": "alert"}, served.error) if served.error else None,
        h(
            "form",
            {"method": "get", "class": "window"},
            field_("Last", "days", served.days, type="number", min="1", inputmode="numeric", size="4"),
            " days, or ",
            field_("from", "start", served.start, placeholder="YYYY-MM-DD", size="12"),
            field_("until", "end", served.end, placeholder="YYYY-MM-DD", size="12"),
            h("span", {"class": "muted"}, "(UTC; until is not included)"),
            field_("Bot", "bot", served.bot, placeholder="all bots", size="14"),
            h("button", {"type": "submit"}, "Show"),
        ),
        h("p", {"class": "presets"}, "Last: ", join(presets)),
    )


def _related(panel: Panel) -> list[Panel]:
    """Panels that show the same figures or sit in the same section: the ones worth a look next."""
    out: list[Panel] = []
    for section in SECTIONS:
        near = panel in section.panels
        for other in section.panels:
            if other is not panel and (near or set(other.needs) & set(panel.needs)) and other not in out:
                out.append(other)
    return out


def _api_link(served: Served, q: dict[str, Any]) -> str:
    params: dict[str, Any] = {"start": q["start"], "end": q["end"], "interval": q.get("interval") or "none"}
    for key in ("by", "stat", "limit"):
        if q.get(key) is not None:
            params[key] = q[key]
    params["filter"] = [f"{k}={'|'.join(v)}" for k, v in (q.get("filters") or {}).items()]
    return _link(f"{served.api}metrics/{q['metric']}", params)


def draw_panel(page: Page, panel: Panel, served: Served | None = None) -> Markup:
    data = page.data
    missing = data.get("unavailable") or {}
    gone = [k for k in panel.needs if k in missing]
    if gone:
        content: Any = h(
            "p",
            {"class": "unavailable"},
            "Not available from this store: ",
            "; ".join(missing[k] for k in gone),
        )
    else:
        content = panel.chart(page) or h("p", {"class": "empty"}, panel.empty)
    queries = data.get("queries", {})
    commands = [_command(queries[k]) for k in panel.needs if k in queries]
    note = panel.note(page) if callable(panel.note) else panel.note
    flagged = any(f.panel == panel.key and f.level in ("bad", "warn") for f in page.findings)
    classes = " ".join(c for c in ("panel", "wide" if panel.wide else "", "flagged" if flagged else "") if c)
    return h(
        "section",
        {"class": classes, "data-panel": panel.key, "data-kind": panel.kind, "id": panel.key},
        h("h3", None, panel.title),
        content,
        h("p", {"class": "how"}, h("b", None, "How this is computed: "), note),
        h(
            "details",
            {"class": "how"},
            h("summary", None, "The query"),
            [h("code", None, c) for c in commands],
        )
        if commands
        else None,
        _served_links(page, panel, served) if served is not None else None,
    )


def _served_links(page: Page, panel: Panel, served: Served) -> Markup:
    queries = page.data.get("queries", {})
    api = [h("a", {"href": _api_link(served, queries[k])}, k) for k in panel.needs if k in queries]
    related = [h("a", {"href": f"#{p.key}"}, p.title) for p in _related(panel)]
    return h(
        "p",
        {"class": "links"},
        [h("span", None, "See also: ", join(_between(related))) if related else None],
        [h("span", None, " · As JSON: ", join(_between(api))) if api else None],
    )


def _between(links: list[Markup]) -> list[Any]:
    out: list[Any] = []
    for i, link in enumerate(links):
        out += [", "] if i else []
        out.append(link)
    return out


def draw_attention(page: Page) -> Markup:
    items = [
        h("li", {"class": f.level}, h("a", {"href": f"#{f.panel}"}, f.text))
        for f in sorted(page.findings, key=lambda f: ("bad", "warn", "info", "good").index(f.level))
    ]
    quiet = not any(f.level in ("bad", "warn") for f in page.findings)
    return h(
        "section",
        {
            "class": f"panel attention{' quiet' if quiet else ''}",
            "data-panel": "attention",
            "id": "attention",
        },
        h("h2", None, "Needs attention" if not quiet else "Nothing needs attention"),
        h("ul", None, items) if items else None,
        h(
            "p",
            {"class": "how"},
            h("b", None, "How this is computed: "),
            "Alerts come from the rules file (--rules). A day is unusual when it is far from the same "
            "weekday in the 4 weeks before it (median and median absolute deviation). Each line links to "
            "its panel; the tiles it concerns carry a mark.",
        ),
    )


KPI_TILES = ("cost_usd", "active_users", "conversations", "messages", "error_rate", "reply_p95")


def _change(fig: dict[str, Any], fmt: Callable, up_is_good: bool, period: str) -> Markup:
    change = fig.get("change")
    if change is None:
        return h("span", {"class": "change flat"}, fig.get("note") or "no change figure")
    good = (change >= 0) == up_is_good
    arrow = "▲" if change > 0 else ("▼" if change < 0 else "=")
    return h(
        "span",
        {"class": f"change {'good' if good else 'bad'}"},
        f"{arrow} {change:+.0%} vs the previous {period} ({fmt(fig.get('previous'))})",
    )


def cost_line(data: dict[str, Any]) -> str | None:
    """One line on what changed in cost and what drove it."""
    change = data.get("cost_change") or {}
    delta = change.get("change_usd")
    drivers = [d for d in change.get("drivers") or () if (d["change_usd"] > 0) == ((delta or 0) > 0)]
    if delta is None or not drivers or abs(delta) < 0.01 or data["kpis"]["cost_usd"].get("change") is None:
        return None  # a change too small to compare is not explained either
    words = {"country": "SMS and users in", "model": "", "user": "user"}
    shown = [
        f"{(words[d['dimension']] + ' ' + str(d['name'])).strip()} ({signed_money(d['change_usd'])})"
        for d in drivers[:2]
    ]
    return f"{'Up' if delta > 0 else 'Down'} {money(abs(delta))}, mostly " + " and ".join(shown) + "."


def draw_kpis(page: Page) -> Markup:
    data = page.data
    k = data["kpis"]
    period = f"{data['period']['days']} days"
    lat = reply_latency(data)
    failed = failure_rate(data)
    reply = lat["p95"]
    tiles = {
        "cost_usd": ("Cost", k["cost_usd"], money, False, cost_line(data)),
        "active_users": ("Active users", k["active_users"], count, True, None),
        "conversations": ("Conversations", k["conversations"], count, True, None),
        "messages": ("Messages", k["messages"], count, True, None),
        "error_rate": (
            "Error rate",
            k["error_rate"],
            percent,
            False,
            f"replies failed: {percent(failed.get('value'))}" if failed else "errors per inbound message",
        ),
        "reply_p95": (
            "Reply time, p95",
            reply,
            secs,
            False,
            f"p50 {secs(lat['p50'])} · p99 {secs(lat['p99'])}",
        ),
    }
    cells = []
    for key in KPI_TILES:
        label, fig, fmt, up_is_good, line = tiles[key]
        flags = [f for f in page.findings if f.tile == key and f.level in ("bad", "warn")]
        cells.append(
            h(
                "div",
                {"class": "kpi flagged" if flags else "kpi", "data-kpi": key},
                h("div", {"class": "label"}, label),
                h(
                    "a",
                    {"class": "flag", "href": "#attention", "title": " ".join(f.text for f in flags)},
                    "! needs attention",
                )
                if flags
                else None,
                h("div", {"class": "figure"}, fmt(fig.get("value"))),
                _change(fig, fmt, up_is_good, period),
                h("div", {"class": "why"}, line) if line else None,
            )
        )
    p = data["period"]
    how = (
        f"Totals for the period against the previous {period} ({day_text(_dt(p['previous_start']))} to "
        f"{day_text(_dt(p['previous_end']))}). A change is shown only when both periods have at least 20 "
        "events (or $1). Error rate = errors / inbound messages. Reply time: the bot's timings of its reply "
        f"stage. The same figures: botmeter summary --days {data['period']['days']}."
    )
    return h(
        "section",
        {"class": "panel kpis", "data-panel": "kpis"},
        h("h2", {"class": "sr"}, "Key figures"),
        h("div", {"class": "tiles"}, cells),
        h("p", {"class": "how"}, h("b", None, "How this is computed: "), how),
    )


def content_security_policy(served: bool = False) -> str:
    """Nothing may load or run; only the served page's own form may be sent, to its own server."""
    form = "'self'" if served else "'none'"
    return (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        f"form-action {form}"
    )


def render(data: dict[str, Any], served: Served | None = None) -> str:
    """The whole page for the figures of ``analyse.dashboard_figures.dashboard_data``; ``served``
    adds the form and links of the page ``botmeter serve`` answers (forms then go to the same
    server, and nowhere else)."""
    page = Page(data)
    period = data["period"]
    start, end = _dt(period["start"]).astimezone(page.zone), _dt(period["end"]).astimezone(page.zone)
    zone = page.zone.key
    header = h(
        "header",
        None,
        h("h1", None, "botmeter"),
        h(
            "p",
            {"class": "period"},
            f"{period['days']} days: {day_text(start)} to {day_text(end)} {end:%H:%M} ({zone})",
            h("br"),
            h(
                "span",
                {"class": "muted"},
                f"store {data['store']} · generated {page.local(data['generated_at'])} {zone}",
            ),
        ),
    )
    nav = h(
        "nav",
        {"class": "jump", "aria-label": "Sections"},
        [
            h("a", {"href": f"#{key}"}, title)
            for key, title in (("attention", "Attention"), *((s.key, s.title) for s in SECTIONS))
        ],
    )
    missing = data.get("unavailable") or {}
    notice = (
        h(
            "div",
            {"class": "notice"},
            h("b", None, "Not available from this store: "),
            "; ".join(f"{k} ({v})" for k, v in sorted(missing.items())),
        )
        if missing
        else None
    )
    sections = [
        h(
            "section",
            {"class": "group", "id": s.key},
            h("h2", None, s.title),
            h("div", {"class": "grid"}, [draw_panel(page, panel, served) for panel in s.panels]),
        )
        for s in SECTIONS
    ]
    body = join(
        [
            header,
            draw_controls(served) if served is not None else None,
            nav,
            draw_attention(page),
            notice,
            draw_kpis(page),
            sections,
            h(
                "footer",
                None,
                f"botmeter {__version__} · schema {data['schema']} v{data['version']} · days are UTC days; "
                f"times and hours are {zone} · every figure comes from the query shown under its panel",
            ),
        ]
    )
    title = f"botmeter: {period['days']} days to {day_text(end)}"
    return page_shell(title, body, served=served is not None)


def page_shell(title: str, body: Any, *, served: bool = True) -> str:
    """A whole page around ``body``: the dashboard's styles, and its policy that nothing loads or runs."""
    style = palette_css() + STYLE_PATH.read_text()
    return (
        "<!DOCTYPE html>\n"
        + h(
            "html",
            {"lang": "en"},
            h(
                "head",
                None,
                Markup('<meta charset="utf-8">'),
                Markup('<meta name="viewport" content="width=device-width, initial-scale=1">'),
                # Nothing may load or run: the page is data only, even if it were opened from a mail.
                Markup(
                    f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy(served)}">'
                ),
                Markup('<meta name="referrer" content="no-referrer">'),
                h("title", None, title),
                h("style", None, Markup(style)),
            ),
            h("body", None, h("main", None, body)),
        )
        + "\n"
    )
