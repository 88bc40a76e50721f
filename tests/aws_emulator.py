"""A real AWS emulator for the tests: moto's server, as a process on 127.0.0.1, that can be killed
and started again on the same port (its state is in memory, so a restart starts empty)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> MotoServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server on port {self.port} did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """Stops the server at once (SIGKILL), as a crash or a network cut would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None


def aws_env(endpoint: str) -> dict[str, str]:
    """Fake credentials and the emulator's address; nothing may reach a real AWS service."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def clients(endpoint: str, region: str = "us-east-1") -> tuple[Any, Any]:
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )
    return (
        session.client("cloudwatch", endpoint_url=endpoint),
        session.client("logs", endpoint_url=endpoint),
    )


def metric(cw: Any, namespace: str, name: str, dimensions: dict[str, str], stat: str = "Sum") -> float:
    """A statistic over the last minutes, read with GetMetricData (exact dimension match)."""
    now = datetime.now(UTC)
    answer = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "q",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                    },
                    "Period": 60,
                    "Stat": stat,
                },
            }
        ],
        StartTime=now - timedelta(minutes=10),  # a short range: moto scans all its data per period
        EndTime=now + timedelta(minutes=5),
    )
    return float(sum(answer["MetricDataResults"][0]["Values"]))


def log_messages(logs: Any, group: str) -> list[str]:
    """Every message in a log group (FilterLogEvents, all pages); none if the group does not exist."""
    out: list[str] = []
    token = None
    while True:
        try:
            page = logs.filter_log_events(logGroupName=group, **({"nextToken": token} if token else {}))
        except logs.exceptions.ResourceNotFoundException:
            return out
        out += [e["message"] for e in page["events"]]
        token = page.get("nextToken")
        if not token:
            return out
