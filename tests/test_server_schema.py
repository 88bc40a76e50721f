"""``schemathesis`` against the collector's ``/openapi.json``: requests generated from the document
(valid and not) to ``botmeter serve`` running as a process; every answer must match what the
document says (status codes, content types, bodies), no request may make it fail (5xx), and a
request without a token must be refused.

One check is left out, on purpose: a request valid by the schema can still be refused with 400,
because the schema cannot say everything a parameter must be (a window longer than 3650 days, a
dimension the metric has not, an event the track call refuses); the answer then names the field.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from collector_server import create_token, running_collector
from conftest import subprocess_env

pytestmark = pytest.mark.slow


def test_the_collector_answers_as_its_openapi_document_says(tmp_path):
    with running_collector(tmp_path) as server:
        token = create_token(server.store, "smsbot", "ingest,read")
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{server.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                "25",
                "--workers",
                "1",
                "--seed",
                "1",
                "--suppress-health-check",
                "too_slow",
            ],
            capture_output=True,
            text=True,
            env=subprocess_env(SCHEMATHESIS_HOOKS=""),
            timeout=600,
            cwd=tmp_path,  # its report files stay out of the repository
        )
        server_log = server.log.read_text()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:] + server_log[-2000:]
    assert "Traceback" not in server_log, server_log[-4000:]
    # Every operation of the document was exercised, the OTLP and reading routes among them.
    tested = re.search(r"Tested:\s+(\d+)", run.stdout)
    assert tested and int(tested.group(1)) >= 8, run.stdout[-3000:]
