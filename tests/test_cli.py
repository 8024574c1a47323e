"""The command line: exit codes and the exact one-line errors, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"


def run(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MAIN), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def small_dataset(path: Path, days: int = 4) -> Path:
    t = pd.date_range("2025-01-06", periods=days * 96, freq="15min")
    hours = t.hour + t.minute / 60
    y = 40 + 15 * np.sin(2 * np.pi * hours / 24) + np.random.default_rng(0).normal(0, 2, len(t))
    pd.DataFrame({"timestamp": t.strftime("%Y-%m-%d %H:%M:%S"), "cpu_usage": y.round(2)}).to_csv(
        path, index=False
    )
    return path


BAD_INPUT = [
    ("missing file", None, "error: missing.csv: file not found; pass an existing CSV file with --dataset"),
    (
        "empty file",
        "",
        "error: bad.csv: file is empty; expected a header line 'timestamp,cpu_usage' and data rows",
    ),
    (
        "no timestamp column",
        "time,cpu_usage\n2025-01-01 00:00:00,5\n",
        "error: bad.csv line 1: no 'timestamp' column (found: time, cpu_usage); "
        "name the time column 'timestamp' or set data.timestamp_column",
    ),
    (
        "unparseable timestamp",
        "timestamp,cpu_usage\n2025-01-01 00:00:00,5\n2025-01-01 25:00:00,6\n",
        "error: bad.csv line 3: timestamp '2025-01-01 25:00:00' is not a date; "
        "expected YYYY-MM-DD HH:MM:SS (ISO 8601, optionally with a UTC offset) or Unix seconds",
    ),
    (
        "five rows",
        "timestamp,cpu_usage\n" + "".join(f"2025-01-01 00:0{i}:00,{i}\n" for i in range(5)),
        "error: bad.csv: too few rows to train (series default: 5 usable rows; at least 288 are needed "
        "(data.min_rows)); supply more history or lower data.min_rows",
    ),
]


@pytest.mark.parametrize(("content", "expected"), [b[1:] for b in BAD_INPUT], ids=[b[0] for b in BAD_INPUT])
def test_bad_dataset_gives_one_line_and_exit_2(tmp_path, content, expected):
    name = "missing.csv" if content is None else "bad.csv"
    if content is not None:
        (tmp_path / name).write_text(content)
    result = run(tmp_path, "--mode", "train", "--dataset", name, "--no-plots")
    assert result.returncode == 2
    assert result.stderr == expected + "\n"
    assert "Traceback" not in result.stdout
    assert not (tmp_path / "outputs" / "cpu_anomaly_model.json").exists()


def test_config_with_unknown_key(tmp_path):
    (tmp_path / "c.yaml").write_text("model:\n  weekly_seasonalty: false\n")
    result = run(tmp_path, "--config", "c.yaml", "--mode", "train")
    assert result.returncode == 2
    assert (
        result.stderr
        == "error: c.yaml: model.weekly_seasonalty: unknown key; did you mean 'weekly_seasonality'?\n"
    )


def test_check_config(tmp_path):
    result = run(ROOT, "--check-config")
    assert (result.returncode, result.stdout, result.stderr) == (0, "config.yaml: OK\n", "")
    (tmp_path / "c.yaml").write_text("scoring:\n  direction: sideways\n")
    result = run(tmp_path, "--check-config", "--config", "c.yaml")
    assert result.returncode == 2 and result.stderr.startswith(
        "error: c.yaml: scoring.direction: 'sideways' is invalid"
    )
    result = run(tmp_path, "--check-config", "--config", "absent.yaml")
    assert result.returncode == 2
    assert result.stderr == "error: absent.yaml: config file not found; pass an existing file with --config\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--mode", "predict"],
            "error: argument --mode: invalid choice: 'predict' (choose from 'train', 'monitor', 'evaluate')",
        ),
        (
            ["--monitoring-interval", "soon"],
            "error: argument --monitoring-interval: invalid float value: 'soon'",
        ),
        (
            ["--threshold-multiplier", "-2", "--check-config"],
            "error: --threshold-multiplier: -2.0 is invalid (Input should be greater than 0)",
        ),
    ],
)
def test_bad_flags(tmp_path, args, expected):
    result = run(tmp_path, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1


def test_corrupt_model_artifact_exits_3(tmp_path):
    from core.errors import ModelError, exit_code_for

    assert exit_code_for(ModelError("x")) == 3


@pytest.mark.slow
def test_train_writes_json_artifact_metadata_and_plots_only_when_asked(tmp_path):
    small_dataset(tmp_path / "d.csv")
    (tmp_path / "c.yaml").write_text("model:\n  uncertainty_samples: 200\n  horizon_days: 1\n")
    result = run(tmp_path, "--config", "c.yaml", "--dataset", "d.csv", "--no-plots", "--output-dir", "o1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    files = sorted(p.name for p in (tmp_path / "o1").iterdir())
    assert files == ["cpu_anomaly_model.json", "model_metadata.json"]
    meta = json.loads((tmp_path / "o1" / "model_metadata.json").read_text())
    assert meta["series"]["default"]["rows_train"] == 307 and meta["series"]["default"]["rows_holdout"] == 77
    assert meta["dataset"]["unit"] == "percent" and "eda" in meta["series"]["default"]
    header = (tmp_path / "o1" / "cpu_anomaly_model.json").read_text().splitlines()[0]
    assert json.loads(header)["schema_version"] == 2

    result = run(
        tmp_path,
        "--config",
        "c.yaml",
        "--dataset",
        "d.csv",
        "--output-dir",
        "o2",
        "--no-eda",
        "--model-path",
        "o2/models/m.json",
    )
    assert result.returncode == 0, result.stderr
    names = {p.name for p in (tmp_path / "o2").rglob("*") if p.is_file()}
    assert {"m.json", "model_metadata.json", "forecast_default.png", "components_default.png"} <= names
    assert "eda_default.png" not in names
    assert (
        "eda"
        not in json.loads((tmp_path / "o2" / "models" / "model_metadata.json").read_text())["series"][
            "default"
        ]
    )
    for path in (tmp_path / "o2").rglob("*"):
        if path.is_file():
            assert not path.read_bytes().startswith(b"\x80"), f"{path} looks like a pickle"


@pytest.mark.slow
def test_monitor_replays_a_csv_through_the_loop(tmp_path):
    small_dataset(tmp_path / "d.csv")
    env = {**os.environ, "MONITORING_SOURCE": "replay", "TELEMETRY_PORT": "0"}
    env = {k: v for k, v in env.items() if not k.startswith(("INFLUXDB_", "PROMETHEUS_"))}
    result = subprocess.run(
        [sys.executable, str(MAIN), "--mode", "monitor", "--dataset", "d.csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(x) for x in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * 96 and {r["source"] for r in lines} == {"replay"}
    assert [r["ts"] for r in lines] == sorted(r["ts"] for r in lines)
