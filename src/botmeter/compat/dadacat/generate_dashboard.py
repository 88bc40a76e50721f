"""``python -m botmeter.compat.dadacat.generate_dashboard``: the original's dashboard script, writing
botmeter's dashboard.

    --days 7  --output metrics/dashboard.html  --namespace (ANALYTICS_NAMESPACE or DadaCatTwilio)
    --region (DYNAMODB_REGION or us-east-1)  --json (also the figures as JSON, beside the HTML)

The store is the trackers' (see ``_store``); a ``--namespace`` or ``--region`` given on the command
line reads that CloudWatch namespace.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from ._store import DEFAULT_NAMESPACE, DEFAULT_REGION, close_all, store_url

log = logging.getLogger("botmeter")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Generate DadaCat metrics dashboard (botmeter's dashboard)")
    parser.add_argument("--days", type=int, default=7, help="Number of days to include in the dashboard")
    parser.add_argument("--output", type=str, help="Output path for HTML dashboard")
    parser.add_argument("--namespace", type=str, default=None, help="CloudWatch namespace")
    parser.add_argument("--region", type=str, default=None, help="AWS region")
    parser.add_argument(
        "--json", action="store_true", help="Also generate a JSON file with the dashboard data"
    )
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error(f"--days: expected a whole number >= 1, got {args.days}")
    # A namespace or region typed on the command line means CloudWatch, as the original always read;
    # else the store is the trackers' (the environment's, or the DuckDB default).
    given = args.namespace is not None or args.region is not None
    args.namespace = args.namespace or os.getenv("ANALYTICS_NAMESPACE") or DEFAULT_NAMESPACE
    args.region = args.region or os.getenv("DYNAMODB_REGION") or DEFAULT_REGION
    args.store = store_url(args.namespace, args.region, cloudwatch=True) if given else None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from .dashboard import MetricsDashboard

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    try:
        dashboard = MetricsDashboard(namespace=args.namespace, region=args.region, store=args.store)
        output = dashboard.write_html(args.days, args.output)
        log.info("Dashboard HTML generated at: %s", output)
        print(f"Dashboard generated at: {output}")
        if args.json:
            json_path = (
                Path(args.output).with_suffix(".json")
                if args.output
                else Path("./metrics") / f"dashboard_{datetime.now():%Y-%m-%d}.json"
            )
            saved = dashboard.save_dashboard(days=args.days, file_path=str(json_path))
            print(f"Dashboard JSON data saved to: {saved}")
    except Exception as exc:
        log.error("Error generating dashboard: %s", exc, exc_info=True)
        return 1
    finally:
        close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
