"""The README agrees with the code: its commands parse, its settings and variables exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from core.config import ENV_VARS, SECRET_ENV, Settings
from main import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands() -> list[list[str]]:
    found = []
    for line in README.splitlines():
        for part in re.split(r"&&|`", line):
            if "main.py" in part and "--" in part:
                words = shlex.split(part.split("#", 1)[0])
                found.append(words[words.index(next(w for w in words if w.endswith("main.py"))) + 1 :])
    return found


PLACEHOLDERS = {
    "URL": "http://127.0.0.1:9090",
    "S": "5",
    "K": "1.5",
    "LEVEL": "INFO",
    "FILE": "c.yaml",
    "PATH": "p",
    "DIR": "d",
    "OUT": "o",
}


@pytest.mark.parametrize("args", _commands(), ids=lambda a: " ".join(a)[:60])
def test_every_readme_command_parses(args):
    words = [PLACEHOLDERS.get(w.strip("[]"), w.strip("[]")) for w in args]
    parsed = build_parser().parse_args([w for w in words if w])
    assert parsed.mode in ("train", "monitor", "evaluate")


def test_readme_settings_exist():
    known = set()

    def walk(data, prefix=""):
        for key, value in data.items():
            known.add(prefix + key)
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")

    walk(Settings().model_dump(mode="json"))
    sections = set(Settings.model_fields)
    for ref in set(re.findall(r"`([a-z_]+\.[a-z_.]+)`", README)):
        if ref.endswith((".jsonl", ".json", ".yaml", ".csv", ".txt", ".png")):
            continue  # a file name (logs/metrics.jsonl), not a dotted setting
        if ref.split(".")[0] in sections:
            assert ref in known, f"README mentions {ref}, which is not a setting"


def test_readme_environment_variables_exist():
    documented = set(
        re.findall(
            r"`((?:INFLUXDB|PROMETHEUS|MONITORING|LOGS|LOG|TELEMETRY|ALERT|ALERTMANAGER|SMTP)_[A-Z_]+)`",
            README,
        )
    )
    assert documented <= set(ENV_VARS) | set(SECRET_ENV), documented - set(ENV_VARS) - set(SECRET_ENV)
    assert set(ENV_VARS) | set(SECRET_ENV) <= documented
