"""Settings in one place: an explicit argument beats a ``BOTMETER_*`` variable, which beats the default.

Every setting is declared once in ``SETTINGS``: its variable, default, bounds and help. ``Config``,
its checks and the README's settings table (compared by a test) are all made from that declaration.
The seed's variables are honoured too: ``ANALYTICS_ENABLED`` (as ``BOTMETER_ENABLED``),
``ANALYTICS_NAMESPACE`` (as ``BOTMETER_CLOUDWATCH_NAMESPACE``) and ``DYNAMODB_REGION`` (as
``BOTMETER_CLOUDWATCH_REGION``, before ``AWS_REGION``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from .exceptions import ConfigError, InputTypeError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# Variables of the seed's own analytics module, still honoured; the README calls them "the seed's".
_SEED_VARIABLES = frozenset({"ANALYTICS_ENABLED", "ANALYTICS_NAMESPACE", "DYNAMODB_REGION"})


@dataclass(frozen=True)
class Setting:
    """One setting, declared once: everything else (``Config``, its checks, the README table) follows.

    ``kind`` is ``str``, ``bool``, ``int``, ``float`` or ``tuple`` (a comma-separated list in the
    environment). ``minimum`` bounds numbers, ``choices`` limits a text setting, ``required`` refuses an
    empty text. ``shown_default`` is how the README shows a default computed elsewhere; ``help`` is the
    README's description, in Markdown.
    """

    name: str
    env: str
    kind: type
    default: Any
    help: str
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    required: bool = False
    aliases: tuple[str, ...] = ()
    shown_default: str | None = None
    expected: str | None = None  # what a bad value should have been, when "a non-empty str" is not enough

    def parse(self, var: str, raw: str) -> Any:
        """The value of the variable ``var`` (this setting's or an alias), or ConfigError naming both."""
        if self.kind is bool:
            value = raw.strip().lower()
            if value in _TRUE:
                return True
            if value in _FALSE:
                return False
            raise ConfigError(f"{var} must be true or false, got {raw!r}")
        if self.kind in (int, float):
            try:
                number = self.kind(raw)
            except ValueError:
                what = "a whole number" if self.kind is int else "a number"
                raise ConfigError(f"{var} must be {what}, got {raw!r}") from None
            if self.minimum is not None and number < self.minimum:
                raise ConfigError(f"{var} must be >= {self.minimum}, got {raw!r}")
            return number
        if self.kind is tuple:
            return _split_list(raw)
        if self.choices and raw and raw not in self.choices:
            raise ConfigError(f"{var} must be {' or '.join(self.choices)}, got {raw!r}")
        return raw or None

    def check(self, value: Any) -> None:
        """Refuses a value given as an argument that the declaration does not allow."""
        if self.minimum is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < self.minimum:
                raise ConfigError(f"{self.name} must be a number >= {self.minimum:g}, got {value!r}")
        elif self.kind is tuple:
            if not isinstance(value, tuple) or not all(
                isinstance(v, str | int) and not isinstance(v, bool) for v in value
            ):
                raise ConfigError(f"{self.name} must be {self.expected}, got {value!r}")
        elif self.choices:
            if value is not None and value not in self.choices:
                raise ConfigError(f"{self.name} must be {' or '.join(self.choices)}, got {value!r}")
        elif self.required and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{self.name} must be {self.expected or 'a non-empty str'}, got {value!r}")

    def readme_row(self) -> str:
        """This setting's row in the README's settings table."""
        variable = f"`{self.env}`"
        if self.aliases:
            others = [f"the seed's `{a}`" if a in _SEED_VARIABLES else f"`{a}`" for a in self.aliases]
            variable += f" (or {', or '.join(others)})"
        return f"| {variable} | {self.shown_default or _shown(self.default)} | {self.help} |"


def _split_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _shown(default: Any) -> str:
    if default is None or default == ():
        return "none"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`"


SETTINGS: tuple[Setting, ...] = (
    Setting("bot", "BOTMETER_BOT", str, "bot", "the bot's name, stored with every event", required=True),
    Setting(
        "store",
        "BOTMETER_STORE",
        str,
        "duckdb://botmeter.duckdb",
        "where events go: `duckdb://relative/file.duckdb`, `duckdb:///absolute/file.duckdb`, a plain path, "
        "`cloudwatch://?namespace=...` ([CloudWatch](#cloudwatch)), or `clickhouse://host/database`, "
        "`chdb:///abs/folder` ([ClickHouse](#clickhouse)), or a collector's `http://host:8787` "
        "([The collector](#the-collector-botmeter-serve))",
        required=True,
        expected="a store URL such as duckdb://botmeter.duckdb",
    ),
    Setting(
        "token",
        "BOTMETER_TOKEN",
        str,
        None,
        "the ingest token a Meter sends to a collector with (`botmeter tokens create`); never logged",
    ),
    Setting(
        "enabled",
        "BOTMETER_ENABLED",
        bool,
        True,
        "`false` makes every track call a no-op",
        aliases=("ANALYTICS_ENABLED",),
    ),
    Setting("flush_interval", "BOTMETER_FLUSH_INTERVAL", float, 1.0, "seconds between writes", minimum=0.01),
    Setting(
        "batch_size",
        "BOTMETER_BATCH_SIZE",
        int,
        100_000,
        "write early once this many events wait; also the most events written in one go",
        minimum=1,
    ),
    Setting(
        "max_buffer",
        "BOTMETER_MAX_BUFFER",
        int,
        400_000,
        "most events held in memory; beyond it events are dropped and counted",
        minimum=1,
    ),
    Setting(
        "max_buffer_mb",
        "BOTMETER_MAX_BUFFER_MB",
        float,
        100.0,
        "most memory, in MB, the events waiting to be written may take (as the track call accounts it: "
        "see [What is promised](#what-is-promised-durability)); beyond it events are dropped and counted",
        minimum=1,
    ),
    Setting(
        "spool_dir",
        "BOTMETER_SPOOL_DIR",
        str,
        None,
        "where batches wait while the store is failing",
        shown_default="`<store>.spool`",
    ),
    Setting(
        "max_spool_mb",
        "BOTMETER_MAX_SPOOL_MB",
        float,
        1024.0,
        "most disk the spool may use; beyond it batches are dropped and counted",
        minimum=1,
    ),
    Setting("hash_users", "BOTMETER_HASH_USERS", bool, True, "store user ids as a keyed hash"),
    Setting(
        "hash_key",
        "BOTMETER_HASH_KEY",
        str,
        None,
        "the key for user-id hashes (hex, at least 16 bytes)",
        shown_default="generated, in `<store>.key`",
    ),
    Setting(
        "store_text", "BOTMETER_STORE_TEXT", bool, False, "keep message text (otherwise only its length)"
    ),
    Setting(
        "channel",
        "BOTMETER_CHANNEL",
        str,
        None,
        "channel for events that name none (`sms`, `slack`, `web`)",
    ),
    Setting("release", "BOTMETER_RELEASE", str, None, "the bot's release, stored with every event"),
    Setting("prices", "BOTMETER_PRICES", str, None, "a TOML price list overriding built-in prices"),
    Setting(
        "sms_rates",
        "BOTMETER_SMS_RATES",
        str,
        None,
        "a TOML table of SMS rates per country and direction",
        shown_default="shipped table",
    ),
    Setting(
        "default_country",
        "BOTMETER_DEFAULT_COUNTRY",
        str,
        "US",
        "country for SMS rates when the user id is not a phone number",
    ),
    Setting(
        "lock_timeout",
        "BOTMETER_LOCK_TIMEOUT",
        float,
        5.0,
        "seconds a write waits for another process to release the DuckDB file before spooling",
        minimum=0,
    ),
    Setting(
        "admins",
        "BOTMETER_ADMINS",
        tuple,
        (),
        "comma-separated admin phone numbers or ids (for chat admin commands)",
        expected="phone numbers or ids (str or int)",
    ),
    Setting(
        "session_gap_minutes",
        "BOTMETER_SESSION_GAP",
        float,
        30.0,
        "minutes of silence that end a conversation, for messages without a conversation id",
        minimum=0.01,
    ),
    Setting(
        "reply_stage",
        "BOTMETER_REPLY_STAGE",
        str,
        "reply",
        "the timing stage that measures a whole reply (inbound message to reply sent): the headline reply "
        "latency (`reply_latency_s`)",
        required=True,
        expected="a stage name",
    ),
    Setting(
        "alerts",
        "BOTMETER_ALERTS",
        str,
        None,
        "a TOML file of alert rules (`botmeter alerts check`, `botmeter summary`)",
    ),
    Setting(
        "cloudwatch_namespace",
        "BOTMETER_CLOUDWATCH_NAMESPACE",
        str,
        None,
        "CloudWatch namespace when the store URL names none",
        aliases=("ANALYTICS_NAMESPACE",),
        shown_default="`botmeter`",
    ),
    Setting(
        "cloudwatch_region",
        "BOTMETER_CLOUDWATCH_REGION",
        str,
        None,
        "AWS region of the CloudWatch store when the URL names none",
        aliases=("DYNAMODB_REGION", "AWS_REGION"),
        shown_default="boto3's own",
    ),
    Setting(
        "cloudwatch_mode",
        "BOTMETER_CLOUDWATCH_MODE",
        str,
        None,
        "`emf` (metrics as log lines on stdout) or `api` (`PutMetricData`, `PutLogEvents`)",
        choices=("emf", "api"),
        shown_default="`emf` in Lambda, else `api`",
    ),
    Setting(
        "cloudwatch_log_group",
        "BOTMETER_CLOUDWATCH_LOG_GROUP",
        str,
        None,
        "CloudWatch Logs group for the event records in `api` mode",
        shown_default="`/botmeter/<namespace>`",
    ),
    Setting(
        "report_days",
        "BOTMETER_REPORT_DAYS",
        int,
        1,
        "days the scheduled report of `botmeter.aws_lambda.handler` covers (7 for weekly)",
        minimum=1,
    ),
    Setting(
        "report_webhook",
        "BOTMETER_REPORT_WEBHOOK",
        str,
        None,
        "URL the scheduled report is POSTed to as JSON (a Slack incoming webhook works)",
    ),
    Setting(
        "report_sns_topic",
        "BOTMETER_REPORT_SNS_TOPIC",
        str,
        None,
        "SNS topic ARN the scheduled report is published to",
    ),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


def settings_table() -> str:
    """The README's settings table, row for row from ``SETTINGS``."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    return "\n".join(rows + [s.readme_row() for s in SETTINGS])


def setting_from_env(name: str, env: Mapping[str, str] | None = None) -> Any:
    """One setting from the environment (its variable, then its aliases), else its default."""
    setting = SETTINGS_BY_NAME[name]
    env = os.environ if env is None else env
    for var in (setting.env, *setting.aliases):
        raw = env.get(var)
        if raw is not None:
            return setting.parse(var, raw)
    return setting.default


class _Resolving:
    """How a ``Config`` is built and checked; its fields come from ``SETTINGS``."""

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **arguments: Any) -> Config:
        """Builds the settings: arguments (when not None) > environment > defaults."""
        env = os.environ if env is None else env
        unknown = set(arguments) - SETTINGS_BY_NAME.keys()
        if unknown:
            raise InputTypeError(
                f"unknown setting(s): {', '.join(sorted(unknown))}; "
                f"valid: {', '.join(sorted(SETTINGS_BY_NAME))}"
            )
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            given = arguments.get(setting.name)
            if given is None:
                values[setting.name] = setting_from_env(setting.name, env)
            elif setting.kind is tuple and isinstance(given, str):  # admins="+1555...,+1555..."
                values[setting.name] = _split_list(given)
            elif setting.kind is tuple and isinstance(given, list | set | frozenset):
                values[setting.name] = tuple(given)
            else:
                values[setting.name] = given
        config = cls(**values)
        config.validate()
        return config  # type: ignore[return-value]

    def validate(self) -> None:
        for setting in SETTINGS:
            setting.check(getattr(self, setting.name))


# A frozen dataclass with one field per setting, in declaration order, with its declared default.
Config = make_dataclass(
    "Config",
    [(s.name, s.kind | None if s.default is None else s.kind, field(default=s.default)) for s in SETTINGS],
    bases=(_Resolving,),
    frozen=True,
)
Config.__module__ = __name__  # for pickling and repr; make_dataclass names its caller's caller
Config.__doc__ = "botmeter's settings, resolved once: ``Config.resolve(**arguments)``."
