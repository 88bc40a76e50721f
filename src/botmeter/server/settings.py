"""The collector's settings: the command's options, one dataclass."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..config import Config

_ENVIRONMENT = "BOTMETER_SERVER_CONFIG"  # how worker processes get their settings from `serve`


@dataclass(frozen=True)
class ServerConfig:
    """What ``botmeter serve`` runs with; every field is one of its options."""

    store: str = "duckdb://botmeter.duckdb"
    host: str = "127.0.0.1"
    port: int = 8787
    workers: int = 1
    log_format: str = "text"  # "text" or "json"
    max_body_mb: float = 10.0  # a request body larger than this (after gunzip too) gets 413
    max_batch_events: int = 10_000  # more events in one request get 413
    rate_limit: float = 100_000.0  # events per second per token, with a second's worth of burst; 0: none
    max_pending_events: int = 200_000  # events received but not yet durable; past it, 503
    read_timeout: float = 30.0  # seconds a client may take to send its body (408 after)
    tokens_file: str | None = None  # where token hashes are kept; default beside the store

    def meter_config(self, bot: str | None = None) -> Config:
        """The settings events are processed with (pricing, hashing, the spool), as a Meter would:
        the ``BOTMETER_*`` variables, with this store and the token's bot."""
        return Config.resolve(bot=bot, store=self.store)

    def to_environment(self) -> dict[str, str]:
        return {_ENVIRONMENT: json.dumps(asdict(self))}

    @classmethod
    def from_environment(cls) -> ServerConfig:
        raw = os.environ.get(_ENVIRONMENT)
        if not raw:
            return cls()
        values: dict[str, Any] = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
