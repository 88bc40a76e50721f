"""One error hierarchy: what botmeter refuses on purpose is a BotmeterError, and still the usual
ValueError or TypeError for callers that catch those."""

from __future__ import annotations

import pytest

from botmeter import Meter
from botmeter.analyse.catalogue import Metric
from botmeter.demo import run_demo
from botmeter.exceptions import BotmeterError, ConfigError, InputError, InputTypeError
from botmeter.process.privacy import key_from_setting
from botmeter.process.sms import SmsRates


def test_bad_arguments_are_botmeter_errors_and_value_errors():
    with pytest.raises(InputError, match="sideways") as info:
        SmsRates.default().rate("US", "sideways")
    assert isinstance(info.value, ValueError)
    with pytest.raises(InputError, match="'median'"):
        Metric("m", "usd", "a metric", "median")
    with pytest.raises(InputError, match="days=0"):
        run_demo("duckdb:///nowhere.duckdb", days=0)
    with pytest.raises(BotmeterError, match="flush_intervall") as unknown:
        Meter(flush_intervall=2)
    assert isinstance(unknown.value, TypeError) and isinstance(unknown.value, InputTypeError)


def test_a_client_botmeter_cannot_instrument_is_a_type_error_of_botmeter(tmp_path):
    with (
        Meter(bot="b", store=f"duckdb:///{tmp_path}/s.duckdb") as meter,
        pytest.raises(InputTypeError, match=r"no integration for a builtins\.object client"),
    ):
        meter.instrument(object())


def test_a_short_hash_key_is_a_config_error():
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        key_from_setting("abcd")  # the key itself is secret: the message does not show it
