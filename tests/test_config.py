"""Configuration: config.yaml agrees with the settings model; validation names the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.config import ENV_VARS, Settings, load_settings
from core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config.yaml"


def _leaves(data, prefix=""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_config_yaml_holds_exactly_the_defaults():
    assert load_settings(CONFIG, env={}) == Settings()


def test_every_setting_is_in_config_yaml_and_every_key_is_known():
    in_file = set(_leaves(yaml.safe_load(CONFIG.read_text())))
    in_model = set(_leaves(Settings().model_dump(mode="json")))
    assert in_file == in_model


def test_config_yaml_has_a_comment_on_every_setting():
    for line in CONFIG.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not stripped.endswith(":"):
            assert "#" in line, f"config.yaml line without a comment: {line!r}"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "model:\n  daily_seasonalty: true\n",
            "model.daily_seasonalty: unknown key; did you mean 'daily_seasonality'?",
        ),
        ("modle:\n  kind: prophet\n", "modle: unknown key; did you mean 'model'?"),
        (
            "model:\n  interval_width: 1.5\n",
            "model.interval_width: 1.5 is invalid (Input should be less than 1)",
        ),
        ("model:\n  kind: arima\n", "model.kind: 'arima' is invalid"),
        ("scoring:\n  threshold_multiplier: -1\n", "scoring.threshold_multiplier: -1 is invalid"),
        ("scoring:\n  severity: {medium: 3, high: 2, critical: 4}\n", "severity cuts must increase"),
        ("data:\n  timezone: Mars/Olympus\n", "unknown time zone 'Mars/Olympus'"),
        (
            "influxdb:\n  token: abc\n",
            "influxdb.token: secrets are not read from the config file; set INFLUXDB_TOKEN",
        ),
        ("influxdb:\n  password: abc\n", "influxdb.password: secrets are not read from the config file"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("model: [\n", "line 2"),
    ],
)
def test_invalid_config_names_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env={})
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert str(tmp_path / "c.yaml") in str(info.value)


def test_missing_named_file_is_an_error_but_missing_default_is_not(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml", env={}, required=True)
    assert load_settings(tmp_path / "nope.yaml", env={}) == Settings()


def test_precedence_flags_over_environment_over_file(tmp_path):
    path = write(tmp_path, "monitoring:\n  interval_seconds: 30\nlogging:\n  level: debug\n")
    assert load_settings(path, env={}).monitoring.interval_seconds == 30
    assert load_settings(path, env={}).logging.level == "DEBUG"
    env = {"MONITORING_INTERVAL": "15", "LOG_LEVEL": "warning"}
    assert load_settings(path, env=env).monitoring.interval_seconds == 15
    flags = {"monitoring.interval_seconds": 5.0, "logging.level": None}
    settings = load_settings(path, env=env, overrides=flags)
    assert settings.monitoring.interval_seconds == 5
    assert settings.logging.level == "WARNING"


def test_every_documented_environment_variable_maps_to_a_setting():
    for var, dotted in ENV_VARS.items():
        *path, key = dotted.split(".")
        node = Settings()
        for part in path:
            node = getattr(node, part)
        assert key in type(node).model_fields, var


def test_influx_environment_and_secrets(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    env = {"INFLUXDB_URL": "http://db:8086", "INFLUXDB_ORG": "ops", "INFLUXDB_TOKEN_FILE": str(token_file)}
    s = load_settings(None, env=env)
    assert s.influxdb.enabled and s.influxdb.org == "ops"
    assert s.influxdb.token is not None and s.influxdb.token.get_secret_value() == "from-file"
    s = load_settings(None, env={**env, "INFLUXDB_TOKEN": "from-env", "INFLUXDB_PASSWORD": "pw"})
    assert s.influxdb.token.get_secret_value() == "from-env"
    dumped = repr(s.redacted()) + repr(s)
    assert "from-env" not in dumped and "pw'" not in dumped
    assert not load_settings(None, env={}).influxdb.enabled


def test_unreadable_token_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="^environment variable INFLUXDB_TOKEN_FILE: cannot read"):
        load_settings(None, env={"INFLUXDB_TOKEN_FILE": str(tmp_path / "missing")})


def test_model_hash_changes_with_model_settings_only(tmp_path):
    base = Settings().model_hash()
    assert load_settings(write(tmp_path, "monitoring:\n  interval_seconds: 5\n"), env={}).model_hash() == base
    assert load_settings(write(tmp_path, "model:\n  interval_width: 0.9\n"), env={}).model_hash() != base
