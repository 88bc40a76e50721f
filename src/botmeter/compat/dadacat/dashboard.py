"""``MetricsDashboard`` and ``generate_html_dashboard``: the DadaCat package's dashboard over botmeter.

The figures come from the three trackers' ``get_*`` calls (botmeter's answers); the HTML page is
botmeter's own dashboard, the one ``botmeter dashboard`` writes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ...facade import Meter
from ...report.dashboard import write_dashboard
from ._store import DEFAULT_NAMESPACE, DEFAULT_REGION, shared_meter, source_of
from .costs import CostTracker
from .engagement import EngagementTracker
from .errors import ErrorTracker

DEFAULT_METRICS_DIR = "./metrics"


class MetricsDashboard:
    """The period's cost, engagement and error figures, as the original's dashboard gave them."""

    def __init__(
        self,
        namespace: str = DEFAULT_NAMESPACE,
        region: str = DEFAULT_REGION,
        metrics_dir: str | None = None,
        *,
        meter: Meter | None = None,
        store: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.region = region
        self.metrics_dir = Path(metrics_dir or DEFAULT_METRICS_DIR)
        self.meter = meter if meter is not None else shared_meter(namespace, region, store)
        shared = {"meter": self.meter}
        self.cost_tracker = CostTracker(
            namespace, region, local_file_path=str(self.metrics_dir / "costs.json"), **shared
        )
        self.engagement_tracker = EngagementTracker(
            namespace, region, local_file_path=str(self.metrics_dir / "engagement.json"), **shared
        )
        self.error_tracker = ErrorTracker(
            namespace, region, local_file_path=str(self.metrics_dir / "errors.json"), **shared
        )

    @staticmethod
    def _window(days: int) -> tuple[datetime, datetime]:
        end = datetime.now(UTC)
        return end - timedelta(days=days), end

    def generate_cost_metrics(self, days: int = 7) -> dict[str, Any]:
        """The last ``days`` x 24 hours: ``total_cost``, ``api_costs``, ``total_requests``, ``source``."""
        metrics = self.cost_tracker.get_cost_metrics(*self._window(days))
        keys = (
            "start_time",
            "end_time",
            "total_cost",
            "api_costs",
            "total_requests",
            "source",
            "unavailable",
        )
        return {k: metrics[k] for k in keys if k in metrics}

    def generate_engagement_metrics(self, days: int = 7) -> dict[str, Any]:
        metrics = self.engagement_tracker.get_engagement_metrics(*self._window(days))
        keys = ("start_time", "end_time", "metrics", "source", "unavailable")
        return {k: metrics[k] for k in keys if k in metrics}

    def generate_error_metrics(self, days: int = 7) -> dict[str, Any]:
        metrics = self.error_tracker.get_error_metrics(*self._window(days))
        keys = ("start_time", "end_time", "total_errors", "error_counts", "source", "unavailable")
        return {k: metrics[k] for k in keys if k in metrics}

    def generate_dashboard(self, days: int = 7) -> dict[str, Any]:
        """``timestamp``, ``period_days``, ``costs``, ``engagement``, ``errors``."""
        return {
            "timestamp": datetime.now(UTC).isoformat(),
            "period_days": days,
            "costs": self.generate_cost_metrics(days),
            "engagement": self.generate_engagement_metrics(days),
            "errors": self.generate_error_metrics(days),
            "source": source_of(self.meter),
        }

    def save_dashboard(self, days: int = 7, file_path: str | None = None) -> str:
        """Writes ``generate_dashboard(days)`` as JSON; returns the path
        (default ``<metrics_dir>/dashboard_YYYY-MM-DD.json``)."""
        path = (
            Path(file_path) if file_path else self.metrics_dir / f"dashboard_{datetime.now():%Y-%m-%d}.json"
        )
        data = self.generate_dashboard(days)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        return str(path)

    def write_html(self, days: int = 7, output_path: str | None = None, *, with_json: bool = False) -> str:
        """Writes botmeter's HTML dashboard of the last ``days`` days; returns the path
        (default ``<metrics_dir>/dashboard_YYYY-MM-DD.html``)."""
        path = (
            Path(output_path)
            if output_path
            else self.metrics_dir / f"dashboard_{datetime.now():%Y-%m-%d}.html"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        written, _ = write_dashboard(self.meter.reader(), days, path, with_json=with_json)
        return str(written)


def generate_html_dashboard(
    days: int = 7,
    namespace: str = DEFAULT_NAMESPACE,
    region: str = DEFAULT_REGION,
    output_path: str | None = None,
) -> str:
    """Writes botmeter's HTML dashboard of the last ``days`` days; returns its path
    (default ``./metrics/dashboard_YYYY-MM-DD.html``)."""
    return MetricsDashboard(namespace=namespace, region=region).write_html(days, output_path)


__all__ = ["MetricsDashboard", "generate_html_dashboard"]
