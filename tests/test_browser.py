"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, headless.

`make test` installs Debian's `chromium` package where it is missing; Playwright never
downloads a browser here. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from botmeter.demo import run_demo
from botmeter.report.html import PALETTE, SEVERITY_COLOURS
from dashboards import PAYLOADS, fill_hostile, write

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PANEL_DATA = ".mark, td, li, .figure"


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory, clean_env_for_module) -> Path:
    directory = tmp_path_factory.mktemp("browser")
    url = f"duckdb://{directory / 'demo.duckdb'}"
    run_demo(url, days=30, users=120, seed=5, progress=False)
    out = directory / "dashboard.html"
    write(url, out, days=14)
    return out


def _open(browser, path: Path, **context):
    page = browser.new_context(**context).new_page()
    seen = {"console": [], "requests": [], "errors": [], "dialogs": []}
    page.on("console", lambda m: seen["console"].append((m.type, m.text)))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.goto(path.as_uri(), wait_until="load")
    return page, seen


def test_dashboard_loads_offline_and_every_panel_draws(browser, demo_page):
    page, seen = _open(browser, demo_page, viewport={"width": 1280, "height": 900})
    assert seen["requests"] == [demo_page.as_uri()], "the page asked for something beyond itself"
    assert not [m for m in seen["console"] if m[0] in ("error", "warning")], seen["console"]
    assert not seen["errors"]
    panels = page.locator("section[data-panel]")
    names = [panels.nth(i).get_attribute("data-panel") for i in range(panels.count())]
    assert len(names) >= 18
    for i, name in enumerate(names):
        panel = panels.nth(i)
        assert panel.locator(".empty, .unavailable").count() == 0, f"{name} is empty"
        drawn = panel.locator(PANEL_DATA)
        sizes = [drawn.nth(j).bounding_box() for j in range(min(drawn.count(), 40))]
        assert any(b and b["width"] > 0 and b["height"] > 0 for b in sizes), f"{name} drew nothing visible"
    # The stacked cost chart has a bar per day and provider; its legend carries the totals.
    bars = page.locator('[data-panel="cost_by_model"] svg rect.mark')
    assert bars.count() >= 14
    assert re.search(r"\$[\d,]+\.\d\d", page.locator('[data-panel="cost_by_model"] .legend').inner_text())
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-laptop-first-screen.png"))
    page.context.close()


def test_the_attention_strip_is_on_the_first_screen_and_its_links_lead_to_their_panels(browser, demo_page):
    page, _ = _open(browser, demo_page, viewport={"width": 1280, "height": 900})
    strip = page.locator("#attention")
    box = strip.bounding_box()
    assert box and box["y"] < 300 and strip.is_visible(), "the strip is not near the top"
    assert box["y"] < page.locator('[data-panel="kpis"]').bounding_box()["y"]
    links = strip.locator("a[href^='#']")
    assert links.count() >= 3
    for i in range(links.count()):
        target = links.nth(i).get_attribute("href")[1:]
        assert page.locator(f"[id='{target}']").count() == 1, target
    # Following a link brings its panel into view.
    link = strip.locator("a[href='#error_groups']").first
    link.click()
    page.wait_for_function("location.hash === '#error_groups'")
    top = page.evaluate("document.getElementById('error_groups').getBoundingClientRect().top")
    assert 0 <= top < 100
    # The tiles the strip concerns are marked, and the mark leads back to the strip.
    flagged = page.locator(".kpi.flagged")
    assert flagged.count() >= 1 and flagged.first.locator("a.flag[href='#attention']").count() == 1
    # Each severity is drawn in its own colour (critical red), whatever else is on the page.
    items = page.locator("[data-panel='errors_over_time'] .legend li")
    seen = {}
    for i in range(items.count()):
        name = items.nth(i).locator(".name").inner_text()
        if name in SEVERITY_COLOURS:
            seen[name] = items.nth(i).locator(".swatch").evaluate("e => getComputedStyle(e).backgroundColor")
    assert seen, "no severity legend"
    for name, colour in seen.items():
        hex_colour = PALETTE[SEVERITY_COLOURS[name]]
        assert colour == "rgb({}, {}, {})".format(*(int(hex_colour[k : k + 2], 16) for k in (1, 3, 5)))
    page.context.close()


def test_dashboard_fits_a_phone(browser, demo_page):
    page, _ = _open(browser, demo_page, viewport={"width": 390, "height": 844}, is_mobile=True)
    # The page itself never scrolls sideways; only wide charts and tables do, inside their panel.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    tile = page.locator(".kpi .figure").first.bounding_box()
    assert tile and tile["width"] > 60 and tile["height"] >= 20
    font = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.kpi .figure')).fontSize)")
    assert font >= 20
    # A wide chart opens on its latest days: the last day's label is on screen without scrolling.
    cost = page.locator("[data-panel='cost_by_model'] svg.chart")
    last = cost.locator("text.xlabel").first  # labels are drawn from the latest back
    box, screen = last.bounding_box(), page.viewport_size
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= screen["width"], box
    # Its values are readable there too (repeated on the right).
    right = cost.locator("text.ylabel.right")
    assert right.count() == 5 and right.first.bounding_box()["x"] + 10 < screen["width"]
    # Date labels never overlap, in any chart.
    for i in range(page.locator("svg.chart").count()):
        boxes = [
            b
            for b in page.locator("svg.chart")
            .nth(i)
            .locator("text.xlabel")
            .evaluate_all(
                "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.left, r.right]; })"
            )
        ]
        boxes.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(boxes)), (i, boxes)
    # The number columns of tables stay in view: no table scrolls sideways on a phone.
    for name in (
        "sms",
        "llm_models",
        "api_operations",
        "latency_by_stage",
        "latency_by_model",
        "top_spenders",
        "error_groups",
    ):
        scrollers = page.locator(f"[data-panel='{name}'] .scroll")
        for j in range(scrollers.count()):
            wide = scrollers.nth(j).evaluate("e => e.scrollWidth - e.clientWidth")
            assert wide <= 1, f"{name}: a table is {wide}px wider than the phone"
    # Jump links to each section.
    assert page.locator("nav.jump a").count() == 5
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone-first-screen.png"))
    page.context.close()


def test_script_payloads_in_event_data_run_nothing(browser, tmp_path):
    url = f"duckdb://{tmp_path / 'hostile.duckdb'}"
    fill_hostile(url)
    out = tmp_path / "hostile.html"
    page_html = write(url, out, days=7)
    # Without the page's Content-Security-Policy, so that escaping alone is what is tested.
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page_html))
    assert "Content-Security-Policy" not in bare.read_text()
    for path in (bare, out):
        page, seen = _open(browser, path, viewport={"width": 1280, "height": 900})
        assert page.evaluate("window.__pwned") is None
        assert not seen["dialogs"] and not seen["errors"]
        assert page.locator("script, img, iframe, [onerror], [onload]").count() == 0
        assert seen["requests"] == [path.as_uri()]
        shown = page.locator("body").inner_text()
        # Shown where a user would look: top users, activities, error groups, latency per stage.
        for payload in PAYLOADS:
            assert payload in shown, payload
        page.context.close()
