from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _without_botmeter_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own BOTMETER_* settings must not change what the tests see.
    for name in list(os.environ):
        if name.startswith(("BOTMETER_", "ANALYTICS_")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _clean_botmeter_env(monkeypatch):
    _without_botmeter_env(monkeypatch)


@pytest.fixture(scope="module")
def clean_env_for_module():
    """The same, for a store a module builds once (before the per-test cleanup runs)."""
    with pytest.MonkeyPatch.context() as mp:
        _without_botmeter_env(mp)
        yield


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.duckdb"


@pytest.fixture
def store_url(store_path: Path) -> str:
    return f"duckdb://{store_path}"


def query(path: Path, sql: str, params: object = None) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def scalar(path: Path, sql: str, params: object = None) -> object:
    return query(path, sql, params)[0][0]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOTMETER_", "ANALYTICS_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def start_python(code: str, tmp_path: Path, name: str = "bot.py", **env: str) -> subprocess.Popen:
    """Runs a real Python process (a bot, a reader) with botmeter importable."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    return subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(**env),
    )


def hold_store_file(path: Path, tmp_path: Path, seconds: float) -> subprocess.Popen:
    """Another process takes the DuckDB file for writing and keeps it ``seconds``; returns once it
    has it. A bot's writer holds the file for a moment at each write, so it retries until it gets in."""
    holder = start_python(
        f"""
        import duckdb, time
        deadline = time.monotonic() + 30
        while True:
            try:
                con = duckdb.connect({str(path)!r})
                break
            except duckdb.IOException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.001)
        print("locked", flush=True)
        time.sleep({seconds!r})
        con.close()
        """,
        tmp_path,
        "holder.py",
    )
    assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
    return holder


# -- the AWS emulator: one moto_server for the session (tests use a namespace each) --------------


@pytest.fixture(scope="session")
def moto():
    from aws_emulator import MotoServer

    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def aws(moto, monkeypatch):
    """Points boto3 at the emulator with test credentials, and nothing from the developer's AWS setup."""
    from aws_emulator import aws_env

    for name, value in aws_env(moto.url).items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "DYNAMODB_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_LAMBDA_FUNCTION_NAME",):
        monkeypatch.delenv(name, raising=False)
    return moto


CHROMIUM = Path("/usr/bin/chromium")
# Chromium's own background traffic (updates, safe browsing...) is switched off: the only request
# a page may cause is the page itself.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, driven by Playwright (never a browser Playwright downloads)."""
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()
