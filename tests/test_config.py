"""Settings come from one declaration: its bounds hold for arguments and variables alike."""

from __future__ import annotations

import pytest

from botmeter.config import SETTINGS, Config
from botmeter.exceptions import BotmeterError, ConfigError

BOUNDED = [s for s in SETTINGS if s.minimum is not None]


def test_defaults_are_the_declared_ones():
    config = Config.resolve(env={})
    for setting in SETTINGS:
        assert getattr(config, setting.name) == setting.default, setting.name


@pytest.mark.parametrize("setting", BOUNDED, ids=lambda s: s.name)
def test_a_value_below_the_minimum_names_the_setting_and_the_value(setting):
    too_small = setting.kind(setting.minimum - 1)
    with pytest.raises(ConfigError, match=rf"^{setting.name} must be a number >= .*got {too_small!r}$"):
        Config.resolve(env={}, **{setting.name: too_small})
    with pytest.raises(ConfigError, match=rf"^{setting.env} must be >= .*got '{too_small}'$"):
        Config.resolve(env={setting.env: str(too_small)})


def test_the_seed_variables_and_aws_region_are_honoured_in_order():
    env = {"ANALYTICS_ENABLED": "false", "ANALYTICS_NAMESPACE": "Dadacat", "AWS_REGION": "eu-west-1"}
    config = Config.resolve(env=env)
    assert (config.enabled, config.cloudwatch_namespace, config.cloudwatch_region) == (
        False,
        "Dadacat",
        "eu-west-1",
    )
    assert Config.resolve(env=env | {"DYNAMODB_REGION": "us-east-2"}).cloudwatch_region == "us-east-2"
    both = env | {"DYNAMODB_REGION": "us-east-2", "BOTMETER_CLOUDWATCH_REGION": "ap-south-1"}
    assert Config.resolve(env=both).cloudwatch_region == "ap-south-1"
    assert Config.resolve(env=both, cloudwatch_region="sa-east-1").cloudwatch_region == "sa-east-1"


def test_choices_and_kinds_are_checked_where_the_value_comes_from():
    with pytest.raises(ConfigError, match="BOTMETER_CLOUDWATCH_MODE must be emf or api, got 'warp'"):
        Config.resolve(env={"BOTMETER_CLOUDWATCH_MODE": "warp"})
    with pytest.raises(ConfigError, match="cloudwatch_mode must be emf or api, got 'warp'"):
        Config.resolve(env={}, cloudwatch_mode="warp")
    with pytest.raises(ConfigError, match="ANALYTICS_ENABLED must be true or false, got 'maybe'"):
        Config.resolve(env={"ANALYTICS_ENABLED": "maybe"})
    with pytest.raises(ConfigError, match="BOTMETER_BATCH_SIZE must be a whole number, got '1e3'"):
        Config.resolve(env={"BOTMETER_BATCH_SIZE": "1e3"})
    with pytest.raises(ConfigError, match="store must be a store URL such as duckdb://"):
        Config.resolve(env={}, store="")
    assert Config.resolve(env={}, admins="+15550001, 42").admins == ("+15550001", "42")
    assert issubclass(ConfigError, BotmeterError) and issubclass(ConfigError, ValueError)


def test_an_unknown_argument_lists_the_valid_ones():
    with pytest.raises(TypeError, match=r"unknown setting.*flush_intervall.*flush_interval"):
        Config.resolve(env={}, flush_intervall=2)
