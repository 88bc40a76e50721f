"""Settings in one place: an explicit argument beats a ``BOTMETER_*`` variable, which beats the default.

Every setting is declared once in ``SETTINGS``; the README lists them all and a test checks that.
The seed's variables are honoured too: ``ANALYTICS_ENABLED`` (as ``BOTMETER_ENABLED``),
``ANALYTICS_NAMESPACE`` (as ``BOTMETER_CLOUDWATCH_NAMESPACE``) and ``DYNAMODB_REGION`` (as
``BOTMETER_CLOUDWATCH_REGION``, before ``AWS_REGION``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .exceptions import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _to_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _to_number(kind: type, minimum: float) -> Callable[[str, str], Any]:
    def parse(name: str, raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {raw!r}")
        return value

    return parse


def _to_str(name: str, raw: str) -> str | None:
    return raw or None


def _to_list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: Any
    parse: Callable[[str, str], Any]
    help: str
    aliases: tuple[str, ...] = ()


SETTINGS: tuple[Setting, ...] = (
    Setting("bot", "BOTMETER_BOT", "bot", _to_str, "the bot's name, stored with every event"),
    Setting(
        "store",
        "BOTMETER_STORE",
        "duckdb://botmeter.duckdb",
        _to_str,
        "where events go: duckdb://relative/file.duckdb, duckdb:///absolute/file.duckdb, a plain path, "
        "or cloudwatch://?namespace=...",
    ),
    Setting(
        "enabled",
        "BOTMETER_ENABLED",
        True,
        _to_bool,
        "false makes every track call a no-op",
        aliases=("ANALYTICS_ENABLED",),
    ),
    Setting(
        "flush_interval", "BOTMETER_FLUSH_INTERVAL", 1.0, _to_number(float, 0.01), "seconds between writes"
    ),
    Setting(
        "batch_size",
        "BOTMETER_BATCH_SIZE",
        100_000,
        _to_number(int, 1),
        "write early once this many events wait; also the most events written in one go",
    ),
    Setting(
        "max_buffer",
        "BOTMETER_MAX_BUFFER",
        400_000,
        _to_number(int, 1),
        "most events held in memory; beyond it events are dropped and counted",
    ),
    Setting(
        "max_buffer_mb",
        "BOTMETER_MAX_BUFFER_MB",
        100.0,
        _to_number(float, 1),
        "most memory (MB) the events waiting to be written may take; beyond it events are dropped, counted",
    ),
    Setting(
        "spool_dir",
        "BOTMETER_SPOOL_DIR",
        None,
        _to_str,
        "where batches wait while the store is failing (default: beside the store)",
    ),
    Setting(
        "max_spool_mb",
        "BOTMETER_MAX_SPOOL_MB",
        1024.0,
        _to_number(float, 1),
        "most disk the spool may use; beyond it batches are dropped and counted",
    ),
    Setting("hash_users", "BOTMETER_HASH_USERS", True, _to_bool, "store user ids as a keyed hash"),
    Setting(
        "hash_key",
        "BOTMETER_HASH_KEY",
        None,
        _to_str,
        "the key for user-id hashes (default: generated once, kept in <store>.key)",
    ),
    Setting("store_text", "BOTMETER_STORE_TEXT", False, _to_bool, "keep message text (off: only its length)"),
    Setting(
        "channel", "BOTMETER_CHANNEL", None, _to_str, "channel for events that name none (sms, slack, web)"
    ),
    Setting("release", "BOTMETER_RELEASE", None, _to_str, "the bot's release, stored with every event"),
    Setting("prices", "BOTMETER_PRICES", None, _to_str, "a TOML price list overriding built-in prices"),
    Setting("sms_rates", "BOTMETER_SMS_RATES", None, _to_str, "a TOML table of SMS rates per country"),
    Setting(
        "default_country",
        "BOTMETER_DEFAULT_COUNTRY",
        "US",
        _to_str,
        "country for SMS rates when the user id is not a phone number",
    ),
    Setting(
        "lock_timeout",
        "BOTMETER_LOCK_TIMEOUT",
        5.0,
        _to_number(float, 0),
        "seconds a write waits for another process to release the DuckDB file before spooling",
    ),
    Setting("admins", "BOTMETER_ADMINS", (), _to_list, "comma-separated admin phone numbers or ids"),
    Setting(
        "session_gap_minutes",
        "BOTMETER_SESSION_GAP",
        30.0,
        _to_number(float, 0.01),
        "minutes of silence that end a conversation, for messages without a conversation id",
    ),
    Setting(
        "reply_stage",
        "BOTMETER_REPLY_STAGE",
        "reply",
        _to_str,
        "the timing stage that measures a whole reply (the headline reply latency)",
    ),
    Setting("alerts", "BOTMETER_ALERTS", None, _to_str, "a TOML file of alert rules (botmeter alerts check)"),
    Setting(
        "cloudwatch_namespace",
        "BOTMETER_CLOUDWATCH_NAMESPACE",
        None,
        _to_str,
        "CloudWatch metric namespace when the store URL names none (default: botmeter)",
        aliases=("ANALYTICS_NAMESPACE",),
    ),
    Setting(
        "cloudwatch_region",
        "BOTMETER_CLOUDWATCH_REGION",
        None,
        _to_str,
        "AWS region of the CloudWatch store when the URL names none (default: boto3's own)",
        aliases=("DYNAMODB_REGION", "AWS_REGION"),
    ),
    Setting(
        "cloudwatch_mode",
        "BOTMETER_CLOUDWATCH_MODE",
        None,
        _to_str,
        "emf (metrics as log lines on stdout) or api (PutMetricData, PutLogEvents); default: emf in Lambda",
    ),
    Setting(
        "cloudwatch_log_group",
        "BOTMETER_CLOUDWATCH_LOG_GROUP",
        None,
        _to_str,
        "CloudWatch Logs group for event records in api mode (default: /botmeter/<namespace>)",
    ),
    Setting(
        "report_days",
        "BOTMETER_REPORT_DAYS",
        1,
        _to_number(int, 1),
        "days a scheduled report covers (botmeter.aws_lambda.handler): 1 daily, 7 weekly",
    ),
    Setting(
        "report_webhook",
        "BOTMETER_REPORT_WEBHOOK",
        None,
        _to_str,
        "URL the scheduled report is POSTed to as JSON (a Slack incoming webhook works)",
    ),
    Setting(
        "report_sns_topic",
        "BOTMETER_REPORT_SNS_TOPIC",
        None,
        _to_str,
        "SNS topic ARN the scheduled report is published to",
    ),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


def setting_from_env(name: str, env: Mapping[str, str] | None = None) -> Any:
    """One setting from the environment (its variable, then its aliases), else its default."""
    setting = SETTINGS_BY_NAME[name]
    env = os.environ if env is None else env
    for var in (setting.env, *setting.aliases):
        raw = env.get(var)
        if raw is not None:
            return setting.parse(var, raw)
    return setting.default


@dataclass(frozen=True)
class Config:
    bot: str = "bot"
    store: str = "duckdb://botmeter.duckdb"
    enabled: bool = True
    flush_interval: float = 1.0
    batch_size: int = 100_000
    max_buffer: int = 400_000
    max_buffer_mb: float = 100.0
    spool_dir: str | None = None
    max_spool_mb: float = 1024.0
    hash_users: bool = True
    hash_key: str | None = None
    store_text: bool = False
    channel: str | None = None
    release: str | None = None
    prices: str | None = None
    sms_rates: str | None = None
    default_country: str | None = "US"
    lock_timeout: float = 5.0
    admins: tuple[str, ...] = field(default_factory=tuple)
    session_gap_minutes: float = 30.0
    reply_stage: str = "reply"
    alerts: str | None = None
    cloudwatch_namespace: str | None = None
    cloudwatch_region: str | None = None
    cloudwatch_mode: str | None = None
    cloudwatch_log_group: str | None = None
    report_days: int = 1
    report_webhook: str | None = None
    report_sns_topic: str | None = None

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **arguments: Any) -> Config:
        """Builds the settings: arguments (when not None) > environment > defaults."""
        env = os.environ if env is None else env
        known = {f.name for f in fields(cls)}
        unknown = set(arguments) - known
        if unknown:
            raise TypeError(
                f"unknown setting(s): {', '.join(sorted(unknown))}; valid: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            given = arguments.get(setting.name)
            if given is not None:
                values[setting.name] = given
                continue
            values[setting.name] = setting_from_env(setting.name, env)
        admins = values["admins"]
        if isinstance(admins, str):  # Meter(admins="+1555...,+1555...") as in the variable
            values["admins"] = _to_list("admins", admins)
        elif isinstance(admins, list | set | frozenset):
            values["admins"] = tuple(admins)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        checks = (
            ("flush_interval", self.flush_interval, 0.01),
            ("batch_size", self.batch_size, 1),
            ("max_buffer", self.max_buffer, 1),
            ("max_buffer_mb", self.max_buffer_mb, 1),
            ("max_spool_mb", self.max_spool_mb, 1),
            ("lock_timeout", self.lock_timeout, 0),
            ("session_gap_minutes", self.session_gap_minutes, 0.01),
        )
        for name, value, minimum in checks:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
                raise ConfigError(f"{name} must be a number >= {minimum}, got {value!r}")
        if not isinstance(self.admins, tuple) or not all(
            isinstance(a, str | int) and not isinstance(a, bool) for a in self.admins
        ):
            raise ConfigError(f"admins must be phone numbers or ids (str or int), got {self.admins!r}")
        if self.cloudwatch_mode not in (None, "emf", "api"):
            raise ConfigError(f"cloudwatch_mode must be emf or api, got {self.cloudwatch_mode!r}")
        if not isinstance(self.reply_stage, str) or not self.reply_stage.strip():
            raise ConfigError(f"reply_stage must be a stage name, got {self.reply_stage!r}")
        if not isinstance(self.bot, str) or not self.bot:
            raise ConfigError(f"bot must be a non-empty str, got {self.bot!r}")
        if not isinstance(self.store, str) or not self.store:
            raise ConfigError(
                f"store must be a store URL such as duckdb://botmeter.duckdb, got {self.store!r}"
            )
