"""Stores and dashboards shared by the dashboard tests and the browser tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

from botmeter import Meter

# Script payloads that would run if any of them reached the page as markup. No digits: error
# messages have their numbers masked, and the payload must arrive as the bot sent it.
PAYLOADS = (
    "<script>window.__pwned = 'script'</script>",
    "<img src=x onerror=\"window.__pwned = 'img'\">",
    '"><svg onload="window.__pwned = \'svg\'"><b>',
    "</style></title><script>window.__pwned = 'style'</script>",
    "javascript:window.__pwned = 'link'",
)


def fill_hostile(url: str, now: datetime | None = None) -> None:
    """Eight days of a bot whose users, conversations, models, providers, stages, activities and
    errors are all named with script payloads (user ids kept in the clear, so they are shown)."""
    now = now or datetime.now(UTC)
    meter = Meter(bot="hostile", store=url, hash_users=False, flush_interval=0.05)
    for day in range(8):
        at = (now - timedelta(days=day)).replace(hour=1, minute=0, second=0, microsecond=0)
        for i, payload in enumerate(PAYLOADS):
            ts = at + timedelta(minutes=i)
            meter.track_message(direction="in", user=payload, conversation=payload, ts=ts, channel="sms")
            meter.track_message(
                direction="out", user=payload, conversation=payload, ts=ts + timedelta(seconds=3)
            )
            meter.track_llm_call(
                provider="openai",
                model=payload,
                input_tokens=100,
                output_tokens=10,
                latency_ms=700.0 + i,
                user=payload,
                conversation=payload,
                ts=ts + timedelta(seconds=1),
            )
            meter.track_api_call(
                provider=payload, name=payload, cost_usd=0.25, latency_ms=90.0, user=payload, ts=ts
            )
            meter.track_timing(payload, 400.0 + i, user=payload, ts=ts + timedelta(seconds=2))
            meter.track_activity(payload, user=payload, conversation=payload, ts=ts)
            error_class = type(payload, (Exception,), {})  # a class name is any string
            meter.track_error(error_class(payload), user=payload, conversation=payload, ts=ts)
    meter.close()


class PageParts(HTMLParser):
    """The tags, attributes and text of a page, as a browser's parser splits them."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def write(reader_url: str, output: Path, days: int = 7, **kw: object) -> str:
    from botmeter.analyse import Reader
    from botmeter.report.dashboard import write_dashboard

    path, _ = write_dashboard(Reader(reader_url), days, output, **kw)
    return path.read_text()
