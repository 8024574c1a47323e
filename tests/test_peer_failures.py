"""Each way the system we replace failed its users (shared/PEER.md), as a test we must pass."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import ModelSettings
from core.model.forecaster import ProphetForecaster
from core.timegrid import DAY

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"


def run(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "PROMETHEUS_"))}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, str(MAIN), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full
    )


def _requirements() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_every_requirement_is_pinned_and_every_import_is_required():
    """Fresh install: PyYAML was missing and an unpinned pandas 3 broke the old system."""
    pins = _requirements()
    assert all(pins.values()), [n for n, v in pins.items() if not v]
    for needed in (
        "prophet",
        "influxdb-client",
        "pandas",
        "numpy",
        "pyyaml",
        "loguru",
        "requests",
        "joblib",
        "matplotlib",
        "pydantic",
        "prometheus-client",
        "tenacity",
        "hypothesis",
    ):
        assert needed in pins, needed
    for name, version in pins.items():
        assert metadata.version(name) == version, f"installed {name} differs from requirements.txt"
    dists = metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    for path in [MAIN, *sorted((ROOT / "core").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            for name in names:
                if name in stdlib or name == "core":
                    continue
                owners = {d.lower().replace("_", "-") for d in dists.get(name, [])}
                assert owners & set(pins), f"{path.name} imports {name}, which requirements.txt does not pin"


def test_a_model_trained_long_ago_never_extrapolates_its_trend():
    """Monitor mode flagged every reading: the trend of the training months was extrapolated to 117%."""
    t = 1_700_000_000 + 900.0 * np.arange(int(21 * DAY / 900))
    trend = 20 + 40 * (t - t[0]) / (t[-1] - t[0])  # +40 points in three weeks
    y = trend + 10 * np.sin(2 * np.pi * t / DAY) + np.random.default_rng(1).normal(0, 1, len(t))
    frame = pd.DataFrame({"ds": pd.to_datetime(t, unit="s", utc=True), "y": y})
    fitted = ProphetForecaster(ModelSettings(uncertainty_samples=100, horizon_days=7)).fit(
        frame, clip=(0, 100)
    )
    later = t[-1] + 120 * DAY + np.arange(0, DAY, 900)
    values = fitted.band.lookup(later)
    assert values.stale.all()
    last_week = fitted.band.lookup(np.arange(fitted.band.end - 7 * DAY, fitted.band.end, 900))
    assert values.yhat.max() <= last_week.yhat.max() + 1e-9  # the horizon's level is held, not extended
    assert values.upper.max() <= 100.0


def test_missing_empty_and_corrupt_inputs_exit_nonzero_with_one_line(tmp_path):
    """Missing file / empty file / missing column: exit 1 with a traceback; missing model: exit 0."""
    cases = [
        (["--mode", "train", "--dataset", "nope.csv"], 2),
        (["--mode", "monitor", "--model-path", "nope.json", "--duration", "1"], 3),
        (["--mode", "evaluate", "--dataset", "nope.csv"], 2),
    ]
    (tmp_path / "corrupt.json").write_text("{not json")
    cases.append((["--mode", "monitor", "--model-path", "corrupt.json", "--duration", "1"], 3))
    for args, code in cases:
        result = run(tmp_path, *args)
        assert result.returncode == code, (args, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr + result.stdout


def test_secrets_never_reach_files_or_logs(tmp_path):
    """An admin token was committed in config, docs and tests, and written to system_report.json."""
    canary, password = "tok-canary-7f3a9b", "pw-canary-51e2"
    env = {
        "INFLUXDB_URL": "http://127.0.0.1:9",
        "INFLUXDB_TOKEN": canary,
        "INFLUXDB_PASSWORD": password,
        "TELEMETRY_PORT": "0",
        "LOG_LEVEL": "DEBUG",
    }
    result = run(tmp_path, "--mode", "monitor", "--monitoring-interval", "1", "--duration", "4", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "logs" / "system_report.json").read_text())["status"] == "stopped"
    for path in [p for p in tmp_path.rglob("*") if p.is_file()]:
        text = path.read_bytes()
        assert canary.encode() not in text and password.encode() not in text, path
    assert canary not in result.stdout + result.stderr
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for name in tracked:
        path = ROOT / name
        if path.suffix in {".yaml", ".yml", ".md", ".py", ".json", ".toml", ".example"} and path.is_file():
            text = path.read_text(errors="ignore")
            assert not re.search(r"(?i)(token|password)\s*[:=]\s*['\"]?[A-Za-z0-9_\-]{20,}", text), name


def test_no_plots_means_no_plots_and_flags_beat_saved_metadata(tmp_path):
    """--no-plots still wrote plots; --threshold-multiplier was silently overridden by saved metadata."""
    (tmp_path / "c.yaml").write_text("model:\n  kind: profile\nscoring:\n  threshold_multiplier: 1.0\n")
    (tmp_path / "dataset.csv").write_bytes((ROOT / "dataset.csv").read_bytes())
    result = run(tmp_path, "--config", "c.yaml", "--mode", "train", "--no-plots")
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.rglob("*.png"))
    result = run(
        tmp_path, "--config", "c.yaml", "--mode", "evaluate", "--no-plots", "--threshold-multiplier", "2.5"
    )
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.rglob("*.png"))
    meta = json.loads((tmp_path / "outputs" / "model_metadata.json").read_text())
    assert meta["scoring"]["threshold_multiplier"] == 1.0  # what training used ...
    assert meta["evaluation"]["threshold_multiplier"] == 2.5  # ... never overrides the flag
    result = run(
        tmp_path,
        "--config",
        "c.yaml",
        "--mode",
        "monitor",
        "--duration",
        "2",
        "--monitoring-interval",
        "1",
        "--threshold-multiplier",
        "2.5",
        env={"TELEMETRY_PORT": "0"},
    )
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["threshold"] == 2.5 for line in lines)


def test_config_values_reach_the_model():
    """Config values for resampling and Prophet were ignored (hard-coded) by the old system."""
    t = 1_700_000_000 + 900.0 * np.arange(int(15 * DAY / 900))
    y = 40 + 10 * np.sin(2 * np.pi * t / DAY) + np.random.default_rng(2).normal(0, 2, len(t))
    frame = pd.DataFrame({"ds": pd.to_datetime(t, unit="s", utc=True), "y": y})
    narrow = ProphetForecaster(
        ModelSettings(
            interval_width=0.5, changepoint_prior_scale=0.3, uncertainty_samples=200, band_step_seconds=1800
        )
    ).fit(frame)
    wide = ProphetForecaster(ModelSettings(interval_width=0.99, uncertainty_samples=200)).fit(frame)
    assert np.mean(narrow.band.upper - narrow.band.lower) < 0.5 * np.mean(wide.band.upper - wide.band.lower)
    assert narrow.band.step == 1800 and wide.band.step == 900
    params = json.loads(narrow.params)
    assert params["changepoint_prior_scale"] == 0.3 and params["interval_width"] == 0.5
    assert params["uncertainty_samples"] == 200


@pytest.mark.slow
def test_evaluate_is_seeded_and_scores_only_the_holdout(tmp_path):
    """Evaluate was unseeded (every run differed) and also scored training rows."""
    from core.config import Settings
    from core.evaluation import evaluate

    settings = Settings.model_validate({"model": {"kind": "profile"}})
    runs = [
        evaluate(
            settings,
            ROOT / "dataset.csv",
            model_path=tmp_path / "none.json",
            output_dir=tmp_path / f"o{i}",
            plots=False,
        )
        for i in range(2)
    ]
    assert runs[0]["point"] == runs[1]["point"] and runs[0]["event"] == runs[1]["event"]
    rows = 8064  # per host in the sample
    assert runs[0]["points"] == 2 * (rows - round(rows * settings.model.train_ratio))
