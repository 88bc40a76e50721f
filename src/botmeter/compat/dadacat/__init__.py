"""A drop-in for the DadaCat SMS bot's ``analytics`` package, over botmeter.

Change the import and keep the calls::

    from botmeter.compat.dadacat.costs import CostTracker          # was: from analytics.costs import ...
    from botmeter.compat.dadacat.engagement import EngagementTracker, UserActivity
    from botmeter.compat.dadacat.errors import ErrorTracker, ErrorCategory

Each class is a thin face over one shared ``botmeter.Meter`` (one per store, per process) and
botmeter's reading code; the numbers are botmeter's. ``admin.admin_reply`` answers the two SMS admin
commands through botmeter's admin list; ``botmeter import --dadacat ./metrics`` brings the old JSON
files in (``history``); ``python -m botmeter.compat.dadacat.generate_dashboard`` writes botmeter's
dashboard.
"""

from ._store import close_all, store_url
from .admin import admin_reply
from .costs import CostTracker
from .dashboard import MetricsDashboard, generate_html_dashboard
from .engagement import EngagementTracker, UserActivity
from .errors import ErrorCategory, ErrorTracker
from .history import HistoryError, import_history

__all__ = [
    "CostTracker",
    "EngagementTracker",
    "ErrorCategory",
    "ErrorTracker",
    "HistoryError",
    "MetricsDashboard",
    "UserActivity",
    "admin_reply",
    "close_all",
    "generate_html_dashboard",
    "import_history",
    "store_url",
]
