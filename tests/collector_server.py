"""``botmeter serve`` as a real process on a free port of 127.0.0.1, for the collector's tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SRC = str(Path(__file__).resolve().parents[1] / "src")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def botmeter_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTMETER_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def create_token(store: str, bot: str, scope: str) -> str:
    """`botmeter tokens create`: the token is the last line of its output."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "botmeter",
            "tokens",
            "create",
            "--bot",
            bot,
            "--scope",
            scope,
            "--store",
            store,
        ],
        env=botmeter_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


class CollectorProcess:
    """Starts, kills and restarts one collector; ``url`` is its base URL."""

    def __init__(self, store: str, *args: str, port: int | None = None, env: dict[str, str] | None = None):
        self.store = store
        self.args = args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = botmeter_env(**(env or {}))
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self, log_path: Path | None = None, timeout: float = 30.0) -> CollectorProcess:
        self.log_path = log_path
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        command = [sys.executable, "-m", "botmeter", "serve", "--store", self.store, "--port", str(self.port)]
        self.process = subprocess.Popen([*command, *self.args], env=self.env, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"botmeter serve exited with {self.process.returncode}: {self.logs()}")
            try:
                httpx.get(f"{self.url}/healthz", timeout=1.0)
                return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"botmeter serve did not answer within {timeout}s: {self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM: the graceful shutdown."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def __enter__(self) -> CollectorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Served:
    """A running collector with its tokens: ``ingest`` and ``read`` for bot smsbot, ``webbot`` (ingest)."""

    process: CollectorProcess
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def store(self) -> str:
        return self.process.store

    @property
    def log(self) -> Path:
        assert self.process.log_path is not None
        return self.process.log_path

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@contextlib.contextmanager
def running_collector(directory: Path, *options: str, **env: str) -> Iterator[Served]:
    """The collector serving a DuckDB store in ``directory``, stopped (SIGTERM) afterwards."""
    store = f"duckdb://{directory / 'collector.duckdb'}"
    tokens = {
        "ingest": create_token(store, "smsbot", "ingest"),
        "read": create_token(store, "smsbot", "read"),
        "webbot": create_token(store, "webbot", "ingest"),
    }
    with CollectorProcess(store, *options, env=env) as process:
        process.start(directory / f"collector-{process.port}.log", timeout=60)
        yield Served(process, tokens)
