"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, headless.

`make test` installs Debian's `chromium` package where it is missing; Playwright never
downloads a browser here. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from botmeter.demo import run_demo
from dashboards import PAYLOADS, fill_hostile, write

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# Chromium's own background traffic (updates, safe browsing...) is switched off: the only request
# the page may cause is the page itself.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]
PANEL_DATA = ".mark, td, li, .figure"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield browser
        browser.close()


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
    # The stacked cost chart has a bar per day and provider/model; its legend carries the totals.
    bars = page.locator('[data-panel="cost_by_model"] svg rect.mark')
    assert bars.count() >= 14
    assert re.search(r"\$[\d,]+\.\d\d", page.locator('[data-panel="cost_by_model"] .legend').inner_text())
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.context.close()


def test_dashboard_fits_a_phone(browser, demo_page):
    page, _ = _open(browser, demo_page, viewport={"width": 390, "height": 844}, is_mobile=True)
    # The page itself never scrolls sideways; only wide charts and tables do, inside their panel.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    tile = page.locator(".kpi .figure").first.bounding_box()
    assert tile and tile["width"] > 60 and tile["height"] >= 20
    font = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.kpi .figure')).fontSize)")
    assert font >= 20
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
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
